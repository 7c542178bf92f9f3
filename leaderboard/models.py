"""Benchmarks, splits, submissions and their evaluations.

A Submission is the uploaded zip plus its metadata. An Evaluation is one scoring
run of it; re-scoring creates a new Evaluation, and the latest one is the current
one. Evaluation states move only through `EvaluationQuerySet.transition`, a
conditional UPDATE, so two workers racing on the same evaluation cannot both win.
"""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.utils import timezone

from leaderboard.storage import (
    private_storage,
    public_package_upload_to,
    samples_upload_to,
    submission_upload_to,
)


class Benchmark(models.Model):
    slug = models.SlugField(max_length=64, unique=True)
    name = models.CharField(max_length=200)
    description = models.TextField(blank=True)
    # The evaluator's BenchmarkConfig JSON, as `BenchmarkConfig.to_json()` writes it.
    config = models.JSONField()
    config_name = models.CharField(max_length=100)
    config_version = models.CharField(max_length=50)
    config_hash = models.CharField(max_length=64)
    calibration_version = models.CharField(max_length=100)
    quota_limit = models.PositiveIntegerField(
        default=5, help_text="Submissions a user may make per split within the quota window."
    )
    quota_window_hours = models.PositiveIntegerField(
        default=24, help_text="Length of the rolling quota window, in hours."
    )
    is_public = models.BooleanField(default=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["slug"]

    def __str__(self) -> str:
        return self.name


class Split(models.Model):
    VISIBILITY_PUBLIC = "public"
    VISIBILITY_HIDDEN = "hidden"
    VISIBILITY_CHOICES = [
        (VISIBILITY_PUBLIC, "public: per-sample results may be shown"),
        (VISIBILITY_HIDDEN, "hidden: only aggregate results are shown"),
    ]

    benchmark = models.ForeignKey(Benchmark, on_delete=models.CASCADE, related_name="splits")
    name = models.SlugField(max_length=64)
    # The public inputs .tar (images, prompts, public manifest), in the default storage.
    public_package = models.FileField(upload_to=public_package_upload_to, max_length=300)
    # Name of the ground-truth .tar in the private storage; never served.
    ground_truth_location = models.CharField(max_length=300)
    # SHA-256 of the ground-truth .tar, so storage and caches name the exact data.
    # Evaluations record the evaluator's `ground_truth_version` instead, as report.json does.
    ground_truth_version = models.CharField(max_length=64)
    sample_count = models.PositiveIntegerField()
    visibility = models.CharField(
        max_length=10, choices=VISIBILITY_CHOICES, default=VISIBILITY_PUBLIC
    )
    is_active = models.BooleanField(default=True, help_text="Accepts new submissions.")
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["benchmark__slug", "name"]
        constraints = [
            models.UniqueConstraint(fields=["benchmark", "name"], name="split_unique_name"),
        ]

    def __str__(self) -> str:
        return f"{self.benchmark.slug}/{self.name}"


class Submission(models.Model):
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="submissions"
    )
    split = models.ForeignKey(Split, on_delete=models.CASCADE, related_name="submissions")
    file = models.FileField(upload_to=submission_upload_to, storage=private_storage, max_length=300)
    original_name = models.CharField(
        max_length=255, blank=True,
        help_text="The file name the submitter uploaded. Messages show it; storage never uses it as a path.",
    )
    sha256 = models.CharField(max_length=64)
    size_bytes = models.BigIntegerField()
    candidate_count = models.PositiveIntegerField(null=True, blank=True)
    method_name = models.CharField(max_length=200)
    description = models.TextField(blank=True)
    paper_url = models.URLField(blank=True, max_length=500)
    code_url = models.URLField(blank=True, max_length=500)
    # The zip's metadata.json, once validation has read it.
    metadata = models.JSONField(default=dict, blank=True)
    is_public = models.BooleanField(default=True)
    is_baseline = models.BooleanField(default=False)
    flagged = models.BooleanField(default=False, help_text="Hidden from the leaderboard by staff.")
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-created_at", "-pk"]
        indexes = [models.Index(fields=["owner", "split", "created_at"])]

    def __str__(self) -> str:
        return f"{self.method_name} ({self.split})"


class EvaluationState(models.TextChoices):
    UPLOADED = "uploaded"
    VALIDATING = "validating"
    QUEUED = "queued"
    SCORING = "scoring"
    AGGREGATING = "aggregating"
    FINISHED = "finished"
    FAILED = "failed"
    CANCELLED = "cancelled"


TERMINAL_STATES = frozenset(
    {EvaluationState.FINISHED, EvaluationState.FAILED, EvaluationState.CANCELLED}
)
# States whose work a worker is doing or about to do, watched by the reaper.
ACTIVE_STATES = frozenset(
    {
        EvaluationState.UPLOADED,
        EvaluationState.VALIDATING,
        EvaluationState.QUEUED,
        EvaluationState.SCORING,
        EvaluationState.AGGREGATING,
    }
)
# Every allowed move. Back edges to `uploaded` and `queued` are the reaper's re-queue.
TRANSITIONS: dict[str, frozenset[str]] = {
    EvaluationState.UPLOADED: frozenset({"validating", "failed", "cancelled"}),
    EvaluationState.VALIDATING: frozenset({"queued", "uploaded", "failed", "cancelled"}),
    EvaluationState.QUEUED: frozenset({"scoring", "queued", "failed", "cancelled"}),
    EvaluationState.SCORING: frozenset({"aggregating", "queued", "failed", "cancelled"}),
    EvaluationState.AGGREGATING: frozenset({"finished", "queued", "failed", "cancelled"}),
    EvaluationState.FINISHED: frozenset(),
    EvaluationState.FAILED: frozenset(),
    EvaluationState.CANCELLED: frozenset(),
}


class InvalidTransition(ValueError):
    """A state change that the state machine does not allow."""


class FailureKind(models.TextChoices):
    NONE = "", "none"
    USER = "user"
    INFRASTRUCTURE = "infrastructure"


class EvaluationQuerySet(models.QuerySet):
    def transition(self, pk: int, source: str | frozenset[str] | set[str], target: str, **fields) -> bool:
        """Move evaluation `pk` from `source` (a state or a set) to `target` atomically.

        Returns whether the row was in a source state and changed; `fields` are
        written in the same UPDATE. Raises InvalidTransition for a move that the
        state machine forbids, whatever the row holds.
        """
        sources = {source} if isinstance(source, str) else set(source)
        for state in sources:
            if target not in TRANSITIONS[state]:
                raise InvalidTransition(f"evaluation state cannot move from {str(state)!r} to {str(target)!r}")
        if target in TERMINAL_STATES:
            fields.setdefault("finished_at", timezone.now())
        return bool(self.filter(pk=pk, state__in=sources).update(state=target, **fields))

    def current(self):
        """Evaluations that are the latest of their submission."""
        latest = Evaluation.objects.filter(submission=models.OuterRef("submission")).order_by(
            "-created_at", "-pk"
        )
        return self.filter(pk=models.Subquery(latest.values("pk")[:1]))


class Evaluation(models.Model):
    State = EvaluationState

    submission = models.ForeignKey(Submission, on_delete=models.CASCADE, related_name="evaluations")
    state = models.CharField(
        max_length=12, choices=EvaluationState.choices, default=EvaluationState.UPLOADED, db_index=True
    )
    progress = models.FloatField(default=0.0)
    chunks_total = models.PositiveIntegerField(default=0)
    chunks_done = models.PositiveIntegerField(default=0)
    evaluator_version = models.CharField(max_length=50, blank=True)
    ground_truth_version = models.CharField(max_length=64, blank=True)
    config_hash = models.CharField(max_length=64, blank=True)
    calibration_version = models.CharField(max_length=100, blank=True)
    weights_fingerprint = models.CharField(max_length=64, blank=True)
    weights_verified = models.BooleanField(default=False)
    # The evaluator's aggregate report (metric name to value, intervals, counts).
    metrics = models.JSONField(default=dict, blank=True)
    samples_file = models.FileField(
        upload_to=samples_upload_to, storage=private_storage, blank=True, max_length=300
    )
    # Problem dicts (code, file, message, expected, found, hint) of a rejected upload.
    validation_problems = models.JSONField(default=list, blank=True)
    failure_kind = models.CharField(
        max_length=16, choices=FailureKind.choices, default=FailureKind.NONE, blank=True
    )
    user_message = models.TextField(blank=True)
    staff_detail = models.TextField(blank=True)
    # Scoring dispatches so far; the reaper fails the evaluation after a bounded number.
    attempts = models.PositiveIntegerField(default=0)
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    # Whether this run uses one of the owner's quota slots. Failures give it back.
    counts_for_quota = models.BooleanField(default=True)

    objects = EvaluationQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at", "-pk"]
        get_latest_by = ["created_at", "pk"]
        indexes = [models.Index(fields=["state", "heartbeat_at"])]

    def __str__(self) -> str:
        return f"evaluation {self.pk} of submission {self.submission_id} ({self.state})"

    @property
    def is_terminal(self) -> bool:
        return self.state in TERMINAL_STATES


class ChunkResult(models.Model):
    """The serialised evaluator ChunkResult of one chunk; a retry overwrites it."""

    evaluation = models.ForeignKey(Evaluation, on_delete=models.CASCADE, related_name="chunk_results")
    chunk = models.PositiveIntegerField()
    payload = models.BinaryField()
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["evaluation", "chunk"]
        constraints = [
            models.UniqueConstraint(fields=["evaluation", "chunk"], name="chunk_result_unique"),
        ]


class UploadState(models.TextChoices):
    OPEN = "open"
    COMPLETED = "completed"
    ABORTED = "aborted"


class Upload(models.Model):
    """A presigned multipart upload of a submission zip straight to S3.

    The client uploads parts to presigned URLs, so the bytes never pass through the
    web process. Completing the upload checks the SHA-256 and creates the Submission.
    """

    State = UploadState

    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="uploads")
    split = models.ForeignKey(Split, on_delete=models.CASCADE, related_name="uploads")
    filename = models.CharField(max_length=255)
    # Name of the object in the private storage; the Submission's file takes this name.
    key = models.CharField(max_length=300)
    # The S3 multipart upload id.
    upload_id = models.CharField(max_length=1024)
    size = models.BigIntegerField(help_text="Declared size of the file, in bytes.")
    sha256 = models.CharField(max_length=64, help_text="Declared SHA-256 of the file, lowercase hex.")
    part_size = models.BigIntegerField(help_text="Bytes per part; the last part may be shorter.")
    part_count = models.PositiveIntegerField()
    state = models.CharField(max_length=10, choices=UploadState.choices, default=UploadState.OPEN, db_index=True)
    submission = models.OneToOneField(
        Submission, on_delete=models.SET_NULL, null=True, blank=True, related_name="upload"
    )
    created_at = models.DateTimeField(default=timezone.now)
    expires_at = models.DateTimeField(help_text="An upload still open then is aborted by the beat task.")

    class Meta:
        ordering = ["-created_at", "-pk"]
        indexes = [models.Index(fields=["state", "expires_at"])]

    def __str__(self) -> str:
        return f"upload {self.pk} of {self.filename} ({self.state})"

"""Serializers of the REST API.

No serializer exposes a split's ground-truth location or a submission's stored
file name: private storage keys never leave the server.
"""

from __future__ import annotations

from django.urls import reverse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from leaderboard import selectors
from leaderboard.models import Benchmark, Evaluation, Split, Submission, Upload
from leaderboard.views.status import evaluation_status


def _absolute(request, url: str) -> str:
    return request.build_absolute_uri(url) if request is not None else url


class SplitSummarySerializer(serializers.ModelSerializer):
    url = serializers.SerializerMethodField()

    class Meta:
        model = Split
        fields = ["id", "name", "url"]

    @extend_schema_field(OpenApiTypes.URI)
    def get_url(self, split: Split) -> str:
        return _absolute(self.context.get("request"), reverse("api:split-detail", args=[split.pk]))


class BenchmarkSerializer(serializers.ModelSerializer):
    splits = SplitSummarySerializer(many=True, read_only=True)

    class Meta:
        model = Benchmark
        fields = ["slug", "name", "description", "config_name", "config_version", "config_hash",
                  "calibration_version", "quota_limit", "quota_window_hours", "splits", "created_at"]


class SplitSerializer(serializers.ModelSerializer):
    benchmark = serializers.SlugRelatedField(slug_field="slug", read_only=True)
    public_package_url = serializers.SerializerMethodField()
    leaderboard_url = serializers.SerializerMethodField()

    class Meta:
        model = Split
        fields = ["id", "benchmark", "name", "sample_count", "visibility", "is_active",
                  "public_package_url", "leaderboard_url", "created_at"]

    @extend_schema_field(OpenApiTypes.URI)
    def get_public_package_url(self, split: Split) -> str | None:
        if not split.public_package:
            return None
        url = reverse("split-inputs", args=[split.benchmark.slug, split.name])
        return _absolute(self.context.get("request"), url)

    @extend_schema_field(OpenApiTypes.URI)
    def get_leaderboard_url(self, split: Split) -> str:
        return _absolute(self.context.get("request"), reverse("api:split-leaderboard", args=[split.pk]))


class LeaderboardEntrySerializer(serializers.Serializer):
    """One leaderboard row; `metrics` and `intervals` are keyed by flat metric names."""

    rank = serializers.IntegerField(allow_null=True)
    submission = serializers.IntegerField(source="submission.pk")
    evaluation = serializers.IntegerField(source="evaluation.pk")
    method_name = serializers.CharField()
    owner = serializers.CharField(source="owner_name")
    is_baseline = serializers.BooleanField()
    weights_verified = serializers.BooleanField()
    pass_rate_calibrated = serializers.SerializerMethodField()
    metrics = serializers.DictField(child=serializers.FloatField(allow_null=True))
    intervals = serializers.DictField(child=serializers.ListField(child=serializers.FloatField()))
    created_at = serializers.DateTimeField()

    def get_pass_rate_calibrated(self, row) -> bool:
        """Return whether Pass-rate@K comes from a calibration fitted to human judgments."""
        return row.pass_rate_calibrated


_created_at_field = serializers.DateTimeField()


def leaderboard_entry_data(row) -> dict:
    """Build the representation that LeaderboardEntrySerializer gives a row, without its field machinery.

    A leaderboard can have thousands of entries of some forty numbers each, and
    building the dicts directly takes about a fifth of the serializer's time.
    """
    return {
        "rank": row.rank,
        "submission": row.submission.pk,
        "evaluation": row.evaluation.pk,
        "method_name": row.method_name,
        "owner": row.owner_name,
        "is_baseline": row.is_baseline,
        "weights_verified": row.weights_verified,
        "pass_rate_calibrated": row.pass_rate_calibrated,
        "metrics": {key: None if value is None else float(value) for key, value in row.metrics.items()},
        "intervals": {key: [float(bound) for bound in pair] for key, pair in row.intervals.items()},
        "created_at": _created_at_field.to_representation(row.created_at),
    }


class SubmissionCreateSerializer(serializers.Serializer):
    split = serializers.PrimaryKeyRelatedField(queryset=Split.objects.none(),
                                               help_text="Id of the split the predictions are for.")
    file = serializers.FileField(help_text="The zip of predicted RGBA PNG layers.")
    method_name = serializers.CharField(max_length=200)
    description = serializers.CharField(required=False, allow_blank=True, default="")
    paper_url = serializers.URLField(required=False, allow_blank=True, default="", max_length=500)
    code_url = serializers.URLField(required=False, allow_blank=True, default="", max_length=500)
    is_public = serializers.BooleanField(required=False, default=True)

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        request = self.context.get("request")
        user = request.user if request is not None else None
        benchmarks = selectors.benchmark_list(user=user)
        self.fields["split"].queryset = Split.objects.filter(benchmark__in=benchmarks).select_related("benchmark")

    def validate_file(self, upload):
        if not upload.name.lower().endswith(".zip"):
            raise serializers.ValidationError(
                f"{upload.name} is not a .zip file; upload a zip archive of PNG files."
            )
        return upload


class EvaluationSerializer(serializers.ModelSerializer):
    """One scoring run. Validation problems are included for the owner only."""

    validation_problems = serializers.SerializerMethodField()

    class Meta:
        model = Evaluation
        fields = ["id", "state", "progress", "chunks_total", "chunks_done", "evaluator_version",
                  "ground_truth_version", "config_hash", "calibration_version", "weights_fingerprint",
                  "weights_verified", "metrics", "validation_problems", "failure_kind", "user_message",
                  "created_at", "started_at", "finished_at"]

    @extend_schema_field(serializers.ListField(child=serializers.DictField()))
    def get_validation_problems(self, evaluation: Evaluation) -> list:
        if not self.context.get("is_owner"):
            return []
        return evaluation.validation_problems or []


class SubmissionSerializer(serializers.ModelSerializer):
    split = serializers.PrimaryKeyRelatedField(read_only=True)
    benchmark = serializers.CharField(source="split.benchmark.slug", read_only=True)
    owner = serializers.CharField(source="owner.get_username", read_only=True)
    original_name = serializers.SerializerMethodField(
        help_text="The uploaded file's name; shown to the owner and staff only, null for others.")
    status = serializers.SerializerMethodField()
    evaluation = serializers.SerializerMethodField()

    class Meta:
        model = Submission
        fields = ["id", "split", "benchmark", "owner", "method_name", "description", "paper_url", "code_url",
                  "is_public", "is_baseline", "original_name", "sha256", "size_bytes", "candidate_count",
                  "created_at", "status", "evaluation"]

    def _current(self, submission: Submission) -> Evaluation | None:
        cache = self.context.setdefault("current_evaluations", {})
        if submission.pk not in cache:
            cache[submission.pk] = selectors.evaluation_current(submission=submission)
        return cache[submission.pk]

    def _is_owner(self, submission: Submission) -> bool:
        request = self.context.get("request")
        user = request.user if request is not None else None
        return user is not None and (submission.owner_id == user.pk or user.is_staff)

    @extend_schema_field(serializers.CharField(allow_null=True))
    def get_original_name(self, submission: Submission) -> str | None:
        return submission.original_name if self._is_owner(submission) else None

    @extend_schema_field(serializers.DictField())
    def get_status(self, submission: Submission) -> dict:
        status = evaluation_status(submission, self._current(submission))
        if not self._is_owner(submission):
            status["cancellable"] = False
        return status

    @extend_schema_field(EvaluationSerializer(allow_null=True))
    def get_evaluation(self, submission: Submission) -> dict | None:
        evaluation = self._current(submission)
        if evaluation is None:
            return None
        return EvaluationSerializer(evaluation, context={**self.context, "is_owner": self._is_owner(submission)}).data


# Presigned multipart uploads ---------------------------------------------------------------


class UploadCreateSerializer(serializers.Serializer):
    split = serializers.PrimaryKeyRelatedField(queryset=Split.objects.none(),
                                               help_text="Id of the split the predictions are for.")
    filename = serializers.CharField(max_length=255, help_text="Name of the zip, ending in .zip.")
    size = serializers.IntegerField(min_value=1, help_text="Size of the file in bytes.")
    sha256 = serializers.CharField(min_length=64, max_length=64, help_text="SHA-256 of the file, lowercase hex.")
    part_size = serializers.IntegerField(required=False, allow_null=True, default=None,
                                         help_text="Bytes per part, 5 MiB to 5 GiB; the server chooses when absent.")

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        request = self.context.get("request")
        user = request.user if request is not None else None
        benchmarks = selectors.benchmark_list(user=user)
        self.fields["split"].queryset = Split.objects.filter(benchmark__in=benchmarks).select_related("benchmark")


class UploadSerializer(serializers.ModelSerializer):
    """An upload as its owner sees it; the storage key and S3 upload id stay on the server."""

    split = serializers.PrimaryKeyRelatedField(read_only=True)
    submission = serializers.PrimaryKeyRelatedField(read_only=True)

    class Meta:
        model = Upload
        fields = ["id", "split", "filename", "size", "sha256", "part_size", "part_count", "state",
                  "submission", "created_at", "expires_at"]


class PartSerializer(serializers.Serializer):
    part_number = serializers.IntegerField(source="number")
    size = serializers.IntegerField()
    etag = serializers.CharField()


class PartUrlsRequestSerializer(serializers.Serializer):
    part_numbers = serializers.ListField(child=serializers.IntegerField(), min_length=1, max_length=1000,
                                         help_text="Part numbers, from 1, to get upload URLs for.")


class UploadCompleteSerializer(serializers.Serializer):
    method_name = serializers.CharField(max_length=200)
    description = serializers.CharField(required=False, allow_blank=True, default="")
    paper_url = serializers.URLField(required=False, allow_blank=True, default="", max_length=500)
    code_url = serializers.URLField(required=False, allow_blank=True, default="", max_length=500)
    is_public = serializers.BooleanField(required=False, default=True)

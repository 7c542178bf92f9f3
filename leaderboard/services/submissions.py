"""Writes on submissions: upload, cancel, re-score, flag and baseline marks."""

from __future__ import annotations

import hashlib
import logging
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from leaderboard.models import ACTIVE_STATES, Evaluation, EvaluationState, Split, Submission
from leaderboard.quotas import QuotaStatus, quota_exempt, quota_lock, quota_status
from leaderboard.services.errors import (
    InvalidState,
    NotPermitted,
    QuotaExceeded,
    SplitClosed,
    UploadTooLarge,
)
from leaderboard.storage import private_storage

logger = logging.getLogger(__name__)

HASH_BLOCK_BYTES = 1 << 20


def format_bytes(count: int) -> str:
    for unit, size in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if count >= size:
            return f"{count / size:.1f} {unit}"
    return f"{count} bytes"


def format_utc(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")


def quota_message(split: Split, status: QuotaStatus) -> str:
    noun = "submission" if status.limit == 1 else "submissions"
    if status.next_slot_at is None:
        return f"Submissions to {split} are limited to {status.limit} per {status.window_hours} hours."
    message = (
        f"Quota reached: you have made {status.used} of {status.limit} {noun} to {split} "
        f"in the last {status.window_hours} hours. The next slot opens at "
        f"{format_utc(status.next_slot_at)}."
    )
    if status.validating:
        verb = "is" if status.validating == 1 else "are"
        message += (
            f" {status.validating} of them {verb} still being validated; each one found invalid "
            "gives its slot back, so try again once validation ends."
        )
    return message


def check_quota(*, user, split: Split) -> None:
    """Raise QuotaExceeded when the user has no free slot on the split."""
    if quota_exempt(user):
        return
    status = quota_status(user=user, split=split)
    if status.exhausted:
        raise QuotaExceeded(quota_message(split, status), status.next_slot_at)


def check_split_open(split: Split) -> None:
    if not split.is_active:
        raise SplitClosed(f"The split {split} does not accept submissions any more.")


def check_upload_size(size: int | None) -> None:
    limit = settings.REFLADE_UPLOAD_MAX_BYTES
    if size is not None and size > limit:
        raise UploadTooLarge(
            f"The upload is {format_bytes(size)}, more than the limit of {format_bytes(limit)}; "
            "remove extra files from the zip or store the PNGs with less metadata."
        )


def hash_upload(uploaded_file) -> tuple[str, int]:
    """Return the SHA-256 and size of an upload, reading it in blocks, never whole."""
    digest = hashlib.sha256()
    size = 0
    uploaded_file.seek(0)
    for block in uploaded_file.chunks(HASH_BLOCK_BYTES):
        digest.update(block)
        size += len(block)
        check_upload_size(size)
    uploaded_file.seek(0)
    return digest.hexdigest(), size


def enqueue_validation(evaluation_id: int) -> None:
    """Send the validation task once the current transaction commits.

    A broker that is down does not fail the upload: the error is logged and the
    reaper sends the task again once the evaluation's heartbeat is stale.
    """
    from leaderboard.tasks import validate_submission_task

    transaction.on_commit(lambda: validate_submission_task.delay(evaluation_id), robust=True)


@dataclass(frozen=True)
class SubmissionFields:
    """Submitter-given fields of a submission, beside the file itself."""

    method_name: str
    description: str = ""
    paper_url: str = ""
    code_url: str = ""
    is_public: bool = True
    is_baseline: bool = False


def display_file_name(name: str | None) -> str:
    """Return the last component of an uploaded file's name for messages.

    Control characters are removed and the result is cut to 255 characters; when
    nothing is left, the name is "submission.zip".
    """
    base = (name or "").replace("\\", "/").rsplit("/", 1)[-1]
    base = "".join(character for character in base if character.isprintable()).strip()
    return base[:255] or "submission.zip"


def check_submission_allowed(*, user, split: Split, size: int | None) -> None:
    """Reject an upload to a closed split, over the size limit or past the quota, before any bytes move."""
    check_split_open(split)
    check_upload_size(size)
    check_quota(user=user, split=split)


def submission_create(
    *,
    user,
    split: Split,
    uploaded_file,
    method_name: str,
    description: str = "",
    paper_url: str = "",
    code_url: str = "",
    is_public: bool = True,
    is_baseline: bool = False,
) -> Submission:
    """Store an uploaded zip and create its Submission and first Evaluation.

    The quota is checked once before the upload is copied (to fail fast) and again
    in `submission_register`, so that concurrent uploads cannot exceed it.
    """
    check_submission_allowed(user=user, split=split, size=getattr(uploaded_file, "size", None))
    sha256, size = hash_upload(uploaded_file)

    # The copy to storage happens before the transaction, so no lock is held during I/O.
    name = private_storage().save(submission_upload_to_split(split), uploaded_file)
    fields = SubmissionFields(
        method_name=method_name, description=description, paper_url=paper_url, code_url=code_url,
        is_public=is_public, is_baseline=is_baseline,
    )
    try:
        return submission_register(user=user, split=split, file_name=name, sha256=sha256, size=size, fields=fields,
                                   original_name=display_file_name(getattr(uploaded_file, "name", None)))
    except BaseException:
        private_storage().delete(name)
        raise


def submission_upload_to_split(split: Split) -> str:
    return f"submissions/split-{split.pk}/{uuid.uuid4().hex}.zip"


def submission_register(
    *, user, split: Split, file_name: str, sha256: str, size: int, fields: SubmissionFields, before_commit=None,
    original_name: str = "",
) -> Submission:
    """Create the Submission and first Evaluation of a zip already in private storage.

    Both upload paths end here: the direct upload through the web process and the
    presigned multipart upload. The quota is checked again under the user's quota
    lock, in the same transaction as the insert, so concurrent uploads cannot exceed
    it. `before_commit(submission)` runs inside that transaction, after the insert.
    Validation is sent to a worker after commit. The caller deletes the file when
    this raises. `original_name` is the file name the user uploaded, for messages.
    """
    submission = Submission(
        owner=user,
        split=split,
        file=file_name,
        original_name=original_name,
        sha256=sha256,
        size_bytes=size,
        method_name=fields.method_name,
        description=fields.description,
        paper_url=fields.paper_url,
        code_url=fields.code_url,
        is_public=fields.is_public,
        is_baseline=fields.is_baseline,
    )
    with transaction.atomic(durable=True):
        quota_lock(user)
        check_quota(user=user, split=split)
        submission.created_at = timezone.now()
        submission.save()
        evaluation = Evaluation.objects.create(
            submission=submission,
            attempts=1,
            heartbeat_at=timezone.now(),
            counts_for_quota=not quota_exempt(user),
        )
        if before_commit is not None:
            before_commit(submission)
        enqueue_validation(evaluation.pk)

    logger.info(
        "submission %s created by user %s on split %s (%d bytes, sha256 %s), evaluation %s",
        submission.pk, user.pk, split.pk, size, sha256, evaluation.pk,
    )
    return submission


def submission_cancel(*, submission: Submission, user) -> Evaluation:
    """Cancel the current evaluation of a submission; its owner or staff only.

    A cancelled upload keeps its quota slot, because scoring may have used workers.
    Chunk tasks already running finish their chunk and then stop.
    """
    if submission.owner_id != user.pk and not user.is_staff:
        raise NotPermitted("Only the owner of a submission can cancel its evaluation.")
    evaluation = submission.evaluations.order_by("-created_at", "-pk").first()
    if evaluation is None or not Evaluation.objects.transition(
        evaluation.pk, ACTIVE_STATES, EvaluationState.CANCELLED,
        user_message="Cancelled by its owner." if submission.owner_id == user.pk else "Cancelled by staff.",
    ):
        state = "missing" if evaluation is None else Evaluation.objects.get(pk=evaluation.pk).state
        raise InvalidState(f"The evaluation cannot be cancelled because it is {state}.")
    logger.info("evaluation %s of submission %s cancelled by user %s", evaluation.pk, submission.pk, user.pk)
    evaluation.refresh_from_db()
    return evaluation


def evaluation_rescore(*, submission: Submission) -> Evaluation:
    """Score a submission again in a new Evaluation, keeping the earlier ones.

    Re-scores are staff actions (new evaluator or calibration versions), so they
    take no quota slot. Raises InvalidState while the current evaluation runs.
    """
    with transaction.atomic():
        current = submission.evaluations.select_for_update().order_by("-created_at", "-pk").first()
        if current is not None and not current.is_terminal:
            raise InvalidState(
                f"Submission {submission.pk} is still being scored ({current.state}); "
                "cancel that evaluation or wait for it to end."
            )
        evaluation = Evaluation.objects.create(
            submission=submission, attempts=1, heartbeat_at=timezone.now(), counts_for_quota=False
        )
        enqueue_validation(evaluation.pk)
    logger.info("submission %s re-scored in evaluation %s", submission.pk, evaluation.pk)
    return evaluation


def submission_set_flag(*, submission: Submission, flagged: bool) -> Submission:
    """Hide (flagged) or show again a submission on the leaderboard."""
    Submission.objects.filter(pk=submission.pk).update(flagged=flagged)
    submission.flagged = flagged
    logger.info("submission %s flagged=%s", submission.pk, flagged)
    return submission


def submission_set_baseline(*, submission: Submission, is_baseline: bool) -> Submission:
    Submission.objects.filter(pk=submission.pk).update(is_baseline=is_baseline)
    submission.is_baseline = is_baseline
    logger.info("submission %s is_baseline=%s", submission.pk, is_baseline)
    return submission

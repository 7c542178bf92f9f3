"""Presigned multipart uploads: large submissions go from the client straight to S3.

The web process creates the multipart upload, hands out presigned part URLs and
lists the parts S3 has, so an interrupted client uploads only what is missing.
On completion it checks the object's SHA-256, then creates the Submission through
`submission_register`, the same path as a direct upload. The part uploads never
pass through the web process. The checksum streams the object through it once, in
1 MiB blocks.
"""

from __future__ import annotations

import logging
import math
import re
from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from leaderboard import s3
from leaderboard.models import Split, Submission, Upload, UploadState
from leaderboard.services.errors import InvalidState, NotFound, ServiceError
from leaderboard.services.submissions import (
    SubmissionFields,
    check_submission_allowed,
    display_file_name,
    submission_register,
    submission_upload_to_split,
)
from leaderboard.storage import is_s3, private_storage

logger = logging.getLogger(__name__)

# S3 limits: every part but the last is 5 MiB to 5 GiB, and an upload has at most 10,000 parts.
MIN_PART_SIZE = 5 << 20
MAX_PART_SIZE = 5 << 30
MAX_PARTS = 10_000
MAX_URLS_PER_REQUEST = 1000
SHA256_PATTERN = re.compile(r"[0-9a-f]{64}")


class MultipartUnavailable(ServiceError):
    def __init__(self):
        super().__init__(
            "multipart_unavailable",
            "Multipart uploads need S3 storage, and this server stores files locally; "
            "upload the zip with POST /api/v1/submissions/ instead.",
            409,
        )


class ChecksumMismatch(ServiceError):
    def __init__(self, declared: str, actual: str):
        super().__init__(
            "checksum_mismatch",
            f"The uploaded file's SHA-256 is {actual}, but the upload declared {declared}; "
            "the file changed or was corrupted during the upload. Start a new upload.",
            400,
        )


class UploadIncomplete(ServiceError):
    def __init__(self, message: str):
        super().__init__("upload_incomplete", message, 400)


def s3_private_storage():
    storage = private_storage()
    if not is_s3(storage):
        raise MultipartUnavailable()
    return storage


def choose_part_size(size: int, part_size: int | None) -> int:
    """Return the part size to use, checked against S3's limits; raise ServiceError otherwise."""
    if part_size is None:
        part_size = max(settings.REFLADE_UPLOAD_PART_SIZE, math.ceil(size / MAX_PARTS))
    if not MIN_PART_SIZE <= part_size <= MAX_PART_SIZE:
        raise ServiceError(
            "invalid_part_size",
            f"part_size {part_size} is outside S3's limits; give between {MIN_PART_SIZE} (5 MiB) "
            f"and {MAX_PART_SIZE} (5 GiB) bytes.",
        )
    if math.ceil(size / part_size) > MAX_PARTS:
        raise ServiceError(
            "invalid_part_size",
            f"part_size {part_size} splits {size} bytes into more than {MAX_PARTS} parts; "
            f"give at least {math.ceil(size / MAX_PARTS)} bytes.",
        )
    return part_size


def check_declared_file(*, filename: str, size: int, sha256: str) -> None:
    if not filename.lower().endswith(".zip"):
        raise ServiceError("invalid_filename", f"{filename} is not a .zip file; upload a zip archive of PNG files.")
    if size < 1:
        raise ServiceError("invalid_size", f"size {size} is not a positive number of bytes.")
    if not SHA256_PATTERN.fullmatch(sha256):
        raise ServiceError(
            "invalid_sha256", f"sha256 {sha256!r} is not a SHA-256 digest; give 64 lowercase hexadecimal digits."
        )


def upload_create(*, user, split: Split, filename: str, size: int, sha256: str, part_size: int | None = None) -> Upload:
    """Start a multipart upload of a submission zip after checking the split, size limit and quota.

    The quota is checked but not charged: the slot is taken when the upload completes.
    """
    storage = s3_private_storage()
    check_declared_file(filename=filename, size=size, sha256=sha256)
    check_submission_allowed(user=user, split=split, size=size)
    part_size = choose_part_size(size, part_size)

    name = submission_upload_to_split(split)
    upload_id = s3.multipart_create(storage, s3.object_key(storage, name))
    now = timezone.now()
    upload = Upload.objects.create(
        owner=user,
        split=split,
        filename=filename,
        key=name,
        upload_id=upload_id,
        size=size,
        sha256=sha256,
        part_size=part_size,
        part_count=math.ceil(size / part_size),
        created_at=now,
        expires_at=now + timedelta(hours=settings.REFLADE_UPLOAD_EXPIRY_HOURS),
    )
    logger.info(
        "upload %s started by user %s on split %s: %d bytes in %d parts of %d",
        upload.pk, user.pk, split.pk, size, upload.part_count, part_size,
    )
    return upload


def upload_get_for_owner(*, upload_id: int, user) -> Upload:
    """Return the user's own upload; raise NotFound for a missing one or another user's."""
    upload = Upload.objects.select_related("split__benchmark").filter(pk=upload_id, owner_id=user.pk).first()
    if upload is None:
        raise NotFound(f"No upload {upload_id}.")
    return upload


def check_open(upload: Upload) -> None:
    if upload.state != UploadState.OPEN:
        raise InvalidState(f"Upload {upload.pk} is {upload.state}; start a new upload.")


def upload_part_urls(*, upload: Upload, part_numbers: list[int]) -> dict[int, str]:
    """Return a presigned PUT URL for each requested part number."""
    check_open(upload)
    if not part_numbers or len(part_numbers) > MAX_URLS_PER_REQUEST:
        raise ServiceError(
            "invalid_part_numbers",
            f"{len(part_numbers)} part numbers requested; ask for 1 to {MAX_URLS_PER_REQUEST} per request.",
        )
    outside = sorted({number for number in part_numbers if not 1 <= number <= upload.part_count})
    if outside:
        raise ServiceError(
            "invalid_part_numbers",
            f"Part numbers {outside} are outside 1..{upload.part_count}, the parts of upload {upload.pk}.",
        )
    storage = s3_private_storage()
    key = s3.object_key(storage, upload.key)
    return {number: s3.multipart_part_url(storage, key, upload.upload_id, number) for number in part_numbers}


def upload_parts(*, upload: Upload) -> list[s3.Part]:
    """Return the parts S3 has stored so far (ListParts); empty once the upload is not open."""
    if upload.state != UploadState.OPEN:
        return []
    storage = s3_private_storage()
    return s3.multipart_parts(storage, s3.object_key(storage, upload.key), upload.upload_id)


def expected_part_size(upload: Upload, number: int) -> int:
    if number < upload.part_count:
        return upload.part_size
    return upload.size - upload.part_size * (upload.part_count - 1)


def check_parts(upload: Upload, parts: list[s3.Part]) -> None:
    """Raise UploadIncomplete unless every part is stored with the size the declared file gives it."""
    stored = {part.number: part for part in parts}
    missing = [number for number in range(1, upload.part_count + 1) if number not in stored]
    if missing:
        shown = ", ".join(str(number) for number in missing[:20]) + (" ..." if len(missing) > 20 else "")
        raise UploadIncomplete(
            f"Upload {upload.pk} is missing {len(missing)} of {upload.part_count} parts ({shown}); "
            "upload them, then complete again."
        )
    for number in range(1, upload.part_count + 1):
        expected = expected_part_size(upload, number)
        if stored[number].size != expected:
            raise UploadIncomplete(
                f"Part {number} of upload {upload.pk} is {stored[number].size} bytes, expected {expected} "
                f"(part_size {upload.part_size}, file size {upload.size}); upload that part again."
            )
    extra = sorted(number for number in stored if number > upload.part_count)
    if extra:
        raise UploadIncomplete(f"Upload {upload.pk} has parts {extra} beyond its {upload.part_count} parts.")


def mark_aborted(upload: Upload) -> None:
    Upload.objects.filter(pk=upload.pk).update(state=UploadState.ABORTED)
    upload.state = UploadState.ABORTED


def upload_complete(*, upload: Upload, user, fields: SubmissionFields) -> Submission:
    """Assemble the parts, check the SHA-256 and create the Submission and its first Evaluation.

    A completed upload returns its Submission again, so a client may retry a
    completion whose reply it lost. A checksum mismatch deletes the object, aborts
    the upload and raises ChecksumMismatch; no Submission is created.
    """
    if upload.state == UploadState.COMPLETED and upload.submission_id is not None:
        return upload.submission
    check_open(upload)
    storage = s3_private_storage()
    key = s3.object_key(storage, upload.key)

    # 1. Fail fast on a closed split or a used-up quota, before the parts are assembled.
    check_submission_allowed(user=user, split=upload.split, size=upload.size)

    # 2. Every part present with the right size, then S3 joins them into one object.
    parts = s3.multipart_parts(storage, key, upload.upload_id)
    check_parts(upload, parts)
    s3.multipart_complete(storage, key, upload.upload_id, parts)

    # 3. The checksum of the assembled object, streamed from S3.
    sha256, size = s3.object_sha256(storage, key)
    if sha256 != upload.sha256:
        s3.object_delete(storage, key)
        mark_aborted(upload)
        logger.warning("upload %s rejected: sha256 %s, declared %s", upload.pk, sha256, upload.sha256)
        raise ChecksumMismatch(upload.sha256, sha256)

    # 4. The same registration as a direct upload; the upload row changes in its transaction.
    def link(submission: Submission) -> None:
        Upload.objects.filter(pk=upload.pk).update(state=UploadState.COMPLETED, submission=submission)

    try:
        submission = submission_register(
            user=user, split=upload.split, file_name=upload.key, sha256=sha256, size=size,
            fields=fields, before_commit=link, original_name=display_file_name(upload.filename),
        )
    except BaseException:
        s3.object_delete(storage, key)
        mark_aborted(upload)
        raise
    upload.state = UploadState.COMPLETED
    upload.submission = submission
    logger.info("upload %s completed as submission %s", upload.pk, submission.pk)
    return submission


def upload_abort(*, upload: Upload) -> Upload:
    """Abort an open upload and free the parts S3 holds for it."""
    check_open(upload)
    storage = s3_private_storage()
    s3.multipart_abort(storage, s3.object_key(storage, upload.key), upload.upload_id)
    mark_aborted(upload)
    logger.info("upload %s aborted", upload.pk)
    return upload


def stale_uploads_abort(*, now=None) -> int:
    """Abort every open upload past its `expires_at`; return how many were aborted."""
    now = now or timezone.now()
    aborted = 0
    for upload in Upload.objects.filter(state=UploadState.OPEN, expires_at__lt=now):
        storage = s3_private_storage()
        s3.multipart_abort(storage, s3.object_key(storage, upload.key), upload.upload_id)
        with transaction.atomic():
            aborted += Upload.objects.filter(pk=upload.pk, state=UploadState.OPEN).update(state=UploadState.ABORTED)
    if aborted:
        logger.info("aborted %d stale uploads", aborted)
    return aborted

"""Services: every write of the leaderboard goes through a function here.

Functions take keyword-only arguments and raise `ServiceError` subclasses when
they reject a request.
"""

from leaderboard.services.benchmarks import benchmark_create, split_import
from leaderboard.services.errors import (
    InvalidState,
    NotFound,
    NotPermitted,
    QuotaExceeded,
    ServiceError,
    SplitClosed,
    UploadTooLarge,
)
from leaderboard.services.evaluations import (
    MAX_STORED_PROBLEMS,
    chunk_result_store,
    evaluation_begin_aggregation,
    evaluation_begin_chunk,
    evaluation_begin_validation,
    evaluation_fail,
    evaluation_finish,
    evaluation_heartbeat,
    evaluation_queue,
    evaluation_reject,
    evaluation_requeue,
    stale_evaluation_ids,
)
from leaderboard.services.submissions import (
    SubmissionFields,
    evaluation_rescore,
    submission_cancel,
    submission_create,
    submission_register,
    submission_set_baseline,
    submission_set_flag,
)
from leaderboard.services.uploads import (
    ChecksumMismatch,
    MultipartUnavailable,
    UploadIncomplete,
    stale_uploads_abort,
    upload_abort,
    upload_complete,
    upload_create,
    upload_get_for_owner,
    upload_part_urls,
    upload_parts,
)

__all__ = [
    "MAX_STORED_PROBLEMS",
    "ChecksumMismatch",
    "InvalidState",
    "MultipartUnavailable",
    "SubmissionFields",
    "UploadIncomplete",
    "NotFound",
    "NotPermitted",
    "QuotaExceeded",
    "ServiceError",
    "SplitClosed",
    "UploadTooLarge",
    "benchmark_create",
    "chunk_result_store",
    "evaluation_begin_aggregation",
    "evaluation_begin_chunk",
    "evaluation_begin_validation",
    "evaluation_fail",
    "evaluation_finish",
    "evaluation_heartbeat",
    "evaluation_queue",
    "evaluation_reject",
    "evaluation_requeue",
    "evaluation_rescore",
    "split_import",
    "stale_evaluation_ids",
    "stale_uploads_abort",
    "submission_cancel",
    "submission_create",
    "submission_register",
    "submission_set_baseline",
    "submission_set_flag",
    "upload_abort",
    "upload_complete",
    "upload_create",
    "upload_get_for_owner",
    "upload_part_urls",
    "upload_parts",
]

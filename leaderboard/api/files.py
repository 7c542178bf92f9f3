"""API endpoints that send a user's own stored files: the submission zip and per-sample results.

In S3 mode they respond with 302 and a presigned URL that expires after
`REFLADE_S3_URL_EXPIRY` seconds; in the embedded mode Django streams the file.
Only the owner and staff may download; anyone else gets 404, as if the file did not exist.
"""

from __future__ import annotations

import logging

from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework.permissions import IsAuthenticated

from leaderboard import selectors, services
from leaderboard.api.views import ERROR_RESPONSE, ApiView
from leaderboard.models import EvaluationState, Split
from leaderboard.storage import private_storage
from leaderboard.views.downloads import storage_download

logger = logging.getLogger(__name__)

FILE_RESPONSES = {
    200: OpenApiResponse(description="The file (embedded mode)."),
    302: OpenApiResponse(description="Redirect to a presigned URL (S3 mode)."),
    401: ERROR_RESPONSE,
    404: ERROR_RESPONSE,
}


def is_owner_or_staff(submission, user) -> bool:
    return submission.owner_id == user.pk or user.is_staff


class SubmissionFileView(ApiView):
    permission_classes = [IsAuthenticated]

    @extend_schema(responses=FILE_RESPONSES)
    def get(self, request, submission_id: int):
        submission = selectors.submission_get_for_viewer(submission_id=submission_id, user=request.user)
        if not is_owner_or_staff(submission, request.user):
            raise services.NotFound(f"No submission {submission_id}.")
        logger.info("submission %s file downloaded by user %s", submission.pk, request.user.pk)
        return storage_download(private_storage(), submission.file.name,
                                filename=f"submission-{submission.pk}.zip", content_type="application/zip")


class EvaluationSamplesFileView(ApiView):
    """The per-sample Parquet file as the worker stored it; published only for public splits."""

    permission_classes = [IsAuthenticated]

    @extend_schema(responses=FILE_RESPONSES)
    def get(self, request, evaluation_id: int):
        evaluation = selectors.evaluation_get_for_viewer(evaluation_id=evaluation_id, user=request.user)
        submission = evaluation.submission
        if not is_owner_or_staff(submission, request.user):
            raise services.NotFound(f"No evaluation {evaluation_id}.")
        if submission.split.visibility != Split.VISIBILITY_PUBLIC and not request.user.is_staff:
            raise services.NotFound(f"Per-sample results of split {submission.split} are not published.")
        if evaluation.state != EvaluationState.FINISHED or not evaluation.samples_file:
            raise services.NotFound(f"Evaluation {evaluation_id} has no per-sample results yet.")
        logger.info("samples of evaluation %s downloaded by user %s", evaluation.pk, request.user.pk)
        return storage_download(private_storage(), evaluation.samples_file.name,
                                filename=f"evaluation-{evaluation.pk}-samples.parquet",
                                content_type="application/vnd.apache.parquet")

"""Live status of submissions: the dict behind the status JSON and the progress bars."""

from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, JsonResponse
from django.views.decorators.http import require_GET

from leaderboard import selectors
from leaderboard.models import ACTIVE_STATES, Evaluation, EvaluationState, Submission
from leaderboard.views.columns import format_value

# The most submissions one poll of the list endpoint may ask about.
MAX_STATUS_IDS = 100

STATE_LABELS = {
    EvaluationState.UPLOADED: "Uploaded",
    EvaluationState.VALIDATING: "Validating",
    EvaluationState.QUEUED: "Queued",
    EvaluationState.SCORING: "Scoring",
    EvaluationState.AGGREGATING: "Aggregating",
    EvaluationState.FINISHED: "Finished",
    EvaluationState.FAILED: "Failed",
    EvaluationState.CANCELLED: "Cancelled",
}


def status_message(evaluation: Evaluation) -> str:
    """One line on what the evaluation is doing or why it stopped."""
    state = evaluation.state
    if state == EvaluationState.SCORING and evaluation.chunks_total:
        return f"{evaluation.chunks_done} of {evaluation.chunks_total} chunks scored"
    if state in (EvaluationState.FAILED, EvaluationState.CANCELLED):
        return evaluation.user_message
    if state == EvaluationState.QUEUED:
        return "Valid archive; waiting for a scoring worker"
    if state in (EvaluationState.UPLOADED, EvaluationState.VALIDATING):
        return "Checking the archive"
    return ""


def headline_hpa(evaluation: Evaluation | None) -> str:
    """The evaluation's overall HPA at leaderboard precision, or '' before it is known."""
    if evaluation is None or evaluation.state != EvaluationState.FINISHED:
        return ""
    value = (evaluation.metrics or {}).get("hpa", {}).get("value")
    return "" if value is None else format_value(value, 4)


def evaluation_status(submission: Submission, evaluation: Evaluation | None) -> dict:
    """The status of a submission's current evaluation as plain JSON-ready values."""
    if evaluation is None:
        return {"id": submission.pk, "evaluation_id": None, "state": "missing", "state_label": "No evaluation",
                "progress": 0.0, "percent": 0, "chunks_done": 0, "chunks_total": 0, "message": "",
                "hpa": "", "cancellable": False}
    progress = 1.0 if evaluation.state == EvaluationState.FINISHED else min(1.0, max(0.0, evaluation.progress))
    return {
        "id": submission.pk,
        "evaluation_id": evaluation.pk,
        "state": evaluation.state,
        "state_label": STATE_LABELS.get(evaluation.state, evaluation.state),
        "progress": progress,
        "percent": int(progress * 100),
        "chunks_done": evaluation.chunks_done,
        "chunks_total": evaluation.chunks_total,
        "message": status_message(evaluation),
        "hpa": headline_hpa(evaluation),
        "cancellable": evaluation.state in ACTIVE_STATES,
    }


@require_GET
def submission_status(request: HttpRequest, submission_id: int) -> JsonResponse:
    """Status JSON of one submission the viewer may see; 404 otherwise."""
    submission = selectors.submission_get_for_viewer(submission_id=submission_id, user=request.user)
    status = evaluation_status(submission, selectors.evaluation_current(submission=submission))
    if submission.owner_id != request.user.pk and not request.user.is_staff:
        status["cancellable"] = False
    return JsonResponse(status)


@login_required
@require_GET
def submission_status_list(request: HttpRequest) -> JsonResponse:
    """Status JSON of the viewer's own submissions named in `?ids=1,2,3`."""
    raw = request.GET.get("ids", "")
    try:
        ids = sorted({int(part) for part in raw.split(",") if part.strip()})
    except ValueError:
        return JsonResponse(
            {"error": {"code": "invalid", "message": f"ids={raw!r} is not a comma-separated list of "
                       "submission ids; send for example ?ids=3,4", "details": {}}},
            status=400,
        )
    if len(ids) > MAX_STATUS_IDS:
        return JsonResponse(
            {"error": {"code": "invalid", "message": f"{len(ids)} ids requested, more than the maximum of "
                       f"{MAX_STATUS_IDS}; poll fewer submissions at once", "details": {}}},
            status=400,
        )
    submissions = selectors.submission_list_for_user(user=request.user).filter(pk__in=ids)
    statuses = [
        evaluation_status(submission, selectors.evaluation_current(submission=submission))
        for submission in submissions
    ]
    return JsonResponse({"submissions": statuses})

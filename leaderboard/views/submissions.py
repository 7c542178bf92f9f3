"""Submission pages: upload, the viewer's list, one submission's results, cancel."""

from __future__ import annotations

import logging

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_http_methods, require_POST

from leaderboard import selectors, services
from leaderboard.forms import SubmissionForm
from leaderboard.models import EvaluationState, Split
from leaderboard.storage import is_s3, private_storage
from leaderboard.views.results import breakdown_tables, metric_rows
from leaderboard.views.status import evaluation_status

logger = logging.getLogger(__name__)


def _open_splits(user):
    """Active splits of the benchmarks the user may see, for the submit form."""
    benchmarks = selectors.benchmark_list(user=user)
    return Split.objects.filter(benchmark__in=benchmarks, is_active=True).select_related("benchmark")


def _wants_json(request: HttpRequest) -> bool:
    return request.headers.get("X-Requested-With") == "XMLHttpRequest"


def _form_errors(form: SubmissionForm) -> dict[str, list[str]]:
    return {field: [str(error) for error in errors] for field, errors in form.errors.items()}


def _quotas(user, splits) -> list[dict]:
    quotas = []
    for split in splits:
        status = selectors.quota_status(user=user, split=split)
        quotas.append({"split": str(split), "used": status.used, "limit": status.limit,
                       "window_hours": status.window_hours, "next_slot_at": status.next_slot_at})
    return quotas


@login_required
@require_http_methods(["GET", "POST"])
def submit(request: HttpRequest) -> HttpResponse:
    """The upload form. The page's script posts it with XMLHttpRequest and reads JSON back."""
    splits = _open_splits(request.user)
    if request.method == "POST":
        form = SubmissionForm(request.POST, request.FILES, splits=splits)
        status = 400
        if form.is_valid():
            try:
                submission = _create(request, form)
            except services.ServiceError as error:
                logger.info("upload by user %s rejected: %s (%s)", request.user.pk, error.code, error.message)
                form.add_error("file" if error.code == "upload_too_large" else None, error.message)
                status = error.status
            else:
                url = reverse("submission-detail", args=[submission.pk])
                if _wants_json(request):
                    return JsonResponse({"id": submission.pk, "redirect": url}, status=201)
                messages.success(request, "Upload received; the archive is being checked.")
                return redirect(url)
        if _wants_json(request):
            return JsonResponse({"errors": _form_errors(form)}, status=status)
    else:
        form = SubmissionForm(splits=splits, initial={"split": request.GET.get("split")})
        status = 200

    context = {"form": form, "quotas": _quotas(request.user, splits), "nav": "submit",
               "multipart_available": is_s3(private_storage())}
    return render(request, "leaderboard/submit.html", context, status=status)


def _create(request: HttpRequest, form: SubmissionForm):
    data = form.cleaned_data
    return services.submission_create(
        user=request.user,
        split=data["split"],
        uploaded_file=data["file"],
        method_name=data["method_name"],
        description=data["description"],
        paper_url=data["paper_url"],
        code_url=data["code_url"],
        is_public=data["is_public"],
    )


@login_required
def submission_list(request: HttpRequest) -> HttpResponse:
    submissions = selectors.submission_list_for_user(user=request.user).select_related("split__benchmark")
    items = []
    for submission in submissions:
        status = evaluation_status(submission, selectors.evaluation_current(submission=submission))
        items.append({"submission": submission, **status})
    return render(request, "leaderboard/submission_list.html", {"submissions": items, "nav": "submissions"})


def submission_detail(request: HttpRequest, submission_id: int) -> HttpResponse:
    """One submission: live status, every metric, breakdowns and validation problems."""
    submission = selectors.submission_get_for_viewer(submission_id=submission_id, user=request.user)
    evaluation = selectors.evaluation_current(submission=submission)
    is_owner = submission.owner_id == request.user.pk or request.user.is_staff
    status = evaluation_status(submission, evaluation)

    context = {
        "submission": submission,
        "evaluation": evaluation,
        "state_label": status["state_label"],
        "status_message": status["message"],
        "percent": status["percent"],
        "cancellable": is_owner and status["cancellable"],
        "file_name": submission.original_name if is_owner else "",
        "problems": (evaluation.validation_problems or []) if evaluation is not None and is_owner else [],
        "metric_rows": [],
        "breakdowns": [],
        "samples_url": "",
        "history": _history(submission),
    }
    if evaluation is not None and evaluation.state == EvaluationState.FINISHED:
        context["metric_rows"] = metric_rows(evaluation.metrics or {})
        context["breakdowns"] = breakdown_tables(evaluation.metrics or {})
        if submission.split.visibility == "public" and evaluation.samples_file:
            context["samples_url"] = reverse("api:evaluation-samples", args=[evaluation.pk])
    return render(request, "leaderboard/submission_detail.html", context)


def _history(submission) -> list[dict]:
    """Every evaluation of the submission, newest first; empty when it was scored once."""
    evaluations = list(selectors.evaluation_list(submission=submission))
    if len(evaluations) < 2:
        return []
    return [{"evaluation": evaluation, **evaluation_status(submission, evaluation)} for evaluation in evaluations]


@login_required
@require_POST
def submission_cancel(request: HttpRequest, submission_id: int) -> HttpResponse:
    submission = selectors.submission_get_for_viewer(submission_id=submission_id, user=request.user)
    try:
        services.submission_cancel(submission=submission, user=request.user)
    except services.NotFound:
        raise
    except services.ServiceError as error:
        logger.info("cancel of submission %s by user %s rejected: %s", submission.pk, request.user.pk, error.code)
        messages.error(request, error.message)
    else:
        messages.success(request, "Scoring cancelled.")
    return redirect("submission-detail", submission_id=submission.pk)

"""Writes of the scoring workers: each step of an evaluation's state machine.

Every step is a conditional update, so a task delivered twice, a task racing the
reaper, or a task of a cancelled evaluation changes nothing it should not.
"""

from __future__ import annotations

import logging
from datetime import timedelta

from django.conf import settings
from django.core.files import File
from django.db import transaction
from django.utils import timezone

from evaluator.problems import format_count
from leaderboard.models import ChunkResult, Evaluation, EvaluationState, FailureKind, Submission

logger = logging.getLogger(__name__)

# Validation problems kept on an evaluation. A zip with 150,000 stray files gave as
# many problems, 38 MB of JSON in every API response that lists the evaluation.
MAX_STORED_PROBLEMS = 100


def stored_problems(problems: list[dict]) -> list[dict]:
    """Return the first MAX_STORED_PROBLEMS problems, and one more that counts the rest."""
    if len(problems) <= MAX_STORED_PROBLEMS:
        return problems
    rest = len(problems) - MAX_STORED_PROBLEMS
    return problems[:MAX_STORED_PROBLEMS] + [{
        "code": "more_problems",
        "file": "",
        "message": f"{format_count(rest, 'more problem', 'more problems')} not listed here",
        "expected": "",
        "found": "",
        "hint": "Run python -m evaluator validate --split SPLIT --predictions ZIP to list every problem.",
    }]

S = EvaluationState
# States from which a failure may be recorded.
FAILABLE_STATES = frozenset({S.UPLOADED, S.VALIDATING, S.QUEUED, S.SCORING, S.AGGREGATING})


def evaluation_begin_validation(*, evaluation_id: int) -> Evaluation | None:
    """Move uploaded to validating; return the evaluation when it is (now) validating.

    A redelivered task finds the evaluation already validating and validates again,
    which is safe because validation only reads.
    """
    now = timezone.now()
    Evaluation.objects.transition(
        evaluation_id, S.UPLOADED, S.VALIDATING, started_at=now, heartbeat_at=now
    )
    evaluation = Evaluation.objects.select_related("submission__split__benchmark").get(pk=evaluation_id)
    return evaluation if evaluation.state == S.VALIDATING else None


def evaluation_reject(*, evaluation_id: int, problems: list[dict], user_message: str) -> bool:
    """Fail a validating evaluation as the user's fault; the quota slot is given back."""
    applied = Evaluation.objects.transition(
        evaluation_id, S.VALIDATING, S.FAILED,
        failure_kind=FailureKind.USER,
        validation_problems=stored_problems(problems),
        user_message=user_message,
        counts_for_quota=False,
    )
    if applied:
        logger.info("evaluation %s rejected: %d validation problems", evaluation_id, len(problems))
    return applied


def evaluation_queue(
    *,
    evaluation_id: int,
    chunks_total: int,
    candidate_count: int,
    metadata: dict,
    versions: dict[str, str],
) -> bool:
    """Move a validated evaluation to queued, recording the versions it is scored with.

    `versions` holds evaluator_version, ground_truth_version, config_hash and
    calibration_version. The submission's candidate count and metadata are stored
    in the same transaction.
    """
    with transaction.atomic():
        applied = Evaluation.objects.transition(
            evaluation_id, S.VALIDATING, S.QUEUED,
            chunks_total=chunks_total,
            chunks_done=0,
            progress=0.0,
            heartbeat_at=timezone.now(),
            **versions,
        )
        if applied:
            Submission.objects.filter(evaluations__pk=evaluation_id).update(
                candidate_count=candidate_count, metadata=metadata
            )
    if applied:
        logger.info("evaluation %s queued in %d chunks", evaluation_id, chunks_total)
    return applied


def evaluation_begin_chunk(*, evaluation_id: int) -> Evaluation | None:
    """Move queued to scoring; return the evaluation when it is scoring, else None."""
    Evaluation.objects.transition(evaluation_id, S.QUEUED, S.SCORING, heartbeat_at=timezone.now())
    evaluation = Evaluation.objects.select_related("submission__split__benchmark").get(pk=evaluation_id)
    return evaluation if evaluation.state == S.SCORING else None


def chunk_result_store(*, evaluation_id: int, chunk: int, payload: bytes) -> bool:
    """Upsert a chunk's result and update progress and heartbeat; False when not scoring.

    The evaluation row is locked first, so chunk results of one evaluation are
    stored one at a time and `chunks_done` counts exactly the rows present.
    """
    with transaction.atomic():
        evaluation = Evaluation.objects.select_for_update().filter(pk=evaluation_id, state=S.SCORING).first()
        if evaluation is None:
            return False
        now = timezone.now()
        ChunkResult.objects.bulk_create(
            [ChunkResult(evaluation_id=evaluation_id, chunk=chunk, payload=payload, updated_at=now)],
            update_conflicts=True,
            unique_fields=["evaluation", "chunk"],
            update_fields=["payload", "updated_at"],
        )
        done = ChunkResult.objects.filter(evaluation_id=evaluation_id).count()
        total = max(evaluation.chunks_total, 1)
        Evaluation.objects.filter(pk=evaluation_id).update(
            chunks_done=done, progress=min(1.0, done / total), heartbeat_at=now
        )
    logger.info("evaluation %s: chunk %d stored (%d of %d)", evaluation_id, chunk, done, evaluation.chunks_total)
    return True


def evaluation_heartbeat(*, evaluation_id: int) -> bool:
    """Record that a worker is still scoring; False when the evaluation is no longer scoring."""
    return bool(
        Evaluation.objects.filter(pk=evaluation_id, state=S.SCORING).update(heartbeat_at=timezone.now())
    )


def evaluation_begin_aggregation(*, evaluation_id: int) -> Evaluation | None:
    """Move scoring to aggregating; return the evaluation when this call moved it.

    The reaper may re-queue an evaluation whose chunks are all stored, for example
    when a broker restart broke its chord. No chunk task then moves it to scoring,
    so it passes through scoring here.
    """
    evaluation = Evaluation.objects.filter(pk=evaluation_id, state=S.QUEUED).first()
    if evaluation is not None and (
        ChunkResult.objects.filter(evaluation_id=evaluation_id).count() >= evaluation.chunks_total
    ):
        Evaluation.objects.transition(evaluation_id, S.QUEUED, S.SCORING, heartbeat_at=timezone.now())
    if not Evaluation.objects.transition(evaluation_id, S.SCORING, S.AGGREGATING, heartbeat_at=timezone.now()):
        return None
    return Evaluation.objects.select_related("submission__split__benchmark").get(pk=evaluation_id)


def evaluation_finish(
    *,
    evaluation_id: int,
    metrics: dict,
    samples_path,
    weights_fingerprint: str,
    weights_verified: bool,
    versions: dict[str, str] | None = None,
) -> bool:
    """Store the aggregate metrics and per-sample Parquet, and move to finished.

    The Parquet file is copied to private storage before the state changes; if the
    evaluation was cancelled meanwhile, the copy is deleted again.
    """
    evaluation = Evaluation.objects.get(pk=evaluation_id)
    with open(samples_path, "rb") as handle:
        evaluation.samples_file.save("samples.parquet", File(handle), save=False)
    applied = Evaluation.objects.transition(
        evaluation_id, S.AGGREGATING, S.FINISHED,
        metrics=metrics,
        samples_file=evaluation.samples_file.name,
        weights_fingerprint=weights_fingerprint,
        weights_verified=weights_verified,
        progress=1.0,
        heartbeat_at=timezone.now(),
        **(versions or {}),
    )
    if applied:
        ChunkResult.objects.filter(evaluation_id=evaluation_id).delete()
        logger.info("evaluation %s finished", evaluation_id)
    else:
        evaluation.samples_file.delete(save=False)
        logger.info("evaluation %s left %s before it finished; results discarded",
                    evaluation_id, Evaluation.objects.get(pk=evaluation_id).state)
    return applied


def evaluation_fail(
    *, evaluation_id: int, kind: str, user_message: str, staff_detail: str = "", problems: list[dict] | None = None
) -> bool:
    """Fail an unfinished evaluation; every failure gives the quota slot back."""
    applied = Evaluation.objects.transition(
        evaluation_id, FAILABLE_STATES, S.FAILED,
        failure_kind=kind,
        user_message=user_message,
        staff_detail=staff_detail,
        validation_problems=stored_problems(problems or []),
        counts_for_quota=False,
    )
    if applied:
        logger.warning("evaluation %s failed (%s): %s", evaluation_id, kind, user_message)
    return applied


def evaluation_requeue(*, evaluation_id: int, stale_before) -> str:
    """Send an evaluation whose heartbeat stopped back to the queue, or fail it.

    Returns "requeued", "failed" or "skipped" (the evaluation moved or beat since it
    was found stale). After `REFLADE_MAX_ATTEMPTS` dispatches it fails as an
    infrastructure failure.
    """
    from leaderboard.tasks import dispatch_scoring, revoke_lost_chunks, validate_submission_task

    evaluation = Evaluation.objects.filter(pk=evaluation_id, heartbeat_at__lt=stale_before).first()
    if evaluation is None or evaluation.is_terminal:
        return "skipped"
    stale = Evaluation.objects.filter(heartbeat_at__lt=stale_before)

    if evaluation.attempts >= settings.REFLADE_MAX_ATTEMPTS:
        applied = stale.transition(
            evaluation_id, evaluation.state, S.FAILED,
            failure_kind=FailureKind.INFRASTRUCTURE,
            user_message="Scoring failed on our side; this upload does not count against your quota.",
            staff_detail=(
                f"reaper: no heartbeat since {evaluation.heartbeat_at.isoformat()} in state "
                f"{evaluation.state} after {evaluation.attempts} attempts"
            ),
            counts_for_quota=False,
        )
        if applied:
            logger.warning("evaluation %s failed by the reaper after %d attempts", evaluation_id, evaluation.attempts)
        return "failed" if applied else "skipped"

    back_to = S.UPLOADED if evaluation.state in (S.UPLOADED, S.VALIDATING) else S.QUEUED
    with transaction.atomic():
        applied = stale.transition(
            evaluation_id, evaluation.state, back_to,
            attempts=evaluation.attempts + 1,
            heartbeat_at=timezone.now(),
        )
        if applied and back_to == S.UPLOADED:
            transaction.on_commit(lambda: validate_submission_task.delay(evaluation_id), robust=True)
        elif applied:
            done = set(ChunkResult.objects.filter(evaluation_id=evaluation_id).values_list("chunk", flat=True))
            lost = [chunk for chunk in range(evaluation.chunks_total) if chunk not in done]

            def redispatch() -> None:
                revoke_lost_chunks(evaluation_id, evaluation.attempts, lost)
                dispatch_scoring(evaluation_id, evaluation.chunks_total, done, attempt=evaluation.attempts + 1)

            transaction.on_commit(redispatch, robust=True)
    if applied:
        logger.warning(
            "evaluation %s re-queued by the reaper from %s (attempt %d)",
            evaluation_id, evaluation.state, evaluation.attempts + 1,
        )
    return "requeued" if applied else "skipped"


def stale_evaluation_ids(*, now=None) -> list[tuple[int, object]]:
    """Evaluations whose heartbeat stopped, with the cutoff each was found stale by."""
    now = now or timezone.now()
    working_cutoff = now - timedelta(seconds=settings.REFLADE_HEARTBEAT_TIMEOUT)
    queued_cutoff = now - timedelta(seconds=settings.REFLADE_QUEUED_TIMEOUT)
    working = Evaluation.objects.filter(
        state__in=[S.UPLOADED, S.VALIDATING, S.SCORING, S.AGGREGATING], heartbeat_at__lt=working_cutoff
    ).values_list("pk", flat=True)
    queued = Evaluation.objects.filter(state=S.QUEUED, heartbeat_at__lt=queued_cutoff).values_list("pk", flat=True)
    return [(pk, working_cutoff) for pk in working] + [(pk, queued_cutoff) for pk in queued]

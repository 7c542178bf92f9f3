"""An evaluation whose chunks were all stored but whose chord never called aggregation
(the broker restarted and the chord lost a chunk's result) still finishes: the reaper
re-queues it, and the aggregation it sends moves it from queued to aggregating."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.test import override_settings
from django.utils import timezone

from leaderboard import services
from leaderboard.models import ChunkResult, Evaluation, EvaluationState
from leaderboard.tasks import reap_stale_evaluations
from tests.leaderboard.conftest import upload

S = EvaluationState


@pytest.fixture
def scored_evaluation(demo_split, user, cutout_zip):
    """An evaluation in scoring with both of its chunks stored and a heartbeat an hour old."""
    submission = services.submission_create(user=user, split=demo_split, uploaded_file=upload(cutout_zip),
                                            method_name="cut-out")
    evaluation = submission.evaluations.get()
    Evaluation.objects.filter(pk=evaluation.pk).update(
        state=S.SCORING, chunks_total=2, heartbeat_at=timezone.now() - timedelta(hours=1)
    )
    for chunk in range(2):
        ChunkResult.objects.create(evaluation=evaluation, chunk=chunk, payload=b"stored")
    return evaluation


@override_settings(REFLADE_HEARTBEAT_TIMEOUT=600, REFLADE_MAX_ATTEMPTS=3)
def test_requeued_evaluation_with_every_chunk_aggregates(scored_evaluation, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks() as callbacks:
        counts = reap_stale_evaluations()
    assert counts == {"requeued": 1, "failed": 0, "skipped": 0}
    assert len(callbacks) == 1  # the aggregation alone: no chunk is left to score
    assert Evaluation.objects.get(pk=scored_evaluation.pk).state == S.QUEUED

    evaluation = services.evaluation_begin_aggregation(evaluation_id=scored_evaluation.pk)

    assert evaluation is not None
    assert evaluation.state == S.AGGREGATING


def test_queued_evaluation_with_missing_chunks_does_not_aggregate(scored_evaluation):
    ChunkResult.objects.filter(evaluation=scored_evaluation, chunk=1).delete()
    Evaluation.objects.filter(pk=scored_evaluation.pk).update(state=S.QUEUED)

    assert services.evaluation_begin_aggregation(evaluation_id=scored_evaluation.pk) is None
    assert Evaluation.objects.get(pk=scored_evaluation.pk).state == S.QUEUED

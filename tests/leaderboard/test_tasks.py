"""Tasks run in this process: validation outcomes, chunk upserts, cancel and the reaper.

Task functions are called directly here; `test_end_to_end.py` runs them in a worker.
"""

import logging
import shutil
import zipfile
from datetime import timedelta

import pytest
from celery.exceptions import TaskRevokedError
from celery.result import AsyncResult
from django.test import override_settings
from django.utils import timezone

from evaluator.gt_cache import ground_truth_version
from leaderboard import selectors, services, tasks
from leaderboard.celery import REQUEUED_REASON
from leaderboard.models import ChunkResult, Evaluation, EvaluationState
from leaderboard.tasks import (
    aggregate_evaluation_task,
    reap_stale_evaluations,
    score_chunk_task,
    validate_submission_task,
)
from tests.leaderboard.conftest import upload

S = EvaluationState


@pytest.fixture
def evaluation(demo_split, user, cutout_zip):
    submission = services.submission_create(
        user=user, split=demo_split, uploaded_file=upload(cutout_zip), method_name="cut-out"
    )
    return submission.evaluations.get()


def set_state(evaluation, state, **fields):
    Evaluation.objects.filter(pk=evaluation.pk).update(state=state, **fields)
    evaluation.refresh_from_db()
    return evaluation


def test_validation_rejects_invalid_zip(demo_split, user, invalid_zip):
    submission = services.submission_create(
        user=user, split=demo_split, uploaded_file=upload(invalid_zip), method_name="bad"
    )
    evaluation = submission.evaluations.get()

    validate_submission_task(evaluation.pk)

    evaluation.refresh_from_db()
    assert evaluation.state == S.FAILED
    assert evaluation.failure_kind == "user"
    assert not evaluation.counts_for_quota
    assert len(evaluation.validation_problems) == 7
    assert evaluation.validation_problems[0]["code"] == "sample_missing"
    assert evaluation.user_message == (
        "The submission is invalid: 7 problems found. Fix them and upload again; "
        "this upload does not count against your quota."
    )


def test_validation_problems_capped(demo_split, user, cutout_zip, tmp_path):
    crowded = tmp_path / "crowded.zip"
    shutil.copy(cutout_zip, crowded)
    with zipfile.ZipFile(crowded, "a") as archive:
        for index in range(150):
            archive.writestr(f"stray_{index}.png", b"")
    submission = services.submission_create(
        user=user, split=demo_split, uploaded_file=upload(crowded), method_name="crowded"
    )
    evaluation = submission.evaluations.get()

    validate_submission_task(evaluation.pk)

    evaluation.refresh_from_db()
    problems = evaluation.validation_problems
    assert evaluation.state == S.FAILED
    assert len(problems) == services.MAX_STORED_PROBLEMS + 1
    assert problems[-1]["code"] == "more_problems"
    assert problems[-1]["message"] == "50 more problems not listed here"
    assert problems[-1]["hint"] == (
        "Run python -m evaluator validate --split SPLIT --predictions ZIP to list every problem."
    )
    assert evaluation.user_message.startswith("The submission is invalid: 150 problems found.")


def test_validation_records_evaluator_gt_version(evaluation, demo_split, monkeypatch):
    dispatched = []
    monkeypatch.setattr(tasks, "dispatch_scoring", lambda *args, **kwargs: dispatched.append((args, kwargs)))

    validate_submission_task(evaluation.pk)

    evaluation.refresh_from_db()
    with tasks.open_split_package(demo_split) as split:
        expected = ground_truth_version(split)
    assert evaluation.state == S.QUEUED
    assert dispatched == [((evaluation.pk, 1), {"attempt": 1})]
    assert evaluation.ground_truth_version == expected
    assert evaluation.ground_truth_version != demo_split.ground_truth_version


def test_validation_skips_cancelled(evaluation):
    set_state(evaluation, S.CANCELLED)
    validate_submission_task(evaluation.pk)
    evaluation.refresh_from_db()
    assert evaluation.state == S.CANCELLED


def test_chunk_result_upsert_overwrites(evaluation):
    set_state(evaluation, S.SCORING, chunks_total=3)

    assert services.chunk_result_store(evaluation_id=evaluation.pk, chunk=1, payload=b"first")
    assert services.chunk_result_store(evaluation_id=evaluation.pk, chunk=1, payload=b"retry")

    rows = ChunkResult.objects.filter(evaluation=evaluation)
    assert rows.count() == 1
    assert bytes(rows.get().payload) == b"retry"
    evaluation.refresh_from_db()
    assert evaluation.chunks_done == 1
    assert evaluation.progress == pytest.approx(1 / 3)


def test_chunk_result_progress_counts_chunks(evaluation):
    set_state(evaluation, S.SCORING, chunks_total=2)
    before = timezone.now()
    services.chunk_result_store(evaluation_id=evaluation.pk, chunk=0, payload=b"a")
    services.chunk_result_store(evaluation_id=evaluation.pk, chunk=1, payload=b"b")
    evaluation.refresh_from_db()
    assert evaluation.chunks_done == 2
    assert evaluation.progress == 1.0
    assert evaluation.heartbeat_at >= before


def test_cancelled_evaluation_stores_no_chunk(evaluation, user):
    set_state(evaluation, S.SCORING, chunks_total=1)
    services.submission_cancel(submission=evaluation.submission, user=user)

    assert not services.chunk_result_store(evaluation_id=evaluation.pk, chunk=0, payload=b"late")
    score_chunk_task(evaluation.pk, 0)
    aggregate_evaluation_task(evaluation.pk)

    assert ChunkResult.objects.filter(evaluation=evaluation).count() == 0
    evaluation.refresh_from_db()
    assert evaluation.state == S.CANCELLED


def test_aggregation_waits_for_missing_chunks(evaluation):
    set_state(evaluation, S.SCORING, chunks_total=2)
    services.chunk_result_store(evaluation_id=evaluation.pk, chunk=0, payload=b"a")
    aggregate_evaluation_task(evaluation.pk)
    evaluation.refresh_from_db()
    assert evaluation.state == S.SCORING


def stale(evaluation, state, attempts, age=timedelta(hours=1)):
    return set_state(evaluation, state, attempts=attempts, heartbeat_at=timezone.now() - age, chunks_total=3)


@override_settings(REFLADE_HEARTBEAT_TIMEOUT=600, REFLADE_MAX_ATTEMPTS=3)
def test_reaper_requeues_stalled_scoring(evaluation, django_capture_on_commit_callbacks):
    stale(evaluation, S.SCORING, attempts=1)
    ChunkResult.objects.create(evaluation=evaluation, chunk=0, payload=b"done")

    with django_capture_on_commit_callbacks() as callbacks:
        counts = reap_stale_evaluations()

    assert counts == {"requeued": 1, "failed": 0, "skipped": 0}
    assert len(callbacks) == 1  # the chord of the two chunks not yet stored
    evaluation.refresh_from_db()
    assert evaluation.state == S.QUEUED
    assert evaluation.attempts == 2
    assert evaluation.heartbeat_at > timezone.now() - timedelta(minutes=1)
    assert evaluation.counts_for_quota


@override_settings(REFLADE_HEARTBEAT_TIMEOUT=600, REFLADE_MAX_ATTEMPTS=3)
def test_reaper_revokes_lost_chunk_tasks(evaluation, monkeypatch, django_capture_on_commit_callbacks):
    stale(evaluation, S.SCORING, attempts=1)
    ChunkResult.objects.create(evaluation=evaluation, chunk=0, payload=b"done")
    dispatched = []
    monkeypatch.setattr(tasks, "dispatch_scoring", lambda *args, **kwargs: dispatched.append((args, kwargs)))

    with django_capture_on_commit_callbacks(execute=True):
        reap_stale_evaluations()

    states = [AsyncResult(tasks.chunk_task_id(evaluation.pk, 1, chunk)).state for chunk in range(3)]
    assert states == ["PENDING", "REVOKED", "REVOKED"]
    assert dispatched == [((evaluation.pk, 3, {0}), {"attempt": 2})]


def test_dispatch_names_chunk_tasks(evaluation, monkeypatch):
    sent = []
    monkeypatch.setattr(tasks, "chord", lambda header: lambda body: sent.append((header, body)))

    tasks.dispatch_scoring(evaluation.pk, 3, {1}, attempt=4)

    header, body = sent[0]
    assert [signature.id for signature in header] == [f"score-{evaluation.pk}-4-0", f"score-{evaluation.pk}-4-2"]
    assert [signature.args for signature in header] == [(evaluation.pk, 0), (evaluation.pk, 2)]
    assert body.args == (evaluation.pk,)


@override_settings(REFLADE_HEARTBEAT_TIMEOUT=600, REFLADE_MAX_ATTEMPTS=3)
def test_reaper_resends_stalled_validation(evaluation, django_capture_on_commit_callbacks):
    stale(evaluation, S.VALIDATING, attempts=1)
    with django_capture_on_commit_callbacks() as callbacks:
        reap_stale_evaluations()
    assert len(callbacks) == 1
    evaluation.refresh_from_db()
    assert evaluation.state == S.UPLOADED
    assert evaluation.attempts == 2


@override_settings(REFLADE_HEARTBEAT_TIMEOUT=600, REFLADE_MAX_ATTEMPTS=3)
def test_reaper_fails_after_max_attempts(evaluation, user, django_capture_on_commit_callbacks):
    stale(evaluation, S.AGGREGATING, attempts=3)
    assert selectors.quota_status(user=user, split=evaluation.submission.split).used == 1

    with django_capture_on_commit_callbacks() as callbacks:
        counts = reap_stale_evaluations()

    assert counts == {"requeued": 0, "failed": 1, "skipped": 0}
    assert callbacks == []
    evaluation.refresh_from_db()
    assert evaluation.state == S.FAILED
    assert evaluation.failure_kind == "infrastructure"
    assert evaluation.user_message == (
        "Scoring failed on our side; this upload does not count against your quota."
    )
    assert "after 3 attempts" in evaluation.staff_detail
    assert not evaluation.counts_for_quota
    assert selectors.quota_status(user=user, split=evaluation.submission.split).used == 0


@override_settings(REFLADE_HEARTBEAT_TIMEOUT=600, REFLADE_QUEUED_TIMEOUT=6 * 3600)
def test_reaper_leaves_live_work(evaluation):
    stale(evaluation, S.SCORING, attempts=1, age=timedelta(minutes=5))
    assert reap_stale_evaluations() == {"requeued": 0, "failed": 0, "skipped": 0}
    stale(evaluation, S.QUEUED, attempts=1, age=timedelta(hours=1))
    assert reap_stale_evaluations() == {"requeued": 0, "failed": 0, "skipped": 0}
    evaluation.refresh_from_db()
    assert evaluation.state == S.QUEUED
    assert evaluation.attempts == 1


@override_settings(REFLADE_HEARTBEAT_TIMEOUT=600)
def test_reaper_skips_evaluation_that_moved(evaluation):
    stale(evaluation, S.SCORING, attempts=1)
    cutoff = timezone.now() - timedelta(seconds=600)
    Evaluation.objects.filter(pk=evaluation.pk).update(heartbeat_at=timezone.now())
    assert services.evaluation_requeue(evaluation_id=evaluation.pk, stale_before=cutoff) == "skipped"
    evaluation.refresh_from_db()
    assert evaluation.state == S.SCORING


def test_heartbeat_progress_beats_while_scoring(evaluation, monkeypatch):
    import leaderboard.tasks as tasks

    monkeypatch.setattr(tasks, "HEARTBEAT_INTERVAL_SECONDS", 0)
    old = timezone.now() - timedelta(hours=1)
    set_state(evaluation, S.SCORING, heartbeat_at=old)

    tasks.HeartbeatProgress(evaluation.pk)(16)

    evaluation.refresh_from_db()
    assert evaluation.heartbeat_at > old + timedelta(minutes=59)


def test_heartbeat_ignored_after_cancel(evaluation):
    old = timezone.now() - timedelta(hours=1)
    set_state(evaluation, S.CANCELLED, heartbeat_at=old)
    assert not services.evaluation_heartbeat(evaluation_id=evaluation.pk)
    evaluation.refresh_from_db()
    assert evaluation.heartbeat_at == old


@pytest.mark.parametrize(("error", "level", "message"), [
    (TaskRevokedError(REQUEUED_REASON), "WARNING", "chord 'group-1' ended: its lost chunk tasks were " + REQUEUED_REASON),
    (TaskRevokedError("revoked by staff"), "ERROR", "Chord 'group-1' raised: TaskRevokedError('revoked by staff')"),
])
def test_replaced_chord_logs_one_line(caplog, error, level, message):
    logger = logging.getLogger("celery.app.builtins")
    with caplog.at_level(logging.WARNING, logger="celery.app.builtins"):
        try:
            raise error
        except TaskRevokedError as raised:
            logger.exception("Chord %r raised: %r", "group-1", raised)
    record = caplog.records[-1]
    assert record.levelname == level
    assert record.getMessage() == message
    assert (record.exc_info is None) == (level == "WARNING")

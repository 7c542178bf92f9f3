"""End to end: an upload goes through a real Celery worker process and is scored.

The worker is a `celery worker -Q default,gpu --pool solo` subprocess on the test
database. By default the tests run on SQLite with the serverless broker. The
PostgreSQL + Redis variant runs only when DATABASE_URL, CELERY_BROKER_URL and
CELERY_RESULT_BACKEND point at those servers.
"""

import json
import time

import pandas as pd
import pytest
from django.conf import settings
from django.db import connection

from evaluator.config import load_config
from evaluator.pipeline import score_submission
from leaderboard import selectors, services
from leaderboard.models import Benchmark, ChunkResult, EvaluationState
from leaderboard.storage import private_storage
from tests.leaderboard.conftest import config_name_for_tests, upload

S = EvaluationState
# Small chunks, so the 8 samples make a chord of 3 chunk tasks.
CHUNK_SIZE = 3
FINISH_TIMEOUT = 240
POSTGRES_AND_REDIS = settings.DATABASES["default"]["ENGINE"].endswith("postgresql") and (
    settings.CELERY_BROKER_URL.startswith("redis://")
)


def wait_for_end(submission, worker, timeout: float = FINISH_TIMEOUT):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        evaluation = selectors.evaluation_current(submission=submission)
        if evaluation.is_terminal:
            return evaluation
        time.sleep(0.5)
    raise AssertionError(f"evaluation still {evaluation.state} after {timeout} s; worker log:\n{worker.log()}")


def use_small_chunks(split) -> None:
    benchmark = split.benchmark
    benchmark.config = {**benchmark.config, "chunk_size": CHUNK_SIZE}
    benchmark.save()
    Benchmark.objects.filter(pk=benchmark.pk).update(config=benchmark.config)


def approx_nested(value):
    """`value` with every float wrapped in pytest.approx(rel=1e-5, abs=1e-6)."""
    if isinstance(value, dict):
        return {key: approx_nested(item) for key, item in value.items()}
    if isinstance(value, list):
        return [approx_nested(item) for item in value]
    if isinstance(value, float):
        return pytest.approx(value, rel=1e-5, abs=1e-6)
    return value


def check_upload_is_scored(worker, split, user, path, split_dir, tmp_path) -> None:
    use_small_chunks(split)
    submission = services.submission_create(user=user, split=split, uploaded_file=upload(path), method_name="cut-out")

    evaluation = wait_for_end(submission, worker)

    assert evaluation.state == S.FINISHED, f"{evaluation.staff_detail}\n{worker.log()}"
    assert evaluation.chunks_total == 3
    assert evaluation.chunks_done == 3
    assert evaluation.progress == 1.0
    assert evaluation.failure_kind == ""
    assert ChunkResult.objects.filter(evaluation=evaluation).count() == 0  # cleared once aggregated
    submission.refresh_from_db()
    assert submission.candidate_count == 1
    assert submission.metadata == {"method": "cut-out"}

    # The same chunking as the worker's, so that FID sums add up in the same order.
    config = load_config({**load_config(config_name_for_tests()).to_json(), "chunk_size": CHUNK_SIZE})
    expected = score_submission(
        split_dir, path, config=config, weights_dir=worker.weights_dir, progress=False,
        workers=0, cache_dir=tmp_path / "cache",
    )
    stored = {key: value for key, value in evaluation.metrics.items() if key not in ("provenance", "warnings")}
    # Ground-truth features cached from other batches differ in the last float32 digits
    # (CLIP batch numerics), far below the four decimals the leaderboard shows.
    assert stored == approx_nested(json.loads(json.dumps(expected.report)))
    assert evaluation.weights_verified == expected.weights_verified
    assert evaluation.weights_fingerprint == expected.provenance["weights"]["fingerprint"]
    assert evaluation.config_hash == config.hash

    with private_storage().open(evaluation.samples_file.name, "rb") as handle:
        samples = pd.read_parquet(handle)
    pd.testing.assert_frame_equal(samples, expected.samples.reset_index(drop=True), check_dtype=False,
                                  rtol=1e-5, atol=1e-6)

    rows = selectors.leaderboard_rows(split=split)
    assert [row.submission.pk for row in rows] == [submission.pk]
    assert rows[0].metrics["hpa"] == pytest.approx(expected.report["hpa"]["value"], rel=1e-5)


def check_invalid_upload_is_rejected(worker, split, user, path) -> None:
    used_before = selectors.quota_status(user=user, split=split).used
    submission = services.submission_create(user=user, split=split, uploaded_file=upload(path), method_name="bad")

    evaluation = wait_for_end(submission, worker)

    assert evaluation.state == S.FAILED, worker.log()
    assert evaluation.failure_kind == "user"
    assert not evaluation.counts_for_quota
    assert {problem["code"] for problem in evaluation.validation_problems} == {"sample_missing"}
    assert evaluation.user_message.startswith("The submission is invalid: ")
    assert selectors.quota_status(user=user, split=split).used == used_before


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_upload_scored_by_worker(celery_worker_process, demo_split, user, cutout_zip, synthetic_split_dir, tmp_path):
    check_upload_is_scored(celery_worker_process, demo_split, user, cutout_zip, synthetic_split_dir, tmp_path)


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_invalid_upload_rejected_by_worker(celery_worker_process, demo_split, user, invalid_zip):
    check_invalid_upload_is_rejected(celery_worker_process, demo_split, user, invalid_zip)


@pytest.mark.postgres
@pytest.mark.redis
@pytest.mark.slow
@pytest.mark.skipif(not POSTGRES_AND_REDIS, reason="needs DATABASE_URL=postgres://... and CELERY_BROKER_URL=redis://...")
@pytest.mark.django_db(transaction=True)
def test_upload_scored_on_postgres_and_redis(
    celery_worker_process, demo_split, user, cutout_zip, invalid_zip, synthetic_split_dir, tmp_path
):
    assert connection.vendor == "postgresql"
    check_upload_is_scored(celery_worker_process, demo_split, user, cutout_zip, synthetic_split_dir, tmp_path)
    check_invalid_upload_is_rejected(celery_worker_process, demo_split, user, invalid_zip)

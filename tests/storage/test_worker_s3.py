"""End to end on S3: a real Celery worker process scores a zip uploaded through a
presigned multipart upload. The worker reads the submission and the ground truth
from the moto buckets and writes the per-sample results back to them."""

from __future__ import annotations

import io
import time

import pandas as pd
import pytest

from evaluator.gt_cache import ground_truth_version
from evaluator.split import Split
from leaderboard import selectors
from leaderboard.models import Submission
from leaderboard.upload_client import upload_large
from tests.storage.conftest import BUCKET

pytestmark = [pytest.mark.s3, pytest.mark.slow]

FINISH_TIMEOUT = 240


def wait_for_end(submission, worker):
    deadline = time.monotonic() + FINISH_TIMEOUT
    while time.monotonic() < deadline:
        evaluation = selectors.evaluation_current(submission=submission)
        if evaluation.is_terminal:
            return evaluation
        time.sleep(0.5)
    raise AssertionError(f"evaluation still {evaluation.state} after {FINISH_TIMEOUT} s; worker log:\n{worker.log()}")


def test_multipart_upload_scored_from_s3(s3_worker_process, live_server, s3_split, user, token, cutout_zip,
                                         s3_client, synthetic_split_dir):
    result = upload_large(f"{live_server.url}/api/v1", token, s3_split.pk, cutout_zip, 5 << 20,
                          method_name="cut-out")
    submission = Submission.objects.get(pk=result.submission["id"])

    evaluation = wait_for_end(submission, s3_worker_process)

    assert evaluation.state == "finished", f"{evaluation.staff_detail}\n{s3_worker_process.log()}"
    assert evaluation.ground_truth_version == ground_truth_version(Split(synthetic_split_dir))
    assert evaluation.samples_file.name.startswith(f"samples/evaluation-{evaluation.pk}/")
    stored = s3_client.get_object(Bucket=BUCKET, Key=evaluation.samples_file.name)["Body"].read()
    assert len(pd.read_parquet(io.BytesIO(stored))) == s3_split.sample_count
    assert [row.submission.pk for row in selectors.leaderboard_rows(split=s3_split)] == [submission.pk]

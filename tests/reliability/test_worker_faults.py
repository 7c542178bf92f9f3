"""A worker killed with SIGKILL in the middle of a chunk: the evaluation still finishes
with the metrics of an undisturbed run and one result per chunk.

Two ways back are tested with real `celery worker --pool prefork` processes on the
test database and the embedded broker:
- only the pool process dies: the parent rejects the message (acks_late with
  reject_on_worker_lost), the broker delivers it again and the chunk is scored anew;
- the whole worker dies: a second worker starts, and the broker's redelivery or the
  reaper, whichever comes first, brings back the chunks not stored.

Each kill waits until the worker logs that it started scoring a chunk, so it lands
in the middle of one; a pool process killed before it took the task from its parent
is a different fault, which only the reaper repairs. The session's other workers
stop during the test: they consume the same queues and would take the chunks. The reaper giving up after `REFLADE_MAX_ATTEMPTS` is tested in
  tests/leaderboard/test_tasks.py::test_reaper_fails_after_max_attempts.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from leaderboard import services
from leaderboard.models import Benchmark, ChunkResult, Evaluation, EvaluationState
from leaderboard.tasks import reap_stale_evaluations
from tests.leaderboard.conftest import (
    REPOSITORY,
    database_url,
    upload,
    weights_dir_for_tests,
)
from tests.leaderboard.workers import other_workers_stopped, purge_queues

S = EvaluationState
CHUNK_SIZE = 3  # 8 samples in 3 chunks
KILL_ATTEMPTS = 8
SCORING_LINE = re.compile(r"\[evaluation=(\d+) submission=\d+\]: scoring samples (\d+)\.\.")
# Generous: a worker start imports torch, which takes a minute on two busy cores.
TIMEOUT = 240


class Worker:
    def __init__(self, name: str, env: dict, folder: Path):
        self.log_path = folder / f"{name}.log"
        command = [sys.executable, "-m", "celery", "-A", "leaderboard", "worker", "-Q", "default,gpu",
                   "--pool", "prefork", "--concurrency", "1", "--loglevel", "INFO", "--without-gossip",
                   "--without-mingle", "--without-heartbeat", "--hostname", f"{name}-{os.getpid()}@%h"]
        self.process = subprocess.Popen(command, cwd=REPOSITORY, env=env, stdout=open(self.log_path, "wb"),
                                        stderr=subprocess.STDOUT, start_new_session=True)
        wait(lambda: " ready." in self.log() or self.process.poll() is not None, "worker ready")
        assert self.process.poll() is None, self.log()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def pool_processes(self) -> list[int]:
        # Each thread lists the children it forked, and the pool's supervisor thread,
        # not the main thread, forks the replacement of a dead pool process.
        found = []
        for children in Path(f"/proc/{self.process.pid}/task").glob("*/children"):
            found += [int(pid) for pid in children.read_text().split()]
        return found

    def kill_all(self) -> None:
        os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait()

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.kill_all()


def wait(condition, what: str, timeout: float = TIMEOUT, interval: float = 0.05):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"{what} did not happen within {timeout} s")


@pytest.fixture
def worker_env(transactional_db, tmp_path_factory):
    """The environment of the test's own workers. The session's other workers stop
    meanwhile, so every message of the broker reaches the worker this test kills."""
    from django.db import connection

    env = {**os.environ, "DATABASE_URL": database_url(connection.settings_dict),
           "REFLADE_WEIGHTS": os.environ.get("REFLADE_WEIGHTS") or str(weights_dir_for_tests(tmp_path_factory)),
           "REFLADE_LOADER_WORKERS": "0"}
    with other_workers_stopped():
        purge_queues(env)
        yield env


@pytest.fixture
def split_in_chunks(demo_split):
    benchmark = demo_split.benchmark
    Benchmark.objects.filter(pk=benchmark.pk).update(config={**benchmark.config, "chunk_size": CHUNK_SIZE})
    return demo_split


def evaluation_of(submission) -> Evaluation:
    return Evaluation.objects.filter(submission=submission).order_by("-pk").first()


def chunk_started(worker: Worker, evaluation_id: int, log_offset: int) -> int | None:
    """The chunk index of the first chunk the worker logged starting to score, if any."""
    for match in SCORING_LINE.finditer(worker.log()[log_offset:]):
        if int(match[1]) == evaluation_id:
            return int(match[2]) // CHUNK_SIZE
    return None


def submission_and_chunk(user, split, zip_path, name: str, worker: Worker) -> tuple:
    """Submit, then wait until the worker logs that it started scoring a chunk of it.

    Returns the submission and the index of that chunk.
    """
    log_offset = len(worker.log())
    submission = services.submission_create(user=user, split=split, uploaded_file=upload(zip_path), method_name=name)
    evaluation_id = evaluation_of(submission).pk

    def started():
        chunk = chunk_started(worker, evaluation_id, log_offset)
        return None if chunk is None else (chunk,)

    (chunk,) = wait(started, f"{name}: a chunk started", interval=0.02)
    return submission, chunk


def dead(pid: int) -> bool:
    """True once the process has exited: gone, or a zombie its parent has not reaped."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except (FileNotFoundError, ProcessLookupError):
        return True


def chunk_stored(submission, chunk: int) -> bool:
    return ChunkResult.objects.filter(evaluation=evaluation_of(submission), chunk=chunk).exists()


def finished(submission, worker: Worker, reap: bool = False) -> Evaluation:
    def ended():
        if reap:
            reap_stale_evaluations()
        evaluation = evaluation_of(submission)
        return evaluation if evaluation.is_terminal else None

    evaluation = wait(ended, f"{submission.method_name} ended", interval=0.5)
    assert evaluation.state == S.FINISHED, f"{evaluation.staff_detail}\n{worker.log()}"
    assert (evaluation.chunks_done, evaluation.chunks_total) == (3, 3)
    # The aggregation deletes the chunk rows just after it marks the evaluation finished.
    wait(lambda: not ChunkResult.objects.filter(evaluation=evaluation).exists(), "chunk rows cleared", timeout=10)
    return evaluation


def comparable(evaluation: Evaluation) -> dict:
    return {key: value for key, value in evaluation.metrics.items() if key not in ("provenance", "warnings")}


@pytest.mark.slow
def test_killed_worker_chunk_is_scored_again(worker_env, split_in_chunks, staff_user, cutout_zip, tmp_path,
                                             settings):
    heartbeat_timeout = settings.REFLADE_HEARTBEAT_TIMEOUT
    worker = Worker("first", worker_env, tmp_path)
    try:
        undisturbed = finished(submission_and_chunk(staff_user, split_in_chunks, cutout_zip, "undisturbed",
                                                    worker)[0], worker)

        # The pool process dies while it scores a chunk; the parent hands the message
        # back to the broker. A chunk can end between the log line and the kill, and
        # then the kill hit no chunk: that try does not count and another submission
        # is made.
        for attempt in range(1, KILL_ATTEMPTS + 1):
            submission, chunk = submission_and_chunk(staff_user, split_in_chunks, cutout_zip,
                                                     f"pool killed {attempt}", worker)
            (child,) = worker.pool_processes()
            os.kill(child, signal.SIGKILL)
            wait(lambda pid=child: dead(pid), "the pool process exit", timeout=10)
            killed_mid_chunk = not chunk_stored(submission, chunk)
            if killed_mid_chunk:
                redelivered = finished(submission, worker)
                break
            # The kill came after the chunk, possibly while the pool process was taking
            # the next task from its parent, a task that only the reaper brings back.
            settings.REFLADE_HEARTBEAT_TIMEOUT = 10
            finished(submission, worker, reap=True)
            settings.REFLADE_HEARTBEAT_TIMEOUT = heartbeat_timeout
        assert killed_mid_chunk, f"every one of {KILL_ATTEMPTS} kills came after its chunk was stored"
        # The parent logs the child's death at once and WorkerLostError when it
        # settles the lost task, which can come after the redelivered run finishes.
        assert "exited with 'signal 9 (SIGKILL)'" in worker.log()
        assert worker.process.poll() is None
        assert comparable(redelivered) == comparable(undisturbed)
        assert redelivered.attempts == 1

        # The whole worker dies while it scores a chunk; a second worker and the
        # reaper finish the work.
        submission, chunk = submission_and_chunk(staff_user, split_in_chunks, cutout_zip, "worker killed", worker)
        worker.kill_all()
        stored_at_kill = ChunkResult.objects.filter(evaluation=evaluation_of(submission)).count()
        assert stored_at_kill < 3
        worker = Worker("second", worker_env, tmp_path)
        settings.REFLADE_HEARTBEAT_TIMEOUT = 10
        # The broker may hand the dead worker's unacknowledged chunks to the new worker
        # (attempts stays 1), or the reaper may re-queue them first (attempts 2 or more).
        # Timing decides which comes first, and neither loses a chunk.
        requeued = finished(submission, worker, reap=True)
        assert comparable(requeued) == comparable(undisturbed)
        assert "Traceback" not in worker.log()
    finally:
        worker.stop()

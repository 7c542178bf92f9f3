"""The demo's supervision of its web server and worker, with stand-in child processes.

The stand-in worker starts a grandchild, which stays in the worker's process group as
Celery's embedded beat and the scoring loaders do, and writes its pid to a file.
"""

import os
import signal
import sys
import time
from datetime import timedelta

import pytest
from django.core.management.base import CommandError
from django.utils import timezone

from leaderboard import services
from leaderboard.management.commands import demo
from leaderboard.models import Evaluation, EvaluationState
from tests.leaderboard.conftest import upload

SLEEPER = [sys.executable, "-c", "import time; time.sleep(600)"]


def worker_args(pid_file) -> list[str]:
    code = (
        "import subprocess, sys, time\n"
        f"child = subprocess.Popen({SLEEPER!r})\n"
        f"open({str(pid_file)!r}, 'w').write(str(child.pid))\n"
        "time.sleep(600)\n"
    )
    return [sys.executable, "-c", code]


def grandchild_pid(pid_file) -> int:
    for _ in range(200):
        if pid_file.exists() and pid_file.read_text():
            return int(pid_file.read_text())
        time.sleep(0.05)
    raise AssertionError(f"the stand-in worker wrote no pid to {pid_file}")


def is_gone(pid: int) -> bool:
    """Return True once `pid` has exited (a zombie left for its parent's parent counts as exited)."""
    for _ in range(100):
        try:
            with open(f"/proc/{pid}/stat") as stat:
                if stat.read().split(") ")[1].startswith("Z"):
                    return True
        except FileNotFoundError:
            return True
        time.sleep(0.05)
    return False


@pytest.fixture
def children(tmp_path):
    supervised = demo.Children(SLEEPER, worker_args(tmp_path / "beat.pid"))
    yield supervised
    supervised.stop()


def test_killed_worker_restarts_and_requeues(children, tmp_path, demo_split, user, cutout_zip, monkeypatch):
    dispatched = []
    monkeypatch.setattr("leaderboard.tasks.dispatch_scoring", lambda *args: dispatched.append(args))
    submission = services.submission_create(
        user=user, split=demo_split, uploaded_file=upload(cutout_zip), method_name="in flight"
    )
    Evaluation.objects.filter(submission=submission).update(
        state=EvaluationState.SCORING, chunks_total=2, heartbeat_at=timezone.now() - timedelta(seconds=5)
    )
    beat = grandchild_pid(tmp_path / "beat.pid")
    first = children.worker.pid
    os.kill(first, signal.SIGKILL)
    children.worker.wait()

    children.check()

    evaluation = submission.evaluations.get()
    assert children.worker.pid != first
    assert children.worker.poll() is None
    assert children.restarts == 1
    assert is_gone(beat)
    assert evaluation.state == EvaluationState.QUEUED
    assert evaluation.attempts == 2


def test_web_exit_stops_demo(children):
    children.web.kill()
    children.web.wait()
    with pytest.raises(CommandError) as caught:
        children.check()
    assert str(caught.value) == "the web server exited with status -9"


def test_worker_restarts_are_bounded(children, db, monkeypatch):
    monkeypatch.setattr(demo, "MAX_WORKER_RESTARTS", 1)
    children.worker.kill()
    children.worker.wait()
    children.check()
    children.worker.kill()
    children.worker.wait()
    with pytest.raises(CommandError) as caught:
        children.check()
    assert str(caught.value) == "the worker exited with status -9 after 1 restarts"


def test_stop_ends_process_groups(children, tmp_path):
    beat = grandchild_pid(tmp_path / "beat.pid")
    children.stop()
    assert children.web.poll() is not None
    assert children.worker.poll() is not None
    assert is_gone(beat)

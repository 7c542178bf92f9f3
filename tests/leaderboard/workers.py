"""Celery worker subprocesses for tests, and a registry of the running ones.

Every worker a test starts consumes the queues of the one broker the test session
shares. A test that kills workers on purpose needs the messages to reach its own
worker, so `other_workers_stopped()` stops the registered workers for its duration
and starts them again afterwards.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

REPOSITORY = Path(__file__).resolve().parents[2]
WORKER_READY_TIMEOUT = 90

_running: list[WorkerProcess] = []


def purge_queues(env: dict[str, str]) -> None:
    """Drop messages that earlier tests or sessions left on the broker's queues."""
    subprocess.run(
        [sys.executable, "-m", "celery", "-A", "leaderboard", "purge", "-f", "-Q", "default,gpu"],
        cwd=REPOSITORY, env=env, check=True, capture_output=True,
    )


class WorkerProcess:
    """A `celery worker` subprocess; `log()` returns what it has written so far.

    A stopped worker can be started again, and then appends to the same log.
    """

    def __init__(self, command: list[str], env: dict[str, str], log_path: Path):
        self.command = command
        self.env = env
        self.log_path = log_path
        self.process: subprocess.Popen | None = None

    @property
    def weights_dir(self) -> Path:
        return Path(self.env["REFLADE_WEIGHTS"])

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def start(self) -> WorkerProcess:
        offset = len(self.log())
        handle = open(self.log_path, "ab")
        self.process = subprocess.Popen(self.command, cwd=REPOSITORY, env=self.env, stdout=handle,
                                        stderr=subprocess.STDOUT)
        handle.close()
        deadline = time.monotonic() + WORKER_READY_TIMEOUT
        while " ready." not in self.log()[offset:]:
            if self.process.poll() is not None:
                raise RuntimeError(f"the Celery worker exited with {self.process.returncode}:\n{self.log()}")
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"the Celery worker was not ready after {WORKER_READY_TIMEOUT} s:\n{self.log()}")
            time.sleep(0.2)
        _running.append(self)
        return self

    def stop(self) -> None:
        if self in _running:
            _running.remove(self)
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def start_worker(log_path: Path, env: dict[str, str], *, queues: str = "default,gpu",
                 name: str = "test-worker") -> WorkerProcess:
    """Purge the queues, then start a solo-pool worker and wait until it is ready."""
    purge_queues(env)
    command = [
        sys.executable, "-m", "celery", "-A", "leaderboard", "worker",
        "-Q", queues, "--pool", "solo", "--loglevel", "INFO",
        "--without-gossip", "--without-mingle", "--without-heartbeat",
        "--hostname", f"{name}-{os.getpid()}@%h",
    ]
    return WorkerProcess(command, env, log_path).start()


@contextmanager
def other_workers_stopped():
    """Stop every worker started through this module, and start them again on exit."""
    stopped = list(_running)
    for worker in stopped:
        worker.stop()
    try:
        yield
    finally:
        for worker in stopped:
            worker.start()

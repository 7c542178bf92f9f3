"""Fixtures of the leaderboard tests: users, a hosted synthetic split, submission zips
and a real Celery worker process consuming the `default` and `gpu` queues.

The worker runs against the test database, so tests that use it need committed
data: `transactional_db` or `live_server`, never the rolled-back `db`.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from importlib.util import find_spec
from pathlib import Path

import numpy as np
import pytest
from django.core.files import File

from evaluator.split import Split as SplitPackage
from evaluator.submission import write_submission
from evaluator.synthetic import make_synthetic_split

REPOSITORY = Path(__file__).resolve().parents[2]
SPLIT_SAMPLES = 8
SPLIT_SIZE = 64
WORKER_READY_TIMEOUT = 90


def config_name_for_tests() -> str:
    """`test-tiny` (small networks) once the evaluator ships it, else `reflade-v1`."""
    shipped = REPOSITORY / "evaluator" / "configs" / "test-tiny.json"
    return "test-tiny" if shipped.is_file() else "reflade-v1"


@pytest.fixture(scope="session")
def synthetic_split_dir(tmp_path_factory) -> Path:
    """A synthetic split with ground truth: 8 samples of 64 x 64 pixels."""
    root = tmp_path_factory.mktemp("splits")
    return make_synthetic_split(root, samples=SPLIT_SAMPLES, size=SPLIT_SIZE, seed=3, name="val")


@pytest.fixture
def user(django_user_model):
    return django_user_model.objects.create_user("alice", "alice@example.org", "alice-password-1")


@pytest.fixture
def other_user(django_user_model):
    return django_user_model.objects.create_user("bob", "bob@example.org", "bob-password-1")


@pytest.fixture
def staff_user(django_user_model):
    return django_user_model.objects.create_user("carol", "carol@example.org", "carol-password-1", is_staff=True)


@pytest.fixture
def demo_benchmark(db):
    from leaderboard.services import benchmark_create

    return benchmark_create(slug="demo", name="Demo", description="Synthetic scenes.", config=config_name_for_tests())


@pytest.fixture
def demo_split(demo_benchmark, synthetic_split_dir):
    """The synthetic split hosted as `demo/val`, visibility public, quota 5 per 24 h."""
    from leaderboard.services import split_import

    return split_import(benchmark=demo_benchmark, name="val", path=synthetic_split_dir, visibility="public")


def cutout_predictions(split_dir: Path):
    """The prompt cut-out: the input image where the layer is visible, transparent elsewhere."""
    with SplitPackage(split_dir) as split:
        for sample in split:
            image = split.read_image(sample)
            visible = split.read_gt_visible(sample)
            layer = np.dstack([image, np.where(visible, 255, 0).astype(np.uint8)])
            yield sample.sample_id, [layer]


@pytest.fixture(scope="session")
def cutout_zip(synthetic_split_dir, tmp_path_factory) -> Path:
    """A valid submission zip of the synthetic split (one candidate per sample)."""
    path = tmp_path_factory.mktemp("submissions") / "cutout.zip"
    return write_submission(path, cutout_predictions(synthetic_split_dir), {"method": "cut-out"})


@pytest.fixture(scope="session")
def invalid_zip(synthetic_split_dir, tmp_path_factory) -> Path:
    """A zip missing every prediction but the first, with one stray file."""
    path = tmp_path_factory.mktemp("submissions") / "invalid.zip"
    first = next(iter(cutout_predictions(synthetic_split_dir)))
    write_submission(path, [first])
    return path


def upload(path: Path) -> File:
    """The file as a service receives an upload: a named, seekable file with chunks()."""
    return File(open(path, "rb"), name=path.name)


# Worker -------------------------------------------------------------------------------


def database_url(settings_dict: dict) -> str:
    """A DATABASE_URL for the worker that names the test database Django created."""
    if settings_dict["ENGINE"].endswith("sqlite3"):
        return f"sqlite:///{Path(settings_dict['NAME']).resolve()}"
    user = settings_dict.get("USER") or ""
    password = f":{settings_dict['PASSWORD']}" if settings_dict.get("PASSWORD") else ""
    host = settings_dict.get("HOST") or "127.0.0.1"
    port = f":{settings_dict['PORT']}" if settings_dict.get("PORT") else ""
    return f"postgres://{user}{password}@{host}{port}/{settings_dict['NAME']}"


class WorkerProcess:
    """A `celery worker` subprocess; `log()` returns what it has written so far."""

    def __init__(self, process: subprocess.Popen, log_path: Path, weights_dir: Path):
        self.process = process
        self.log_path = log_path
        self.weights_dir = weights_dir

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def purge_queues(env: dict[str, str]) -> None:
    """Drop messages that earlier tests or sessions left on the broker's queues."""
    subprocess.run(
        [sys.executable, "-m", "celery", "-A", "leaderboard", "purge", "-f", "-Q", "default,gpu"],
        cwd=REPOSITORY, env=env, check=True, capture_output=True,
    )


def start_worker(log_path: Path, env: dict[str, str]) -> WorkerProcess:
    purge_queues(env)
    command = [
        sys.executable, "-m", "celery", "-A", "leaderboard", "worker",
        "-Q", "default,gpu", "--pool", "solo", "--loglevel", "INFO",
        "--without-gossip", "--without-mingle", "--without-heartbeat",
        "--hostname", f"test-worker-{os.getpid()}@%h",
    ]
    handle = open(log_path, "wb")
    process = subprocess.Popen(command, cwd=REPOSITORY, env=env, stdout=handle, stderr=subprocess.STDOUT)
    worker = WorkerProcess(process, log_path, Path(env["REFLADE_WEIGHTS"]))
    deadline = time.monotonic() + WORKER_READY_TIMEOUT
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the Celery worker exited with {process.returncode}:\n{worker.log()}")
        if " ready." in worker.log():
            return worker
        time.sleep(0.2)
    worker.stop()
    raise RuntimeError(f"the Celery worker was not ready after {WORKER_READY_TIMEOUT} s:\n{worker.log()}")


@pytest.fixture(scope="session")
def celery_worker_process(django_db_setup, django_db_blocker, tmp_path_factory):
    """A real worker on queues default and gpu, sharing the test database and broker.

    Session-scoped, because starting one takes seconds; it stops when the session ends.
    """
    from django.db import connection

    with django_db_blocker.unblock():
        env = dict(os.environ)
        env["DATABASE_URL"] = database_url(connection.settings_dict)
    env.setdefault("REFLADE_WEIGHTS", str(weights_dir_for_tests(tmp_path_factory)))
    os.environ.setdefault("REFLADE_WEIGHTS", env["REFLADE_WEIGHTS"])
    worker = start_worker(tmp_path_factory.mktemp("worker") / "worker.log", env)
    yield worker
    worker.stop()


def weights_dir_for_tests(tmp_path_factory) -> Path:
    """Stand-in weights for the test config, written once per session."""
    folder = tmp_path_factory.getbasetemp() / "weights"
    if not folder.is_dir() and find_spec("evaluator.commands.weights") is not None:
        subprocess.run(
            [sys.executable, "-m", "evaluator", "weights", "make-test", "--dir", str(folder),
             "--config", config_name_for_tests()],
            cwd=REPOSITORY, check=True,
        )
    return folder

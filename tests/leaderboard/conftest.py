"""Fixtures of the leaderboard tests: users, a hosted synthetic split, submission zips
and a real Celery worker process consuming the `default` and `gpu` queues.

The worker runs against the test database, so tests that use it need committed
data: `transactional_db` or `live_server`, never the rolled-back `db`.
"""

from __future__ import annotations

import os
import subprocess
import sys
from importlib.util import find_spec
from pathlib import Path

import numpy as np
import pytest
from django.core.files import File

from evaluator.split import Split as SplitPackage
from evaluator.submission import write_submission
from evaluator.synthetic import make_synthetic_split
from tests.leaderboard.workers import (  # noqa: F401  (used by other test packages)
    REPOSITORY,
    WORKER_READY_TIMEOUT,
    WorkerProcess,
    purge_queues,
    start_worker,
)

SPLIT_SAMPLES = 8
SPLIT_SIZE = 64


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

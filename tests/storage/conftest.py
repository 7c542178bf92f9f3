"""Fixtures of the object storage tests: a real S3-compatible server (moto in server
mode) on 127.0.0.1, the leaderboard's storages switched to it, and a Celery worker
process started with the S3 environment.

AWS credentials are set to test values for the whole session, so nothing here can
reach real AWS: every client is given the loopback endpoint.
"""

from __future__ import annotations

import os
import socket

import boto3
import pytest

from tests.leaderboard import conftest as leaderboard_fixtures
from tests.leaderboard.conftest import database_url, start_worker, weights_dir_for_tests

# Fixtures of the leaderboard tests that the tests here use too.
cutout_zip = leaderboard_fixtures.cutout_zip
demo_benchmark = leaderboard_fixtures.demo_benchmark
other_user = leaderboard_fixtures.other_user
synthetic_split_dir = leaderboard_fixtures.synthetic_split_dir
user = leaderboard_fixtures.user

BUCKET = "reflade-test"
GROUND_TRUTH_BUCKET = "reflade-test-ground-truth"
REGION = "us-east-1"
TEST_CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "reflade-test-key",
    "AWS_SECRET_ACCESS_KEY": "reflade-test-secret",
    "AWS_DEFAULT_REGION": REGION,
}
WORKER_FIXTURE = "s3_worker_process"


def pytest_configure(config):
    config.addinivalue_line("markers", "s3: runs against a moto S3 server on 127.0.0.1")


def pytest_collection_modifyitems(session, config, items):
    """Run the tests that need the S3 worker first, before any other worker starts.

    Every worker of a test session consumes the same broker queues. A worker started
    with local storage would take tasks of submissions stored in S3 and fail them,
    so the S3 worker runs its tests while it is the only one, then stops.
    """
    first = [item for item in items if WORKER_FIXTURE in getattr(item, "fixturenames", ())]
    if first:
        rest = [item for item in items if WORKER_FIXTURE not in getattr(item, "fixturenames", ())]
        items[:] = first + rest


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="session")
def s3_endpoint():
    """Start a moto S3 server on 127.0.0.1 with the two test buckets; return its URL."""
    from moto.server import ThreadedMotoServer

    saved = {name: os.environ.get(name) for name in TEST_CREDENTIALS}
    os.environ.update(TEST_CREDENTIALS)
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    endpoint = f"http://127.0.0.1:{port}"
    client = boto3.client("s3", endpoint_url=endpoint, region_name=REGION)
    client.create_bucket(Bucket=BUCKET)
    client.create_bucket(Bucket=GROUND_TRUTH_BUCKET)
    yield endpoint
    server.stop()
    for name, value in saved.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value


@pytest.fixture(scope="session")
def s3_environment(s3_endpoint) -> dict[str, str]:
    """The environment variables that put the leaderboard's storages on the moto server."""
    return {
        **TEST_CREDENTIALS,
        "REFLADE_S3_BUCKET": BUCKET,
        "REFLADE_S3_PRIVATE_BUCKET": GROUND_TRUTH_BUCKET,
        "REFLADE_S3_ENDPOINT_URL": s3_endpoint,
        "REFLADE_S3_REGION": REGION,
    }


@pytest.fixture
def s3_client(s3_endpoint):
    return boto3.client("s3", endpoint_url=s3_endpoint, region_name=REGION)


@pytest.fixture
def s3_storages(settings, s3_environment, s3_client):
    """Switch STORAGES to the moto buckets for one test; the `settings` fixture restores them.

    Multipart uploads the test left open are aborted afterwards, so each test finds only its own.
    """
    from leaderboard.settings import storages_from_env

    settings.STORAGES = storages_from_env(s3_environment)
    yield settings.STORAGES
    for item in s3_client.list_multipart_uploads(Bucket=BUCKET).get("Uploads", []):
        s3_client.abort_multipart_upload(Bucket=BUCKET, Key=item["Key"], UploadId=item["UploadId"])


@pytest.fixture
def s3_split(s3_storages, demo_benchmark, synthetic_split_dir):
    """The synthetic split hosted as `demo/val`, its files in the moto buckets."""
    from leaderboard.services import split_import

    return split_import(benchmark=demo_benchmark, name="val", path=synthetic_split_dir, visibility="public")


@pytest.fixture
def token(user) -> str:
    from rest_framework.authtoken.models import Token

    return Token.objects.create(user=user).key


@pytest.fixture(scope="module")
def s3_worker_process(django_db_setup, django_db_blocker, tmp_path_factory, s3_environment):
    """A real Celery worker on queues default and gpu whose storages are the moto buckets.

    Module-scoped, so it stops before tests of other modules start their own worker.
    """
    from django.db import connection

    with django_db_blocker.unblock():
        env = {**os.environ, **s3_environment, "DATABASE_URL": database_url(connection.settings_dict)}
    env.setdefault("REFLADE_WEIGHTS", str(weights_dir_for_tests(tmp_path_factory)))
    # A cache of its own. A later worker that reused this worker's ground-truth-side
    # cache (other chunk size) scored metrics that differ in the last digits from a
    # fresh computation, and the leaderboard end-to-end test compares them exactly.
    env["REFLADE_CACHE"] = str(tmp_path_factory.mktemp("s3-worker-cache"))
    worker = start_worker(tmp_path_factory.mktemp("s3-worker") / "worker.log", env)
    yield worker
    worker.stop()

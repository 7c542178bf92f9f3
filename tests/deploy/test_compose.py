"""The compose deployment: its structure, its env example, and each service's command
run here as a local process against this machine's PostgreSQL, Redis and an S3
server (moto) on loopback."""

from __future__ import annotations

import json
import os
import re
import shelve
import socket
import subprocess
import sys
import urllib.error
import urllib.request
from datetime import timedelta
from pathlib import Path

import boto3
import pytest
import redis
from processes import (
    COMPOSE_FILE,
    ENV_EXAMPLE,
    REDIS_BROKER_DB,
    REDIS_HOST,
    REDIS_RESULT_DB,
    REPOSITORY,
    ServiceProcess,
    create_database,
    drop_database,
    free_port,
    load_compose,
    production_env,
    read_env_file,
    wait_until,
)

SERVICES = {"postgres", "redis", "minio", "minio-init", "migrate", "web", "worker-gpu", "worker-cpu", "beat"}
WEB_IMAGE_SERVICES = {"migrate", "web", "worker-cpu", "beat"}
COMPOSE_REFERENCE = re.compile(r"(?<!\$)\$\{([A-Z_][A-Z0-9_]*)")
SETTINGS_VARIABLE = re.compile(r"""(?:environ\.get|env_bool|env_int)\(\s*"([A-Z_][A-Z0-9_]*)\"""")
REAPER = "leaderboard.tasks.reap_stale_evaluations"
START_TIMEOUT = 90


@pytest.fixture(scope="module")
def compose() -> dict:
    return load_compose()


def command_of(compose: dict, service: str) -> list[str]:
    return list(compose["services"][service]["command"])


# Structure ---------------------------------------------------------------------------


def test_compose_services(compose):
    assert set(compose["services"]) == SERVICES
    assert compose["services"]["postgres"]["image"] == "postgres:16"
    assert compose["services"]["redis"]["image"] == "redis:7"
    for service in WEB_IMAGE_SERVICES:
        assert compose["services"][service]["build"]["dockerfile"] == "docker/web.Dockerfile"
        assert compose["services"][service]["env_file"] == ".env"
    assert compose["services"]["worker-gpu"]["build"]["dockerfile"] == "docker/worker-gpu.Dockerfile"
    assert compose["services"]["worker-gpu"]["env_file"] == ".env"
    for service in ("migrate", "minio-init"):
        assert compose["services"][service]["restart"] == "no"


def test_compose_health_checks(compose):
    services = compose["services"]
    assert "pg_isready" in services["postgres"]["healthcheck"]["test"][1]
    assert services["redis"]["healthcheck"]["test"] == ["CMD", "redis-cli", "ping"]
    assert services["minio"]["healthcheck"]["test"] == ["CMD", "mc", "ready", "local"]
    assert "http://127.0.0.1:8000/healthz" in " ".join(services["web"]["healthcheck"]["test"])


def test_compose_start_order(compose):
    services = compose["services"]
    after_migrate = {
        "postgres": "service_healthy",
        "redis": "service_healthy",
        "minio": "service_healthy",
        "minio-init": "service_completed_successfully",
        "migrate": "service_completed_successfully",
    }
    for service in ("web", "worker-gpu", "worker-cpu", "beat"):
        conditions = {name: rule["condition"] for name, rule in services[service]["depends_on"].items()}
        assert conditions == after_migrate, service
    assert services["migrate"]["depends_on"] == {"postgres": {"condition": "service_healthy"}}
    assert services["minio-init"]["depends_on"] == {"minio": {"condition": "service_healthy"}}


def test_compose_volumes(compose):
    services = compose["services"]
    assert set(compose["volumes"]) == {"postgres-data", "redis-data", "minio-data", "weights", "cache", "static"}
    assert "postgres-data:/var/lib/postgresql/data" in services["postgres"]["volumes"]
    assert "minio-data:/data" in services["minio"]["volumes"]
    for worker in ("worker-gpu", "worker-cpu"):
        assert "weights:/weights:ro" in services[worker]["volumes"]
        assert "cache:/cache" in services[worker]["volumes"]
    assert "static:/var/lib/reflade/static" in services["migrate"]["volumes"]
    assert "static:/var/lib/reflade/static:ro" in services["web"]["volumes"]


def test_compose_worker_queues(compose):
    gpu = command_of(compose, "worker-gpu")
    assert gpu[gpu.index("-Q") + 1] == "gpu"
    assert gpu[gpu.index("--concurrency") + 1] == "1"
    assert gpu[gpu.index("--prefetch-multiplier") + 1] == "1"
    cpu = command_of(compose, "worker-cpu")
    assert cpu[cpu.index("-Q") + 1] == "default"
    device = compose["services"]["worker-gpu"]["deploy"]["resources"]["reservations"]["devices"][0]
    assert device["capabilities"] == ["gpu"]
    assert device["driver"] == "nvidia"
    assert len(device["device_ids"]) == 1


def test_env_example_covers_compose_references():
    referenced = set(COMPOSE_REFERENCE.findall(COMPOSE_FILE.read_text()))
    missing = referenced - set(read_env_file(ENV_EXAMPLE))
    assert not missing, f"docker/compose.yaml references {sorted(missing)}, which docker/.env.example lacks"


def test_env_example_covers_settings_variables():
    read = set(SETTINGS_VARIABLE.findall((REPOSITORY / "leaderboard" / "settings.py").read_text()))
    assert {"DATABASE_URL", "SECRET_KEY", "REFLADE_S3_BUCKET"} <= read
    missing = read - set(read_env_file(ENV_EXAMPLE))
    assert not missing, f"leaderboard/settings.py reads {sorted(missing)}, which docker/.env.example lacks"


def test_env_example_database_url_matches_postgres():
    env = read_env_file(ENV_EXAMPLE)
    expected = f"postgres://{env['POSTGRES_USER']}:{env['POSTGRES_PASSWORD']}@postgres:5432/{env['POSTGRES_DB']}"
    assert env["DATABASE_URL"] == expected


# Service commands run here -------------------------------------------------------------


@pytest.fixture(scope="module")
def deployment(tmp_path_factory, compose):
    """A fresh database, flushed Redis databases and an S3 bucket; the migrate command already run."""
    root = tmp_path_factory.mktemp("deploy")
    brokers = [redis.Redis.from_url(f"redis://{REDIS_HOST}/{db}") for db in (REDIS_BROKER_DB, REDIS_RESULT_DB)]
    for client in brokers:
        client.flushdb()
    database = create_database()
    s3_port = free_port()
    moto_server = str(Path(sys.executable).parent / "moto_server")
    s3 = ServiceProcess("s3", [moto_server, "-H", "127.0.0.1", "-p", str(s3_port)], dict(os.environ), root, entrypoint=False)
    try:
        env = production_env(database=database, data_dir=root / "data", s3_endpoint=f"http://127.0.0.1:{s3_port}")
        bucket = boto3.client(
            "s3",
            endpoint_url=env["REFLADE_S3_ENDPOINT_URL"],
            region_name="us-east-1",
            aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"],
        )
        wait_until(lambda: port_open(s3_port), START_TIMEOUT, "the S3 server listening", s3)
        bucket.create_bucket(Bucket=env["REFLADE_S3_BUCKET"])

        migrate = ServiceProcess("migrate", command_of(compose, "migrate"), env, root)
        try:
            migrate_status = migrate.wait(START_TIMEOUT)
        finally:
            migrate.stop()
        yield {"env": env, "root": root, "database": database, "migrate": (migrate_status, migrate.log())}
    finally:
        s3.stop()
        drop_database(database)
        for client in brokers:
            client.flushdb()


def port_open(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=2):
            return True
    except OSError:
        return False


def fetch(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


@pytest.mark.postgres
@pytest.mark.redis
def test_migrate_command(deployment):
    status, log = deployment["migrate"]
    assert status == 0, log
    assert "Applying leaderboard.0001" in log
    assert (deployment["root"] / "data" / "static" / "admin" / "css" / "base.css.gz").is_file()


@pytest.mark.postgres
@pytest.mark.redis
def test_web_command_serves_site(deployment, compose):
    port = free_port()
    command = [f"127.0.0.1:{port}" if part == "0.0.0.0:8000" else part for part in command_of(compose, "web")]
    assert command != command_of(compose, "web"), "the web command no longer binds 0.0.0.0:8000"
    web = ServiceProcess("web", command, deployment["env"], deployment["root"])
    try:
        wait_until(lambda: fetch_ok(port), START_TIMEOUT, "gunicorn answering", web)
        status, body = fetch(f"http://127.0.0.1:{port}/healthz")
        assert status == 200, body
        assert json.loads(body) == {
            "status": "ok",
            "checks": {"database": {"status": "ok"}, "broker": {"status": "ok"}, "storage": {"status": "ok"}},
        }
        status, body = fetch(f"http://127.0.0.1:{port}/")
        assert status == 200, body[:500]
        assert b"<html" in body.lower()
        status, _ = fetch(f"http://127.0.0.1:{port}/static/admin/css/base.css")
        assert status == 200
    finally:
        web.stop()


def fetch_ok(port: int) -> bool:
    try:
        return fetch(f"http://127.0.0.1:{port}/healthz")[0] in (200, 503)
    except OSError:
        return False


@pytest.mark.postgres
@pytest.mark.redis
def test_gpu_worker_consumes_chunk_task(deployment, compose):
    env = deployment["env"]
    worker = ServiceProcess("worker-gpu", command_of(compose, "worker-gpu"), env, deployment["root"])
    try:
        wait_until(lambda: "ready." in worker.log(), START_TIMEOUT, "the gpu worker ready", worker)
        assert ".> gpu " in worker.log()
        assert ".> default " not in worker.log()
        # A chunk of an evaluation that does not exist: routed by the settings to `gpu`,
        # it fails without scoring, so the test stays fast.
        client = (
            "import django; django.setup()\n"
            "from leaderboard.tasks import score_chunk_task\n"
            "result = score_chunk_task.delay(987654321, 0)\n"
            "result.get(timeout=60)\n"
            "print(result.id, result.state)\n"
        )
        output = subprocess.run([sys.executable, "-c", client], env=env, cwd=REPOSITORY,
                                capture_output=True, text=True, timeout=120)
        assert output.returncode == 0, output.stderr + worker.log()
        task_id, state = output.stdout.split()
        assert state == "SUCCESS"
        assert f"Task leaderboard.tasks.score_chunk_task[{task_id}] received" in worker.log()
        assert f"Task leaderboard.tasks.score_chunk_task[{task_id}] succeeded" in worker.log()
    finally:
        worker.stop()


@pytest.mark.postgres
@pytest.mark.redis
def test_beat_schedules_reaper(deployment, compose, tmp_path):
    command = command_of(compose, "beat")
    schedule = tmp_path / "celerybeat-schedule"
    command[command.index("--schedule") + 1] = str(schedule)
    # At DEBUG, beat logs its first wake-up, which comes after the schedule file is written.
    command[command.index("--loglevel") + 1] = "DEBUG"
    env = deployment["env"]

    # 1. A first start writes the schedule file with the reaper's entry.
    beat = ServiceProcess("beat-first", command, env, tmp_path)
    try:
        wait_until(lambda: "beat: Waking up" in beat.log(), START_TIMEOUT, "beat scheduling", beat)
    finally:
        beat.stop()
    with shelve.open(str(schedule)) as stored:
        entries = stored["entries"]
        assert entries["reap-stale-evaluations"].task == REAPER
        assert entries["reap-stale-evaluations"].schedule.run_every == timedelta(seconds=60)

        # 2. With its last run moved two minutes back, the next start finds the reaper due.
        entry = entries["reap-stale-evaluations"]
        entry.last_run_at = entry.last_run_at - timedelta(minutes=2)
        stored["entries"] = entries

    broker = redis.Redis.from_url(env["CELERY_BROKER_URL"])
    broker.delete("default")
    beat = ServiceProcess("beat-second", command, env, tmp_path)
    try:
        # Beat logs "Sending due task" before the message reaches Redis, so stopping it
        # at the log line alone can lose the message; wait for the queue too.
        wait_until(lambda: f"Sending due task reap-stale-evaluations ({REAPER})" in beat.log()
                   and broker.llen("default") > 0,
                   START_TIMEOUT, "beat sending the reaper", beat)
    finally:
        beat.stop()
    messages = [json.loads(raw) for raw in broker.lrange("default", 0, -1)]
    assert [message["headers"]["task"] for message in messages] == [REAPER]

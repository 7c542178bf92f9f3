"""Helpers of the deployment tests: the compose file, its env example, a fresh
PostgreSQL database, and service commands run as local processes on loopback."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import psycopg
import yaml

REPOSITORY = Path(__file__).resolve().parents[2]
DOCKER = REPOSITORY / "docker"
COMPOSE_FILE = DOCKER / "compose.yaml"
ENV_EXAMPLE = DOCKER / ".env.example"
ENTRYPOINT = DOCKER / "entrypoint.sh"
POSTGRES_ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
REDIS_HOST = "127.0.0.1:6379"
# Redis database numbers of these tests only; they are flushed before and after.
REDIS_BROKER_DB = 11
REDIS_RESULT_DB = 12


def load_compose() -> dict:
    return yaml.safe_load(COMPOSE_FILE.read_text())


def read_env_file(path: Path) -> dict[str, str]:
    """Parse `NAME=value` lines as compose does for env_file; comments and blanks are skipped."""
    values = {}
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        name, separator, value = line.partition("=")
        if not separator:
            raise ValueError(f"{path}:{number}: {line!r} is not NAME=value")
        values[name.strip()] = value
    return values


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def create_database() -> str:
    """Create an empty PostgreSQL database for one test module and return its name."""
    name = f"reflade_deploy_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(POSTGRES_ADMIN_URL, autocommit=True) as connection:
        connection.execute(f'CREATE DATABASE "{name}"')
    return name


def drop_database(name: str) -> None:
    with psycopg.connect(POSTGRES_ADMIN_URL, autocommit=True) as connection:
        connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def production_env(*, database: str, data_dir: Path, s3_endpoint: str) -> dict[str, str]:
    """The env example's variables, pointed at this machine's servers instead of the compose hosts."""
    env = {**os.environ, **read_env_file(ENV_EXAMPLE)}
    env.update(
        {
            "DATABASE_URL": f"postgres://postgres@127.0.0.1:5432/{database}",
            "CELERY_BROKER_URL": f"redis://{REDIS_HOST}/{REDIS_BROKER_DB}",
            "CELERY_RESULT_BACKEND": f"redis://{REDIS_HOST}/{REDIS_RESULT_DB}",
            "REFLADE_S3_ENDPOINT_URL": s3_endpoint,
            "REFLADE_S3_REGION": "us-east-1",
            "REFLADE_DATA_DIR": str(data_dir),
            "REFLADE_WEIGHTS": str(data_dir / "weights"),
            "REFLADE_CACHE": str(data_dir / "cache"),
            "SECRET_KEY": "deploy-test-" + "k" * 50,
            "ALLOWED_HOSTS": "127.0.0.1",
            # The test speaks plain HTTP to gunicorn, with no TLS proxy in front.
            "SECURE_SSL_REDIRECT": "0",
            "DJANGO_SETTINGS_MODULE": "leaderboard.settings",
            "HF_HUB_OFFLINE": "1",
            "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
        }
    )
    env.pop("PYTHONPATH", None)
    return env


class ServiceProcess:
    """A command run as a service would run it (through the images' entrypoint by default), logging to a file."""

    def __init__(self, name: str, command: list[str], env: dict[str, str], log_dir: Path, entrypoint: bool = True):
        self.name = name
        self.log_path = log_dir / f"{name}.log"
        self.log_file = open(self.log_path, "wb")
        self.process = subprocess.Popen(
            ["sh", str(ENTRYPOINT), *command] if entrypoint else command,
            cwd=REPOSITORY,
            env=env,
            stdout=self.log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait(self, timeout: float) -> int:
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"{self.name} still running after {timeout} s; log:\n{self.log()}") from None

    def stop(self, timeout: float = 20) -> None:
        """Send SIGTERM to the process group, then SIGKILL after `timeout` seconds."""
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        self.log_file.close()


def wait_until(condition: Callable[[], object], timeout: float, event: str, process: ServiceProcess) -> object:
    """Poll `condition` until it returns a true value; fail with the process log on timeout or exit."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        if process.process.poll() is not None:
            raise AssertionError(f"{process.name} exited with {process.process.returncode} before {event}; log:\n{process.log()}")
        time.sleep(0.3)
    raise AssertionError(f"{event} did not happen within {timeout} s; {process.name} log:\n{process.log()}")

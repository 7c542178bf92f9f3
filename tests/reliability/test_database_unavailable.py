"""While the database is unreachable the site responds 503 with a clear message, and
it recovers without a restart once the database is back.

The database is made unreachable for real: the connection is closed and pointed at
a SQLite file in a folder that does not exist, so the driver raises
`OperationalError` on connect, as it does while PostgreSQL restarts. The restart of
a real PostgreSQL server is the drill in `benchmarks/fault_drills.py`.
"""

from __future__ import annotations

import contextlib

import pytest
from django.db import connection
from django.test import Client
from rest_framework.test import APIClient

from leaderboard.middleware import DATABASE_UNAVAILABLE_MESSAGE

MIDDLEWARE = "leaderboard.middleware.DatabaseUnavailableMiddleware"
ENVELOPE = {"error": {"code": "database_unavailable", "message": DATABASE_UNAVAILABLE_MESSAGE, "details": {}}}


@pytest.fixture
def with_middleware(settings):
    middleware = list(settings.MIDDLEWARE)
    if MIDDLEWARE not in middleware:
        middleware.insert(1, MIDDLEWARE)
    settings.MIDDLEWARE = middleware


@contextlib.contextmanager
def database_unreachable(tmp_path):
    name = connection.settings_dict["NAME"]
    connection.close()
    connection.settings_dict["NAME"] = str(tmp_path / "missing-folder" / "db.sqlite3")
    try:
        yield
    finally:
        connection.close()
        connection.settings_dict["NAME"] = name


pytestmark = pytest.mark.skipif(connection.vendor != "sqlite", reason="points the SQLite connection at a missing file")


@pytest.mark.django_db(transaction=True)
def test_page_answers_503_then_recovers(with_middleware, demo_split, tmp_path):
    client = Client()

    with database_unreachable(tmp_path):
        down = client.get("/benchmarks/demo/val/")
    back = client.get("/benchmarks/demo/val/")

    assert down.status_code == 503
    assert down["Retry-After"] == "60"
    assert DATABASE_UNAVAILABLE_MESSAGE in down.content.decode()
    assert back.status_code == 200


@pytest.mark.django_db(transaction=True)
def test_logged_in_page_answers_503(with_middleware, user, tmp_path):
    client = Client()
    client.force_login(user)

    with database_unreachable(tmp_path):
        down = client.get("/submissions/")

    assert down.status_code == 503
    assert DATABASE_UNAVAILABLE_MESSAGE in down.content.decode()
    assert client.get("/submissions/").status_code == 200


@pytest.mark.django_db(transaction=True)
def test_healthz_reports_database_down(demo_split, tmp_path):
    with database_unreachable(tmp_path):
        down = Client().get("/healthz")

    assert down.status_code == 503
    assert down.json()["checks"]["database"]["status"] == "down"
    assert down.json()["checks"]["database"]["error"] == "OperationalError: unable to open database file"


@pytest.mark.django_db(transaction=True)
def test_api_answers_503_envelope_then_recovers(with_middleware, demo_split, tmp_path):
    api = APIClient()

    with database_unreachable(tmp_path):
        down = api.get(f"/api/v1/splits/{demo_split.pk}/leaderboard/")
    back = api.get(f"/api/v1/splits/{demo_split.pk}/leaderboard/")

    assert (down.status_code, down.json()) == (503, ENVELOPE)
    assert back.status_code == 200

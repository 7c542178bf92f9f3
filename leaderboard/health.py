"""`/healthz`: whether the database, the broker and the storages answer."""

from __future__ import annotations

import logging

from django.db import connection
from django.http import JsonResponse
from django.views.decorators.cache import never_cache

from leaderboard.storage import private_storage, public_storage

logger = logging.getLogger(__name__)


def check_database() -> None:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")


def check_broker() -> None:
    from leaderboard.celery import app

    with app.connection_for_write() as conn:
        conn.ensure_connection(max_retries=1, timeout=3)


def check_storage() -> None:
    for storage in (public_storage(), private_storage()):
        storage.exists("healthz-probe")


CHECKS = {"database": check_database, "broker": check_broker, "storage": check_storage}


@never_cache
def healthz(request):
    """Return each component's status as JSON, with status 503 when any is down."""
    report: dict[str, dict[str, str]] = {}
    for name, check in CHECKS.items():
        try:
            check()
        except Exception as error:  # any failure means the component is down
            logger.warning("health check %s failed: %s", name, error)
            report[name] = {"status": "down", "error": f"{type(error).__name__}: {error}"}
        else:
            report[name] = {"status": "ok"}
    healthy = all(item["status"] == "ok" for item in report.values())
    return JsonResponse({"status": "ok" if healthy else "down", "checks": report}, status=200 if healthy else 503)

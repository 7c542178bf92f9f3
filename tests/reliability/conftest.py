"""Fixtures of the reliability tests: the leaderboard fixtures (users, the hosted demo
split, submission zips, the real Celery worker) and a token API client."""

from __future__ import annotations

import pytest
from django.core.cache import cache
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from tests.leaderboard.conftest import (  # noqa: F401  (fixtures)
    celery_worker_process,
    cutout_zip,
    demo_benchmark,
    demo_split,
    invalid_zip,
    other_user,
    staff_user,
    synthetic_split_dir,
    user,
)


@pytest.fixture(autouse=True)
def clear_throttle_counters():
    cache.clear()
    yield
    cache.clear()


def token_client(account) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.get_or_create(user=account)[0].key}")
    return client

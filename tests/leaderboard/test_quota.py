"""Quota under concurrency: twenty simultaneous uploads against a limit of five.

Each thread has its own database connection, so the check-then-insert race is
real. Run on the configured database; the PostgreSQL variant needs
DATABASE_URL=postgres://... and is skipped otherwise.
"""

import re
import threading
from datetime import UTC, timedelta

import pytest
from django.db import connection, connections

from leaderboard import services
from leaderboard.models import Evaluation, Submission
from tests.leaderboard.conftest import upload

UPLOADS = 20
LIMIT = 5


def upload_concurrently(user, split, path) -> tuple[list, list]:
    barrier = threading.Barrier(UPLOADS)
    created, rejected, unexpected = [], [], []

    def run() -> None:
        try:
            barrier.wait()
            created.append(services.submission_create(
                user=user, split=split, uploaded_file=upload(path), method_name="race"
            ))
        except services.QuotaExceeded as error:
            rejected.append(error)
        except Exception as error:  # reported by the assert below
            unexpected.append(error)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=run) for _ in range(UPLOADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert unexpected == []
    return created, rejected


def check_twenty_uploads_five_slots(user, split, path) -> None:
    split.benchmark.quota_limit = LIMIT
    split.benchmark.save()

    created, rejected = upload_concurrently(user, split, path)

    assert len(created) == LIMIT
    assert len(rejected) == UPLOADS - LIMIT
    assert Submission.objects.filter(owner=user).count() == LIMIT
    oldest = Evaluation.objects.order_by("created_at").first().created_at
    opens = oldest + timedelta(hours=24)
    expected = (
        f"Quota reached: you have made 5 of 5 submissions to demo/val in the last 24 hours. "
        f"The next slot opens at {opens.astimezone(UTC):%Y-%m-%d %H:%M} UTC."
    )
    # A worker may validate some of the first uploads while the rest are refused, so the
    # count of uploads still being validated varies between refusals.
    validating = re.compile(
        r"( [1-5] (of them is|of them are) still being validated; each one found invalid gives its slot "
        r"back, so try again once validation ends\.)?"
    )
    for error in rejected:
        message = str(error)
        assert message.startswith(expected)
        assert validating.fullmatch(message[len(expected):])
    assert {error.next_slot_at for error in rejected} == {opens}


@pytest.mark.django_db(transaction=True)
def test_concurrent_uploads_respect_quota(demo_split, user, cutout_zip):
    check_twenty_uploads_five_slots(user, demo_split, cutout_zip)


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_concurrent_uploads_respect_quota_postgres(demo_split, user, cutout_zip):
    if connection.vendor != "postgresql":
        pytest.skip("needs DATABASE_URL=postgres://postgres@127.0.0.1:5432/reflade")
    check_twenty_uploads_five_slots(user, demo_split, cutout_zip)

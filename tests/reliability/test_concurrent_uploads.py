"""Fifty uploads from one user at the same time, through HTTP, against a quota of 5.

The requests go to a live server (one thread per request) from 50 client threads
released together. Exactly 5 are accepted. Every other one gets status 429 and
the error envelope with the time the next slot opens. The test runs on the database
that DATABASE_URL names: SQLite by default, PostgreSQL when it points there.
"""

from __future__ import annotations

import re
import threading
from datetime import UTC, datetime

import pytest
import requests
from django.core.servers.basehttp import ThreadedWSGIServer
from django.test.testcases import LiveServerThread
from rest_framework.authtoken.models import Token

from leaderboard.models import Evaluation, Submission

UPLOADS = 50
QUOTA = 5
NEXT_SLOT = re.compile(r"The next slot opens at (\d{4}-\d\d-\d\d \d\d:\d\d) UTC\.")


class BackloggedServer(ThreadedWSGIServer):
    """Django's threaded test server with a listen backlog for 50 simultaneous connects.

    The default backlog of 10 resets the surplus connections, which a production
    server (gunicorn: 2048) does not.
    """

    request_queue_size = 128


class BackloggedServerThread(LiveServerThread):
    server_class = BackloggedServer


@pytest.fixture
def server_url(transactional_db):
    thread = BackloggedServerThread("127.0.0.1", lambda handler: handler)
    thread.daemon = True
    thread.start()
    thread.is_ready.wait()
    if thread.error:
        raise thread.error
    yield f"http://127.0.0.1:{thread.port}"
    thread.terminate()


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_fifty_concurrent_uploads_get_five_slots(server_url, settings, user, demo_split, cutout_zip):
    settings.REFLADE_API_THROTTLE_RATES = {"submissions": None, "user": None}
    assert demo_split.benchmark.quota_limit == QUOTA
    token = Token.objects.create(user=user).key
    content = cutout_zip.read_bytes()
    barrier = threading.Barrier(UPLOADS)
    responses: list[requests.Response] = []
    started = datetime.now(UTC)

    def post(index: int) -> None:
        barrier.wait()
        response = requests.post(
            f"{server_url}/api/v1/submissions/",
            headers={"Authorization": f"Token {token}"},
            data={"split": demo_split.pk, "method_name": f"burst {index}"},
            files={"file": ("cutout.zip", content, "application/zip")},
            timeout=120,
        )
        responses.append(response)

    threads = [threading.Thread(target=post, args=(index,)) for index in range(UPLOADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    statuses = sorted(response.status_code for response in responses)
    assert statuses == [201] * QUOTA + [429] * (UPLOADS - QUOTA)
    assert Submission.objects.filter(owner=user).count() == QUOTA
    assert Evaluation.objects.filter(submission__owner=user, counts_for_quota=True).count() == QUOTA
    for response in responses:
        if response.status_code != 429:
            continue
        error = response.json()["error"]
        assert error["code"] == "quota_exceeded"
        assert error["message"].startswith(f"Quota reached: you have made {QUOTA} of {QUOTA} submissions to demo/val")
        next_slot = NEXT_SLOT.search(error["message"])
        assert next_slot, error["message"]
        # The next slot opens when the oldest of the 5 accepted uploads leaves the 24-hour window.
        opens = datetime.fromisoformat(error["details"]["next_slot_at"].replace("Z", "+00:00"))
        assert 23.9 * 3600 < (opens - started).total_seconds() < 24.1 * 3600
        assert next_slot.group(1) == opens.strftime("%Y-%m-%d %H:%M")
        assert int(response.headers["Retry-After"]) > 23.9 * 3600

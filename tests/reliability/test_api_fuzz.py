"""Schemathesis against the OpenAPI schema of a live server: no request gives a 5xx.

Every operation of `/api/v1/schema/` gets a bounded number of generated requests,
authenticated with a token of a user who owns a finished submission, so that the
identifiers in the paths sometimes name real objects.
"""

from __future__ import annotations

import pytest
import schemathesis
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from rest_framework.authtoken.models import Token

from tests.leaderboard.conftest import upload

EXAMPLES_PER_OPERATION = 25


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_no_generated_request_gives_server_error(live_server, settings, user, demo_split, cutout_zip):
    from leaderboard import services

    settings.REFLADE_API_THROTTLE_RATES = {"anon": None, "user": None, "submissions": None}
    services.submission_create(user=user, split=demo_split, uploaded_file=upload(cutout_zip), method_name="seed")
    headers = {"Authorization": f"Token {Token.objects.create(user=user).key}"}
    schema = schemathesis.openapi.from_url(f"{live_server.url}/api/v1/schema/")
    schema.config.base_url = live_server.url
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 8
    failures, statuses = [], []

    for operation in operations:
        seen = fuzz_operation(operation, headers, failures)
        assert seen, operation.label
        statuses += seen
    assert failures == []
    assert len(statuses) >= 5 * len(operations)


def fuzz_operation(operation, headers: dict, failures: list) -> list[int]:
    """Send the generated requests of one operation; record every 5xx in `failures`."""
    seen: list[int] = []

    @given(case=operation.as_strategy())
    @FUZZING
    def call(case):
        response = case.call(headers=headers, timeout=30)
        seen.append(response.status_code)
        if response.status_code >= 500:
            failures.append((operation.label, case.path_parameters, case.query, response.status_code,
                             response.text[:300]))

    call()
    return seen


FUZZING = hypothesis_settings(
    max_examples=EXAMPLES_PER_OPERATION, deadline=None, database=None,
    suppress_health_check=list(HealthCheck),
)

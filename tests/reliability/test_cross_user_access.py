"""No user reaches another user's private submission, its evaluation or its per-sample
results through any URL, and no URL serves ground truth with the ids of a private entry.

Every URL pattern outside the admin is requested, by GET and by POST, with the ids
of bob's private finished entry, as anonymous, as alice and with alice's token.
tests/leaderboard/test_permissions.py checks the same walk with a public entry's ids.
"""

from __future__ import annotations

import re

import pytest
from django.test import Client
from django.urls import URLResolver, get_resolver
from django.urls.resolvers import RoutePattern

from tests.leaderboard.leaderboard_entries import finish_entry
from tests.reliability.conftest import token_client

# Statuses that reveal nothing: a login redirect, not authenticated, not found, wrong method.
HIDDEN = {302, 401, 403, 404, 405}


@pytest.fixture
def private_entry(demo_split, other_user, cutout_zip, tmp_path):
    return finish_entry(user=other_user, split=demo_split, zip_path=cutout_zip, method_name="Secret method",
                        quality=0.9, tmp_path=tmp_path, is_public=False)


def routes_with_ids(values: dict[str, str]) -> list[str]:
    """Concrete paths of the URL patterns that take an id, filling each parameter from `values`."""
    paths = []

    def walk(resolver, prefix: str):
        for entry in resolver.url_patterns:
            if not isinstance(entry.pattern, RoutePattern):
                continue
            route = str(entry.pattern)
            if isinstance(entry, URLResolver):
                if not route.startswith("admin/"):
                    walk(entry, prefix + route)
                continue
            names = re.findall(r"<(?:\w+:)?(\w+)>", route)
            if not {"submission_id", "evaluation_id"} & set(names):
                continue
            for name in names:
                route = re.sub(rf"<(?:\w+:)?{name}>", values.get(name, "1"), route)
            paths.append("/" + prefix + route)

    walk(get_resolver(), "")
    return paths


def body_of(response) -> bytes:
    if getattr(response, "streaming", False):
        return b"".join(response.streaming_content)
    return response.content


@pytest.mark.django_db
def test_private_entry_reachable_by_owner_only(user, other_user, private_entry, synthetic_split_dir):
    evaluation = private_entry.evaluations.get()
    paths = routes_with_ids({"submission_id": str(private_entry.pk), "evaluation_id": str(evaluation.pk)})
    assert len(paths) >= 5
    secrets = [b"Secret method", private_entry.sha256.encode(), private_entry.file.name.encode()]
    layers = [path.read_bytes() for path in sorted((synthetic_split_dir / "gt" / "layers").glob("*.png"))]
    alice_page = Client()
    alice_page.force_login(user)
    visitors = [("anonymous", Client()), ("alice", alice_page), ("alice token", token_client(user))]

    for name, client in visitors:
        for path in paths:
            for method in ("get", "post"):
                response = getattr(client, method)(path)
                body = body_of(response)
                assert response.status_code in HIDDEN, (name, method, path, response.status_code)
                assert not any(secret in body for secret in secrets), (name, method, path)
                assert not any(layer in body for layer in layers), (name, method, path)

    evaluation.refresh_from_db()
    assert evaluation.state == "finished"  # no POST cancelled or changed it
    owner = Client()
    owner.force_login(other_user)
    assert owner.get(f"/submissions/{private_entry.pk}/").status_code == 200

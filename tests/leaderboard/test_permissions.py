"""Who may see and do what: private entries, anonymous visitors, ground truth,
tokens, CSRF and rate limits."""

from __future__ import annotations

import io
import re
import tarfile

import pytest
from django.core.cache import cache
from django.test import Client
from django.urls import URLResolver, get_resolver
from django.urls.resolvers import RoutePattern
from leaderboard_entries import finish_entry
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

API = "/api/v1"
NOT_AUTHENTICATED = {"error": {"code": "not_authenticated",
                               "message": "Authentication credentials were not provided.", "details": {}}}


@pytest.fixture(autouse=True)
def clear_throttle_counters():
    cache.clear()
    yield
    cache.clear()


@pytest.fixture
def public_entry(demo_split, other_user, cutout_zip, tmp_path):
    return finish_entry(user=other_user, split=demo_split, zip_path=cutout_zip, method_name="Public",
                        quality=0.5, tmp_path=tmp_path)


@pytest.fixture
def private_entry(demo_split, other_user, cutout_zip, tmp_path):
    """A finished private entry of bob; alice must not see it anywhere."""
    return finish_entry(user=other_user, split=demo_split, zip_path=cutout_zip, method_name="Secret",
                        quality=0.9, tmp_path=tmp_path, is_public=False)


def logged_in(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def token_client(user) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.get_or_create(user=user)[0].key}")
    return client


# Another user's private submission -------------------------------------------------------------


def test_private_submission_hidden_on_pages(user, private_entry):
    client = logged_in(user)

    assert client.get(f"/submissions/{private_entry.pk}/").status_code == 404
    assert client.get(f"/submissions/{private_entry.pk}/status.json").status_code == 404
    assert client.post(f"/submissions/{private_entry.pk}/cancel/").status_code == 404
    listed = client.get("/submissions/status.json", {"ids": str(private_entry.pk)}).json()
    assert listed == {"submissions": []}
    assert "Secret" not in client.get("/benchmarks/demo/val/").content.decode()


def test_private_submission_hidden_in_api(user, private_entry, demo_split):
    client = token_client(user)
    evaluation = private_entry.evaluations.get()
    expected = {"error": {"code": "not_found", "message": f"No submission {private_entry.pk}.", "details": {}}}

    assert client.get(f"{API}/submissions/{private_entry.pk}/").json() == expected
    assert client.get(f"{API}/submissions/{private_entry.pk}/").status_code == 404
    assert client.post(f"{API}/submissions/{private_entry.pk}/cancel/").json() == expected
    samples = client.get(f"{API}/evaluations/{evaluation.pk}/samples/")
    assert samples.status_code == 404
    assert samples.json()["error"]["message"] == f"No evaluation {evaluation.pk}."
    rows = client.get(f"{API}/splits/{demo_split.pk}/leaderboard/").json()
    assert "Secret" not in [row["method_name"] for row in rows]


def test_private_submission_visible_to_owner(other_user, private_entry):
    assert logged_in(other_user).get(f"/submissions/{private_entry.pk}/").status_code == 200
    assert token_client(other_user).get(f"{API}/submissions/{private_entry.pk}/").status_code == 200


def test_public_submission_not_cancellable_by_others(user, public_entry):
    data = token_client(user).get(f"{API}/submissions/{public_entry.pk}/").json()

    assert data["status"]["cancellable"] is False
    assert data["evaluation"]["validation_problems"] == []


# Anonymous visitors ----------------------------------------------------------------------------


def test_anonymous_reads_public_leaderboard(client, public_entry, demo_split):
    api = APIClient()

    assert client.get("/").status_code == 200
    assert client.get("/benchmarks/demo/val/").status_code == 200
    assert client.get(f"/submissions/{public_entry.pk}/").status_code == 200
    assert api.get(f"{API}/splits/{demo_split.pk}/leaderboard/").status_code == 200
    assert api.get(f"{API}/benchmarks/").status_code == 200


@pytest.mark.parametrize("path", ["/submit/", "/submissions/", "/accounts/token/", "/submissions/status.json"])
def test_anonymous_redirected_to_login(client, db, path):
    response = client.get(path)

    assert response.status_code == 302
    assert response["Location"] == f"/accounts/login/?next={path}"


def test_anonymous_api_writes_rejected(demo_split, cutout_zip, public_entry):
    api = APIClient()

    with open(cutout_zip, "rb") as handle:
        created = api.post(f"{API}/submissions/", {"split": demo_split.pk, "file": handle, "method_name": "x"},
                           format="multipart")
    listed = api.get(f"{API}/submissions/")
    cancelled = api.post(f"{API}/submissions/{public_entry.pk}/cancel/")

    for response in (created, listed, cancelled):
        assert response.status_code == 401
        assert response.json() == NOT_AUTHENTICATED
        assert response["WWW-Authenticate"] == "Token"


# Ground truth is never served --------------------------------------------------------------------


def url_values(demo_split, entry) -> dict[str, str]:
    evaluation = entry.evaluations.get()
    return {"slug": "demo", "split_name": "val", "split_id": str(demo_split.pk),
            "submission_id": str(entry.pk), "evaluation_id": str(evaluation.pk), "upload_id": "1"}


def fill_route(pattern, values: dict[str, str], ground_truth_key: str) -> str:
    """A concrete path for one pattern; a regex route probes the ground-truth key itself."""
    if isinstance(pattern, RoutePattern):
        route = str(pattern)
        for name in re.findall(r"<(?:\w+:)?(\w+)>", route):
            route = re.sub(rf"<(?:\w+:)?{name}>", values[name], route)
        return route
    return ground_truth_key


def site_paths(values: dict[str, str], ground_truth_key: str) -> list[str]:
    """One concrete path per URL pattern outside the admin, walking included URLconfs."""
    paths = []

    def walk(resolver, prefix):
        for entry in resolver.url_patterns:
            part = fill_route(entry.pattern, values, ground_truth_key)
            if isinstance(entry, URLResolver):
                if str(entry.pattern).startswith("admin/"):
                    continue
                walk(entry, prefix + part)
            else:
                paths.append("/" + prefix + part)

    walk(get_resolver(), "")
    return paths


def response_bytes(response) -> bytes:
    if getattr(response, "streaming", False):
        return b"".join(response.streaming_content)
    return response.content


def test_no_url_serves_ground_truth(user, other_user, staff_user, public_entry, demo_split, synthetic_split_dir):
    key = demo_split.ground_truth_location
    layer_files = sorted((synthetic_split_dir / "gt" / "layers").glob("*.png"))
    layers = [path.read_bytes() for path in layer_files]
    assert key and layers
    paths = site_paths(url_values(demo_split, public_entry), key)
    paths += [f"{API}/{key}", f"/media/{key}", f"/{key}", f"/static/../private/{key}"]
    assert len(paths) > 15

    clients = [("anonymous", Client()), ("alice", logged_in(user)), ("bob", logged_in(other_user)),
               ("staff", logged_in(staff_user)), ("token", token_client(user))]
    for name, client in clients:
        for path in paths:
            for query in ({}, {"format": "csv"}, {"format": "parquet"}):
                # An error message may quote the requested path; only the rest counts.
                body = response_bytes(client.get(path, query)).replace(path.encode(), b"")
                assert key.encode() not in body, (name, path, query)
                assert not any(layer in body for layer in layers), (name, path, query)


def test_public_inputs_hold_no_ground_truth(client, demo_split):
    body = response_bytes(client.get("/benchmarks/demo/val/inputs.tar"))

    with tarfile.open(fileobj=io.BytesIO(body)) as archive:
        names = archive.getnames()
    assert names
    assert not [name for name in names if "/gt/" in f"/{name}" or name.startswith("gt")]


# Tokens and CSRF -------------------------------------------------------------------------------


def test_revoked_token_stops_working(user):
    page = logged_in(user)
    page.post("/accounts/token/", {"action": "create"})
    key = Token.objects.get(user=user).key
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Token {key}")
    assert api.get(f"{API}/submissions/").status_code == 200

    page.post("/accounts/token/", {"action": "revoke"})
    response = api.get(f"{API}/submissions/")

    assert response.status_code == 401
    assert response.json() == {"error": {"code": "authentication_failed", "message": "Invalid token.",
                                         "details": {}}}


@pytest.mark.parametrize("path", ["/submit/", "/accounts/token/", "/accounts/logout/"])
def test_forms_require_csrf(user, path):
    client = Client(enforce_csrf_checks=True)
    client.force_login(user)

    assert client.post(path, {"action": "create"}).status_code == 403


def test_session_api_write_requires_csrf(user, public_entry):
    api = APIClient(enforce_csrf_checks=True)
    api.login(username="alice", password="alice-password-1")

    response = api.post(f"{API}/submissions/{public_entry.pk}/cancel/")

    assert response.status_code == 403
    assert response.json() == {"error": {"code": "permission_denied",
                                         "message": "CSRF Failed: CSRF cookie not set.", "details": {}}}


# Rate limits ------------------------------------------------------------------------------------


def test_anonymous_rate_limit(settings, db):
    settings.REFLADE_API_THROTTLE_RATES = {"anon": "2/min"}
    api = APIClient()

    statuses = [api.get(f"{API}/benchmarks/").status_code for _ in range(3)]
    response = api.get(f"{API}/benchmarks/")

    assert statuses == [200, 200, 429]
    assert response.status_code == 429
    assert response["Retry-After"] == "60"
    assert response.json() == {"error": {"code": "throttled",
                                         "message": "Rate limit reached: at most 2 requests per minute. "
                                                    "Try again in 60 seconds.",
                                         "details": {"retry_after": 60}}}


def test_submission_rate_limit(settings, user, demo_split, cutout_zip):
    settings.REFLADE_API_THROTTLE_RATES = {"submissions": "1/hour"}
    api = token_client(user)

    responses = []
    for _ in range(2):
        with open(cutout_zip, "rb") as handle:
            responses.append(api.post(f"{API}/submissions/", {"split": demo_split.pk, "file": handle,
                                                              "method_name": "burst"}, format="multipart"))

    assert [response.status_code for response in responses] == [201, 429]
    assert responses[1].json()["error"]["details"] == {"retry_after": 3600}
    assert responses[1].json()["error"]["message"] == (
        "Rate limit reached: at most 1 upload per hour. Try again in 3600 seconds."
    )
    # Reading is limited by the general user rate only.
    assert api.get(f"{API}/submissions/").status_code == 200

"""REST API: benchmarks, splits, leaderboard (JSON and CSV), submissions, per-sample
results, the OpenAPI schema, and the error envelope of every kind of error."""

from __future__ import annotations

import csv
import io
from datetime import timedelta

import pandas as pd
import pytest
from django.utils import timezone
from leaderboard_entries import finish_entry
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from leaderboard.api.errors import SERVER_ERROR_MESSAGE, VALIDATION_MESSAGE
from leaderboard.models import Submission

API = "/api/v1"


@pytest.fixture
def api():
    return APIClient()


@pytest.fixture
def token_api(user):
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.create(user=user).key}")
    return client


@pytest.fixture
def entries(demo_split, user, other_user, staff_user, cutout_zip, tmp_path):
    strong = finish_entry(user=staff_user, split=demo_split, zip_path=cutout_zip, method_name="Strong",
                          quality=0.8, tmp_path=tmp_path, weights_verified=True, is_baseline=True)
    middle = finish_entry(user=user, split=demo_split, zip_path=cutout_zip, method_name="Middle",
                          quality=0.5, tmp_path=tmp_path)
    weak = finish_entry(user=other_user, split=demo_split, zip_path=cutout_zip, method_name="Weak",
                        quality=0.2, tmp_path=tmp_path)
    return {"strong": strong, "middle": middle, "weak": weak}


def create(client, split, path, **fields):
    with open(path, "rb") as handle:
        return client.post(f"{API}/submissions/", {"split": split.pk, "file": handle, "method_name": "API entry",
                                                   **fields}, format="multipart")


# Benchmarks and splits ---------------------------------------------------------------------


def test_benchmark_list_and_detail(api, demo_split):
    listed = api.get(f"{API}/benchmarks/").json()
    detail = api.get(f"{API}/benchmarks/demo/").json()

    assert [benchmark["slug"] for benchmark in listed] == ["demo"]
    assert detail["name"] == "Demo"
    assert detail["quota_limit"] == 5
    assert detail["splits"] == [{"id": demo_split.pk, "name": "val",
                                 "url": f"http://testserver{API}/splits/{demo_split.pk}/"}]


def test_split_detail_fields(api, demo_split):
    data = api.get(f"{API}/splits/{demo_split.pk}/").json()

    assert data["sample_count"] == 8
    assert data["benchmark"] == "demo"
    assert data["visibility"] == "public"
    assert data["public_package_url"] == "http://testserver/benchmarks/demo/val/inputs.tar"
    assert data["leaderboard_url"] == f"http://testserver{API}/splits/{demo_split.pk}/leaderboard/"
    assert "ground_truth_location" not in data


def test_split_list_filters_by_benchmark(api, demo_split):
    assert [split["id"] for split in api.get(f"{API}/splits/", {"benchmark": "demo"}).json()] == [demo_split.pk]
    assert api.get(f"{API}/splits/", {"benchmark": "other"}).json() == []


# Leaderboard -------------------------------------------------------------------------------


def leaderboard(api, split, **params):
    return api.get(f"{API}/splits/{split.pk}/leaderboard/", params)


def test_leaderboard_default_order(api, entries, demo_split):
    rows = leaderboard(api, demo_split).json()

    assert [row["method_name"] for row in rows] == ["Strong", "Middle", "Weak"]
    assert [row["rank"] for row in rows] == [1, 2, 3]
    assert rows[0]["is_baseline"] is True
    assert rows[0]["weights_verified"] is True
    assert rows[1]["weights_verified"] is False
    assert rows[0]["submission"] == entries["strong"].pk
    assert rows[0]["pass_rate_calibrated"] is False
    lo, hi = rows[0]["intervals"]["hpa"]
    assert lo <= rows[0]["metrics"]["hpa"] <= hi


@pytest.mark.parametrize(("ordering", "best_first"), [
    ("-hpa", True), ("hpa", False), ("fid_foreground", True), ("-fid_foreground", False),
    ("lpips_vis_background", True), ("-dir_foreground", True), ("-miou", True), ("-pass_rate@1", True),
])
def test_leaderboard_ordering_directions(api, entries, demo_split, ordering, best_first):
    rows = leaderboard(api, demo_split, ordering=ordering).json()

    key = ordering.lstrip("-")
    values = [row["metrics"][key] for row in rows]
    assert values == sorted(values, reverse=ordering.startswith("-"))
    expected = ["Strong", "Middle", "Weak"] if best_first else ["Weak", "Middle", "Strong"]
    if len(set(values)) == len(values):
        assert [row["method_name"] for row in rows] == expected


def test_leaderboard_unknown_ordering(api, entries, demo_split):
    response = leaderboard(api, demo_split, ordering="-ground_truth")

    assert response.status_code == 400
    assert response.json() == {"error": {"code": "invalid", "message": VALIDATION_MESSAGE, "details": {"fields": {
        "ordering": ["Unknown metric 'ground_truth' to order by; use a key of an entry's metrics, such as hpa, "
                     "fid_foreground or pass_rate@1, with - for descending."]}}}}


def test_leaderboard_csv(api, entries, demo_split):
    response = leaderboard(api, demo_split, format="csv")

    assert response.status_code == 200
    assert response["Content-Type"] == "text/csv; charset=utf-8"
    assert response["Content-Disposition"] == 'attachment; filename="demo-val-leaderboard.csv"'
    rows = list(csv.DictReader(io.StringIO(response.content.decode())))
    assert [row["method_name"] for row in rows] == ["Strong", "Middle", "Weak"]
    assert [row["rank"] for row in rows] == ["1", "2", "3"]
    header = response.content.decode().splitlines()[0].split(",")
    assert header[:8] == ["rank", "method_name", "owner", "is_baseline", "weights_verified", "submission",
                          "evaluation", "created_at"]
    assert header[8:11] == ["hpa", "hpa_lo", "hpa_hi"]
    assert float(rows[0]["hpa_lo"]) <= float(rows[0]["hpa"]) <= float(rows[0]["hpa_hi"])


def test_leaderboard_unknown_format(api, entries, demo_split):
    response = leaderboard(api, demo_split, format="xml")

    assert response.status_code == 404
    assert response.json() == {"error": {"code": "not_found", "details": {},
                                         "message": "Unknown format 'xml'; this endpoint offers csv, json."}}


def test_leaderboard_csv_by_accept(api, entries, demo_split):
    response = api.get(f"{API}/splits/{demo_split.pk}/leaderboard/", {"ordering": "-fid_foreground"},
                       HTTP_ACCEPT="text/csv")

    assert response["Content-Type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(response.content.decode())))
    assert [row["method_name"] for row in rows] == ["Weak", "Middle", "Strong"]


def test_leaderboard_of_missing_split(api, db):
    response = api.get(f"{API}/splits/999/leaderboard/")

    assert response.status_code == 404
    assert response.json() == {"error": {"code": "not_found", "message": "No split 999.", "details": {}}}


# Submissions -------------------------------------------------------------------------------


def test_create_submission_with_token(token_api, user, demo_split, cutout_zip):
    response = create(token_api, demo_split, cutout_zip, description="cut-out", is_public="false",
                      code_url="https://example.org/code")

    assert response.status_code == 201
    data = response.json()
    submission = Submission.objects.get(pk=data["id"])
    assert submission.owner == user
    assert submission.is_public is False
    assert response["Location"] == f"http://testserver{API}/submissions/{submission.pk}/"
    assert data["status"]["state"] == "uploaded"
    assert data["status"]["cancellable"] is True
    assert data["evaluation"]["state"] == "uploaded"
    assert data["size_bytes"] == cutout_zip.stat().st_size
    assert "file" not in data


def test_list_own_submissions(token_api, user, entries):
    data = token_api.get(f"{API}/submissions/").json()

    assert data["count"] == 1
    assert [item["method_name"] for item in data["results"]] == ["Middle"]


def test_retrieve_finished_submission(token_api, entries):
    data = token_api.get(f"{API}/submissions/{entries['middle'].pk}/").json()

    assert data["status"]["state"] == "finished"
    assert data["status"]["progress"] == 1.0
    evaluation = data["evaluation"]
    assert evaluation["metrics"]["hpa"]["value"] > 0
    assert "foreground/prompt_type/box" in evaluation["metrics"]["groups"]
    assert evaluation["weights_verified"] is False


def test_cancel_submission(token_api, demo_split, cutout_zip):
    submission_id = create(token_api, demo_split, cutout_zip).json()["id"]

    response = token_api.post(f"{API}/submissions/{submission_id}/cancel/")
    again = token_api.post(f"{API}/submissions/{submission_id}/cancel/")

    assert response.status_code == 200
    assert response.json()["status"]["state"] == "cancelled"
    assert again.status_code == 409
    assert again.json() == {"error": {"code": "invalid_state",
                                      "message": "The evaluation cannot be cancelled because it is cancelled.",
                                      "details": {}}}


def test_create_validation_error(token_api, demo_split):
    response = token_api.post(f"{API}/submissions/", {"split": demo_split.pk, "method_name": ""}, format="multipart")

    assert response.status_code == 400
    assert response.json() == {"error": {"code": "invalid", "message": VALIDATION_MESSAGE, "details": {"fields": {
        "file": ["No file was submitted."], "method_name": ["This field may not be blank."]}}}}


def test_create_unknown_split(token_api, demo_split, cutout_zip):
    with open(cutout_zip, "rb") as handle:
        response = token_api.post(f"{API}/submissions/", {"split": 999, "file": handle, "method_name": "x"},
                                  format="multipart")

    assert response.status_code == 400
    assert response.json()["error"]["details"]["fields"] == {"split": ['Invalid pk "999" - object does not exist.']}


def test_create_quota_exceeded(token_api, demo_split, cutout_zip):
    demo_split.benchmark.quota_limit = 1
    demo_split.benchmark.save()
    before = timezone.now()

    assert create(token_api, demo_split, cutout_zip).status_code == 201
    response = create(token_api, demo_split, cutout_zip)

    assert response.status_code == 429
    error = response.json()["error"]
    assert error["code"] == "quota_exceeded"
    assert error["message"].startswith(
        "Quota reached: you have made 1 of 1 submission to demo/val in the last 24 hours. The next slot opens at ")
    next_slot = timezone.datetime.fromisoformat(error["details"]["next_slot_at"])
    assert error["details"]["next_slot_at"].endswith("Z")
    assert abs(next_slot - (before + timedelta(hours=24))) < timedelta(seconds=30)
    assert 24 * 3600 - 60 <= int(response["Retry-After"]) <= 24 * 3600


def test_create_closed_split(token_api, demo_split, cutout_zip):
    demo_split.is_active = False
    demo_split.save()

    response = create(token_api, demo_split, cutout_zip)

    assert response.status_code == 409
    assert response.json() == {"error": {"code": "split_closed",
                                         "message": "The split demo/val does not accept submissions any more.",
                                         "details": {}}}


def test_create_too_large(token_api, demo_split, cutout_zip, settings):
    settings.REFLADE_UPLOAD_MAX_BYTES = 1000

    response = create(token_api, demo_split, cutout_zip)

    assert response.status_code == 413
    assert response.json()["error"]["code"] == "upload_too_large"
    assert response.json()["error"]["message"].endswith(
        "more than the limit of 1000 bytes; remove extra files from the zip or store the PNGs with less metadata.")


# Per-sample results ------------------------------------------------------------------------


def test_samples_paginated(api, entries):
    evaluation = entries["middle"].evaluations.get()

    first = api.get(f"{API}/evaluations/{evaluation.pk}/samples/", {"page_size": 10}).json()
    second = api.get(first["next"]).json()

    assert first["count"] == 24
    assert len(first["results"]) == 10
    assert first["previous"] is None
    assert set(first["results"][0]) >= {"sample_id", "candidate", "lpips_vis", "dir", "iou"}
    assert second["previous"].endswith("page=1&page_size=10")
    assert first["results"][0] != second["results"][0]


def test_samples_csv_and_parquet(api, entries):
    evaluation = entries["middle"].evaluations.get()
    url = f"{API}/evaluations/{evaluation.pk}/samples/"

    as_csv = api.get(url, {"format": "csv"})
    as_parquet = api.get(url, {"format": "parquet"})

    table = pd.read_csv(io.StringIO(as_csv.content.decode()))
    assert len(table) == 24
    assert as_csv["Content-Disposition"] == f'attachment; filename="evaluation-{evaluation.pk}-samples.csv"'
    assert as_parquet["Content-Type"] == "application/vnd.apache.parquet"
    frame = pd.read_parquet(io.BytesIO(as_parquet.content))
    assert list(frame["sample_id"]) == list(table["sample_id"])


def test_samples_of_hidden_split(api, entries, demo_split):
    demo_split.visibility = "hidden"
    demo_split.save()
    evaluation = entries["middle"].evaluations.get()

    response = api.get(f"{API}/evaluations/{evaluation.pk}/samples/")

    assert response.status_code == 404
    assert response.json() == {"error": {"code": "not_found",
                                         "message": "Per-sample results of split demo/val are not published.",
                                         "details": {}}}


def test_samples_bad_page(api, entries):
    evaluation = entries["middle"].evaluations.get()

    response = api.get(f"{API}/evaluations/{evaluation.pk}/samples/", {"page": "0"})

    assert response.status_code == 400
    assert response.json()["error"]["details"]["fields"] == {"page": ["page='0' is not a positive whole number."]}


# Schema, docs and unknown paths --------------------------------------------------------------


def test_schema_and_docs(api, db):
    schema = api.get(f"{API}/schema/", HTTP_ACCEPT="application/json")
    docs = api.get(f"{API}/docs/")

    assert schema.status_code == 200
    paths = schema.json()["paths"]
    for path in ("/api/v1/splits/{split_id}/leaderboard/", "/api/v1/submissions/",
                 "/api/v1/submissions/{submission_id}/cancel/", "/api/v1/evaluations/{evaluation_id}/samples/"):
        assert path in paths
    html = docs.content.decode()
    assert docs.status_code == 200
    assert "/static/drf_spectacular_sidecar/swagger-ui-dist/swagger-ui-bundle.js" in html
    assert "cdn" not in html.lower()


def test_unknown_endpoint(api, db):
    response = api.get(f"{API}/nothing/here/")

    assert response.status_code == 404
    assert response.json() == {"error": {"code": "not_found", "message":
                                         "No API endpoint at /api/v1/nothing/here/; see /api/v1/docs/ for the endpoints.",
                                         "details": {}}}


def test_wrong_method(token_api, db):
    response = token_api.delete(f"{API}/benchmarks/")

    assert response.status_code == 405
    assert response.json() == {"error": {"code": "method_not_allowed", "message": 'Method "DELETE" not allowed.',
                                         "details": {}}}


def test_cancel_of_others_public_submission(token_api, entries):
    response = token_api.post(f"{API}/submissions/{entries['weak'].pk}/cancel/")

    assert response.status_code == 403
    assert response.json() == {"error": {"code": "permission_denied",
                                         "message": "Only the owner of a submission can cancel its evaluation.",
                                         "details": {}}}


def test_unexpected_error_envelope(api, db, monkeypatch):
    def broken(**kwargs):
        raise RuntimeError("database on fire")

    monkeypatch.setattr("leaderboard.selectors.benchmark_list", broken)

    response = api.get(f"{API}/benchmarks/")

    assert response.status_code == 500
    assert response.json() == {"error": {"code": "server_error", "message": SERVER_ERROR_MESSAGE, "details": {}}}
    assert "database on fire" not in response.content.decode()

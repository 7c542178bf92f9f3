"""Downloads in S3 mode: permission-checked views redirect to short-lived presigned
URLs, the embedded mode streams, and no view hands out ground truth."""

from __future__ import annotations

import calendar
import io
import time
import urllib.request
from urllib.parse import parse_qs, urlsplit

import pandas as pd
import pytest
from django.core.files.base import ContentFile
from django.test import Client
from django.utils import timezone
from rest_framework.test import APIClient

from leaderboard import services
from leaderboard.models import Evaluation
from leaderboard.storage import private_storage
from tests.storage.conftest import BUCKET

pytestmark = pytest.mark.s3


def fetch(url: str) -> tuple[bytes, dict]:
    with urllib.request.urlopen(url, timeout=30) as reply:
        return reply.read(), dict(reply.headers)


def query(url: str) -> dict[str, str]:
    return {key: values[0] for key, values in parse_qs(urlsplit(url).query).items()}


def logged_in(user) -> APIClient:
    client = APIClient()
    client.force_authenticate(user)
    return client


@pytest.fixture
def s3_submission(s3_split, user):
    upload = ContentFile(b"PK\x05\x06" + bytes(18), name="predictions.zip")
    return services.submission_create(user=user, split=s3_split, uploaded_file=upload, method_name="stored in s3")


def test_public_inputs_redirect_to_presigned_url(s3_split, s3_endpoint):
    started = time.time()
    response = Client().get("/benchmarks/demo/val/inputs.tar")

    location = response["Location"]
    body, headers = fetch(location)
    signed = query(location)
    assert response.status_code == 302
    assert response["Cache-Control"] == "private, no-store"
    assert location.startswith(f"{s3_endpoint}/{BUCKET}/public/splits/demo/")
    assert signed["X-Amz-Expires"] == "300"
    signed_at = calendar.timegm(time.strptime(signed["X-Amz-Date"], "%Y%m%dT%H%M%SZ"))
    assert abs(signed_at - started) < 60
    assert body == s3_split.public_package.open("rb").read()
    assert headers["Content-Disposition"] == f'attachment; filename="{s3_split.public_package.name.rsplit("/", 1)[1]}"'


def test_url_expiry_read_per_request(settings, s3_split):
    settings.REFLADE_S3_URL_EXPIRY = 2

    location = Client().get("/benchmarks/demo/val/inputs.tar")["Location"]

    # NOTE: moto 5.2 does not enforce X-Amz-Expires, so the test checks the signed
    # expiry. Amazon S3 rejects
    # a presigned URL with 403 once it has expired.
    assert query(location)["X-Amz-Expires"] == "2"


def test_submission_file_redirect_for_owner(s3_submission, user):
    response = logged_in(user).get(f"/api/v1/submissions/{s3_submission.pk}/file/")

    body, headers = fetch(response["Location"])
    assert response.status_code == 302
    assert body == b"PK\x05\x06" + bytes(18)
    assert headers["Content-Disposition"] == f'attachment; filename="submission-{s3_submission.pk}.zip"'


def test_submission_file_hidden_from_others(s3_submission, other_user):
    other = logged_in(other_user).get(f"/api/v1/submissions/{s3_submission.pk}/file/")
    anonymous = APIClient().get(f"/api/v1/submissions/{s3_submission.pk}/file/")

    assert other.status_code == 404
    assert other.json()["error"]["message"] == f"No submission {s3_submission.pk}."
    assert anonymous.status_code == 401


def test_samples_file_redirect_for_owner(s3_submission, user, other_user):
    frame = pd.DataFrame({"sample_id": ["a", "b"], "hpa": [0.25, 0.75]})
    buffer = io.BytesIO()
    frame.to_parquet(buffer)
    evaluation = Evaluation.objects.get(submission=s3_submission)
    name = private_storage().save(f"samples/evaluation-{evaluation.pk}/samples.parquet", ContentFile(buffer.getvalue()))
    Evaluation.objects.filter(pk=evaluation.pk).update(state="finished", samples_file=name, finished_at=timezone.now())

    response = logged_in(user).get(f"/api/v1/evaluations/{evaluation.pk}/samples/file/")
    other = logged_in(other_user).get(f"/api/v1/evaluations/{evaluation.pk}/samples/file/")

    body, _ = fetch(response["Location"])
    assert response.status_code == 302
    pd.testing.assert_frame_equal(pd.read_parquet(io.BytesIO(body)), frame)
    assert other.status_code == 404


def test_ground_truth_never_in_responses(s3_split, s3_submission, user, staff_user):
    location = s3_split.ground_truth_location
    paths = ["/benchmarks/demo/val/", "/api/v1/splits/", f"/api/v1/splits/{s3_split.pk}/",
             f"/api/v1/submissions/{s3_submission.pk}/", "/benchmarks/demo/val/inputs.tar",
             f"/api/v1/submissions/{s3_submission.pk}/file/"]

    for client in (Client(), logged_in(user), logged_in(staff_user)):
        for path in paths:
            response = client.get(path)
            text = response.content.decode(errors="replace") + response.get("Location", "")
            assert location not in text, path
            assert "ground-truth" not in response.get("Location", ""), path


def test_embedded_mode_streams_submission(demo_split_local, user):
    upload = ContentFile(b"local zip bytes", name="predictions.zip")
    submission = services.submission_create(user=user, split=demo_split_local, uploaded_file=upload,
                                            method_name="local")

    response = logged_in(user).get(f"/api/v1/submissions/{submission.pk}/file/")

    assert response.status_code == 200
    assert b"".join(response.streaming_content) == b"local zip bytes"


@pytest.fixture
def staff_user(django_user_model):
    return django_user_model.objects.create_user("carol", "carol@example.org", "carol-password-1", is_staff=True)


@pytest.fixture
def demo_split_local(demo_benchmark, synthetic_split_dir):
    from leaderboard.services import split_import

    return split_import(benchmark=demo_benchmark, name="val", path=synthetic_split_dir, visibility="public")


def test_submit_page_names_upload_client(s3_split, user):
    client = Client()
    client.force_login(user)

    html = client.get("/submit/").content.decode()

    assert 'id="multipart-hint"' in html
    assert "python -m leaderboard.upload_client --api http://testserver/api/v1" in html


def test_submit_page_without_s3_has_no_hint(demo_split_local, user):
    client = Client()
    client.force_login(user)

    html = client.get("/submit/").content.decode()

    assert 'id="multipart-hint"' not in html

"""Presigned multipart uploads against the moto S3 server: the whole path, resume
after an interrupted part, checksum and permission checks, quota and aborts."""

from __future__ import annotations

import hashlib
from datetime import timedelta
from pathlib import Path

import numpy as np
import pytest
from django.utils import timezone
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from leaderboard.models import Evaluation, Submission, Upload
from leaderboard.upload_client import UploadClient, UploadError, file_sha256, upload_large
from tests.leaderboard.workers import other_workers_stopped
from tests.storage.conftest import BUCKET

pytestmark = pytest.mark.s3

PART_SIZE = 5 << 20  # S3's minimum part size
FILE_SIZE = 11 << 20  # three parts: 5 MiB, 5 MiB and 1 MiB


@pytest.fixture(scope="module")
def large_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("uploads") / "predictions.zip"
    path.write_bytes(np.random.default_rng(7).bytes(FILE_SIZE))
    return path


def api_client(user) -> APIClient:
    client = APIClient()
    if user is not None:
        client.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.get_or_create(user=user)[0].key}")
    return client


def start_upload(client: APIClient, split, path: Path, sha256: str | None = None):
    return client.post("/api/v1/uploads/", {
        "split": split.pk, "filename": path.name, "size": path.stat().st_size,
        "sha256": sha256 or file_sha256(path), "part_size": PART_SIZE,
    }, format="json")


def open_multipart_uploads(s3_client) -> list[str]:
    return [item["UploadId"] for item in s3_client.list_multipart_uploads(Bucket=BUCKET).get("Uploads", [])]


# The client against a live server ----------------------------------------------------------


@pytest.fixture
def other_workers_paused():
    """Stop the session's test workers for one test. They consume the same queues but
    read local storage, so one could take this test's validation and move the new
    evaluation past `uploaded`."""
    with other_workers_stopped():
        yield


def test_three_part_upload_end_to_end(live_server, s3_split, user, token, large_file, s3_client,
                                      other_workers_paused):
    result = upload_large(f"{live_server.url}/api/v1", token, s3_split.pk, large_file, PART_SIZE,
                          method_name="three parts")

    submission = Submission.objects.get(pk=result.submission["id"])
    upload = Upload.objects.get(pk=result.upload_id)
    stored = s3_client.get_object(Bucket=BUCKET, Key=submission.file.name)["Body"].read()
    assert result.uploaded_parts == [1, 2, 3]
    assert upload.part_count == 3
    assert upload.state == "completed"
    assert upload.submission_id == submission.pk
    assert submission.sha256 == hashlib.sha256(large_file.read_bytes()).hexdigest()
    assert submission.size_bytes == FILE_SIZE
    assert submission.method_name == "three parts"
    assert stored == large_file.read_bytes()
    assert Evaluation.objects.get(submission=submission).state == "uploaded"
    assert open_multipart_uploads(s3_client) == []
    # A retried completion, as after a lost reply, returns the same submission.
    again = UploadClient(f"{live_server.url}/api/v1", token).complete(result.upload_id, method_name="retry")
    assert again["id"] == submission.pk
    assert Submission.objects.count() == 1


def test_resume_uploads_only_missing_part(live_server, s3_split, user, token, large_file):
    client = UploadClient(f"{live_server.url}/api/v1", token)
    upload = client.create(split_id=s3_split.pk, path=large_file, sha256=file_sha256(large_file),
                           part_size=PART_SIZE)
    for number, url in client.part_urls(upload["id"], [1, 3]).items():
        client.put_part(url, large_file, upload, number)
    # The client "crashes" here; a new run lists the stored parts and sends only part 2.
    listed = client.status(upload["id"])["parts"]

    result = upload_large(f"{live_server.url}/api/v1", token, s3_split.pk, large_file,
                          upload_id=upload["id"], method_name="resumed")

    assert [(part["part_number"], part["size"]) for part in listed] == [(1, PART_SIZE), (3, 1 << 20)]
    assert result.uploaded_parts == [2]
    submission = Submission.objects.get(pk=result.submission["id"])
    assert submission.sha256 == file_sha256(large_file)
    assert submission.file.read() == large_file.read_bytes()


def test_checksum_mismatch_rejected(live_server, s3_split, user, token, large_file, s3_client):
    declared = hashlib.sha256(b"some other file").hexdigest()
    actual = file_sha256(large_file)
    client = UploadClient(f"{live_server.url}/api/v1", token)
    upload = client.create(split_id=s3_split.pk, path=large_file, sha256=declared, part_size=PART_SIZE)
    for number, url in client.part_urls(upload["id"], [1, 2, 3]).items():
        client.put_part(url, large_file, upload, number)

    with pytest.raises(UploadError) as raised:
        client.complete(upload["id"], method_name="corrupted")

    assert raised.value.status == 400
    assert raised.value.body["error"]["code"] == "checksum_mismatch"
    assert raised.value.body["error"]["message"] == (
        f"The uploaded file's SHA-256 is {actual}, but the upload declared {declared}; "
        "the file changed or was corrupted during the upload. Start a new upload."
    )
    assert Submission.objects.count() == 0
    assert Upload.objects.get(pk=upload["id"]).state == "aborted"
    key = Upload.objects.get(pk=upload["id"]).key
    assert "Contents" not in s3_client.list_objects_v2(Bucket=BUCKET, Prefix=key)


# The API directly --------------------------------------------------------------------------


def test_complete_with_missing_part_rejected(s3_split, user, large_file):
    client = api_client(user)
    upload = start_upload(client, s3_split, large_file).json()

    response = client.post(f"/api/v1/uploads/{upload['id']}/complete/", {"method_name": "m"}, format="json")

    assert response.status_code == 400
    assert response.json()["error"] == {
        "code": "upload_incomplete",
        "message": f"Upload {upload['id']} is missing 3 of 3 parts (1, 2, 3); upload them, then complete again.",
        "details": {},
    }
    assert Upload.objects.get(pk=upload["id"]).state == "open"


def test_create_returns_part_plan(s3_split, user, large_file, s3_client):
    response = start_upload(api_client(user), s3_split, large_file)

    body = response.json()
    assert response.status_code == 201
    assert body["part_size"] == PART_SIZE
    assert body["part_count"] == 3
    assert body["state"] == "open"
    assert "key" not in body
    assert "upload_id" not in body
    assert response["Location"].endswith(f"/api/v1/uploads/{body['id']}/")
    assert open_multipart_uploads(s3_client) == [Upload.objects.get(pk=body["id"]).upload_id]


def test_part_urls_outside_plan_rejected(s3_split, user, large_file):
    client = api_client(user)
    upload = start_upload(client, s3_split, large_file).json()

    response = client.post(f"/api/v1/uploads/{upload['id']}/parts/", {"part_numbers": [0, 2, 4]}, format="json")

    assert response.status_code == 400
    assert response.json()["error"]["message"] == (
        f"Part numbers [0, 4] are outside 1..3, the parts of upload {upload['id']}."
    )


def test_other_users_upload_not_found(s3_split, user, other_user, large_file):
    upload = start_upload(api_client(user), s3_split, large_file).json()
    intruder = api_client(other_user)
    base = f"/api/v1/uploads/{upload['id']}/"

    responses = [
        intruder.get(base),
        intruder.post(f"{base}parts/", {"part_numbers": [1]}, format="json"),
        intruder.post(f"{base}complete/", {"method_name": "stolen"}, format="json"),
        intruder.delete(base),
    ]

    assert [response.status_code for response in responses] == [404, 404, 404, 404]
    assert responses[0].json()["error"]["message"] == f"No upload {upload['id']}."
    assert Upload.objects.get(pk=upload["id"]).state == "open"


def test_anonymous_requests_unauthorized(s3_split, user, large_file):
    upload = start_upload(api_client(user), s3_split, large_file).json()
    anonymous = api_client(None)

    responses = [
        start_upload(anonymous, s3_split, large_file),
        anonymous.get(f"/api/v1/uploads/{upload['id']}/"),
        anonymous.post(f"/api/v1/uploads/{upload['id']}/complete/", {"method_name": "m"}, format="json"),
    ]

    assert [response.status_code for response in responses] == [401, 401, 401]
    assert responses[0].json()["error"]["code"] == "not_authenticated"


def test_quota_enforced_at_create(s3_split, user, large_file, s3_client):
    from leaderboard.models import Benchmark

    Benchmark.objects.filter(pk=s3_split.benchmark_id).update(quota_limit=0)

    response = start_upload(api_client(user), s3_split, large_file)

    assert response.status_code == 429
    assert response.json()["error"]["code"] == "quota_exceeded"
    assert response.json()["error"]["message"] == "Submissions to demo/val are limited to 0 per 24 hours."
    assert Upload.objects.count() == 0
    assert open_multipart_uploads(s3_client) == []


def test_size_limit_enforced_at_create(settings, s3_split, user, large_file):
    settings.REFLADE_UPLOAD_MAX_BYTES = 10 << 20

    response = start_upload(api_client(user), s3_split, large_file)

    assert response.status_code == 413
    assert response.json()["error"]["message"] == (
        "The upload is 11.0 MiB, more than the limit of 10.0 MiB; "
        "remove extra files from the zip or store the PNGs with less metadata."
    )


def test_abort_frees_parts(s3_split, user, large_file, s3_client):
    client = api_client(user)
    upload = start_upload(client, s3_split, large_file).json()

    response = client.delete(f"/api/v1/uploads/{upload['id']}/")
    again = client.delete(f"/api/v1/uploads/{upload['id']}/")

    assert response.status_code == 200
    assert response.json()["state"] == "aborted"
    assert open_multipart_uploads(s3_client) == []
    assert again.status_code == 409
    assert again.json()["error"]["message"] == f"Upload {upload['id']} is aborted; start a new upload."


def test_stale_uploads_aborted_by_beat_task(settings, s3_split, user, large_file, s3_client):
    from leaderboard.tasks import abort_stale_uploads

    client = api_client(user)
    stale = start_upload(client, s3_split, large_file).json()
    fresh = start_upload(client, s3_split, large_file).json()
    Upload.objects.filter(pk=stale["id"]).update(expires_at=timezone.now() - timedelta(minutes=1))

    aborted = abort_stale_uploads()

    assert aborted == 1
    assert Upload.objects.get(pk=stale["id"]).state == "aborted"
    assert Upload.objects.get(pk=fresh["id"]).state == "open"
    assert open_multipart_uploads(s3_client) == [Upload.objects.get(pk=fresh["id"]).upload_id]
    assert settings.CELERY_BEAT_SCHEDULE["abort-stale-uploads"]["task"] == "leaderboard.tasks.abort_stale_uploads"


def test_embedded_mode_has_no_multipart(demo_split_local, user, large_file):
    response = start_upload(api_client(user), demo_split_local, large_file)

    assert response.status_code == 409
    assert response.json()["error"]["message"] == (
        "Multipart uploads need S3 storage, and this server stores files locally; "
        "upload the zip with POST /api/v1/submissions/ instead."
    )


@pytest.fixture
def demo_split_local(demo_benchmark, synthetic_split_dir):
    from leaderboard.services import split_import

    return split_import(benchmark=demo_benchmark, name="val", path=synthetic_split_dir, visibility="public")

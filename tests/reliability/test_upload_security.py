"""Uploads through the API: the size limit holds on the server, and the name a client
gives its file never becomes a path.

The multipart bodies are written by hand, because Django's test client strips
folders from file names before sending them; a hostile client does not.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from leaderboard.models import Evaluation, Submission
from tests.reliability.conftest import token_client

API = "/api/v1"
BOUNDARY = "reflade-test-boundary"
STORED_KEY = re.compile(r"^submissions/split-\d+/[0-9a-f]{32}\.zip$")
# The serverless broker and result store of the embedded mode appear with the first task sent.
EMBEDDED_BROKER_FILES = {f"{name}.sqlite3{suffix}" for name in ("broker", "results") for suffix in ("", "-wal", "-shm")}
HOSTILE_NAMES = [
    "../../etc/reflade-x.zip",
    "../../../../../../tmp/reflade-escape.zip",
    "/tmp/reflade-absolute.zip",
    "a/b.zip",
    "..\\..\\windows\\reflade.zip",
    "nul\x00byte.zip",
    "%2e%2e%2freflade-encoded.zip",
    ("long" * 100) + ".zip",
    "reflade\r\nX-Injected: 1.zip",
]


def multipart(fields: dict[str, str], filename: str, content: bytes) -> bytes:
    parts = [f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'.encode()
             for name, value in fields.items()]
    parts.append(f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="file"; filename="{filename}"\r\n'
                 "Content-Type: application/zip\r\n\r\n".encode("utf-8", "surrogateescape") + content + b"\r\n")
    return b"".join(parts) + f"--{BOUNDARY}--\r\n".encode()


def post_named(api, split, filename: str, content: bytes):
    body = multipart({"split": str(split.pk), "method_name": "named"}, filename, content)
    return api.post(f"{API}/submissions/", data=body, content_type=f"multipart/form-data; boundary={BOUNDARY}")


def files_under(folder: Path) -> set[Path]:
    """Files under `folder`, leaving out the SQLite journals that come and go with
    any write to the embedded database, broker and result store."""
    return {
        Path(root, name)
        for root, _, names in os.walk(folder)
        for name in names
        if not name.endswith(("-journal", "-wal", "-shm"))
    }


@pytest.mark.django_db(transaction=True)
def test_client_file_names_never_become_paths(user, demo_split, cutout_zip, settings):
    settings.REFLADE_API_THROTTLE_RATES = {"submissions": None}
    settings.REFLADE_QUOTA_LIMIT = 100
    demo_split.benchmark.__class__.objects.filter(pk=demo_split.benchmark.pk).update(quota_limit=100)
    api = token_client(user)
    data_dir = Path(settings.DATA_DIR)
    before = files_under(data_dir)
    content = cutout_zip.read_bytes()

    responses = {name: post_named(api, demo_split, name, content) for name in HOSTILE_NAMES}
    statuses = {name: response.status_code for name, response in responses.items()}

    assert set(statuses.values()) <= {201, 400}, statuses
    # The name shown back to the owner is the last component, printable, at most 255 characters.
    names_shown = {name: response.json()["original_name"] for name, response in responses.items()
                   if response.status_code == 201}
    assert names_shown["../../etc/reflade-x.zip"] == "reflade-x.zip"
    assert names_shown["..\\..\\windows\\reflade.zip"] == "reflade.zip"
    assert names_shown["a/b.zip"] == "b.zip"
    for value in names_shown.values():
        assert len(value) <= 255, value
        assert value.isprintable(), value
        assert not {"/", "\\"} & set(value), value
    assert statuses["../../etc/reflade-x.zip"] == 201
    assert statuses["a/b.zip"] == 201
    stored = list(Submission.objects.values_list("file", flat=True))
    assert len(stored) == list(statuses.values()).count(201)
    assert all(STORED_KEY.match(key) for key in stored), stored
    new_files = {path.relative_to(data_dir).as_posix() for path in files_under(data_dir) - before}
    assert {path for path in new_files if path.startswith("private/")} == {f"private/{key}" for key in stored}
    assert {path for path in new_files if not path.startswith("private/")} <= EMBEDDED_BROKER_FILES
    for escaped in ("/etc/reflade-x.zip", "/tmp/reflade-escape.zip", "/tmp/reflade-absolute.zip",
                    str(data_dir.parent / "etc" / "reflade-x.zip")):
        assert not Path(escaped).exists(), escaped


@pytest.mark.django_db(transaction=True)
def test_upload_over_limit_leaves_nothing(user, demo_split, cutout_zip, settings):
    settings.REFLADE_UPLOAD_MAX_BYTES = 1000
    api = token_client(user)
    before = files_under(Path(settings.DATA_DIR))

    with open(cutout_zip, "rb") as handle:
        response = api.post(f"{API}/submissions/", {"split": demo_split.pk, "file": handle, "method_name": "big"},
                            format="multipart")

    assert response.status_code == 413
    assert response.json()["error"]["code"] == "upload_too_large"
    assert response.json()["error"]["message"].startswith(
        f"The upload is {cutout_zip.stat().st_size / 1024:.1f} KiB, more than the limit of 1000 bytes")
    assert Submission.objects.count() == 0
    assert Evaluation.objects.count() == 0
    assert files_under(Path(settings.DATA_DIR)) - before == set()

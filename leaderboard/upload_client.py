"""A client for presigned multipart uploads of large submissions, on the standard library only.

The file goes in parts straight to the object storage; the leaderboard only hands
out part URLs and checks the SHA-256 at the end. An interrupted upload resumes:
the server lists the parts the storage already has, and only the missing ones
are sent again. The module imports nothing from Django, so a copy of this one
file works on any machine with Python 3.10 or later.

    python -m leaderboard.upload_client --api https://host/api/v1 --token TOKEN \\
        --split 3 --method "My method" predictions.zip
    python -m leaderboard.upload_client ... --resume 42 predictions.zip   # after an interruption
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
import sys
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

logger = logging.getLogger(__name__)

HASH_BLOCK_BYTES = 1 << 20
URL_BATCH = 100
TIMEOUT_SECONDS = 300


class UploadError(Exception):
    """The server or the storage rejected a request; `status` and `body` are its reply."""

    def __init__(self, message: str, status: int | None = None, body: dict | None = None):
        super().__init__(message)
        self.status = status
        self.body = body or {}


@dataclass
class UploadResult:
    upload_id: int
    submission: dict
    uploaded_parts: list[int] = field(default_factory=list)


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(HASH_BLOCK_BYTES), b""):
            digest.update(block)
    return digest.hexdigest()


class UploadClient:
    """The upload endpoints of one leaderboard API (`api_base` ends in /api/v1), with a token."""

    def __init__(self, api_base: str, token: str):
        self.api_base = api_base.rstrip("/")
        self.token = token

    def request(self, method: str, path: str, payload: dict | None = None) -> dict:
        data = json.dumps(payload).encode() if payload is not None else None
        request = urllib.request.Request(f"{self.api_base}/{path.lstrip('/')}", data=data, method=method)
        request.add_header("Authorization", f"Token {self.token}")
        request.add_header("Accept", "application/json")
        if data is not None:
            request.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(request, timeout=TIMEOUT_SECONDS) as reply:
                return json.loads(reply.read() or b"{}")
        except urllib.error.HTTPError as error:
            body = error.read()
            try:
                parsed = json.loads(body)
            except ValueError:
                parsed = {}
            message = parsed.get("error", {}).get("message") or body[:500].decode(errors="replace")
            raise UploadError(f"{method} {path} failed with HTTP {error.code}: {message}", error.code, parsed) from None

    def create(self, *, split_id: int, path: Path, sha256: str, part_size: int | None) -> dict:
        payload = {"split": split_id, "filename": path.name, "size": path.stat().st_size, "sha256": sha256}
        if part_size is not None:
            payload["part_size"] = part_size
        return self.request("POST", "uploads/", payload)

    def status(self, upload_id: int) -> dict:
        """Return `{"upload": {...}, "parts": [{"part_number", "size", "etag"}, ...]}`."""
        return self.request("GET", f"uploads/{upload_id}/")

    def part_urls(self, upload_id: int, part_numbers: list[int]) -> dict[int, str]:
        reply = self.request("POST", f"uploads/{upload_id}/parts/", {"part_numbers": part_numbers})
        return {item["part_number"]: item["url"] for item in reply["urls"]}

    def complete(self, upload_id: int, **fields) -> dict:
        return self.request("POST", f"uploads/{upload_id}/complete/", fields)

    def abort(self, upload_id: int) -> dict:
        return self.request("DELETE", f"uploads/{upload_id}/")

    def put_part(self, url: str, path: Path, upload: dict, part_number: int) -> str:
        """Upload one part to its presigned URL and return the ETag the storage gave it."""
        offset = (part_number - 1) * upload["part_size"]
        length = min(upload["part_size"], upload["size"] - offset)
        with open(path, "rb") as handle:
            handle.seek(offset)
            data = handle.read(length)
        request = urllib.request.Request(url, data=data, method="PUT")
        # Without a type, urllib sends form encoding, which servers may try to parse.
        request.add_header("Content-Type", "application/octet-stream")
        try:
            with urllib.request.urlopen(request, timeout=TIMEOUT_SECONDS) as reply:
                return reply.headers.get("ETag", "")
        except urllib.error.HTTPError as error:
            raise UploadError(
                f"PUT of part {part_number} failed with HTTP {error.code}: {error.read()[:500]!r}", error.code
            ) from None


def upload_large(
    api_base: str,
    token: str,
    split_id: int,
    path: str | Path,
    part_size: int | None = None,
    *,
    method_name: str | None = None,
    upload_id: int | None = None,
    **fields,
) -> UploadResult:
    """Upload `path` as a submission to split `split_id` through a presigned multipart upload.

    With `upload_id` it resumes that upload: it requests the list of parts the
    storage has (ListParts) and sends only the missing ones. Without it, it starts a
    new upload. `method_name` (default: the file's stem) and `fields` (description,
    paper_url, code_url, is_public) describe the submission. Raises UploadError with
    the server's message when a request fails; the upload then stays open, and the
    error's message names its id for a resume.
    """
    path = Path(path)
    client = UploadClient(api_base, token)
    sha256 = file_sha256(path)
    if upload_id is None:
        upload = client.create(split_id=split_id, path=path, sha256=sha256, part_size=part_size)
        upload_id = upload["id"]
        logger.info("upload %s started: %d parts of %d bytes", upload_id, upload["part_count"], upload["part_size"])
    state = client.status(upload_id)
    upload = state["upload"]
    if upload["sha256"] != sha256:
        raise UploadError(
            f"Upload {upload_id} was started for a file with SHA-256 {upload['sha256']}, but {path} has {sha256}; "
            "resume it with the same file or start a new upload."
        )

    stored = {part["part_number"] for part in state["parts"]}
    missing = [number for number in range(1, upload["part_count"] + 1) if number not in stored]
    try:
        for start in range(0, len(missing), URL_BATCH):
            batch = missing[start:start + URL_BATCH]
            for number, url in client.part_urls(upload_id, batch).items():
                client.put_part(url, path, upload, number)
                logger.info("upload %s: part %d of %d sent", upload_id, number, upload["part_count"])
    except (UploadError, OSError) as error:
        raise UploadError(f"{error}; the upload stays open, resume it with upload_id={upload_id}") from error

    submission = client.complete(upload_id, method_name=method_name or path.stem, **fields)
    return UploadResult(upload_id=upload_id, submission=submission, uploaded_parts=missing)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Upload a large submission zip through a presigned multipart upload.")
    parser.add_argument("path", type=Path, help="the submission zip")
    parser.add_argument("--api", required=True, help="API base URL, such as https://host/api/v1")
    parser.add_argument("--token", default=os.environ.get("REFLADE_TOKEN"),
                        help="API token (default: the REFLADE_TOKEN environment variable)")
    parser.add_argument("--split", type=int, required=True, help="id of the split the predictions are for")
    parser.add_argument("--method", help="method name shown on the leaderboard (default: the file's stem)")
    parser.add_argument("--description", default="", help="description of the method")
    parser.add_argument("--part-size", type=int, help="bytes per part, 5 MiB to 5 GiB (default: the server's)")
    parser.add_argument("--resume", type=int, metavar="UPLOAD_ID", help="resume this interrupted upload")
    parser.add_argument("--private", action="store_true", help="keep the submission off the public leaderboard")
    args = parser.parse_args(argv)
    if not args.token:
        parser.error("no API token: pass --token or set REFLADE_TOKEN")

    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        result = upload_large(
            args.api, args.token, args.split, args.path, args.part_size, method_name=args.method,
            upload_id=args.resume, description=args.description, is_public=not args.private,
        )
    except UploadError as error:
        print(error, file=sys.stderr)
        return 1
    print(json.dumps({"upload": result.upload_id, "submission": result.submission.get("id")}))
    return 0


if __name__ == "__main__":
    sys.exit(main())

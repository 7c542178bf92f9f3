"""Measure a 1 GiB presigned multipart upload with one interrupted part, resumed.

Starts a moto S3 server and one gunicorn worker on 127.0.0.1 over a fresh data
folder with S3 storage. A sparse 1 GiB file goes in parts straight to the S3
server: first half of the parts, then one part cut off halfway through its body
(the interruption). `upload_large` then resumes from the parts the server lists
and completes. Reports the time of each phase and the web worker's
resident memory before and at its peak (VmHWM). The part bodies never reach the
web process; completing the upload streams the object once through it for the
SHA-256 check. The file and the data folder are deleted afterwards.

    python benchmarks/upload_1gib.py --part-mib 64
"""

from __future__ import annotations

import argparse
import http.client
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import urlsplit

import boto3

sys.path.insert(0, str(Path(__file__).resolve().parent))
from upload_memory import SETUP, free_port, gunicorn_worker_pid, memory_kib  # noqa: E402

REPOSITORY = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPOSITORY))
from leaderboard.upload_client import UploadClient, file_sha256, upload_large  # noqa: E402

FILE_BYTES = 1 << 30
BUCKET = "reflade-bench"
CREDENTIALS = {"AWS_ACCESS_KEY_ID": "bench-key", "AWS_SECRET_ACCESS_KEY": "bench-secret",
               "AWS_DEFAULT_REGION": "us-east-1"}


def wait_for_port(port: int, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            http.client.HTTPConnection("127.0.0.1", port, timeout=2).request("GET", "/")
            return
        except OSError:
            time.sleep(0.2)
    raise RuntimeError(f"nothing listens on 127.0.0.1:{port} after {timeout} s")


def interrupt_part(url: str, path: Path, upload: dict, part_number: int) -> None:
    """Send half of a part's body, then close the connection, as a client that crashed would."""
    parts = urlsplit(url)
    offset = (part_number - 1) * upload["part_size"]
    length = min(upload["part_size"], upload["size"] - offset)
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=60)
    connection.putrequest("PUT", f"{parts.path}?{parts.query}", skip_accept_encoding=True)
    connection.putheader("Content-Length", str(length))
    connection.putheader("Content-Type", "application/octet-stream")
    connection.endheaders()
    with open(path, "rb") as handle:
        handle.seek(offset)
        connection.send(handle.read(length // 2))
    connection.sock.close()


def run(root: Path, part_size: int) -> dict:
    python = sys.executable
    s3_port = free_port()
    env = {**os.environ, **CREDENTIALS, "REFLADE_DATA_DIR": str(root / "data"),
           "DJANGO_SETTINGS_MODULE": "leaderboard.settings", "HF_HUB_OFFLINE": "1",
           "REFLADE_UPLOAD_MAX_BYTES": str(4 << 30), "REFLADE_S3_BUCKET": BUCKET,
           "REFLADE_S3_ENDPOINT_URL": f"http://127.0.0.1:{s3_port}", "REFLADE_S3_REGION": "us-east-1"}
    moto = subprocess.Popen([str(Path(python).parent / "moto_server"), "-H", "127.0.0.1", "-p", str(s3_port)],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    server = None
    try:
        wait_for_port(s3_port)
        boto3.client("s3", endpoint_url=env["REFLADE_S3_ENDPOINT_URL"], region_name="us-east-1",
                     aws_access_key_id=CREDENTIALS["AWS_ACCESS_KEY_ID"],
                     aws_secret_access_key=CREDENTIALS["AWS_SECRET_ACCESS_KEY"]).create_bucket(Bucket=BUCKET)
        subprocess.run([python, "manage.py", "migrate", "-v", "0"], cwd=REPOSITORY, env=env, check=True)
        setup = subprocess.run([python, "manage.py", "shell", "-c", SETUP.format(root=root)], cwd=REPOSITORY,
                               env=env, check=True, capture_output=True, text=True)
        token, split_id = setup.stdout.split()[-2:]

        path = root / "upload.zip"
        with open(path, "wb") as handle:
            handle.truncate(FILE_BYTES)  # sparse: no disk blocks, reads return zeros
        sha256 = file_sha256(path)

        web_port = free_port()
        server = subprocess.Popen([python, "-m", "gunicorn", "leaderboard.wsgi", "-w", "1", "--timeout", "600",
                                   "--bind", f"127.0.0.1:{web_port}"], cwd=REPOSITORY, env=env,
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_for_port(web_port)
        worker = gunicorn_worker_pid(server.pid)
        api = f"http://127.0.0.1:{web_port}/api/v1"
        client = UploadClient(api, token)
        client.request("GET", "benchmarks/")
        before = memory_kib(worker, "VmRSS")

        # 1. The first half of the parts, then one part cut off halfway.
        started = time.perf_counter()
        upload = client.create(split_id=int(split_id), path=path, sha256=sha256, part_size=part_size)
        half = upload["part_count"] // 2
        urls = client.part_urls(upload["id"], list(range(1, half + 2)))
        for number in range(1, half + 1):
            client.put_part(urls[number], path, upload, number)
        interrupt_part(urls[half + 1], path, upload, half + 1)
        first_run = time.perf_counter() - started

        # 2. A new run lists the stored parts, sends the rest and completes (SHA-256 check included).
        listed = len(client.status(upload["id"])["parts"])
        peak_before_complete = memory_kib(worker, "VmHWM")
        resumed_at = time.perf_counter()
        result = upload_large(api, token, int(split_id), path, upload_id=upload["id"], method_name="bench")
        resumed = time.perf_counter() - resumed_at
        peak = memory_kib(worker, "VmHWM")
    finally:
        if server is not None:
            server.terminate()
            server.wait()
        moto.terminate()
        moto.wait()
    return {
        "parts": upload["part_count"], "part_size": upload["part_size"], "listed_after_interrupt": listed,
        "resent": result.uploaded_parts, "first_run": first_run, "resumed": resumed,
        "submission": result.submission["id"], "before": before, "peak": peak,
        "peak_before_complete": peak_before_complete,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--part-mib", type=int, default=64, help="part size in MiB, 5 to 5120 (default 64)")
    args = parser.parse_args()

    root = Path(tempfile.mkdtemp(prefix="reflade-upload-1gib-"))
    try:
        numbers = run(root, args.part_mib << 20)
    finally:
        shutil.rmtree(root, ignore_errors=True)

    total = numbers["first_run"] + numbers["resumed"]
    print(f"file size        {FILE_BYTES / (1 << 30):.0f} GiB (sparse)")
    print(f"parts            {numbers['parts']} of {numbers['part_size'] >> 20} MiB")
    print(f"after interrupt  {numbers['listed_after_interrupt']} parts listed; resent parts {numbers['resent']}")
    print(f"first run        {numbers['first_run']:.1f} s (half the parts and the interrupted one)")
    print(f"resumed run      {numbers['resumed']:.1f} s (rest of the parts, complete, SHA-256 check)")
    print(f"total            {total:.1f} s ({FILE_BYTES / 1e6 / total:.1f} MB/s, loopback)")
    print(f"submission       {numbers['submission']}")
    print(f"web worker RSS   {numbers['before'] / 1024:.1f} MiB before, peak {numbers['peak'] / 1024:.1f} MiB "
          f"(peak {numbers['peak_before_complete'] / 1024:.1f} MiB before the completion)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

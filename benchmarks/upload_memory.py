"""Measure a large submission upload through the REST API: time and the web worker's memory.

Starts one gunicorn worker on 127.0.0.1 over a fresh embedded-mode data folder,
uploads a zip of `--megabytes` MB with curl and a token, and reports the
worker's resident memory before the upload and its peak (VmHWM) after it. The
upload only has to reach storage here, so the zip holds random bytes; validation
happens later in a worker, which this script does not start.

    python benchmarks/upload_memory.py --megabytes 300
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

REPOSITORY = Path(__file__).resolve().parents[1]

SETUP = """
from django.contrib.auth import get_user_model
from rest_framework.authtoken.models import Token
from evaluator.synthetic import make_synthetic_split
from leaderboard.services import benchmark_create, split_import
user = get_user_model().objects.create_user("bench", password="bench-password-1", is_staff=True)
benchmark = benchmark_create(slug="bench", name="Bench", description="", config="test-tiny")
split = split_import(benchmark=benchmark, name="val", path=make_synthetic_split(
    "{root}/split", samples=4, size=32, seed=0, name="val"), visibility="public")
print(Token.objects.create(user=user).key, split.pk)
"""


def memory_kib(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise KeyError(field)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def write_zip(path: Path, megabytes: int) -> None:
    """A stored (uncompressed) zip of random bytes in 16 MB members."""
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_STORED) as archive:
        for index in range(max(1, megabytes // 16)):
            archive.writestr(f"blob-{index:03d}.png", os.urandom(16 << 20))


def gunicorn_worker_pid(master: int) -> int:
    children = Path(f"/proc/{master}/task/{master}/children").read_text().split()
    return int(children[0])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--megabytes", type=int, default=300, help="size of the uploaded zip in MB (default 300)")
    args = parser.parse_args()

    root = Path(tempfile.mkdtemp(prefix="reflade-upload-bench-"))
    env = {**os.environ, "REFLADE_DATA_DIR": str(root / "data"), "DJANGO_SETTINGS_MODULE": "leaderboard.settings",
           "HF_HUB_OFFLINE": "1", "REFLADE_UPLOAD_MAX_BYTES": str(4 << 30)}
    python = sys.executable
    subprocess.run([python, "manage.py", "migrate", "-v", "0"], cwd=REPOSITORY, env=env, check=True)
    setup = subprocess.run([python, "manage.py", "shell", "-c", SETUP.format(root=root)], cwd=REPOSITORY,
                           env=env, check=True, capture_output=True, text=True)
    token, split_id = setup.stdout.split()[-2:]

    archive = root / "upload.zip"
    write_zip(archive, args.megabytes)
    size = archive.stat().st_size

    port = free_port()
    server = subprocess.Popen([python, "-m", "gunicorn", "leaderboard.wsgi", "-w", "1", "--timeout", "600",
                               "--bind", f"127.0.0.1:{port}"], cwd=REPOSITORY, env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        time.sleep(3)
        worker = gunicorn_worker_pid(server.pid)
        subprocess.run(["curl", "-s", "-o", "/dev/null", f"http://127.0.0.1:{port}/api/v1/benchmarks/"], check=True)
        before = memory_kib(worker, "VmRSS")

        started = time.perf_counter()
        reply = subprocess.run(
            ["curl", "-s", "-w", "%{http_code}", "-o", str(root / "reply.json"),
             "-H", f"Authorization: Token {token}", "-F", f"split={split_id}", "-F", "method_name=bench",
             "-F", f"file=@{archive}", f"http://127.0.0.1:{port}/api/v1/submissions/"],
            check=True, capture_output=True, text=True,
        )
        seconds = time.perf_counter() - started
        peak = memory_kib(worker, "VmHWM")
    finally:
        server.terminate()
        server.wait()
        shutil.rmtree(root, ignore_errors=True)

    print(f"HTTP status      {reply.stdout}")
    print(f"upload size      {size / 1e6:.1f} MB")
    print(f"upload time      {seconds:.2f} s ({size / 1e6 / seconds:.1f} MB/s, loopback)")
    print(f"worker RSS       {before / 1024:.1f} MiB before, peak {peak / 1024:.1f} MiB")
    return 0 if reply.stdout == "201" else 1


if __name__ == "__main__":
    sys.exit(main())

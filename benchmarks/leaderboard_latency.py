"""Measure the leaderboard API's latency under concurrent clients with a PostgreSQL database.

1. Creates the database `reflade_bench_latency` on 127.0.0.1:5432 (user postgres,
   trust authentication), migrates it and bulk-inserts `--evaluations` evaluations
   (default 10,000) on 2 benchmarks x 2 splits. Many users own the submissions.
   Some submissions are private or flagged, some re-scored, and some have a failed
   latest evaluation, so that "latest finished evaluation per submission" matters. Every
   finished evaluation carries a report that `evaluator.aggregate.aggregate_samples`
   produced from a small random per-sample table, with its numbers varied per entry.
2. Starts gunicorn (`leaderboard.wsgi`, gthread workers, DEBUG off) on a free
   127.0.0.1 port and waits for `/healthz`.
3. Runs `--clients` client threads, each with its own keep-alive connection from
   its own loopback address (127.0.0.2, 127.0.0.3, ...), so the anonymous rate
   limit counts each client apart as it would count distinct users. Each client
   requests `/api/v1/splits/<id>/leaderboard/` with a mix of orderings and
   `Accept-Encoding: gzip`, as browsers send, and waits about `--think` seconds
   between requests (0 for a closed loop that saturates the server). Requests
   started in the first `--warmup` seconds, while each gunicorn worker fills its
   cache, are not counted. Latency is the time to the last byte of the response.

Prints requests, errors, throughput, median/p90/p99/max latency, the median and
p99 of each 5-second window and the load average, then stops gunicorn and drops
the database (unless `--keep`).

    python benchmarks/leaderboard_latency.py --clients 100 --warmup 40 --duration 20 --think 1
"""

from __future__ import annotations

import argparse
import copy
import gzip
import http.client
import json
import os
import random
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import psycopg

REPOSITORY = Path(__file__).resolve().parents[1]
DATABASE = "reflade_bench_latency"
DATABASE_URL = f"postgres://postgres@127.0.0.1:5432/{DATABASE}"
ORDERINGS = ("", "-hpa", "fid_foreground", "pass_rate@1", "-lpips_vis_background", "miou")
CONFIG_NAME = "reflade-v1"
BATCH = 500


# Database ------------------------------------------------------------------------------------


def recreate_database() -> None:
    with psycopg.connect("host=127.0.0.1 port=5432 user=postgres dbname=postgres", autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {DATABASE} WITH (FORCE)")
        conn.execute(f"CREATE DATABASE {DATABASE}")


def drop_database() -> None:
    with psycopg.connect("host=127.0.0.1 port=5432 user=postgres dbname=postgres", autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {DATABASE} WITH (FORCE)")


def samples_table(rng: np.random.Generator, samples: int = 16, candidates: int = 2) -> pd.DataFrame:
    """Make a random per-sample table: half foreground, half background samples."""
    rows = []
    for index in range(samples):
        kind = "foreground" if index % 2 == 0 else "background"
        occlusion = (0.0, 0.2, 0.4, 0.7)[index % 4]
        for candidate in range(candidates):
            rows.append({
                "sample_id": f"s{index:03d}", "candidate": candidate, "layer_kind": kind,
                "prompt_type": ("point", "box", "text+box")[index % 3], "gt_kind": "rgba",
                "category": ("cup", "dog", "")[index % 3], "occlusion_rate": occlusion,
                "lpips_vis": float(rng.uniform(0.05, 0.4)), "dir": float(rng.uniform(0.3, 0.95)),
                "lpips_comp": float(rng.uniform(0.05, 0.5)), "iou": float(rng.uniform(0.4, 0.95)),
                "iou_occ": float("nan") if occlusion == 0.0 else float(rng.uniform(0.2, 0.9)),
            })
    return pd.DataFrame(rows)


def base_report(seed: int = 0) -> dict:
    """Aggregate a random per-sample table into a real evaluator report."""
    from evaluator.aggregate import aggregate_samples
    from evaluator.config import load_config
    from evaluator.groups import group_name, occlusion_bucket

    table = samples_table(np.random.default_rng(seed))
    fid = {}
    for row in table[table["candidate"] == 0].itertuples():
        for group in (("all", row.layer_kind, "all"), ("prompt_type", row.layer_kind, row.prompt_type),
                      ("occlusion", row.layer_kind, occlusion_bucket(row.occlusion_rate)),
                      ("category", row.layer_kind, row.category or "none")):
            fid[group_name(group)] = 25.0
    return aggregate_samples(table, fid, load_config(CONFIG_NAME))


def varied(node, rng: random.Random, scale: float):
    """Copy a report subtree, scaling every metric value and interval by about `scale`."""
    if isinstance(node, dict):
        result = {}
        for key, value in node.items():
            if key in ("value", "ci") and value is not None and not isinstance(value, str):
                factor = scale * rng.uniform(0.97, 1.03)
                result[key] = [bound * factor for bound in value] if key == "ci" else value * factor
            else:
                result[key] = varied(value, rng, scale)
        return result
    if isinstance(node, list):
        return [varied(item, rng, scale) for item in node]
    return node


def entry_report(report: dict, rng: random.Random) -> dict:
    """Vary the leaderboard's numbers of a report. The copy shares the breakdown groups."""
    scale = rng.uniform(0.6, 1.4)
    result = copy.copy(report)
    for key in ("hpa", "layer_kinds", "primary"):
        result[key] = varied(report[key], rng, scale)
    return result


@dataclass
class Fill:
    splits: list[int] = field(default_factory=list)
    submissions: int = 0
    evaluations: int = 0
    finished: int = 0
    public_entries: dict[int, int] = field(default_factory=dict)


def fill_database(total_evaluations: int, users: int, seed: int) -> Fill:
    """Bulk-insert users, 2 benchmarks x 2 splits, submissions and their evaluations."""
    from django.contrib.auth import get_user_model
    from django.utils import timezone

    from leaderboard.models import Evaluation, EvaluationState, Split, Submission
    from leaderboard.services import benchmark_create

    rng = random.Random(seed)
    report = base_report(seed)
    user_model = get_user_model()
    user_model.objects.bulk_create(
        [user_model(username=f"user{index:05d}", password="!") for index in range(users)], batch_size=BATCH
    )
    owners = list(user_model.objects.values_list("pk", flat=True))
    splits = []
    for letter in ("a", "b"):
        benchmark = benchmark_create(slug=f"bench-{letter}", name=f"Bench {letter}", description="", config=CONFIG_NAME)
        for name in ("val", "test"):
            splits.append(Split.objects.create(
                benchmark=benchmark, name=name, public_package=f"packages/{letter}-{name}.tar",
                ground_truth_location=f"ground-truth/{letter}-{name}.tar", ground_truth_version="0" * 64,
                sample_count=16,
            ))

    # About 1.6 evaluations per submission: most have one, some are re-scored.
    submission_count = int(total_evaluations / 1.6)
    start = timezone.now() - timezone.timedelta(days=365)
    submissions = [
        Submission(
            owner_id=rng.choice(owners), split=splits[index % len(splits)], file=f"submissions/{index}.zip",
            sha256=f"{index:064x}", size_bytes=1 << 20, method_name=f"method-{index}",
            is_public=rng.random() > 0.15, flagged=rng.random() < 0.02, is_baseline=index < 8,
            created_at=start + timezone.timedelta(minutes=index * 50),
        )
        for index in range(submission_count)
    ]
    Submission.objects.bulk_create(submissions, batch_size=BATCH)

    fill = Fill(splits=[split.pk for split in splits], submissions=submission_count)
    pending = []
    for index in range(total_evaluations):
        submission = submissions[index] if index < submission_count else rng.choice(submissions)
        created = submission.created_at + timezone.timedelta(minutes=index)
        # A re-score fails one time in four, so the latest finished run is not always the latest run.
        finished = index < submission_count or rng.random() > 0.25
        pending.append(Evaluation(
            submission=submission, created_at=created, started_at=created,
            state=EvaluationState.FINISHED if finished else EvaluationState.FAILED,
            finished_at=created + timezone.timedelta(minutes=5), progress=1.0 if finished else 0.5,
            metrics=entry_report(report, rng) if finished else {}, weights_verified=rng.random() < 0.3,
            evaluator_version="bench", config_hash=splits[0].benchmark.config_hash,
            failure_kind="" if finished else "infrastructure",
        ))
        fill.finished += finished
        if len(pending) == BATCH:
            Evaluation.objects.bulk_create(pending)
            pending = []
    Evaluation.objects.bulk_create(pending)
    fill.evaluations = total_evaluations
    for split in splits:
        fill.public_entries[split.pk] = split.submissions.filter(is_public=True, flagged=False).count()
    return fill


# Server --------------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def start_server(env: dict, port: int, workers: int, threads: int) -> subprocess.Popen:
    command = [sys.executable, "-m", "gunicorn", "leaderboard.wsgi", "--worker-class", "gthread",
               "--workers", str(workers), "--threads", str(threads), "--bind", f"127.0.0.1:{port}",
               "--keep-alive", "30", "--timeout", "60", "--log-level", "warning"]
    server = subprocess.Popen(command, cwd=REPOSITORY, env=env)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
            conn.request("GET", "/healthz")
            status = conn.getresponse().status
            conn.close()
            if status == 200:
                return server
        except (OSError, http.client.HTTPException):
            pass
        if server.poll() is not None:
            raise RuntimeError(f"gunicorn exited with status {server.returncode} before /healthz returned 200")
        time.sleep(0.5)
    server.terminate()
    raise RuntimeError(f"/healthz on 127.0.0.1:{port} did not return 200 within 60 s; see gunicorn's log above")


# Load ----------------------------------------------------------------------------------------


@dataclass
class Results:
    # (start of the request in seconds from the end of the warm-up, negative during it; seconds it took)
    latencies: list[tuple[float, float]] = field(default_factory=list)
    errors: dict[str, int] = field(default_factory=dict)
    body_bytes: int = 0
    json_bytes: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def error(self, kind: str) -> None:
        with self.lock:
            self.errors[kind] = self.errors.get(kind, 0) + 1


def check_body(body: bytes, encoding: str | None, results: Results) -> bool:
    text = gzip.decompress(body) if encoding == "gzip" else body
    entries = json.loads(text)
    if not isinstance(entries, list) or not entries or "rank" not in entries[0]:
        results.error("not a list of leaderboard entries")
    with results.lock:
        results.body_bytes = max(results.body_bytes, len(body))
        results.json_bytes = max(results.json_bytes, len(text))
    return True


def client(index: int, port: int, split_ids: list[int], counted_from: float, stop: float, think: float,
           results: Results) -> None:
    """Request leaderboards until `stop`, recording latencies of requests started after `counted_from`."""
    rng = random.Random(index)
    source = (f"127.0.0.{2 + index % 250}", 0)
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30, source_address=source)
    latencies = []
    checked = False
    # Spread the first requests over the think time, as users would not start together.
    time.sleep(rng.uniform(0, think))
    while time.monotonic() < stop:
        ordering = rng.choice(ORDERINGS)
        path = f"/api/v1/splits/{rng.choice(split_ids)}/leaderboard/" + (f"?ordering={ordering}" if ordering else "")
        started = time.monotonic()
        try:
            conn.request("GET", path, headers={"Accept-Encoding": "gzip"})
            response = conn.getresponse()
            body = response.read()
        except (OSError, http.client.HTTPException) as error:
            results.error(type(error).__name__)
            conn.close()
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30, source_address=source)
            time.sleep(0.1)
            continue
        elapsed = time.monotonic() - started
        if response.status != 200:
            results.error(f"HTTP {response.status}")
        else:
            latencies.append((started - counted_from, elapsed))
            if index == 0 and not checked:
                # Check one body, outside the timing and in one client only, because decoding
                # megabytes of JSON holds this process's interpreter lock.
                checked = check_body(body, response.getheader("Content-Encoding"), results)
        if think:
            time.sleep(think * rng.uniform(0.5, 1.5))
    conn.close()
    with results.lock:
        results.latencies.extend(latencies)


def load_averages(samples: list[float], stop: threading.Event) -> None:
    while not stop.wait(2.0):
        samples.append(float(Path("/proc/loadavg").read_text().split()[0]))


def run_load(port: int, split_ids: list[int], clients: int, warmup: float, duration: float, think: float) -> tuple[Results, list[float]]:
    results = Results()
    began = time.monotonic()
    counted_from, stop = began + warmup, began + warmup + duration
    loads: list[float] = []
    done = threading.Event()
    sampler = threading.Thread(target=load_averages, args=(loads, done), daemon=True)
    sampler.start()
    threads = [threading.Thread(target=client, args=(index, port, split_ids, counted_from, stop, think, results))
               for index in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=warmup + duration + 60)
    done.set()
    return results, loads


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def print_windows(samples: list[tuple[float, float]], warmup: float, duration: float, width: float = 5.0) -> None:
    """Print the median and p99 of the requests started in each `width`-second window, warm-up included."""
    print("windows (seconds from the end of the warm-up):")
    for start in np.arange(-warmup, duration, width):
        window = [elapsed for began, elapsed in samples if start <= began < start + width]
        if window:
            print(f"  {start:5.0f} to {start + width:<5.0f} s  {len(window):5d} requests  median "
                  f"{1000 * percentile(window, 0.5):7.1f} ms  p99 {1000 * percentile(window, 0.99):7.1f} ms")


def report(results: Results, loads: list[float], warmup: float, duration: float) -> None:
    latencies = [elapsed for began, elapsed in results.latencies if began >= 0]
    print(f"requests counted  {len(latencies)} in {duration:.0f} s ({len(latencies) / duration:.1f} req/s)")
    print(f"errors            {sum(results.errors.values())} {results.errors or ''}")
    print(f"response size     {results.body_bytes / 1024:.0f} KiB sent, {results.json_bytes / 1024:.0f} KiB of JSON (largest)")
    if latencies:
        median, p90, p99 = (1000 * percentile(latencies, fraction) for fraction in (0.5, 0.9, 0.99))
        print(f"latency ms        median {median:.1f}  p90 {p90:.1f}  p99 {p99:.1f}  max {1000 * max(latencies):.1f}")
        print_windows(results.latencies, warmup, duration)
    if loads:
        print(f"load average      {min(loads):.2f}..{max(loads):.2f} (1-min, sampled every 2 s; {os.cpu_count()} CPUs)")


# Main ----------------------------------------------------------------------------------------


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--evaluations", type=int, default=10_000, help="evaluations to insert (default 10000)")
    parser.add_argument("--users", type=int, default=2_000, help="users owning the submissions (default 2000)")
    parser.add_argument("--clients", type=int, default=100, help="concurrent clients (default 100)")
    parser.add_argument("--warmup", type=float, default=40.0,
                        help="seconds not counted at the start, while the workers fill their caches (default 40)")
    parser.add_argument("--duration", type=float, default=20.0, help="seconds measured after the warm-up (default 20)")
    parser.add_argument("--think", type=float, default=1.0,
                        help="mean seconds each client waits between requests; 0 for a closed loop (default 1)")
    parser.add_argument("--workers", type=int, default=2, help="gunicorn worker processes (default 2)")
    parser.add_argument("--threads", type=int, default=8, help="threads per gunicorn worker (default 8)")
    parser.add_argument("--keep", action="store_true", help="keep the database afterwards (and reuse a kept one)")
    parser.add_argument("--reuse", action="store_true", help="use the kept database as it is instead of refilling it")
    args = parser.parse_args()

    data_dir = Path(tempfile.mkdtemp(prefix="reflade-latency-"))
    env = {**os.environ, "DATABASE_URL": DATABASE_URL, "DJANGO_SETTINGS_MODULE": "leaderboard.settings",
           "REFLADE_DATA_DIR": str(data_dir), "DEBUG": "0", "SECRET_KEY": secrets.token_urlsafe(40),
           "ALLOWED_HOSTS": "127.0.0.1", "HF_HUB_OFFLINE": "1", "REFLADE_LOG_LEVEL": "WARNING"}
    os.environ.update(env)
    import django
    from django.core.management import call_command

    if not args.reuse:
        recreate_database()
    django.setup()
    from django.db import connection

    if args.reuse:
        from leaderboard.models import Split
        split_ids = list(Split.objects.order_by("pk").values_list("pk", flat=True))
        print(f"reusing database {DATABASE}: splits {split_ids}")
    else:
        started = time.monotonic()
        call_command("migrate", verbosity=0)
        fill = fill_database(args.evaluations, args.users, seed=0)
        split_ids = fill.splits
        print(f"filled {DATABASE} in {time.monotonic() - started:.0f} s: {fill.evaluations} evaluations "
              f"({fill.finished} finished) of {fill.submissions} submissions by {args.users} users; "
              f"public entries per split {fill.public_entries}")
        with connection.cursor() as cursor:
            cursor.execute("ANALYZE")
    connection.close()

    port = free_port()
    print(f"gunicorn: {args.workers} gthread workers x {args.threads} threads on 127.0.0.1:{port}; "
          f"{args.clients} clients, think {args.think} s, warm-up {args.warmup} s, measured {args.duration} s")
    server = start_server(env, port, args.workers, args.threads)
    try:
        results, loads = run_load(port, split_ids, args.clients, args.warmup, args.duration, args.think)
    finally:
        server.terminate()
        server.wait(timeout=30)
        shutil.rmtree(data_dir, ignore_errors=True)
        if not args.keep:
            drop_database()
    report(results, loads, args.warmup, args.duration)
    return 0 if results.latencies and not results.errors else 1


if __name__ == "__main__":
    sys.exit(main())

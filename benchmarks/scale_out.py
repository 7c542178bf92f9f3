"""Scoring time of one submission with one and with two `gpu` worker processes.

    .venv/bin/python benchmarks/scale_out.py [--samples 2000] [--chunk-size 250] [--workers 1 2]

Uses the machine's PostgreSQL (127.0.0.1:5432, user postgres, trust auth) and Redis
(127.0.0.1:6379): it creates the database `reflade_bench_scale` and drops it at the
end, and uses Redis database 13 for the broker and 14 for results, flushing both
before and after. Data, weights and cache live in a temporary folder.

The split is synthetic (64 px), the config `test-tiny` with the given chunk size,
the weights the stand-ins of `weights make-test`, the submission the cut-out
baseline. One `default` worker serves every run; each run starts its own `gpu`
workers (`--pool solo`, one torch thread, no loader processes) and clears the
worker cache first, so every run computes the ground-truth features again. The
worker counts run in turn `--repeat` times (1, 2, 1, 2 by default), because the
very first run also pays the `default` worker's first imports.
Reported per run: seconds from submission to `finished`, each chunk's seconds and
worker, and the CPU seconds of the worker processes.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPOSITORY = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPOSITORY))
PYTHON = sys.executable
DATABASE = "reflade_bench_scale"
PG = ["-h", "127.0.0.1", "-p", "5432", "-U", "postgres"]
BROKER_DB, RESULT_DB = 13, 14
FINISH_TIMEOUT = 3600
READY_TIMEOUT = 120
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
CHUNK_DONE = re.compile(r"Task leaderboard\.tasks\.score_chunk_task\[([0-9a-f-]+)\] succeeded in ([0-9.]+)s")
CHUNK_RECEIVED = re.compile(r"Task leaderboard\.tasks\.score_chunk_task\[([0-9a-f-]+)\] received")

logger = logging.getLogger("scale_out")


def load_average() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def cpu_seconds(pid: int) -> float:
    """User plus system CPU seconds of a process and its waited-for children."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return sum(int(value) for value in fields[11:15]) / CLOCK_TICKS


def redis_flush() -> None:
    for number in (BROKER_DB, RESULT_DB):
        subprocess.run(["redis-cli", "-h", "127.0.0.1", "-p", "6379", "-n", str(number), "flushdb"],
                       check=True, capture_output=True)


def create_database() -> None:
    subprocess.run(["dropdb", *PG, "--if-exists", DATABASE], check=True, capture_output=True)
    subprocess.run(["createdb", *PG, DATABASE], check=True, capture_output=True)


def drop_database() -> None:
    result = subprocess.run(["dropdb", *PG, "--if-exists", "--force", DATABASE], capture_output=True, text=True)
    if result.returncode:
        logger.warning("dropping %s failed: %s", DATABASE, result.stderr.strip())


class Worker:
    """A `celery worker` subprocess on one queue, with its log."""

    def __init__(self, name: str, queue: str, env: dict, folder: Path):
        self.name = name
        self.log_path = folder / f"{name}.log"
        command = [PYTHON, "-m", "celery", "-A", "leaderboard", "worker", "-Q", queue, "--pool", "solo",
                   "--loglevel", "INFO", "--without-gossip", "--without-mingle", "--without-heartbeat",
                   "--hostname", f"{name}@%h"]
        self.process = subprocess.Popen(command, cwd=REPOSITORY, env=env, stdout=open(self.log_path, "ab"),
                                        stderr=subprocess.STDOUT)
        deadline = time.monotonic() + READY_TIMEOUT
        while " ready." not in self.log():
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"worker {name} did not start:\n{self.log()[-3000:]}")
            time.sleep(0.2)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def cpu_seconds(self) -> float:
        return cpu_seconds(self.process.pid)

    def chunk_seconds(self) -> dict[str, float]:
        """Seconds of each chunk task this worker finished, by task id, in the order finished."""
        return {task: float(seconds) for task, seconds in CHUNK_DONE.findall(self.log())}

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


class Bench:
    """The Django setup, the hosted split and the submission zip of one measurement."""

    def __init__(self, folder: Path, samples: int, chunk_size: int):
        self.folder = folder
        self.env = {
            **os.environ,
            "PYTHONPATH": str(REPOSITORY),
            "HF_HUB_OFFLINE": "1",
            "DJANGO_SETTINGS_MODULE": "leaderboard.settings",
            "REFLADE_DATA_DIR": str(folder / "data"),
            "REFLADE_CACHE": str(folder / "cache"),
            "REFLADE_WEIGHTS": str(folder / "weights"),
            "REFLADE_LOADER_WORKERS": "0",
            "REFLADE_QUOTA_LIMIT": "1000",
            "OMP_NUM_THREADS": "1",
            "MKL_NUM_THREADS": "1",
            "DATABASE_URL": f"postgres://postgres@127.0.0.1:5432/{DATABASE}",
            "CELERY_BROKER_URL": f"redis://127.0.0.1:6379/{BROKER_DB}",
            "CELERY_RESULT_BACKEND": f"redis://127.0.0.1:6379/{RESULT_DB}",
        }
        os.environ.update(self.env)
        import django

        django.setup()
        from django.contrib.auth import get_user_model
        from django.core.management import call_command

        from evaluator.config import load_config
        from evaluator.synthetic import make_synthetic_split
        from leaderboard import services
        from reference_model.baselines import write_baseline

        call_command("migrate", verbosity=0)
        subprocess.run([PYTHON, "-m", "evaluator", "weights", "make-test", "--dir", self.env["REFLADE_WEIGHTS"],
                        "--config", "test-tiny"], cwd=REPOSITORY, env=self.env, check=True, capture_output=True)
        started = time.monotonic()
        split_dir = make_synthetic_split(folder / "splits", samples=samples, size=64, seed=0, name="val")
        self.zip_path = write_baseline("cutout", split_dir, folder / "cutout.zip")
        logger.info("split and baseline of %d samples written in %.1f s", samples, time.monotonic() - started)
        config = {**load_config("test-tiny").to_json(), "chunk_size": chunk_size}
        benchmark = services.benchmark_create(slug="scale", name="Scale", description="Scale-out.", config=config)
        self.split = services.split_import(benchmark=benchmark, name="val", path=split_dir, visibility="public")
        self.user = get_user_model().objects.create_user("scale", "scale@example.org", "scale-pass-1")

    def submit(self, name: str):
        from django.core.files import File

        from leaderboard import services

        with open(self.zip_path, "rb") as handle:
            return services.submission_create(user=self.user, split=self.split, method_name=name,
                                              uploaded_file=File(handle, name="cutout.zip"))

    def clear_cache(self) -> None:
        shutil.rmtree(self.env["REFLADE_CACHE"], ignore_errors=True)


def wait_finished(submission) -> tuple[object, list[str]]:
    """Poll until the evaluation ends; return it and the load averages seen every 5 s."""
    from leaderboard.models import Evaluation

    started = time.monotonic()
    loads, last_load = [], 0.0
    while time.monotonic() - started < FINISH_TIMEOUT:
        evaluation = Evaluation.objects.filter(submission=submission).order_by("-pk").first()
        if evaluation.is_terminal:
            return evaluation, loads
        if time.monotonic() - last_load >= 5:
            loads.append(load_average())
            last_load = time.monotonic()
        time.sleep(0.1)
    raise TimeoutError(f"evaluation of {submission.method_name} did not end within {FINISH_TIMEOUT} s")


def measure(bench: Bench, gpu_workers: int, chunk_size: int) -> dict:
    """Score the submission with `gpu_workers` fresh `gpu` workers; return the figures."""
    bench.clear_cache()
    workers = [Worker(f"gpu{gpu_workers}-{index}", "gpu", bench.env, bench.folder) for index in range(gpu_workers)]
    try:
        cpu_before = {worker.name: worker.cpu_seconds() for worker in workers}
        cpu_before["default"] = bench.default_worker.cpu_seconds()
        load_before = load_average()
        started = time.monotonic()
        submission = bench.submit(f"cutout-{gpu_workers}-workers")
        evaluation, loads = wait_finished(submission)
        seconds = time.monotonic() - started
        if evaluation.state != "finished":
            raise RuntimeError(f"evaluation ended {evaluation.state}: {evaluation.staff_detail[:2000]}")
        cpu = {worker.name: round(worker.cpu_seconds() - cpu_before[worker.name], 2) for worker in workers}
        cpu["default"] = round(bench.default_worker.cpu_seconds() - cpu_before["default"], 2)
        chunks = {worker.name: list(worker.chunk_seconds().values()) for worker in workers}
    finally:
        for worker in workers:
            worker.stop()
    chunk_list = [seconds for values in chunks.values() for seconds in values]
    # A worker's first chunk also loads the metric networks; the later ones do not.
    later = [seconds for values in chunks.values() for seconds in values[1:]]
    return {
        "gpu_workers": gpu_workers,
        "seconds_to_finished": round(seconds, 2),
        "chunks_total": evaluation.chunks_total,
        "chunk_seconds_by_worker": {name: [round(value, 2) for value in values] for name, values in chunks.items()},
        "chunk_seconds_sum": round(sum(chunk_list), 2),
        "seconds_per_sample_after_first_chunk": round(sum(later) / (len(later) * chunk_size), 5) if later else None,
        "cpu_seconds_by_process": cpu,
        "cpu_seconds_total": round(sum(cpu.values()), 2),
        "load_before": load_before,
        "load_during": loads,
        "metrics": {key: value for key, value in evaluation.metrics.items() if key not in ("provenance", "warnings")},
    }


def run(args) -> dict:
    redis_flush()
    create_database()
    folder = Path(tempfile.mkdtemp(prefix="reflade-scale-"))
    bench = None
    try:
        bench = Bench(folder, args.samples, args.chunk_size)
        bench.default_worker = Worker("default", "default", bench.env, folder)
        runs = [measure(bench, count, args.chunk_size) for _ in range(args.repeat) for count in args.workers]
        from django.db import connection

        connection.close()
    finally:
        if bench is not None and hasattr(bench, "default_worker"):
            bench.default_worker.stop()
        redis_flush()
        drop_database()
        shutil.rmtree(folder, ignore_errors=True)
    same = all(run["metrics"] == runs[0]["metrics"] for run in runs)
    result = {"samples": args.samples, "chunk_size": args.chunk_size, "runs": runs, "same_metrics": same}
    # Speedups pair the runs of each repetition: t(1 worker) / t(n workers).
    for index in range(args.repeat):
        pair = {run["gpu_workers"]: run for run in runs[index * len(args.workers):(index + 1) * len(args.workers)]}
        if 1 in pair:
            one = pair[1]
            for count, other in pair.items():
                if count != 1:
                    speedup = round(one["seconds_to_finished"] / other["seconds_to_finished"], 3)
                    result.setdefault(f"speedup_{count}_workers", []).append(speedup)
    for run_ in runs:
        run_.pop("metrics")
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--samples", type=int, default=2000)
    parser.add_argument("--chunk-size", type=int, default=250)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2], help="gpu worker counts, one run each")
    parser.add_argument("--repeat", type=int, default=2,
                        help="times to run the worker counts in turn; the first run also warms the default worker")
    parser.add_argument("--out", type=Path, help="also write the result as JSON here")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    result = run(args)
    text = json.dumps(result, indent=2)
    print(text)
    if args.out:
        args.out.write_text(text)
    return 0 if result["same_metrics"] else 1


if __name__ == "__main__":
    sys.exit(main())

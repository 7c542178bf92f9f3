"""Scoring time of one submission with one and with two `gpu` worker processes.

    .venv/bin/python benchmarks/scale_out.py [--samples 2000] [--chunk-size 250] [--workers 1 2]

Uses the machine's PostgreSQL (127.0.0.1:5432, user postgres, trust auth) and Redis
(127.0.0.1:6379): it creates the database `reflade_bench_scale` and drops it at the
end, and uses Redis database 13 for the broker and 14 for results, flushing both
before and after. Data, weights and cache live in a temporary folder.

The split is synthetic (64 px), the config `test-tiny` with the given chunk size,
the weights the stand-ins of `weights make-test`, the submission the cut-out
baseline. One `default` worker serves every run; each worker count starts its own
`gpu` workers (`--pool solo`, one torch thread, no loader processes). The worker
cache is cleared before every submission, so each one computes the ground-truth
features again. Each worker count scores the zip twice on the same workers, first
fresh and then warm. In a fresh worker the first chunk also imports the scoring code
and loads the networks, and the very first submission also pays the `default`
worker's imports. The warm run is how long-lived production workers score.

Reported per submission: seconds from submission to `finished`, each chunk's seconds and
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
TASK_DONE = re.compile(r"Task leaderboard\.tasks\.(\w+)\[[0-9a-f-]+\] succeeded in ([0-9.]+)s")
CHUNK_DONE = re.compile(r"Task leaderboard\.tasks\.score_chunk_task\[([0-9a-f-]+)\] succeeded in ([0-9.]+)s")

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
                raise RuntimeError(f"worker {name} failed to start; its log ends:\n{self.log()[-3000:]}")
            time.sleep(0.2)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def cpu_seconds(self) -> float:
        return cpu_seconds(self.process.pid)

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
    raise TimeoutError(f"evaluation of {submission.method_name} timed out after {FINISH_TIMEOUT} s")


def score_once(bench: Bench, workers: list[Worker], label: str, chunk_size: int) -> dict:
    """Clear the cache, submit the zip, wait for `finished`; return the figures of this submission."""
    bench.clear_cache()
    every = [*workers, bench.default_worker]
    cpu_before = {worker.name: worker.cpu_seconds() for worker in every}
    log_before = {worker.name: len(worker.log()) for worker in every}
    load_before = load_average()

    started = time.monotonic()
    submission = bench.submit(label)
    evaluation, loads = wait_finished(submission)
    seconds = time.monotonic() - started
    if evaluation.state != "finished":
        raise RuntimeError(f"evaluation of {label} ended {evaluation.state}, expected finished; "
                           f"see the worker logs. Staff detail: {evaluation.staff_detail[:2000]}")

    cpu = {worker.name: round(worker.cpu_seconds() - cpu_before[worker.name], 2) for worker in every}
    chunks = {worker.name: [float(value) for _, value in CHUNK_DONE.findall(worker.log()[log_before[worker.name]:])]
              for worker in workers}
    default_tasks = dict(TASK_DONE.findall(bench.default_worker.log()[log_before["default"]:]))
    done = [value for values in chunks.values() for value in values]
    # Before its first chunk a fresh worker imports the scoring code and loads the networks.
    later = [value for values in chunks.values() for value in values[1:]]
    return {
        "seconds_to_finished": round(seconds, 2),
        "chunks_total": evaluation.chunks_total,
        "chunk_seconds_by_worker": {name: [round(value, 2) for value in values] for name, values in chunks.items()},
        "chunk_seconds_sum": round(sum(done), 2),
        "seconds_per_sample_in_chunks": round(sum(done) / (len(done) * chunk_size), 5),
        "seconds_per_sample_after_first_chunk": round(sum(later) / (len(later) * chunk_size), 5) if later else None,
        "validation_seconds": round(float(default_tasks.get("validate_submission_task", "nan")), 2),
        "aggregation_seconds": round(float(default_tasks.get("aggregate_evaluation_task", "nan")), 2),
        "cpu_seconds_by_process": cpu,
        "cpu_seconds_total": round(sum(cpu.values()), 2),
        "load_before": load_before,
        "load_during": loads,
        "metrics": {key: value for key, value in evaluation.metrics.items() if key not in ("provenance", "warnings")},
    }


def measure(bench: Bench, gpu_workers: int, chunk_size: int) -> dict:
    """Score the zip twice with `gpu_workers` new `gpu` workers: first fresh, then warm."""
    workers: list[Worker] = []
    try:
        # Appended one by one, so that a worker that fails to start leaves the earlier ones stoppable.
        for index in range(gpu_workers):
            workers.append(Worker(f"gpu{gpu_workers}-{index}", "gpu", bench.env, bench.folder))
        cold = score_once(bench, workers, f"cutout-{gpu_workers}-cold", chunk_size)
        warm = score_once(bench, workers, f"cutout-{gpu_workers}-warm", chunk_size)
    finally:
        for worker in workers:
            worker.stop()
    return {"gpu_workers": gpu_workers, "cold_workers": cold, "warm_workers": warm}


def run(args) -> dict:
    redis_flush()
    create_database()
    folder = Path(tempfile.mkdtemp(prefix="reflade-scale-"))
    bench = None
    try:
        bench = Bench(folder, args.samples, args.chunk_size)
        bench.default_worker = Worker("default", "default", bench.env, folder)
        runs = [measure(bench, count, args.chunk_size) for count in args.workers]
        from django.db import connection

        connection.close()
    finally:
        if bench is not None and hasattr(bench, "default_worker"):
            bench.default_worker.stop()
        redis_flush()
        drop_database()
        shutil.rmtree(folder, ignore_errors=True)
    scored = [run_[kind] for run_ in runs for kind in ("cold_workers", "warm_workers")]
    same = all(submission["metrics"] == scored[0]["metrics"] for submission in scored)
    for submission in scored:
        submission.pop("metrics")
    result = {"samples": args.samples, "chunk_size": args.chunk_size, "runs": runs, "same_metrics": same}
    by_count = {run_["gpu_workers"]: run_ for run_ in runs}
    if 1 in by_count:
        for count, other in by_count.items():
            if count == 1:
                continue
            for kind in ("cold_workers", "warm_workers"):
                speedup = by_count[1][kind]["seconds_to_finished"] / other[kind]["seconds_to_finished"]
                result[f"speedup_{count}_workers_{kind}"] = round(speedup, 3)
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--samples", type=int, default=2000)
    parser.add_argument("--chunk-size", type=int, default=250)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2], help="gpu worker counts, one run each")
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

"""Fault drills of the leaderboard against its own PostgreSQL, Redis, web and worker processes.

    .venv/bin/python benchmarks/fault_drills.py [--runs 3] [--out benchmarks/results/fault-drills.json]

Each run starts a PostgreSQL cluster (port 5440) and a Redis with append-only
persistence (port 6390) in a temporary folder, a gunicorn web process (port 8790)
and Celery workers, all on 127.0.0.1, and stops them all at the end. The machine's
shared PostgreSQL and Redis are never touched. Drills:

- worker_child_sigkill: SIGKILL the pool process scoring a chunk. The parent
  rejects the message (acks_late + reject_on_worker_lost), so it is delivered
  again, and the evaluation finishes with the metrics of an undisturbed run.
- worker_sigkill_reaper: SIGKILL the whole worker mid-chunk, start a second
  worker; the reaper re-queues the missing chunks and the evaluation finishes.
- redis_restart: restart Redis (append-only file kept) while chunks are scoring.
- redis_restart_no_persistence: the same with a Redis that keeps nothing; the
  reaper re-sends what the restart lost.
- postgres_restart: restart PostgreSQL while the web process serves and a worker
  scores; pages answer 503 meanwhile and 200 afterwards without a web restart.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

REPOSITORY = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPOSITORY))
PYTHON = sys.executable
PG_BIN = sorted(Path("/usr/lib/postgresql").glob("*/bin"))[-1] if Path("/usr/lib/postgresql").is_dir() else None
PG_PORT, REDIS_PORT, WEB_PORT = 5440, 6390, 8790
CHUNK_SIZE = 3  # 8 samples in 3 chunks
FINISH_TIMEOUT = 240
# The reaper treats work as stale after this many seconds without a heartbeat.
HEARTBEAT_TIMEOUT = 8
# Seconds a drill waits after a Redis restart before it runs the reaper.
REDIS_GRACE_SECONDS = 30

logger = logging.getLogger("fault_drills")


def wait_until(condition, timeout: float, what: str, interval: float = 0.2):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(interval)
    raise TimeoutError(f"{what} did not happen within {timeout} s")


def port_open(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) == 0


# Servers --------------------------------------------------------------------------------


def as_postgres_user() -> list[str]:
    """Return the command prefix that runs PostgreSQL as `postgres`, because it does not run as root."""
    return ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []


class Postgres:
    def __init__(self, folder: Path):
        home = folder / "postgres"
        home.mkdir()
        if os.geteuid() == 0:
            folder.chmod(0o755)
            shutil.chown(home, "postgres")
        self.data = home / "pgdata"
        self.log = home / "postgres.log"
        subprocess.run([*as_postgres_user(), str(PG_BIN / "initdb"), "-D", str(self.data), "-U", "postgres",
                        "--auth=trust"], check=True, capture_output=True)

    def pg_ctl(self, *args: str) -> None:
        subprocess.run([*as_postgres_user(), str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-l", str(self.log), "-w",
                        "-o", f"-p {PG_PORT} -k {self.data} -c listen_addresses=127.0.0.1", *args],
                       check=True, capture_output=True)

    def start(self) -> None:
        self.pg_ctl("start")

    def stop(self) -> None:
        self.pg_ctl("stop", "-m", "fast")

    def create_database(self, name: str) -> None:
        subprocess.run([str(PG_BIN / "createdb"), "-h", "127.0.0.1", "-p", str(PG_PORT), "-U", "postgres", name],
                       check=True, capture_output=True)


class Redis:
    def __init__(self, folder: Path, persistent: bool):
        self.folder = folder / ("redis" if persistent else "redis-volatile")
        self.folder.mkdir()
        self.persistent = persistent
        self.process: subprocess.Popen | None = None

    def start(self) -> None:
        options = ["--appendonly", "yes", "--appendfsync", "always"] if self.persistent else ["--appendonly", "no"]
        self.process = subprocess.Popen(
            ["redis-server", "--port", str(REDIS_PORT), "--bind", "127.0.0.1", "--save", "", "--dir",
             str(self.folder), *options],
            stdout=open(self.folder / "redis.log", "ab"), stderr=subprocess.STDOUT,
        )
        wait_until(lambda: port_open(REDIS_PORT), 10, "Redis start")

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            # SHUTDOWN NOSAVE: no snapshot; only the append-only file (when on) survives.
            subprocess.run(["redis-cli", "-p", str(REDIS_PORT), "shutdown", "nosave"], capture_output=True)
            self.process.wait(timeout=10)
        self.process = None


class Process:
    """A web or worker subprocess with its log."""

    def __init__(self, name: str, command: list[str], env: dict, folder: Path):
        self.log_path = folder / f"{name}.log"
        self.process = subprocess.Popen(command, cwd=REPOSITORY, env=env, stdout=open(self.log_path, "ab"),
                                        stderr=subprocess.STDOUT, start_new_session=True)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def children(self) -> list[int]:
        path = Path(f"/proc/{self.process.pid}/task/{self.process.pid}/children")
        return [int(pid) for pid in path.read_text().split()] if path.exists() else []

    def kill_group(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.kill_group()


def start_worker(name: str, env: dict, folder: Path) -> Process:
    command = [PYTHON, "-m", "celery", "-A", "leaderboard", "worker", "-Q", "default,gpu", "--pool", "prefork",
               "--concurrency", "1", "--loglevel", "INFO", "--without-gossip", "--without-mingle",
               "--hostname", f"{name}@%h"]
    worker = Process(name, command, env, folder)
    wait_until(lambda: " ready." in worker.log(), 90, f"worker {name} ready")
    return worker


def start_web(env: dict, folder: Path) -> Process:
    command = [PYTHON, "-m", "gunicorn", "leaderboard.wsgi", "--bind", f"127.0.0.1:{WEB_PORT}",
               "--workers", "1", "--threads", "4", "--timeout", "60"]
    web = Process("web", command, env, folder)
    wait_until(lambda: port_open(WEB_PORT), 60, "web start")
    return web


def http_get(path: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{WEB_PORT}{path}", timeout=10) as response:
            return response.status, response.read().decode(errors="replace")
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode(errors="replace")
    except OSError as error:
        return 0, str(error)


# One run: the stack, the baseline and the drills ------------------------------------------


class Stack:
    """The servers, the Django setup in this process and the hosted demo split of one run."""

    def __init__(self, folder: Path):
        self.folder = folder
        self.postgres = Postgres(folder)
        self.postgres.start()
        self.postgres.create_database("reflade")
        self.redis = Redis(folder, persistent=True)
        self.redis.start()
        self.env = {
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "benchmarks.fault_drill_settings",
            "PYTHONPATH": str(REPOSITORY),
            "HF_HUB_OFFLINE": "1",
            "REFLADE_DATA_DIR": str(folder / "data"),
            "REFLADE_WEIGHTS": str(folder / "weights"),
            "DATABASE_URL": f"postgres://postgres@127.0.0.1:{PG_PORT}/reflade",
            "CELERY_BROKER_URL": f"redis://127.0.0.1:{REDIS_PORT}/0",
            "CELERY_RESULT_BACKEND": f"redis://127.0.0.1:{REDIS_PORT}/1",
            "REFLADE_HEARTBEAT_TIMEOUT": str(HEARTBEAT_TIMEOUT),
            "REFLADE_LOADER_WORKERS": "0",
        }
        os.environ.update(self.env)
        self.processes: list[Process] = []
        self.setup_django()

    def setup_django(self) -> None:
        import django

        django.setup()
        from django.contrib.auth import get_user_model
        from django.core.management import call_command

        from evaluator.config import load_config
        from evaluator.submission import write_submission
        from evaluator.synthetic import make_synthetic_split
        from leaderboard import services
        from tests.leaderboard.conftest import config_name_for_tests, cutout_predictions

        call_command("migrate", verbosity=0)
        config_name = config_name_for_tests()
        subprocess.run([PYTHON, "-m", "evaluator", "weights", "make-test", "--dir", self.env["REFLADE_WEIGHTS"],
                        "--config", config_name], cwd=REPOSITORY, check=True, capture_output=True)
        split_dir = make_synthetic_split(self.folder / "splits", samples=8, size=64, seed=3, name="val")
        self.zip_path = write_submission(self.folder / "cutout.zip", cutout_predictions(split_dir), {"method": "cut-out"})
        config = {**load_config(config_name).to_json(), "chunk_size": CHUNK_SIZE}
        benchmark = services.benchmark_create(slug="demo", name="Demo", description="Drill.", config=config)
        self.split = services.split_import(benchmark=benchmark, name="val", path=split_dir, visibility="public")
        self.user = get_user_model().objects.create_user("drill", "drill@example.org", "drill-pass-1", is_staff=True)

    def worker(self, name: str) -> Process:
        worker = start_worker(name, self.env, self.folder)
        self.processes.append(worker)
        return worker

    def web(self) -> Process:
        web = start_web(self.env, self.folder)
        self.processes.append(web)
        return web

    def submit(self, name: str):
        from django.core.files import File

        from leaderboard import services

        with open(self.zip_path, "rb") as handle:
            return services.submission_create(user=self.user, split=self.split, method_name=name,
                                              uploaded_file=File(handle, name="cutout.zip"))

    def close(self) -> None:
        for process in self.processes:
            process.stop()
        self.redis.stop()
        try:
            self.postgres.stop()
        except subprocess.CalledProcessError as error:
            logger.warning("stopping PostgreSQL failed: %s", error.stderr)


def evaluation_of(submission):
    """Return the current evaluation, reading again after a dropped connection."""
    from django.db import InterfaceError, OperationalError, connection

    from leaderboard.models import Evaluation

    for _ in range(50):
        try:
            return Evaluation.objects.filter(submission=submission).order_by("-pk").first()
        except (OperationalError, InterfaceError):
            connection.close()
            time.sleep(0.2)
    raise RuntimeError("the database did not come back")


def wait_state(submission, states: set[str], timeout: float = FINISH_TIMEOUT):
    return wait_until(lambda: (e := evaluation_of(submission)) and e.state in states and e, timeout,
                      f"evaluation of {submission.method_name} in {states}", interval=0.05)


def finish_with_reaper(submission, timeout: float = FINISH_TIMEOUT) -> tuple[object, int]:
    """Run the reaper once a second until the evaluation ends; return it and the re-queue count."""
    from leaderboard.tasks import reap_stale_evaluations

    requeued = 0
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        evaluation = evaluation_of(submission)
        if evaluation.is_terminal:
            return evaluation, requeued
        requeued += reap_stale_evaluations()["requeued"]
        time.sleep(1)
    raise TimeoutError(f"evaluation of {submission.method_name} did not end within {timeout} s")


def comparable(metrics: dict) -> dict:
    return {key: value for key, value in metrics.items() if key not in ("provenance", "warnings")}


def check_finished(evaluation, baseline: dict) -> dict:
    from leaderboard.models import ChunkResult

    # The aggregation deletes the chunk rows just after it marks the evaluation finished.
    rows = ChunkResult.objects.filter(evaluation=evaluation)
    try:
        wait_until(lambda: not rows.exists(), 10, "chunk rows cleared")
    except TimeoutError:
        pass
    return {
        "state": evaluation.state,
        "chunks_done": evaluation.chunks_done,
        "chunks_total": evaluation.chunks_total,
        "attempts": evaluation.attempts,
        "chunk_rows_left": ChunkResult.objects.filter(evaluation=evaluation).count(),
        "same_metrics": evaluation.state == "finished" and comparable(evaluation.metrics) == baseline,
        "failure": evaluation.staff_detail[:300],
    }


def chunk_started(worker: Process, submission, log_offset: int) -> int:
    """Wait until the worker logs that it started scoring a chunk of the submission; return its index."""
    pattern = re.compile(rf"\[evaluation={evaluation_of(submission).pk} submission=\d+\]: scoring samples (\d+)\.\.")

    def started():
        match = pattern.search(worker.log()[log_offset:])
        return match and (int(match[1]) // CHUNK_SIZE,)

    return wait_until(started, FINISH_TIMEOUT, f"a chunk of {submission.method_name} started", interval=0.02)[0]


def chunk_stored(submission, chunk: int) -> bool:
    from leaderboard.models import ChunkResult

    return ChunkResult.objects.filter(evaluation=evaluation_of(submission), chunk=chunk).exists()


def process_dead(pid: int) -> bool:
    """True once the process has exited: gone, or a zombie its parent has not reaped."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except FileNotFoundError:
        return True


def drill_worker_child_sigkill(stack: Stack, baseline: dict) -> dict:
    # The kill waits for the chunk to start in the pool process: a process killed
    # before it took the task from its parent leaves the message with the parent,
    # and only the reaper or a worker restart brings it back.
    worker = stack.worker("child-kill")
    log_offset = len(worker.log())
    submission = stack.submit("child-kill")
    chunk = chunk_started(worker, submission, log_offset)
    (child,) = worker.children()
    os.kill(child, signal.SIGKILL)
    started = time.monotonic()
    wait_until(lambda: process_dead(child), 10, "the pool process exit")
    killed_mid_chunk = not chunk_stored(submission, chunk)
    killed_with = evaluation_of(submission).chunks_done
    evaluation = wait_state(submission, {"finished", "failed", "cancelled"})
    result = check_finished(evaluation, baseline)
    result.update(chunks_stored_at_kill=killed_with, killed_mid_chunk=killed_mid_chunk,
                  recovery_s=round(time.monotonic() - started, 1),
                  worker_alive=worker.process.poll() is None,
                  worker_lost_logged="WorkerLostError" in worker.log())
    worker.stop()
    return result


def drill_worker_sigkill_reaper(stack: Stack, baseline: dict) -> dict:
    worker = stack.worker("whole-kill")
    log_offset = len(worker.log())
    submission = stack.submit("whole-kill")
    chunk = chunk_started(worker, submission, log_offset)
    worker.kill_group()
    started = time.monotonic()
    killed_mid_chunk = not chunk_stored(submission, chunk)
    killed_with = evaluation_of(submission).chunks_done
    second = stack.worker("second")
    evaluation, requeued = finish_with_reaper(submission)
    result = check_finished(evaluation, baseline)
    result.update(chunks_stored_at_kill=killed_with, killed_mid_chunk=killed_mid_chunk, reaper_requeues=requeued,
                  recovery_s=round(time.monotonic() - started, 1))
    second.stop()
    return result


def drill_redis_restart(stack: Stack, baseline: dict, persistent: bool) -> dict:
    if stack.redis.persistent != persistent:
        stack.redis.stop()
        stack.redis = Redis(stack.folder, persistent=persistent)
        stack.redis.start()
    worker = stack.worker(f"redis-{'aof' if persistent else 'volatile'}")
    submission = stack.submit(f"redis-restart-{persistent}")
    wait_state(submission, {"scoring"})
    started = time.monotonic()
    stack.redis.stop()
    time.sleep(2)
    stack.redis.start()
    try:
        evaluation = wait_state(submission, {"finished", "failed", "cancelled"}, timeout=REDIS_GRACE_SECONDS)
        requeued = 0
    except TimeoutError:
        evaluation, requeued = finish_with_reaper(submission)
    result = check_finished(evaluation, baseline)
    result.update(reaper_requeues=requeued, recovery_s=round(time.monotonic() - started, 1),
                  worker_alive=worker.process.poll() is None)
    worker.stop()
    return result


def drill_postgres_restart(stack: Stack, baseline: dict) -> dict:
    import threading

    worker = stack.worker("postgres")
    stack.web()
    paths = {"page": "/benchmarks/demo/val/", "api": f"/api/v1/splits/{stack.split.pk}/leaderboard/",
             "healthz": "/healthz"}
    assert all(http_get(path)[0] == 200 for path in paths.values()), "the web process is not serving"
    submission = stack.submit("postgres-restart")
    wait_state(submission, {"scoring"})
    seen: list[tuple[float, str, int, str]] = []
    stop = threading.Event()

    def poll():
        while not stop.is_set():
            for name, path in paths.items():
                status, body = http_get(path)
                seen.append((time.monotonic(), name, status, body[:2000]))
            time.sleep(0.2)

    poller = threading.Thread(target=poll)
    poller.start()
    stack.postgres.stop()
    down_at = time.monotonic()
    time.sleep(3)
    stack.postgres.start()
    up_at = time.monotonic()
    wait_until(lambda: any(t > up_at and name == "page" and status == 200 for t, name, status, _ in seen), 60,
               "page served again")
    time.sleep(1)
    stop.set()
    poller.join()
    during = [(name, status, body) for t, name, status, body in seen if down_at + 0.5 < t < up_at]
    message = "The database is unavailable; try again in a minute."
    first_ok = {name: round(min([t for t, n, s, _ in seen if n == name and s == 200 and t > up_at], default=-1)
                            - up_at, 2) for name in paths}
    evaluation = wait_state(submission, {"finished", "failed", "cancelled"})
    result = check_finished(evaluation, baseline)
    result.update(
        statuses_while_down={name: sorted({s for n, s, _ in during if n == name}) for name in paths},
        page_message_shown=all(message in body for n, s, body in during if n == "page" and s == 503),
        api_envelope_while_down=sorted({body[:160] for n, s, body in during if n == "api"})[:2],
        seconds_to_first_200_after_start=first_ok,
        worker_alive=worker.process.poll() is None,
    )
    worker.stop()
    return result


DRILLS = ("worker_child_sigkill", "worker_sigkill_reaper", "redis_restart", "postgres_restart",
          "redis_restart_no_persistence")


def run_once(folder: Path, only: list[str]) -> dict:
    stack = Stack(folder)
    results: dict = {}
    try:
        worker = stack.worker("baseline")
        started = time.monotonic()
        evaluation = wait_state(stack.submit("baseline"), {"finished", "failed"})
        results["baseline"] = {"state": evaluation.state, "seconds": round(time.monotonic() - started, 1)}
        baseline = comparable(evaluation.metrics)
        worker.stop()
        drills = {
            "worker_child_sigkill": lambda: drill_worker_child_sigkill(stack, baseline),
            "worker_sigkill_reaper": lambda: drill_worker_sigkill_reaper(stack, baseline),
            "redis_restart": lambda: drill_redis_restart(stack, baseline, persistent=True),
            "postgres_restart": lambda: drill_postgres_restart(stack, baseline),
            "redis_restart_no_persistence": lambda: drill_redis_restart(stack, baseline, persistent=False),
        }
        for name in only:
            started = time.monotonic()
            try:
                results[name] = drills[name]()
            except Exception as error:  # a drill that breaks is a result, the others still run
                logger.exception("drill %s broke", name)
                results[name] = {"error": f"{type(error).__name__}: {error}"}
            results[name]["seconds"] = round(time.monotonic() - started, 1)
            for process in list(stack.processes):
                if "web" not in str(process.log_path):
                    process.stop()
    finally:
        stack.close()
    return results


def drill_passed(name: str, result: dict) -> bool:
    if "error" in result or not result.get("same_metrics") or result.get("chunk_rows_left"):
        return False
    if name.startswith("worker_") and not result.get("killed_mid_chunk"):
        return False
    if name == "postgres_restart":
        return 503 in result["statuses_while_down"]["page"] and result["page_message_shown"]
    return True


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--out", type=Path, default=REPOSITORY / "benchmarks" / "results" / "fault-drills.json")
    parser.add_argument("--drill", action="append", choices=DRILLS, help="run only this drill (repeatable)")
    parser.add_argument("--keep", type=Path, help="write each run's servers, logs and data under this folder")
    parser.add_argument("--one-run", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    if PG_BIN is None or any(port_open(port) for port in (PG_PORT, REDIS_PORT, WEB_PORT)):
        print(f"needs PostgreSQL binaries and free ports {PG_PORT}, {REDIS_PORT}, {WEB_PORT}", file=sys.stderr)
        return 2
    only = args.drill or list(DRILLS)
    if args.one_run:
        if args.keep:
            args.keep.mkdir(parents=True)
            args.one_run.write_text(json.dumps(run_once(args.keep.resolve(), only), indent=2))
            return 0
        with tempfile.TemporaryDirectory(prefix="reflade-drill-") as folder:
            args.one_run.write_text(json.dumps(run_once(Path(folder), only), indent=2))
        return 0

    runs = []
    for index in range(args.runs):
        out = args.out.with_suffix(f".run{index}.json")
        started = time.monotonic()
        # One process per run: Django's settings are read once per process.
        command = [PYTHON, __file__, "--one-run", str(out), *(f"--drill={name}" for name in only)]
        if args.keep:
            command.append(f"--keep={args.keep / f'run{index}'}")
        subprocess.run(command, cwd=REPOSITORY, check=False)
        result = json.loads(out.read_text()) if out.exists() else {"error": "the run wrote no result"}
        out.unlink(missing_ok=True)
        result["seconds"] = round(time.monotonic() - started, 1)
        runs.append(result)
        print(json.dumps(result, indent=2))
    summary = {name: sum(drill_passed(name, run.get(name, {"error": "missing"})) for run in runs) for name in only}
    args.out.write_text(json.dumps({"runs": runs, "passed": summary, "of": len(runs)}, indent=2))
    print("passed:", json.dumps(summary), f"of {len(runs)} runs")
    return 0 if all(count == len(runs) for count in summary.values()) else 1


if __name__ == "__main__":
    sys.exit(main())

"""`python manage.py demo`: the embedded mode in one command.

The command migrates the database and writes stand-in weights if the weights
folder is empty. It hosts a synthetic demo benchmark and creates a demo account
and a staff account. It then starts the web server and a Celery worker (with the
reaper) as child processes, publishes two baselines side by side (the prompt
cut-out and RefLayer tiny from the committed checkpoint), prints the address and
logins, and runs until Ctrl-C. A worker that dies is started again, and the work it
had in progress is re-queued at once. `--no-serve` builds everything, scores the
baselines in this process and exits.
"""

from __future__ import annotations

import logging
import os
import secrets
import signal
import subprocess
import sys
import time
from pathlib import Path

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from leaderboard.management.commands.publish_baseline import (
    baseline_owner,
    cutout_entry,
    publish,
    reflayer_entry,
)
from leaderboard.management.commands.run_worker import worker_command
from leaderboard.models import Benchmark, Evaluation, EvaluationState, Split, Submission
from leaderboard.services import benchmark_create, evaluation_requeue, split_import

logger = logging.getLogger(__name__)

BENCHMARK_SLUG = "demo"
SPLIT_NAME = "val"
DEMO_USER = "demo"
STAFF_USER = "admin"
TINY_CHECKPOINT = Path(__file__).resolve().parents[3] / "reference_model" / "checkpoints" / "tiny"


class Command(BaseCommand):
    help = "Build and run the demo: synthetic benchmark, accounts, web server, worker, baselines."

    def add_arguments(self, parser):
        parser.add_argument("--port", type=int, default=8000, help="web server port on 127.0.0.1 (default 8000)")
        parser.add_argument("--samples", type=int, default=48, help="samples in the demo split (default 48)")
        parser.add_argument("--size", type=int, default=128, help="image side of the demo split in pixels (default 128)")
        parser.add_argument("--config", default="test-tiny", help="benchmark config of the demo (default test-tiny)")
        parser.add_argument("--no-serve", action="store_true", help="build everything, score the baselines here and exit")

    def handle(self, *args, **options):
        call_command("migrate", interactive=False, verbosity=0)
        ensure_weights(options["config"], self.stdout)
        split = ensure_demo_split(options["samples"], options["size"], options["config"])
        demo_password = reset_user(DEMO_USER, staff=False)
        staff_password = reset_user(STAFF_USER, staff=True)

        if options["no_serve"]:
            publish_baselines(split, eager=True, stdout=self.stdout)
            self.print_logins(None, demo_password, staff_password)
            return

        stop_on_signals()
        children = Children.for_port(options["port"])
        try:
            publish_baselines(split, eager=False, stdout=self.stdout)
            self.print_logins(f"http://127.0.0.1:{options['port']}/", demo_password, staff_password)
            wait_for_children(children)
        except KeyboardInterrupt:
            self.stdout.write("stopping")
        finally:
            children.stop()

    def print_logins(self, address: str | None, demo_password: str, staff_password: str) -> None:
        if address:
            self.stdout.write(self.style.SUCCESS(f"RefLade demo running at {address}  (Ctrl-C stops it)"))
        self.stdout.write(f"  researcher login: {DEMO_USER} / {demo_password}")
        self.stdout.write(f"  staff login:      {STAFF_USER} / {staff_password}  (admin at /admin/)")


def ensure_weights(config: str, stdout) -> Path:
    """Write stand-in metric weights when the weights folder is missing or empty.

    Raises CommandError when the folder has other files but lacks some that the
    config needs, rather than writing stand-ins among real weights.
    """
    from evaluator.config import load_config
    from evaluator.weights import required_files

    folder = Path(settings.REFLADE_WEIGHTS)
    if folder.is_dir() and any(folder.iterdir()):
        missing = [name for name in required_files(load_config(config)) if not (folder / name).is_file()]
        if missing:
            raise CommandError(
                f"the weights folder {folder} lacks {', '.join(missing)} that config {config} needs; "
                "set REFLADE_WEIGHTS to an empty folder for the demo's stand-in weights"
            )
        return folder
    stdout.write(f"writing stand-in weights for {config} to {folder}")
    subprocess.run(
        [sys.executable, "-m", "evaluator", "weights", "make-test", "--dir", str(folder), "--config", config],
        check=True,
    )
    return folder


def ensure_demo_split(samples: int, size: int, config: str) -> Split:
    """Return the synthetic `demo/val` split, generating and importing it on the first run only."""
    from evaluator.synthetic import make_synthetic_split

    benchmark = Benchmark.objects.filter(slug=BENCHMARK_SLUG).first()
    if benchmark is None:
        benchmark = benchmark_create(
            slug=BENCHMARK_SLUG,
            name="RefLade demo",
            description=(
                "Synthetic scenes from the RefLade data engine: photographs with drawn objects, "
                "exact ground truth, all six prompt types."
            ),
            config=config,
        )
    split = benchmark.splits.filter(name=SPLIT_NAME).first()
    if split is not None:
        return split
    folder = settings.DATA_DIR / "demo-splits"
    path = make_synthetic_split(folder, samples=samples, size=size, seed=0, name=SPLIT_NAME, overwrite=True)
    return split_import(benchmark=benchmark, name=SPLIT_NAME, path=path, visibility="public")


def reset_user(username: str, staff: bool) -> str:
    """Create the account or give it a new random password; return the password."""
    password = secrets.token_urlsafe(9)
    user, _ = get_user_model().objects.get_or_create(username=username)
    user.is_staff = staff
    user.is_superuser = staff
    user.set_password(password)
    user.save()
    return password


def publish_baselines(split: Split, eager: bool, stdout) -> list[Submission]:
    """Publish the prompt cut-out and RefLayer tiny baselines on the split, each once.

    `eager` scores them in this process (for `--no-serve`); otherwise the worker
    child scores them. RefLayer is left out, with a message, when its committed
    checkpoint is missing.
    """
    entries = [cutout_entry()]
    if (TINY_CHECKPOINT / "model.safetensors").is_file():
        entries.append(reflayer_entry(TINY_CHECKPOINT))
    else:
        stdout.write(f"no RefLayer checkpoint at {TINY_CHECKPOINT}; publishing the cut-out baseline only")
    owner = baseline_owner()
    submissions = []
    for entry in entries:
        result = publish(split, entry, owner, eager=eager)
        evaluation = result.submission.evaluations.order_by("-created_at").first()
        if eager and result.created and evaluation.state != "finished":
            raise CommandError(
                f"the baseline {entry.method_name} was not scored: {evaluation.state}\n{evaluation.staff_detail}"
            )
        submissions.append(result.submission)
    return submissions


def stop_on_signals() -> None:
    """Turn SIGINT and SIGTERM into KeyboardInterrupt, so the children are always stopped.

    A shell that starts this command in the background sets SIGINT to ignored, and
    a process manager stops it with SIGTERM; both should stop the demo cleanly.
    """

    def interrupt(signum, frame):
        raise KeyboardInterrupt

    signal.signal(signal.SIGINT, interrupt)
    signal.signal(signal.SIGTERM, interrupt)


def child_environment() -> dict[str, str]:
    """Return the children's environment, pinned to this process's data folder."""
    env = dict(os.environ)
    env["REFLADE_DATA_DIR"] = str(settings.DATA_DIR)
    env["REFLADE_WEIGHTS"] = str(settings.REFLADE_WEIGHTS)
    env.setdefault("DJANGO_SETTINGS_MODULE", "leaderboard.settings")
    return env


# Worker restarts the demo allows before it stops, so a worker that cannot start
# does not loop.
MAX_WORKER_RESTARTS = 5


class Children:
    """The demo's web server and worker, each in its own process group.

    The worker's group also contains its embedded beat and the scoring loader
    processes, which outlive a worker killed with SIGKILL unless the group is
    stopped too.
    """

    def __init__(self, web_args: list[str], worker_args: list[str]):
        self.env = child_environment()
        self.worker_args = worker_args
        self.web = self._start(web_args)
        self.worker = self._start(worker_args)
        self.restarts = 0
        logger.info("demo started the web server (pid %s) and the worker (pid %s)", self.web.pid, self.worker.pid)

    @classmethod
    def for_port(cls, port: int) -> Children:
        """Start `runserver` on 127.0.0.1:`port` and a worker on both queues with the reaper."""
        manage = Path(settings.BASE_DIR) / "manage.py"
        return cls(
            [sys.executable, str(manage), "runserver", f"127.0.0.1:{port}", "--noreload"],
            worker_command("default,gpu", "solo", beat=True),
        )

    def _start(self, command: list[str]) -> subprocess.Popen:
        return subprocess.Popen(command, env=self.env, start_new_session=True)

    def check(self) -> None:
        """Restart a worker that exited and re-queue its work; raise CommandError when the
        web server exited or the worker exited more than MAX_WORKER_RESTARTS times."""
        if self.web.poll() is not None:
            raise CommandError(f"the web server exited with status {self.web.returncode}")
        if self.worker.poll() is None:
            return
        status = self.worker.returncode
        kill_group(self.worker)
        if self.restarts >= MAX_WORKER_RESTARTS:
            raise CommandError(f"the worker exited with status {status} after {self.restarts} restarts")
        self.restarts += 1
        requeued = requeue_in_flight()
        self.worker = self._start(self.worker_args)
        logger.warning(
            "the worker exited with status %s; re-queued %d evaluations in progress and started it again "
            "(pid %s, restart %d of %d)", status, requeued, self.worker.pid, self.restarts, MAX_WORKER_RESTARTS,
        )

    def stop(self) -> None:
        """Stop both children with SIGTERM (SIGKILL after 20 s), then what is left in their process groups."""
        children = [self.web, self.worker]
        for child in children:
            if child.poll() is None:
                child.send_signal(signal.SIGTERM)
        for child in children:
            try:
                child.wait(timeout=20)
            except subprocess.TimeoutExpired:
                logger.warning("child %s did not stop within 20 s; killing it", child.pid)
                child.kill()
                child.wait()
            kill_group(child)


def kill_group(child: subprocess.Popen) -> None:
    """SIGKILL what is left of an exited child's process group (its beat, its loader processes)."""
    try:
        os.killpg(child.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def requeue_in_flight() -> int:
    """Send every evaluation being validated, scored or aggregated back to the queue.

    The demo runs one worker, so when it dies all work in progress was its own. The
    embedded broker never delivers a message again once a worker has taken it, so
    without this the reaper would find the work only after REFLADE_HEARTBEAT_TIMEOUT.
    """
    now = timezone.now()
    in_flight = Evaluation.objects.filter(
        state__in=[EvaluationState.VALIDATING, EvaluationState.SCORING, EvaluationState.AGGREGATING]
    ).values_list("pk", flat=True)
    outcomes = [evaluation_requeue(evaluation_id=pk, stale_before=now) for pk in in_flight]
    return outcomes.count("requeued")


def wait_for_children(children: Children) -> None:
    """Supervise the children until one of them fails for good; see `Children.check`."""
    while True:
        children.check()
        time.sleep(0.5)

"""`python manage.py run_worker`: a Celery worker on the leaderboard's queues."""

from __future__ import annotations

import os
import sys

from django.conf import settings
from django.core.management.base import BaseCommand


def worker_command(queues: str, pool: str, beat: bool) -> list[str]:
    """Build the `celery worker` command line that the demo and this command run."""
    command = [
        sys.executable, "-m", "celery", "-A", "leaderboard", "worker",
        "-Q", queues, "--pool", pool, "--loglevel", "INFO",
        # Gossip, mingle and heartbeats need broadcast messages, which the
        # serverless SQLAlchemy broker does not carry.
        "--without-gossip", "--without-mingle", "--without-heartbeat",
    ]
    if beat:
        command += ["--beat", "--schedule", str(settings.DATA_DIR / "celerybeat-schedule")]
    return command


class Command(BaseCommand):
    help = "Run a Celery worker on the default and gpu queues (one process, embedded beat optional)."

    def add_arguments(self, parser):
        parser.add_argument("--queues", default="default,gpu", help="comma-separated queues (default default,gpu)")
        parser.add_argument("--pool", default="solo", help="Celery pool: solo, prefork or threads (default solo)")
        parser.add_argument("--beat", action="store_true", help="also run the periodic reaper (Celery beat)")

    def handle(self, *args, **options):
        command = worker_command(options["queues"], options["pool"], options["beat"])
        self.stdout.write(" ".join(command))
        sys.stdout.flush()
        os.execv(sys.executable, command)

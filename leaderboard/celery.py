"""The Celery application: `celery -A leaderboard worker -Q default,gpu`.

Configuration comes from the Django settings prefixed `CELERY_`. Workers log
through Django's LOGGING setting instead of Celery's own, so their records carry
the evaluation and submission ids and follow `REFLADE_LOG_FORMAT`.
"""

import logging.config
import os

from celery import Celery
from celery.exceptions import TaskRevokedError
from celery.signals import setup_logging

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "leaderboard.settings")

# The reason the reaper records on the chunk tasks of a dispatch it replaces.
REQUEUED_REASON = "re-queued after its heartbeat stopped"


class RequeuedChordFilter(logging.Filter):
    """Log the end of a replaced chord as one warning instead of an error with a traceback.

    `leaderboard.tasks.revoke_lost_chunks` marks the chunk tasks a dead worker lost
    as revoked, so the old chord's `celery.chord_unlock` ends with TaskRevokedError,
    which Celery logs with `logger.exception`. That end is expected.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        error = record.exc_info[1] if record.exc_info else None
        if isinstance(error, TaskRevokedError) and str(error) == REQUEUED_REASON:
            record.msg = "chord %r ended: its lost chunk tasks were %s"
            record.args = (record.args[0] if record.args else "?", REQUEUED_REASON)
            record.levelno, record.levelname = logging.WARNING, "WARNING"
            record.exc_info = record.exc_text = None
        return True


logging.getLogger("celery.app.builtins").addFilter(RequeuedChordFilter())

app = Celery("leaderboard")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks(["leaderboard"])


@setup_logging.connect
def configure_logging(loglevel=None, **kwargs) -> None:
    """Apply Django's LOGGING at the worker's --loglevel; connecting this signal
    stops Celery from replacing the configuration with its own."""
    from django.conf import settings

    logging.config.dictConfig(settings.LOGGING)
    if loglevel:
        logging.getLogger().setLevel(loglevel)

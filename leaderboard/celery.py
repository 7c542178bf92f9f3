"""The Celery application: `celery -A leaderboard worker -Q default,gpu`.

Configuration comes from the Django settings prefixed `CELERY_`. Workers log
through Django's LOGGING setting instead of Celery's own, so their records carry
the evaluation and submission ids and follow `REFLADE_LOG_FORMAT`.
"""

import logging.config
import os

from celery import Celery
from celery.signals import setup_logging

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "leaderboard.settings")

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

"""The Celery application: `celery -A leaderboard worker -Q default,gpu`.

Configuration comes from the Django settings prefixed `CELERY_`.
"""

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "leaderboard.settings")

app = Celery("leaderboard")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks(["leaderboard"])

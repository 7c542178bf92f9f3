"""Test-wide environment, set before Django loads its settings.

Each test session gets its own data folder (database, broker, storages, cache),
so tests never touch `./data`. Set DATABASE_URL, CELERY_BROKER_URL and
CELERY_RESULT_BACKEND to run the same tests on PostgreSQL and Redis.
"""

import os
import tempfile

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "leaderboard.settings")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("REFLADE_DATA_DIR", tempfile.mkdtemp(prefix="reflade-test-"))

# pytest-django reads DJANGO_SETTINGS_MODULE before this file runs, so Django is set
# up here. With `DJANGO_SETTINGS_MODULE = "leaderboard.settings"` under
# [tool.pytest.ini_options], this call finds Django already set up and does nothing.
import django  # noqa: E402

django.setup()

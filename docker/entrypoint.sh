#!/bin/sh
# Entry point of the web and worker images: wait for the database, then run the
# container's command (gunicorn, celery or manage.py) in place of this shell.
#
# REFLADE_DB_WAIT_SECONDS (default 60) bounds the wait. Workers on other hosts often
# start before the database accepts connections, and a bounded wait avoids a
# restart loop. Migrations run only in the `migrate` service, never here.
set -eu

python - <<'PYTHON'
import logging
import os
import sys
import time

import django
from django.db import connection
from django.db.utils import OperationalError

django.setup()
logger = logging.getLogger("reflade.entrypoint")
limit = int(os.environ.get("REFLADE_DB_WAIT_SECONDS", "60"))
deadline = time.monotonic() + limit
while True:
    try:
        connection.ensure_connection()
    except OperationalError as error:
        if time.monotonic() >= deadline:
            logger.error("database not reachable after %d s: %s; check DATABASE_URL", limit, error)
            sys.exit(1)
        logger.info("waiting for the database: %s", error)
        time.sleep(2)
    else:
        connection.close()
        break
PYTHON

exec "$@"

#!/usr/bin/env bash
# Install everything, start the local services, and run the test suite twice: the
# whole suite in the embedded mode (SQLite, serverless broker), then the leaderboard
# tests against PostgreSQL and Redis. Arguments go to pytest and limit the run to the
# first pass, e.g. `scripts/test.sh tests/evaluator -x`.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/setup.sh
bash scripts/services.sh

export HF_HUB_OFFLINE=1
export TRANSFORMERS_OFFLINE=1

if [ $# -gt 0 ]; then
    exec .venv/bin/python -m pytest "$@"
fi

status=0
echo "== pass 1 of 2: whole suite, SQLite and the serverless broker"
.venv/bin/python -m pytest || status=$?

echo "== pass 2 of 2: leaderboard tests on PostgreSQL 127.0.0.1:5432 and Redis 127.0.0.1:6379"
DATABASE_URL=postgres://postgres@127.0.0.1:5432/reflade_ci \
CELERY_BROKER_URL=redis://127.0.0.1:6379/5 \
CELERY_RESULT_BACKEND=redis://127.0.0.1:6379/6 \
    .venv/bin/python -m pytest tests/leaderboard || status=$?

# pytest exits 5 when it collected no test: a failure here too, as is any other non-zero.
exit $status

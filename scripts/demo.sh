#!/usr/bin/env bash
# Install everything and run the demo: the site, a worker, the demo benchmark and
# its baseline entries. Extra arguments go to `manage.py demo`.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/setup.sh
export HF_HUB_OFFLINE=1
exec .venv/bin/python manage.py demo "$@"

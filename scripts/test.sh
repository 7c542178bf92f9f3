#!/usr/bin/env bash
# Install everything, start the local services, and run the whole test suite.
# Extra arguments go to pytest, e.g. `scripts/test.sh tests/evaluator -x`.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/setup.sh
bash scripts/services.sh

export HF_HUB_OFFLINE=1
export TRANSFORMERS_OFFLINE=1
set +e
.venv/bin/python -m pytest "$@"
status=$?
set -e
# pytest exits 5 when it collected no test: that is a failure here too.
exit $status

#!/usr/bin/env bash
# Create or update the virtual environment in .venv with everything the project needs.
# Sourced by demo.sh and test.sh; safe to run again.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON="${PYTHON:-python3.11}"
command -v "$PYTHON" >/dev/null 2>&1 || PYTHON=python3

if [ ! -x .venv/bin/python ]; then
    echo "setup: creating .venv with $PYTHON"
    "$PYTHON" -m venv .venv
fi

# torch and torchvision first and pinned: pip takes these builds from local disk.
if ! .venv/bin/python -c "import torch, torchvision" >/dev/null 2>&1; then
    echo "setup: installing torch==2.14.1 torchvision==0.29.1"
    .venv/bin/python -m pip install --quiet --upgrade pip
    .venv/bin/python -m pip install --quiet torch==2.14.1 torchvision==0.29.1
fi

# The project itself, editable, with the test tools.
stamp=.venv/.reflade-installed
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
    echo "setup: installing the project and its dependencies"
    .venv/bin/python -m pip install --quiet -e '.[dev]'
    touch "$stamp"
fi

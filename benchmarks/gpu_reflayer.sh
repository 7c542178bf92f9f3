#!/usr/bin/env bash
# One training step and one sampling step of RefLayer's sd3-medium denoiser
# (random weights, bf16) on the first GPU; prints times and peak memory.
# Usage: benchmarks/gpu_reflayer.sh [--batch-size N] [--resolution PX]
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-.venv/bin/python}"
if [ ! -x "$PYTHON" ]; then
    PYTHON=python3
fi
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader || true
HF_HUB_OFFLINE=1 "$PYTHON" benchmarks/gpu_reflayer.py "$@"

# syntax=docker/dockerfile:1
# GPU worker image: one Celery worker process on the `gpu` queue, scoring chunks on
# the one GPU its container is given. Run one container per GPU.
#
#   docker build -f docker/worker-gpu.Dockerfile -t reflade-worker-gpu .   (from the repository root)
#
# Build arguments:
#   CUDA_IMAGE       base image. It provides the NVIDIA container runtime variables;
#                    the CUDA libraries themselves come with the torch wheels.
#   TORCH_INDEX_URL  pip index for torch and torchvision; its CUDA version (cu130 by
#                    default) needs a host driver that supports it (580 or newer for
#                    CUDA 13.0).
# NOTE: Ubuntu 24.04 ships Python 3.12, while the web image and CI run 3.11.
ARG CUDA_IMAGE=nvidia/cuda:13.0.0-base-ubuntu24.04
FROM ${CUDA_IMAGE}

ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cu130

ENV DEBIAN_FRONTEND=noninteractive \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PATH=/opt/venv/bin:$PATH \
    DJANGO_SETTINGS_MODULE=leaderboard.settings \
    HF_HUB_OFFLINE=1 \
    REFLADE_DATA_DIR=/var/lib/reflade \
    REFLADE_WEIGHTS=/weights \
    REFLADE_CACHE=/cache \
    NVIDIA_DRIVER_CAPABILITIES=compute,utility

RUN apt-get update \
    && apt-get install -y --no-install-recommends python3 python3-venv \
    && rm -rf /var/lib/apt/lists/* \
    && python3 -m venv /opt/venv

# 1. torch first, pinned, built for CUDA.
RUN pip install --index-url "${TORCH_INDEX_URL}" torch==2.14.1 torchvision==0.29.1

# 2. The project, editable, so settings find templates/ and the evaluator configs in /app.
WORKDIR /app
COPY pyproject.toml README.md manage.py ./
COPY evaluator evaluator
COPY leaderboard leaderboard
COPY reference_model reference_model
COPY templates templates
COPY docker/entrypoint.sh /usr/local/bin/reflade-entrypoint
RUN pip install -e . && chmod 0755 /usr/local/bin/reflade-entrypoint

# 3. A non-root user. /weights is mounted read-only; /cache keeps the per-split
#    ground-truth features between restarts.
RUN useradd --system --uid 10001 --user-group --home-dir /app --no-create-home reflade \
    && mkdir -p /var/lib/reflade /weights /cache \
    && chown reflade:reflade /var/lib/reflade /weights /cache
USER reflade

# The worker answers a broadcast ping when its main process is alive and connected.
HEALTHCHECK --interval=60s --timeout=30s --start-period=120s --retries=3 \
    CMD celery -A leaderboard inspect ping --destination "gpu@$(hostname)" --timeout 10 >/dev/null
ENTRYPOINT ["reflade-entrypoint"]
# One process per GPU: the prefork pool with one child enforces the hard time
# limits, and a prefetch of one leaves queued chunks to idle workers.
CMD ["celery", "-A", "leaderboard", "worker", "-Q", "gpu", "--concurrency", "1", "--prefetch-multiplier", "1", "--hostname", "gpu@%h", "--loglevel", "INFO"]

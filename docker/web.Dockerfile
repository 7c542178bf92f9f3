# syntax=docker/dockerfile:1
# Web image: gunicorn serving the leaderboard, with static files collected at build
# time and served by whitenoise. The same image runs the `default` queue worker,
# Celery beat and the `migrate` one-shot.
#
#   docker build -f docker/web.Dockerfile -t reflade-web .     (from the repository root)
#
# Build arguments:
#   TORCH_INDEX_URL  pip index for torch and torchvision. The default is PyTorch's
#                    CPU wheel index, because the web process and the `default` queue
#                    never run the metric networks on a GPU.
FROM python:3.11-slim-bookworm

ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    DJANGO_SETTINGS_MODULE=leaderboard.settings \
    HF_HUB_OFFLINE=1 \
    REFLADE_DATA_DIR=/var/lib/reflade \
    REFLADE_WEIGHTS=/weights \
    REFLADE_CACHE=/cache

# 1. torch first, pinned, from the chosen index; the project's `torch==2.14.1`
#    requirement then accepts the installed local build (2.14.1+cpu).
RUN pip install --index-url "${TORCH_INDEX_URL}" torch==2.14.1 torchvision==0.29.1

# 2. The project, editable: settings find templates/ and the evaluator configs
#    relative to the source tree in /app.
WORKDIR /app
COPY pyproject.toml README.md manage.py ./
COPY evaluator evaluator
COPY leaderboard leaderboard
COPY reference_model reference_model
COPY templates templates
COPY docker/entrypoint.sh /usr/local/bin/reflade-entrypoint
RUN pip install -e . && chmod 0755 /usr/local/bin/reflade-entrypoint

# 3. A non-root user owning only the folders the processes write.
RUN useradd --system --uid 10001 --user-group --home-dir /app --no-create-home reflade \
    && mkdir -p /var/lib/reflade /weights /cache \
    && chown reflade:reflade /var/lib/reflade /weights /cache
USER reflade

# 4. Static files: DEBUG=0 selects whitenoise's compressed storage. The key below
#    exists only for this build step; the settings reject the embedded default.
RUN DEBUG=0 SECRET_KEY=build-time-only-collectstatic-key python manage.py collectstatic --noinput

EXPOSE 8000
HEALTHCHECK --interval=30s --timeout=10s --start-period=60s --retries=3 \
    CMD python -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=8)"
ENTRYPOINT ["reflade-entrypoint"]
# gthread workers answer the arbiter's heartbeat from the main thread, so a long
# upload does not hit gunicorn's worker timeout. WEB_CONCURRENCY sets the worker count.
CMD ["gunicorn", "leaderboard.wsgi", "--bind", "0.0.0.0:8000", "--worker-class", "gthread", "--threads", "8", "--access-logfile", "-"]

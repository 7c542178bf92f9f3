"""Django settings, read from environment variables.

Every variable has a default that runs the embedded mode: SQLite, files and a
serverless Celery broker under `REFLADE_DATA_DIR`. Production sets `DATABASE_URL`
(postgres://...), `CELERY_BROKER_URL` and `CELERY_RESULT_BACKEND` (redis://...),
`SECRET_KEY`, `DEBUG=0` and `ALLOWED_HOSTS`.
"""

from __future__ import annotations

import json
import os
from dataclasses import fields
from datetime import timedelta
from pathlib import Path
from urllib.parse import unquote, urlsplit

from django.core.exceptions import ImproperlyConfigured

from evaluator.archive import ArchiveLimits

BASE_DIR = Path(__file__).resolve().parent.parent


def env_bool(name: str, default: bool) -> bool:
    value = os.environ.get(name)
    if value is None:
        return default
    if value.lower() in ("1", "true", "yes", "on"):
        return True
    if value.lower() in ("0", "false", "no", "off", ""):
        return False
    raise ImproperlyConfigured(f"{name}={value!r} is not a boolean; use 1 or 0")


def env_int(name: str, default: int) -> int:
    value = os.environ.get(name)
    if value is None:
        return default
    try:
        return int(value)
    except ValueError:
        raise ImproperlyConfigured(f"{name}={value!r} is not an integer; give a whole number") from None


def database_from_url(url: str) -> dict:
    """Turn `sqlite:///path` or `postgres://user:password@host:port/name` into a DATABASES entry."""
    parts = urlsplit(url)
    if parts.scheme == "sqlite":
        # Three slashes give a relative path (sqlite:///data/db.sqlite3), four an absolute one.
        return sqlite_database(Path(unquote(parts.path[1:])))
    if parts.scheme in ("postgres", "postgresql"):
        name = unquote(parts.path.lstrip("/"))
        if not name:
            raise ImproperlyConfigured(f"DATABASE_URL {url!r} names no database; append /NAME")
        return {
            "ENGINE": "django.db.backends.postgresql",
            "NAME": name,
            "USER": unquote(parts.username or ""),
            "PASSWORD": unquote(parts.password or ""),
            "HOST": parts.hostname or "",
            "PORT": str(parts.port or ""),
            "CONN_MAX_AGE": env_int("REFLADE_DB_CONN_MAX_AGE", 60),
            # Check a reused connection first, so a restarted server costs no request.
            "CONN_HEALTH_CHECKS": True,
            "TEST": {"NAME": f"test_{name}"},
        }
    raise ImproperlyConfigured(
        f"DATABASE_URL scheme {parts.scheme!r} is not supported; use sqlite:///PATH or "
        "postgres://USER:PASSWORD@HOST:PORT/NAME"
    )


def sqlite_database(path: Path) -> dict:
    # IMMEDIATE transactions take the write lock at BEGIN, so concurrent writers
    # queue on the lock (for up to `timeout` seconds) instead of failing on upgrade.
    return {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": str(path),
        "OPTIONS": {
            "transaction_mode": "IMMEDIATE",
            "timeout": 30,
            # WAL lets readers (pages, the worker) proceed while a writer holds the lock.
            "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
        },
        # A file, not memory, so that a worker process can share the test database.
        "TEST": {"NAME": str(path.with_name(f"test_{path.name}"))},
    }


DATA_DIR = Path(os.environ.get("REFLADE_DATA_DIR", BASE_DIR / "data")).resolve()
DATA_DIR.mkdir(parents=True, exist_ok=True)

SECRET_KEY = os.environ.get("SECRET_KEY", "reflade-embedded-mode-key-not-for-production")
DEBUG = env_bool("DEBUG", True)
ALLOWED_HOSTS = [host for host in os.environ.get("ALLOWED_HOSTS", "127.0.0.1,localhost").split(",") if host]
CSRF_TRUSTED_ORIGINS = [
    origin for origin in os.environ.get("CSRF_TRUSTED_ORIGINS", "").split(",") if origin
]
if not DEBUG and SECRET_KEY.startswith("reflade-embedded"):
    raise ImproperlyConfigured("DEBUG is off but SECRET_KEY is the embedded default; set SECRET_KEY")

# HTTPS, for production behind a proxy that terminates TLS. Off by default, because
# the embedded mode serves plain HTTP on loopback.
if env_bool("REFLADE_TRUST_X_FORWARDED_PROTO", False):
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", False)
# Container health checks call /healthz over plain HTTP from inside the container.
SECURE_REDIRECT_EXEMPT = [r"^healthz$"]
SECURE_HSTS_SECONDS = env_int("SECURE_HSTS_SECONDS", 0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", False)
SECURE_HSTS_PRELOAD = env_bool("SECURE_HSTS_PRELOAD", False)
SESSION_COOKIE_SECURE = env_bool("SESSION_COOKIE_SECURE", False)
CSRF_COOKIE_SECURE = env_bool("CSRF_COOKIE_SECURE", False)

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "rest_framework.authtoken",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "leaderboard.apps.LeaderboardConfig",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "leaderboard.middleware.DatabaseUnavailableMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "leaderboard.urls"
WSGI_APPLICATION = "leaderboard.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

DATABASES = {
    "default": database_from_url(os.environ.get("DATABASE_URL", f"sqlite:///{DATA_DIR / 'db.sqlite3'}"))
}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
]
LOGIN_URL = "/accounts/login/"
LOGIN_REDIRECT_URL = "/"
LOGOUT_REDIRECT_URL = "/"

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "/static/"
STATIC_ROOT = DATA_DIR / "static"
STATIC_ROOT.mkdir(exist_ok=True)
MEDIA_URL = "/media/"
MEDIA_ROOT = DATA_DIR / "public"
PRIVATE_ROOT = DATA_DIR / "private"


def s3_storage(options: dict, *, bucket: str, location: str, backend: str) -> dict:
    return {"BACKEND": backend, "OPTIONS": {**options, "bucket_name": bucket, "location": location}}


def storages_from_env(environ=None) -> dict:
    """Build STORAGES: local folders by default, S3 buckets once `REFLADE_S3_BUCKET` is set.

    In S3 mode the main bucket contains the public inputs packages (`public/`),
    submissions (`submissions/`) and per-sample results (`samples/`). Ground truth
    goes to `REFLADE_S3_PRIVATE_BUCKET`, or to the `private/` prefix of the main
    bucket when that is unset. Nothing is public-read: downloads go through views
    that check permissions and redirect to presigned URLs.
    """
    environ = os.environ if environ is None else environ
    bucket = environ.get("REFLADE_S3_BUCKET")
    if bucket:
        s3_options = {
            "endpoint_url": environ.get("REFLADE_S3_ENDPOINT_URL") or None,
            "region_name": environ.get("REFLADE_S3_REGION") or None,
            "addressing_style": environ.get("REFLADE_S3_ADDRESSING_STYLE") or None,
            "signature_version": "s3v4",
            "file_overwrite": False,
            "default_acl": "private",
            "querystring_auth": True,
            # Reads spill to a temporary file above 16 MiB instead of holding the object in memory.
            "max_memory_size": 16 << 20,
        }
        private_bucket = environ.get("REFLADE_S3_PRIVATE_BUCKET") or bucket
        public = s3_storage(s3_options, bucket=bucket, location="public", backend="storages.backends.s3.S3Storage")
        private = s3_storage(s3_options, bucket=bucket, location="", backend="storages.backends.s3.S3Storage")
        ground_truth = s3_storage(
            s3_options,
            bucket=private_bucket,
            location="" if private_bucket != bucket else "private",
            backend="leaderboard.storage_s3.GroundTruthS3Storage",
        )
    else:
        public = {"BACKEND": "django.core.files.storage.FileSystemStorage"}
        private = {
            "BACKEND": "leaderboard.storage.PrivateFileSystemStorage",
            "OPTIONS": {"location": str(PRIVATE_ROOT)},
        }
        ground_truth = private
    return {
        "default": public,
        "private": private,
        "ground_truth": ground_truth,
        "staticfiles": {"BACKEND": "whitenoise.storage.CompressedStaticFilesStorage"}
        if not DEBUG
        else {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
    }


STORAGES = storages_from_env()

# Uploads above 2.5 MiB stream to a temporary file instead of memory.
FILE_UPLOAD_MAX_MEMORY_SIZE = 2_621_440
DATA_UPLOAD_MAX_MEMORY_SIZE = 2_621_440

# --- RefLade ---
REFLADE_WEIGHTS = os.environ.get("REFLADE_WEIGHTS", str(DATA_DIR / "weights"))
REFLADE_CACHE = os.environ.get("REFLADE_CACHE", str(DATA_DIR / "cache"))
REFLADE_UPLOAD_MAX_BYTES = env_int("REFLADE_UPLOAD_MAX_BYTES", 2 * 1024**3)
# Seconds a presigned download or part-upload URL stays valid (S3 mode only).
REFLADE_S3_URL_EXPIRY = env_int("REFLADE_S3_URL_EXPIRY", 300)
# Endpoint that browsers and API clients reach the object storage at, when it differs
# from REFLADE_S3_ENDPOINT_URL (a MinIO that the web process reaches as http://minio:9000).
REFLADE_S3_PUBLIC_ENDPOINT_URL = os.environ.get("REFLADE_S3_PUBLIC_ENDPOINT_URL") or None
# Part size of presigned multipart uploads when the client asks for none, in bytes.
# Limits on submission zips, by evaluator.archive.ArchiveLimits field name, as JSON,
# e.g. {"max_member_bytes": 33554432}; unset keeps the evaluator's defaults.
REFLADE_ARCHIVE_LIMITS = json.loads(os.environ.get("REFLADE_ARCHIVE_LIMITS") or "{}")
_unknown_limits = sorted(set(REFLADE_ARCHIVE_LIMITS) - {f.name for f in fields(ArchiveLimits)})
if _unknown_limits:
    raise ImproperlyConfigured(
        f"REFLADE_ARCHIVE_LIMITS names unknown limits {', '.join(_unknown_limits)}; "
        f"known: {', '.join(f.name for f in fields(ArchiveLimits))}"
    )
REFLADE_UPLOAD_PART_SIZE = env_int("REFLADE_UPLOAD_PART_SIZE", 64 << 20)
# Hours an open multipart upload may stay unfinished before the beat task aborts it.
REFLADE_UPLOAD_EXPIRY_HOURS = env_int("REFLADE_UPLOAD_EXPIRY_HOURS", 24)
REFLADE_QUOTA_LIMIT = env_int("REFLADE_QUOTA_LIMIT", 5)
# API rate limits by scope (anon, user, submissions) as JSON of DRF rate strings,
# e.g. {"submissions": "60/hour"}; null turns a scope off, unset keeps the defaults of
# leaderboard.api.throttling.
REFLADE_API_THROTTLE_RATES = json.loads(os.environ.get("REFLADE_API_THROTTLE_RATES") or "{}")
REFLADE_QUOTA_WINDOW_HOURS = env_int("REFLADE_QUOTA_WINDOW_HOURS", 24)
# Seconds without a heartbeat after which the reaper re-queues an evaluation. Scoring
# beats every 30 s; validation and aggregation beat only when they start, so this
# must exceed their hard time limit of 660 s.
REFLADE_HEARTBEAT_TIMEOUT = env_int("REFLADE_HEARTBEAT_TIMEOUT", 900)
# Seconds an evaluation may wait in the queue before the reaper re-sends it.
REFLADE_QUEUED_TIMEOUT = env_int("REFLADE_QUEUED_TIMEOUT", 6 * 3600)
# Scoring dispatches before the reaper fails an evaluation as an infrastructure failure.
REFLADE_MAX_ATTEMPTS = env_int("REFLADE_MAX_ATTEMPTS", 3)
REFLADE_CHUNK_SOFT_TIME_LIMIT = env_int("REFLADE_CHUNK_SOFT_TIME_LIMIT", 1800)
REFLADE_CHUNK_TIME_LIMIT = env_int("REFLADE_CHUNK_TIME_LIMIT", 2100)
REFLADE_DEVICE = os.environ.get("REFLADE_DEVICE") or None
# Image loader processes per scoring task; unset uses the evaluator's default.
REFLADE_LOADER_WORKERS = env_int("REFLADE_LOADER_WORKERS", -1)
REFLADE_LOADER_WORKERS = None if REFLADE_LOADER_WORKERS < 0 else REFLADE_LOADER_WORKERS

# --- Celery ---
CELERY_BROKER_URL = os.environ.get("CELERY_BROKER_URL", f"sqla+sqlite:///{DATA_DIR / 'broker.sqlite3'}")
CELERY_RESULT_BACKEND = os.environ.get(
    "CELERY_RESULT_BACKEND", f"db+sqlite:///{DATA_DIR / 'results.sqlite3'}"
)
CELERY_TASK_DEFAULT_QUEUE = "default"
CELERY_TASK_ROUTES = {
    "leaderboard.tasks.score_chunk_task": {"queue": "gpu"},
    "leaderboard.tasks.*": {"queue": "default"},
    "celery.*": {"queue": "default"},
}
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_SERIALIZER = "json"
CELERY_RESULT_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_RESULT_EXPIRES = timedelta(days=1)
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_BEAT_SCHEDULE = {
    "reap-stale-evaluations": {
        "task": "leaderboard.tasks.reap_stale_evaluations",
        "schedule": 60.0,
    },
    "abort-stale-uploads": {
        "task": "leaderboard.tasks.abort_stale_uploads",
        "schedule": 3600.0,
    },
}
if CELERY_BROKER_URL.startswith("redis"):
    # Redis redelivers an unacknowledged task after this many seconds. It must exceed
    # the longest task, or a running chunk is handed to a second worker.
    CELERY_BROKER_TRANSPORT_OPTIONS = {"visibility_timeout": REFLADE_CHUNK_TIME_LIMIT + 600}
elif CELERY_BROKER_URL.startswith("sqla+sqlite"):
    # The SQLAlchemy transport passes these options to create_engine. A 30 s lock wait
    # lets the web process and the worker share the SQLite broker file.
    CELERY_BROKER_TRANSPORT_OPTIONS = {"connect_args": {"timeout": 30}}
if CELERY_RESULT_BACKEND.startswith("db+sqlite"):
    CELERY_DATABASE_ENGINE_OPTIONS = {"connect_args": {"timeout": 30}}

# --- REST framework ---
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "rest_framework.authentication.TokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
}
SPECTACULAR_SETTINGS = {
    "TITLE": "RefLade leaderboard API",
    "VERSION": "1",
    "SERVE_INCLUDE_SCHEMA": False,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
}

# REFLADE_LOG_FORMAT=json writes one JSON object per line with evaluation_id and
# submission_id fields (leaderboard.log_context); the default is plain text.
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {"ids": {"()": "leaderboard.log_context.ContextFilter"}},
    "formatters": {
        "plain": {"format": "%(asctime)s %(levelname)s %(name)s%(context)s: %(message)s"},
        "json": {"()": "leaderboard.log_context.JsonFormatter"},
    },
    "handlers": {
        "console": {
            "class": "logging.StreamHandler",
            "formatter": "json" if os.environ.get("REFLADE_LOG_FORMAT") == "json" else "plain",
            "filters": ["ids"],
        }
    },
    "root": {"handlers": ["console"], "level": os.environ.get("REFLADE_LOG_LEVEL", "INFO")},
    "loggers": {"django.db.backends": {"level": "WARNING"}},
}

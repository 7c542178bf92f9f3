"""DATABASE_URL parsing and the environment helpers of the settings."""

from pathlib import Path

import pytest
from django.core.exceptions import ImproperlyConfigured

from leaderboard.settings import database_from_url, env_bool


def test_sqlite_absolute_path():
    database = database_from_url("sqlite:////srv/reflade/db.sqlite3")
    assert database["ENGINE"] == "django.db.backends.sqlite3"
    assert database["NAME"] == "/srv/reflade/db.sqlite3"
    assert database["OPTIONS"]["transaction_mode"] == "IMMEDIATE"
    assert database["OPTIONS"]["timeout"] == 30
    assert database["TEST"]["NAME"] == "/srv/reflade/test_db.sqlite3"


def test_sqlite_relative_path():
    assert database_from_url("sqlite:///data/db.sqlite3")["NAME"] == str(Path("data/db.sqlite3"))


def test_postgres_url():
    database = database_from_url("postgres://user:p%40ss@127.0.0.1:5432/reflade")
    assert database["ENGINE"] == "django.db.backends.postgresql"
    assert database["NAME"] == "reflade"
    assert database["USER"] == "user"
    assert database["PASSWORD"] == "p@ss"
    assert database["HOST"] == "127.0.0.1"
    assert database["PORT"] == "5432"


def test_postgres_url_without_name():
    with pytest.raises(ImproperlyConfigured, match="names no database; append /NAME"):
        database_from_url("postgres://user@127.0.0.1:5432")


def test_unknown_scheme():
    with pytest.raises(ImproperlyConfigured, match="scheme 'mysql' is not supported"):
        database_from_url("mysql://user@host/db")


def test_env_bool_rejects_words(monkeypatch):
    monkeypatch.setenv("DEBUG", "maybe")
    with pytest.raises(ImproperlyConfigured, match="DEBUG='maybe' is not a boolean; use 1 or 0"):
        env_bool("DEBUG", True)

"""`manage.py check --deploy` under the production environment of docker/.env.example."""

from __future__ import annotations

import secrets
import subprocess
import sys

from processes import ENV_EXAMPLE, REPOSITORY, read_env_file


def production_check_env(tmp_path) -> dict[str, str]:
    env = read_env_file(ENV_EXAMPLE)
    env.update(
        {
            "SECRET_KEY": secrets.token_urlsafe(50),
            "DATABASE_URL": f"sqlite:///{tmp_path / 'db.sqlite3'}",
            "REFLADE_DATA_DIR": str(tmp_path / "data"),
            "REFLADE_WEIGHTS": str(tmp_path / "weights"),
            "REFLADE_CACHE": str(tmp_path / "cache"),
            "DJANGO_SETTINGS_MODULE": "leaderboard.settings",
            "HF_HUB_OFFLINE": "1",
            "PATH": "/usr/bin:/bin",
            # The example starts HSTS short and without preload, which check --deploy
            # reports (W021); a hardened deployment ends at these values.
            "SECURE_HSTS_SECONDS": "31536000",
            "SECURE_HSTS_PRELOAD": "1",
        }
    )
    return env


def run_check(env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=REPOSITORY, env=env, capture_output=True, text=True, timeout=120,
    )


def test_check_deploy_clean(tmp_path):
    env = production_check_env(tmp_path)
    assert env["DEBUG"] == "0"
    result = run_check(env)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "System check identified no issues (0 silenced)." in result.stdout


def test_check_deploy_rejects_debug(tmp_path):
    env = {**production_check_env(tmp_path), "DEBUG": "1"}
    result = run_check(env)
    assert result.returncode == 1
    assert "security.W018" in result.stderr

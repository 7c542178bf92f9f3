"""The `minio-init` one-shot's shell script, run with a stand-in `mc` that records its calls."""

from __future__ import annotations

import json
import subprocess

from processes import load_compose

BUCKET = "reflade-test"
APP_USER = "reflade-app-test"
# A shell function in place of MinIO's client: it appends each call to $CALLS and, when
# $ATTACH_OUTPUT is set, fails `mc admin policy attach` with that output.
STAND_IN_MC = """
mc() {
    echo "mc $*" >> "$CALLS"
    if [ "$2 $3" = "policy attach" ] && [ -n "${ATTACH_OUTPUT:-}" ]; then
        echo "$ATTACH_OUTPUT"
        return 1
    fi
}
"""


def run_minio_init(tmp_path, attach_output: str = "") -> subprocess.CompletedProcess:
    script = load_compose()["services"]["minio-init"]["command"][0].replace("$$", "$")
    env = {
        "PATH": "/usr/bin:/bin",
        "HOME": str(tmp_path),
        "TMPDIR": str(tmp_path),
        "CALLS": str(tmp_path / "calls.log"),
        "ATTACH_OUTPUT": attach_output,
        "MINIO_ROOT_USER": "root-user",
        "MINIO_ROOT_PASSWORD": "root-password",
        "REFLADE_S3_BUCKET": BUCKET,
        "AWS_ACCESS_KEY_ID": APP_USER,
        "AWS_SECRET_ACCESS_KEY": "app-secret",
    }
    return subprocess.run(["sh", "-c", STAND_IN_MC + script], env=env, capture_output=True, text=True, timeout=30)


def test_minio_init_calls(tmp_path):
    result = run_minio_init(tmp_path)
    assert result.returncode == 0, result.stderr
    calls = (tmp_path / "calls.log").read_text().splitlines()
    assert calls == [
        "mc alias set reflade http://minio:9000 root-user root-password",
        f"mc mb --ignore-existing reflade/{BUCKET}",
        f"mc anonymous set none reflade/{BUCKET}",
        f"mc admin policy create reflade reflade-app {tmp_path}/reflade-app.json",
        f"mc admin user add reflade {APP_USER} app-secret",
        f"mc admin policy attach reflade reflade-app --user {APP_USER}",
    ]


def test_minio_init_policy_limits_bucket(tmp_path):
    assert run_minio_init(tmp_path).returncode == 0
    with open(tmp_path / "reflade-app.json") as handle:
        policy = json.load(handle)
    resources = {resource for statement in policy["Statement"] for resource in statement["Resource"]}
    assert resources == {f"arn:aws:s3:::{BUCKET}", f"arn:aws:s3:::{BUCKET}/*"}
    actions = {action for statement in policy["Statement"] for action in statement["Action"]}
    assert {"s3:GetObject", "s3:PutObject", "s3:DeleteObject", "s3:ListBucket"} <= actions
    assert all(statement["Effect"] == "Allow" for statement in policy["Statement"])


def test_minio_init_rerun_attached_policy(tmp_path):
    result = run_minio_init(tmp_path, attach_output="mc: <ERROR> policy reflade-app is already attached")
    assert result.returncode == 0, result.stderr
    assert "policy reflade-app is attached already" in result.stdout


def test_minio_init_attach_failure(tmp_path):
    result = run_minio_init(tmp_path, attach_output="mc: <ERROR> user not found")
    assert result.returncode == 1
    assert "mc: <ERROR> user not found" in result.stderr

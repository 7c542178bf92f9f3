"""Management commands, the health check and the admin actions."""

import io
from datetime import timedelta

import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone

from leaderboard import services
from leaderboard.models import (
    Benchmark,
    Evaluation,
    EvaluationState,
    Submission,
    Upload,
    UploadState,
)
from tests.leaderboard.conftest import upload


def test_import_split_creates_benchmark(db, synthetic_split_dir):
    out = io.StringIO()
    call_command(
        "import_split", str(synthetic_split_dir), "--benchmark", "bench", "--name", "test",
        "--visibility", "hidden", "--config", "test-tiny", stdout=out,
    )
    benchmark = Benchmark.objects.get(slug="bench")
    split = benchmark.splits.get(name="test")
    assert benchmark.config_name == "test-tiny"
    assert split.visibility == "hidden"
    assert split.sample_count == 8
    assert "created benchmark bench with config test-tiny 1" in out.getvalue()
    assert f"imported bench/test: 8 samples, hidden, ground truth version {split.ground_truth_version[:12]}" in out.getvalue()


def test_import_split_rejects_other_config(demo_split, synthetic_split_dir):
    with pytest.raises(CommandError, match="differs from --config reflade-v1"):
        call_command("import_split", str(synthetic_split_dir), "--benchmark", "demo", "--name", "x",
                     "--config", "reflade-v1")


def test_import_split_missing_path(db, tmp_path):
    with pytest.raises(CommandError, match="does not exist; give a folder or a .tar"):
        call_command("import_split", str(tmp_path / "nothing"), "--benchmark", "b", "--name", "val")


def test_healthz_ok(client, db):
    response = client.get("/healthz")
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "ok"
    assert set(body["checks"]) == {"database", "broker", "storage"}


def test_healthz_reports_broker_down(client, db, monkeypatch):
    from kombu import Connection

    from leaderboard.celery import app

    # A broker address where nothing listens; the app's own settings stay untouched.
    monkeypatch.setattr(app, "connection_for_write", lambda: Connection("redis://127.0.0.1:1/0"))
    response = client.get("/healthz")
    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "down"
    assert body["checks"]["broker"]["status"] == "down"
    assert body["checks"]["database"] == {"status": "ok"}


def test_admin_actions(admin_client, demo_split, user, cutout_zip):
    submission = services.submission_create(
        user=user, split=demo_split, uploaded_file=upload(cutout_zip), method_name="m"
    )
    Evaluation.objects.update(state=EvaluationState.FINISHED)
    url = "/admin/leaderboard/submission/"
    for action in ("flag", "mark_baseline", "rescore"):
        response = admin_client.post(url, {"action": action, "_selected_action": [submission.pk]})
        assert response.status_code == 302
    submission = Submission.objects.get(pk=submission.pk)
    assert submission.flagged
    assert submission.is_baseline
    assert submission.evaluations.count() == 2


def test_admin_evaluation_is_read_only(admin_client, demo_split, user, cutout_zip):
    submission = services.submission_create(
        user=user, split=demo_split, uploaded_file=upload(cutout_zip), method_name="m"
    )
    evaluation = submission.evaluations.get()
    response = admin_client.get(f"/admin/leaderboard/evaluation/{evaluation.pk}/change/")
    assert response.status_code == 200
    assert b"staff" in response.content.lower()
    response = admin_client.post(f"/admin/leaderboard/evaluation/{evaluation.pk}/change/", {"state": "finished"})
    assert response.status_code == 403
    evaluation.refresh_from_db()
    assert evaluation.state == EvaluationState.UPLOADED


def test_admin_upload_is_read_only(admin_client, demo_split, user):
    upload_row = Upload.objects.create(
        owner=user, split=demo_split, filename="predictions-v2.zip", key="submissions/split-1/x.zip",
        upload_id="id-1", size=10, sha256="0" * 64, part_size=10, part_count=1,
        expires_at=timezone.now() + timedelta(days=1),
    )
    response = admin_client.get("/admin/leaderboard/upload/")
    assert response.status_code == 200
    assert b"predictions-v2.zip" in response.content
    response = admin_client.post(f"/admin/leaderboard/upload/{upload_row.pk}/change/", {"state": "completed"})
    assert response.status_code == 403
    upload_row.refresh_from_db()
    assert upload_row.state == UploadState.OPEN


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_demo_no_serve_scores_baseline():
    out = io.StringIO()
    call_command("demo", "--no-serve", "--samples", "6", "--size", "64", stdout=out)

    split = Benchmark.objects.get(slug="demo").splits.get(name="val")
    baseline = Submission.objects.get(split=split, is_baseline=True, method_name="Prompt cut-out (baseline)")
    evaluation = baseline.evaluations.get()
    assert split.sample_count == 6
    assert evaluation.state == EvaluationState.FINISHED
    assert evaluation.metrics["hpa"]["value"] is not None
    assert "researcher login: demo / " in out.getvalue()
    assert "staff login:      admin / " in out.getvalue()

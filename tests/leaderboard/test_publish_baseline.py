"""`publish_baseline`: baseline entries predicted from the public package, scored by a real worker."""

import hashlib
import io
import os

import pytest
from django.contrib.auth import get_user_model
from django.core.management import CommandError, call_command

from leaderboard.management.commands.publish_baseline import CUTOUT_METHOD, training_data_note
from leaderboard.models import EvaluationState, Submission
from tests.leaderboard.conftest import REPOSITORY
from tests.leaderboard.test_end_to_end import wait_for_end

os.environ.setdefault("HF_HUB_OFFLINE", "1")

TINY_CHECKPOINT = REPOSITORY / "reference_model" / "checkpoints" / "tiny"
REFLAYER_METHOD = "RefLayer tiny (baseline)"


def tiny_sha256() -> str:
    return hashlib.sha256((TINY_CHECKPOINT / "model.safetensors").read_bytes()).hexdigest()


def publish(*arguments: str) -> str:
    out = io.StringIO()
    call_command("publish_baseline", "--benchmark", "demo", *arguments, stdout=out)
    return out.getvalue()


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_reflayer_published_once_and_scored(celery_worker_process, demo_split):
    arguments = ("--checkpoint", str(TINY_CHECKPOINT), "--steps", "2")
    first = publish(*arguments)

    submission = Submission.objects.get(split=demo_split, method_name=REFLAYER_METHOD)
    assert first == f"submitted {REFLAYER_METHOD} on demo/val as submission {submission.pk}\n"
    evaluation = wait_for_end(submission, celery_worker_process)
    assert evaluation.state == EvaluationState.FINISHED, f"{evaluation.staff_detail}\n{celery_worker_process.log()}"
    assert evaluation.metrics["hpa"]["value"] is not None

    submission.refresh_from_db()
    sha256 = tiny_sha256()
    assert submission.is_baseline
    assert submission.owner.username == "baseline"
    assert submission.owner.is_staff
    assert not evaluation.counts_for_quota
    assert "preset tiny, 2 sampling steps, guidance scale 2.0, 1 candidate(s)" in submission.description
    assert f"Training data: {training_data_note(TINY_CHECKPOINT)}" in submission.description
    assert f"Checkpoint model.safetensors SHA-256: {sha256}" in submission.description
    card = submission.metadata["model_card"]
    assert card["checkpoint_sha256"] == sha256
    assert (card["preset"], card["sampling_steps"], card["candidates"]) == ("tiny", 2, 1)
    assert "2,000-sample" in card["training_data"]

    second = publish(*arguments)
    assert second == (
        f"skipped demo/val: submission {submission.pk} already publishes {REFLAYER_METHOD} "
        "with this checkpoint; rescore that submission to score it again\n"
    )
    assert Submission.objects.filter(split=demo_split).count() == 1


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_cutout_published_and_scored(celery_worker_process, demo_split):
    publish("--kind", "cutout")
    cutout = Submission.objects.get(split=demo_split, method_name=CUTOUT_METHOD)
    evaluation = wait_for_end(cutout, celery_worker_process)

    assert evaluation.state == EvaluationState.FINISHED, f"{evaluation.staff_detail}\n{celery_worker_process.log()}"
    cutout.refresh_from_db()
    assert cutout.is_baseline
    assert cutout.metadata["method"] == "baseline:cutout"
    assert "skipped demo/val" in publish("--kind", "cutout")


def test_reflayer_needs_checkpoint(demo_split):
    with pytest.raises(CommandError, match="^--kind reflayer needs --checkpoint, a folder such as reference_model/checkpoints/tiny$"):
        publish()


def test_checkpoint_without_config_rejected(demo_split, tmp_path):
    with pytest.raises(CommandError, match="config.json not found; --checkpoint must be a folder written by"):
        publish("--checkpoint", str(tmp_path))
    assert not Submission.objects.exists()


def test_cutout_rejects_checkpoint(demo_split):
    with pytest.raises(CommandError, match="^--checkpoint is for --kind reflayer; the cut-out needs no checkpoint$"):
        publish("--kind", "cutout", "--checkpoint", str(TINY_CHECKPOINT))


def test_unknown_benchmark(db):
    with pytest.raises(CommandError, match="^--benchmark nowhere: no such benchmark; create it with import_split$"):
        call_command("publish_baseline", "--benchmark", "nowhere", "--kind", "cutout")


def test_owner_must_be_staff(demo_split, user):
    with pytest.raises(CommandError, match="^--owner alice is not staff; baselines are owned by staff accounts"):
        publish("--kind", "cutout", "--owner", "alice")
    assert not get_user_model().objects.filter(username="baseline").exists()


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_demo_publishes_both_baselines():
    call_command("demo", "--no-serve", "--samples", "6", "--size", "64", stdout=io.StringIO())
    call_command("demo", "--no-serve", "--samples", "6", "--size", "64", stdout=io.StringIO())

    baselines = Submission.objects.filter(split__benchmark__slug="demo", is_baseline=True).order_by("method_name")
    assert [baseline.method_name for baseline in baselines] == [CUTOUT_METHOD, REFLAYER_METHOD]
    for baseline in baselines:
        evaluation = baseline.evaluations.get()
        assert evaluation.state == EvaluationState.FINISHED, evaluation.staff_detail
        assert evaluation.metrics["hpa"]["value"] is not None
    assert baselines[1].metadata["model_card"]["checkpoint_sha256"] == tiny_sha256()

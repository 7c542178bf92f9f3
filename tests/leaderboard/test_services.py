"""Services: uploads, quota errors, cancel, re-score, flags, split import, selectors."""

import hashlib
from datetime import UTC, datetime, timedelta

import pytest
from django.core.files.base import ContentFile
from django.test import override_settings

from leaderboard import selectors, services
from leaderboard.models import Evaluation, EvaluationState, Split, Submission
from leaderboard.storage import private_storage, public_storage
from tests.leaderboard.conftest import upload

S = EvaluationState


def create(user, split, path, **extra):
    return services.submission_create(
        user=user, split=split, uploaded_file=upload(path), method_name=extra.pop("method_name", "cut-out"), **extra
    )


def test_create_stores_file_hash_and_evaluation(demo_split, user, cutout_zip, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks() as callbacks:
        submission = create(user, demo_split, cutout_zip)
    data = cutout_zip.read_bytes()
    assert submission.sha256 == hashlib.sha256(data).hexdigest()
    assert submission.size_bytes == len(data)
    assert private_storage().open(submission.file.name).read() == data
    evaluation = submission.evaluations.get()
    assert evaluation.state == S.UPLOADED
    assert evaluation.counts_for_quota
    assert evaluation.attempts == 1
    assert len(callbacks) == 1  # the validation task, sent after commit


def test_submission_file_is_private(demo_split, user, cutout_zip):
    submission = create(user, demo_split, cutout_zip)
    assert not public_storage().exists(submission.file.name)
    with pytest.raises(ValueError):
        private_storage().url(submission.file.name)


def test_quota_exceeded_message(demo_split, user, cutout_zip):
    demo_split.benchmark.quota_limit = 2
    demo_split.benchmark.save()
    first = create(user, demo_split, cutout_zip)
    create(user, demo_split, cutout_zip)
    opens = first.evaluations.get().created_at + timedelta(hours=24)

    with pytest.raises(services.QuotaExceeded) as caught:
        create(user, demo_split, cutout_zip)
    assert caught.value.status == 429
    assert caught.value.code == "quota_exceeded"
    assert caught.value.next_slot_at == opens
    assert str(caught.value) == (
        "Quota reached: you have made 2 of 2 submissions to demo/val in the last 24 hours. "
        f"The next slot opens at {opens.astimezone(UTC):%Y-%m-%d %H:%M} UTC. 2 of them are still being "
        "validated; each one found invalid gives its slot back, so try again once validation ends."
    )
    assert Submission.objects.count() == 2


@pytest.mark.parametrize(("validated", "tail"), [
    (1, " 1 of them is still being validated; each one found invalid gives its slot back, "
        "so try again once validation ends."),
    (2, ""),
])
def test_quota_message_counts_validating(demo_split, user, cutout_zip, validated, tail):
    demo_split.benchmark.quota_limit = 2
    demo_split.benchmark.save()
    first = create(user, demo_split, cutout_zip)
    second = create(user, demo_split, cutout_zip)
    for submission in (first, second)[:validated]:
        submission.evaluations.update(state=EvaluationState.QUEUED)
    opens = first.evaluations.get().created_at + timedelta(hours=24)

    with pytest.raises(services.QuotaExceeded) as caught:
        create(user, demo_split, cutout_zip)
    assert str(caught.value) == (
        "Quota reached: you have made 2 of 2 submissions to demo/val in the last 24 hours. "
        f"The next slot opens at {opens.astimezone(UTC):%Y-%m-%d %H:%M} UTC.{tail}"
    )


def test_failed_uploads_give_quota_back(demo_split, user, cutout_zip):
    demo_split.benchmark.quota_limit = 1
    demo_split.benchmark.save()
    submission = create(user, demo_split, cutout_zip)
    evaluation = submission.evaluations.get()
    Evaluation.objects.transition(evaluation.pk, S.UPLOADED, S.VALIDATING)
    services.evaluation_reject(evaluation_id=evaluation.pk, problems=[], user_message="invalid")

    status = selectors.quota_status(user=user, split=demo_split)
    assert status.used == 0
    assert status.next_slot_at is None
    create(user, demo_split, cutout_zip)


def test_quota_window_is_rolling(demo_split, user, cutout_zip):
    demo_split.benchmark.quota_limit = 1
    demo_split.benchmark.save()
    old = create(user, demo_split, cutout_zip)
    Evaluation.objects.filter(submission=old).update(created_at=datetime.now(UTC) - timedelta(hours=25))
    create(user, demo_split, cutout_zip)
    assert Submission.objects.filter(owner=user).count() == 2


def test_quota_is_per_user(demo_split, user, other_user, cutout_zip):
    demo_split.benchmark.quota_limit = 1
    demo_split.benchmark.save()
    create(user, demo_split, cutout_zip)
    create(other_user, demo_split, cutout_zip)
    assert selectors.quota_status(user=other_user, split=demo_split).used == 1


def test_staff_has_no_quota(demo_split, staff_user, cutout_zip):
    demo_split.benchmark.quota_limit = 0
    demo_split.benchmark.save()
    submission = create(staff_user, demo_split, cutout_zip, is_baseline=True)
    assert not submission.evaluations.get().counts_for_quota


@override_settings(REFLADE_UPLOAD_MAX_BYTES=1000)
def test_upload_too_large(demo_split, user, cutout_zip):
    with pytest.raises(services.UploadTooLarge) as caught:
        create(user, demo_split, cutout_zip)
    size = cutout_zip.stat().st_size
    assert caught.value.status == 413
    assert str(caught.value).startswith(f"The upload is {size / 1024:.1f} KiB, more than the limit of 1000 bytes")
    assert Submission.objects.count() == 0


def test_closed_split_rejects(demo_split, user, cutout_zip):
    demo_split.is_active = False
    demo_split.save()
    with pytest.raises(services.SplitClosed, match="demo/val does not accept submissions"):
        create(user, demo_split, cutout_zip)


def test_cancel_by_owner(demo_split, user, cutout_zip):
    submission = create(user, demo_split, cutout_zip)
    evaluation = services.submission_cancel(submission=submission, user=user)
    assert evaluation.state == S.CANCELLED
    assert evaluation.user_message == "Cancelled by its owner."
    assert evaluation.counts_for_quota


def test_cancel_by_stranger_rejected(demo_split, user, other_user, cutout_zip):
    submission = create(user, demo_split, cutout_zip)
    with pytest.raises(services.NotPermitted):
        services.submission_cancel(submission=submission, user=other_user)
    assert submission.evaluations.get().state == S.UPLOADED


def test_cancel_finished_rejected(demo_split, user, cutout_zip):
    submission = create(user, demo_split, cutout_zip)
    services.submission_cancel(submission=submission, user=user)
    with pytest.raises(services.InvalidState, match="cannot be cancelled because it is cancelled"):
        services.submission_cancel(submission=submission, user=user)


def test_rescore_creates_new_evaluation(demo_split, user, cutout_zip):
    submission = create(user, demo_split, cutout_zip)
    with pytest.raises(services.InvalidState, match="still being scored"):
        services.evaluation_rescore(submission=submission)
    services.submission_cancel(submission=submission, user=user)

    evaluation = services.evaluation_rescore(submission=submission)
    assert submission.evaluations.count() == 2
    assert selectors.evaluation_current(submission=submission) == evaluation
    assert not evaluation.counts_for_quota


def test_flag_and_baseline(demo_split, user, cutout_zip):
    submission = create(user, demo_split, cutout_zip)
    services.submission_set_flag(submission=submission, flagged=True)
    services.submission_set_baseline(submission=submission, is_baseline=True)
    submission.refresh_from_db()
    assert submission.flagged
    assert submission.is_baseline


def test_split_import_stores_ground_truth_privately(demo_split, synthetic_split_dir):
    assert demo_split.sample_count == 8
    assert private_storage().exists(demo_split.ground_truth_location)
    assert not public_storage().exists(demo_split.ground_truth_location)
    assert demo_split.ground_truth_location.endswith(f"{demo_split.ground_truth_version}.tar")
    import tarfile

    with public_storage().open(demo_split.public_package.name) as handle, tarfile.open(fileobj=handle) as tar:
        names = tar.getnames()
    assert any(name.endswith("manifest.jsonl") for name in names)
    assert not any("/gt/" in name for name in names)


def test_split_import_is_reproducible(demo_split, synthetic_split_dir):
    again = services.split_import(benchmark=demo_split.benchmark, name="val", path=synthetic_split_dir)
    assert again.pk == demo_split.pk
    assert again.ground_truth_version == demo_split.ground_truth_version
    assert Split.objects.count() == 1


def test_split_import_rejects_public_package(demo_benchmark, demo_split, tmp_path):
    package = tmp_path / "public.tar"
    package.write_bytes(public_storage().open(demo_split.public_package.name).read())
    with pytest.raises(services.ServiceError, match="has no gt/ folder"):
        services.split_import(benchmark=demo_benchmark, name="test", path=package)


def test_split_import_rejects_bad_visibility(demo_benchmark, synthetic_split_dir):
    with pytest.raises(services.ServiceError, match="'secret' is not one of public, hidden"):
        services.split_import(benchmark=demo_benchmark, name="x", path=synthetic_split_dir, visibility="secret")


def finish(submission, metrics):
    evaluation = submission.evaluations.get()
    Evaluation.objects.filter(pk=evaluation.pk).update(state=S.FINISHED, metrics=metrics, weights_verified=False)
    return evaluation


def report(hpa_fg, hpa_bg, fid_fg=10.0):
    def kind(hpa, fid, count):
        return {"count": count, "metrics": {
            "hpa": {"value": hpa, "ci": [hpa - 0.1, hpa + 0.1], "count": count},
            "fid": {"value": fid, "ci": None, "count": count},
            "pass_rate@1": {"value": 0.5, "ci": [0.2, 0.8], "count": count},
            "miou": {"value": 0.7 if count == 3 else None, "ci": None, "count": count},
        }}
    return {
        "hpa": {"value": (hpa_fg + hpa_bg) / 2, "ci": [0.1, 0.9], "layer_kinds": ["foreground", "background"]},
        "layer_kinds": {"foreground": kind(hpa_fg, fid_fg, 3), "background": kind(hpa_bg, 5.0, 1)},
    }


def test_leaderboard_rows_rank_and_flatten(demo_split, user, other_user, cutout_zip):
    low = create(user, demo_split, cutout_zip, method_name="low")
    high = create(other_user, demo_split, cutout_zip, method_name="high")
    hidden = create(other_user, demo_split, cutout_zip, method_name="hidden", is_public=False)
    finish(low, report(0.2, 0.4, fid_fg=30.0))
    finish(high, report(0.6, 0.8, fid_fg=5.0))
    finish(hidden, report(0.9, 0.9))

    rows = selectors.leaderboard_rows(split=demo_split)
    assert [row.method_name for row in rows] == ["high", "low"]
    assert [row.rank for row in rows] == [1, 2]
    top = rows[0]
    assert top.metrics["hpa"] == pytest.approx(0.7)
    assert top.metrics["hpa_foreground"] == 0.6
    assert top.metrics["fid_background"] == 5.0
    assert top.metrics["miou"] == 0.7
    assert top.metrics["pass_rate@1"] == pytest.approx(0.5)
    assert top.intervals["hpa"] == (0.1, 0.9)
    assert "fid_foreground" not in top.intervals
    assert top.owner_name == "bob"


def test_leaderboard_reads_report_pass_rates(demo_split, user, cutout_zip):
    entry = create(user, demo_split, cutout_zip, method_name="with pass rates")
    metrics = report(0.6, 0.8)
    metrics["pass_rates"] = {"pass_rate@1": {"value": 0.625, "ci": [0.4, 0.8], "count": 4}}
    finish(entry, metrics)

    row = selectors.leaderboard_rows(split=demo_split)[0]
    assert row.metrics["pass_rate@1"] == 0.625
    assert row.intervals["pass_rate@1"] == (0.4, 0.8)


def test_leaderboard_ordering_by_metric(demo_split, user, other_user, cutout_zip):
    a = create(user, demo_split, cutout_zip, method_name="a")
    b = create(other_user, demo_split, cutout_zip, method_name="b")
    finish(a, report(0.2, 0.4, fid_fg=30.0))
    finish(b, report(0.6, 0.8, fid_fg=5.0))

    assert [r.method_name for r in selectors.leaderboard_rows(split=demo_split, ordering="fid_foreground")] == ["b", "a"]
    assert [r.method_name for r in selectors.leaderboard_rows(split=demo_split, ordering="-fid_foreground")] == ["a", "b"]
    with pytest.raises(services.ServiceError, match="Unknown metric 'speed'"):
        selectors.leaderboard_rows(split=demo_split, ordering="speed")


def test_leaderboard_ties_share_rank(demo_split, user, other_user, cutout_zip):
    a = create(user, demo_split, cutout_zip, method_name="a")
    b = create(other_user, demo_split, cutout_zip, method_name="b")
    finish(a, report(0.5, 0.5))
    finish(b, report(0.50001, 0.5))
    assert [row.rank for row in selectors.leaderboard_rows(split=demo_split)] == [1, 1]


def test_leaderboard_hides_flagged(demo_split, user, cutout_zip):
    submission = create(user, demo_split, cutout_zip)
    finish(submission, report(0.5, 0.5))
    services.submission_set_flag(submission=submission, flagged=True)
    assert selectors.leaderboard_rows(split=demo_split) == []


def test_private_submission_not_found_for_others(demo_split, user, other_user, staff_user, cutout_zip):
    submission = create(user, demo_split, cutout_zip, is_public=False)
    with pytest.raises(services.NotFound):
        selectors.submission_get_for_viewer(submission_id=submission.pk, user=other_user)
    assert selectors.submission_get_for_viewer(submission_id=submission.pk, user=user) == submission
    assert selectors.submission_get_for_viewer(submission_id=submission.pk, user=staff_user) == submission


def test_samples_only_for_public_splits(demo_split, user, cutout_zip):
    import pandas as pd

    submission = create(user, demo_split, cutout_zip)
    evaluation = finish(submission, report(0.5, 0.5))
    name = private_storage().save("samples/test.parquet", ContentFile(b""))
    buffer = pd.DataFrame({"sample_id": ["a"], "lpips_vis": [0.1]})
    with private_storage().open(name, "wb") as handle:
        buffer.to_parquet(handle)
    Evaluation.objects.filter(pk=evaluation.pk).update(samples_file=name)

    frame = selectors.evaluation_samples_for_viewer(evaluation_id=evaluation.pk, user=user)
    assert list(frame["sample_id"]) == ["a"]
    Split.objects.filter(pk=demo_split.pk).update(visibility="hidden")
    with pytest.raises(services.NotFound, match="are not published"):
        selectors.evaluation_samples_for_viewer(evaluation_id=evaluation.pk, user=user)

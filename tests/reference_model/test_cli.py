import sys
from pathlib import Path

import pytest

import reference_model.predict
from evaluator.split import export_public, open_split
from evaluator.submission import validate_submission
from reference_model.cli import build_parser, main

TINY_CHECKPOINT = Path(__file__).parents[2] / "reference_model" / "checkpoints" / "tiny"


def test_train_arguments():
    args = build_parser().parse_args(["train", "--data", "split", "--out", "run", "--steps", "7", "--resume"])
    assert args.preset == "tiny"
    assert args.steps == 7
    assert args.resume


def test_predict_requires_checkpoint():
    with pytest.raises(SystemExit):
        build_parser().parse_args(["predict", "--split", "s", "--out", "p.zip"])


def test_baseline_command_writes_zip(disc_split_path, tmp_path, capsys):
    out = tmp_path / "cutout.zip"
    assert main(["baseline", "--kind", "cutout", "--split", str(disc_split_path), "--out", str(out)]) == 0
    assert capsys.readouterr().out.strip() == f"wrote {out}"
    assert validate_submission(out, open_split(disc_split_path)).valid


def test_train_data_or_synthetic_required():
    with pytest.raises(SystemExit):
        build_parser().parse_args(["train", "--out", "run"])
    with pytest.raises(SystemExit):
        build_parser().parse_args(["train", "--data", "split", "--synthetic", "4", "--out", "run"])


def test_synthetic_split_generated_once(tmp_path):
    from reference_model.cli import _synthetic_training_split

    folder = _synthetic_training_split(3, 64, str(tmp_path))
    assert folder == tmp_path / "data" / "train"
    assert len(open_split(folder)) == 3
    marker = folder / "manifest.jsonl"
    written = marker.stat().st_mtime_ns
    assert _synthetic_training_split(3, 64, str(tmp_path)) == folder
    assert marker.stat().st_mtime_ns == written


@pytest.mark.parametrize("extra, message", [
    (["--visible-tolerance", "1.5"], "--visible-tolerance: the visible tolerance must be in [0, 1], got 1.5"),
    (["--visible-tolerance", "nan"], "--visible-tolerance: the visible tolerance must be in [0, 1], got nan"),
    (["--visible-tolerance", "0.2", "--no-preserve-visible"],
     "--visible-tolerance has no effect with --no-preserve-visible; give only one of them"),
    (["--fill", "model", "--no-preserve-visible"],
     "--fill has no effect with --no-preserve-visible; give only one of them"),
    (["--fill-sigma", "2", "--no-preserve-visible"],
     "--fill-sigma has no effect with --no-preserve-visible; give only one of them"),
    (["--visibility-threshold", "1.5"], "--visibility-threshold: the visibility threshold must be in [0, 1], got 1.5"),
    (["--fill-sigma", "0"], "--fill-sigma: the fill sigma must be a finite number of pixels > 0, got 0.0"),
])
def test_predict_visible_flags_checked(extra, message, tmp_path, capsys):
    out = tmp_path / "preds.zip"
    assert main(["predict", "--checkpoint", "missing", "--split", "missing", "--out", str(out), *extra]) == 1
    assert capsys.readouterr().err == f"error: {message}\n"
    assert not out.exists()


@pytest.fixture
def model_loading_forbidden(monkeypatch):
    """Fail the test if the CLI calls `predict` or loads a checkpoint."""
    def fail(*args, **kwargs):
        pytest.fail("the model was loaded before the arguments were checked")

    monkeypatch.setattr(reference_model.predict, "predict", fail)
    monkeypatch.setattr(reference_model.predict, "load_model", fail)


def _predict(split, out, *extra, checkpoint=TINY_CHECKPOINT, command="predict") -> int:
    return main([command, "--checkpoint", str(checkpoint), "--split", str(split), "--out", str(out), *extra])


def test_candidates_checked_before_loading(model_loading_forbidden, disc_split_path, tmp_path, capsys):
    assert _predict(disc_split_path, tmp_path / "preds.zip", "--candidates", "9") == 1
    err = capsys.readouterr().err
    assert "error: --candidates must be between 1 and 8, got 9" in err.splitlines()
    assert "Traceback" not in err


@pytest.mark.parametrize("extra, message", [
    (["--candidates", "0"], "--candidates must be between 1 and 8, got 0"),
    (["--candidates", "3", "--max-candidates", "2"], "--candidates must be between 1 and 2, got 3"),
    (["--max-candidates", "0"], "--max-candidates must be at least 1, got 0"),
    (["--guidance-scale", "nan"], "--guidance-scale must be a finite number, got nan"),
    (["--visible-tolerance", "-0.1"], "--visible-tolerance: the visible tolerance must be in [0, 1], got -0.1"),
    (["--visibility-threshold", "nan"],
     "--visibility-threshold: the visibility threshold must be in [0, 1], got nan"),
    (["--fill-sigma", "-1"], "--fill-sigma: the fill sigma must be a finite number of pixels > 0, got -1.0"),
])
def test_predict_arguments_checked_first(extra, message, model_loading_forbidden, disc_split_path, tmp_path, capsys):
    assert _predict(disc_split_path, tmp_path / "preds.zip", *extra) == 1
    err = capsys.readouterr().err
    assert f"error: {message}" in err.splitlines()
    assert "Traceback" not in err


def test_predict_zero_steps_rejected(model_loading_forbidden, disc_split_path, tmp_path, capsys):
    assert _predict(disc_split_path, tmp_path / "preds.zip", "--steps", "0") == 1
    err = capsys.readouterr().err
    assert "error: --steps must be at least 1, got 0" in err.splitlines()
    assert "Traceback" not in err


def test_predict_missing_checkpoint(model_loading_forbidden, disc_split_path, tmp_path, capsys):
    missing = tmp_path / "no-checkpoint"
    assert _predict(disc_split_path, tmp_path / "preds.zip", checkpoint=missing) == 1
    err = capsys.readouterr().err
    expected = (
        f"error: {missing / 'config.json'} not found; "
        "--checkpoint must be a folder written by `python -m reference_model train`"
    )
    assert expected in err.splitlines()
    assert "Traceback" not in err


def test_predict_missing_split(model_loading_forbidden, tmp_path, capsys):
    missing = tmp_path / "no-split"
    assert _predict(missing, tmp_path / "preds.zip") == 1
    lines = capsys.readouterr().err.splitlines()
    assert f"error: invalid split {missing}" in lines
    problem = (
        f"- {missing}: split is neither a folder nor a .tar file "
        "(expected a folder or a .tar with manifest.jsonl, found nothing readable). Check the path."
    )
    assert problem in lines
    assert not any("Traceback" in line for line in lines)


def test_evaluate_public_split_rejected(model_loading_forbidden, disc_split_path, tmp_path, capsys):
    public = export_public(disc_split_path, tmp_path / "public")
    assert _predict(public, tmp_path / "preds.zip", command="evaluate") == 1
    err = capsys.readouterr().err
    expected = (
        f"error: split {public} has no gt/ folder, so its predictions cannot be scored; "
        "use the full split, or `predict` for its public inputs package"
    )
    assert expected in err.splitlines()
    assert "Traceback" not in err


def test_visible_oracle_public_split(disc_split_path, tmp_path, capsys):
    public = export_public(disc_split_path, tmp_path / "public")
    out = tmp_path / "oracle.zip"
    assert main(["baseline", "--kind", "visible-oracle", "--split", str(public), "--out", str(out)]) == 1
    err = capsys.readouterr().err
    expected = (
        f"error: the visible-oracle baseline reads gt/visible, but split {public} has no gt/ folder; "
        "use the full split, not its public inputs package"
    )
    assert expected in err.splitlines()
    assert "Traceback" not in err
    assert not out.exists()


def test_baseline_missing_split(tmp_path, capsys):
    missing = tmp_path / "no-split"
    assert main(["baseline", "--kind", "cutout", "--split", str(missing), "--out", str(tmp_path / "c.zip")]) == 1
    err = capsys.readouterr().err
    assert f"error: invalid split {missing}" in err.splitlines()
    assert "Traceback" not in err


@pytest.mark.parametrize("argv, message", [
    (["train", "--synthetic", "0", "--out", "run"], "--synthetic must be at least 1 sample, got 0"),
    (["train", "--data", "split", "--steps", "-1", "--out", "run"], "--steps must be at least 0, got -1"),
    (["train", "--data", "split", "--vae-steps", "-1", "--out", "run"], "--vae-steps must be at least 0, got -1"),
    (["--threads", "0", "baseline", "--kind", "cutout", "--split", "s", "--out", "c.zip"],
     "--threads must be at least 1, got 0"),
])
def test_train_and_threads_checked(argv, message, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(argv) == 1
    assert capsys.readouterr().err == f"error: {message}\n"


def test_unexpected_error_keeps_traceback(monkeypatch, disc_split_path, tmp_path):
    def broken(*args, **kwargs):
        raise RuntimeError("a bug")

    monkeypatch.setattr(reference_model.predict, "predict", broken)
    with pytest.raises(RuntimeError, match="^a bug$"):
        _predict(disc_split_path, tmp_path / "preds.zip")


def test_log_level_case_insensitive():
    assert build_parser().parse_args(["--log-level", "debug", "baseline", "--kind", "cutout", "--split", "s",
                                      "--out", "c.zip"]).log_level == "DEBUG"


def test_visible_oracle_checked_before_import(disc_split_path, tmp_path, capsys, monkeypatch):
    public = export_public(disc_split_path, tmp_path / "public")
    # The predictions' writer, and torch with it, must not be needed to reject the split.
    monkeypatch.setitem(sys.modules, "reference_model.predict", None)

    assert main(["baseline", "--kind", "visible-oracle", "--split", str(public), "--out", str(tmp_path / "o.zip")]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: the visible-oracle baseline reads gt/visible")


@pytest.mark.parametrize("command", ["predict", "baseline"])
def test_out_folder_rejected(model_loading_forbidden, disc_split_path, tmp_path, capsys, command):
    if command == "predict":
        status = _predict(disc_split_path, tmp_path)
    else:
        status = main(["baseline", "--kind", "cutout", "--split", str(disc_split_path), "--out", str(tmp_path)])
    assert status == 1
    expected = f"error: --out {tmp_path} is a folder; give the path of the zip to write, such as {tmp_path / 'predictions.zip'}"
    assert capsys.readouterr().err.splitlines() == [expected]


def test_evaluate_accepts_weights_alias():
    args = build_parser().parse_args([
        "evaluate", "--checkpoint", "c", "--split", "s", "--out", "o.zip", "--weights", "w",
    ])
    assert args.weights_dir == "w"

import pytest

from evaluator.split import open_split
from evaluator.submission import validate_submission
from reference_model.cli import build_parser, main


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
def test_predict_visible_flags_checked(extra, message, tmp_path):
    out = tmp_path / "preds.zip"
    with pytest.raises(SystemExit) as error:
        main(["predict", "--checkpoint", "missing", "--split", "missing", "--out", str(out), *extra])
    assert str(error.value) == message
    assert not out.exists()

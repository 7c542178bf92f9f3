import json
import math
import types
import zipfile

import pandas as pd
import pytest
import torch

from evaluator.cli import main
from evaluator.commands.score import format_summary
from evaluator.config import load_config
from evaluator.pipeline import UNVERIFIED_WEIGHTS, score_chunk, score_submission
from evaluator.split import Split
from evaluator.submission import (
    SubmissionArchive,
    SubmissionError,
    validate_submission,
    write_submission,
)
from evaluator.synthetic.engine import make_synthetic_split


@pytest.fixture(scope="module")
def split_and_zip(tmp_path_factory):
    folder = tmp_path_factory.mktemp("cli")
    split_path = make_synthetic_split(folder, samples=6, size=48, seed=2)
    split = Split(split_path)
    predictions = []
    for sample in split:
        layer = split.read_gt_layer(sample)
        shifted = layer.copy()
        shifted[..., :3] //= 2
        predictions.append((sample.sample_id, [shifted, layer]))
    return split_path, write_submission(folder / "pred.zip", predictions)


def run_cli(split_path, zip_path, out, weights, cache, *extra):
    return main([
        "score", "--split", str(split_path), "--predictions", str(zip_path), "--out", str(out),
        "--config", "test-tiny", "--weights", str(weights), "--device", "cpu", "--workers", "0",
        "--cache", str(cache), *extra,
    ])


def test_cli_matches_library(split_and_zip, stand_in_weights, tmp_path, capsys):
    split_path, zip_path = split_and_zip
    assert run_cli(split_path, zip_path, tmp_path / "out", stand_in_weights, tmp_path / "cache") == 0
    printed = capsys.readouterr().out
    assert printed.startswith(f"WARNING: {UNVERIFIED_WEIGHTS}\n")
    assert "foreground (" in printed
    assert f"wrote {tmp_path / 'out'}/report.json and {tmp_path / 'out'}/samples.parquet" in printed

    library = score_submission(split_path, zip_path, config="test-tiny", weights_dir=stand_in_weights,
                               progress=False, device="cpu", workers=0, cache_dir=tmp_path / "cache")
    written = json.loads((tmp_path / "out" / "report.json").read_text())
    assert written["report"] == json.loads(json.dumps(library.report))
    assert written["weights"] == {"fingerprint": library.provenance["weights"]["fingerprint"], "verified": False}
    assert written["warnings"] == [UNVERIFIED_WEIGHTS]
    for name, value in library.fid.items():
        assert written["fid"][name] == (None if math.isnan(value) else value)
    pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / "out" / "samples.parquet"), library.samples)


def test_cli_summary_values(split_and_zip, stand_in_weights, tmp_path, capsys):
    split_path, zip_path = split_and_zip
    assert run_cli(split_path, zip_path, tmp_path / "out", stand_in_weights, tmp_path / "cache") == 0
    printed = capsys.readouterr().out
    report = json.loads((tmp_path / "out" / "report.json").read_text())["report"]
    lpips_vis = report["layer_kinds"]["foreground"]["metrics"]["lpips_vis"]
    assert f"  lpips_vis      {lpips_vis['value']:.4f} [{lpips_vis['ci'][0]:.4f}, " in printed


def test_summary_singular_counts():
    result = types.SimpleNamespace(
        warnings=[], provenance={"dir_undefined": 1},
        report={"hpa": {"value": None}, "layer_kinds": {"foreground": {"count": 1, "metrics": {}}}},
    )
    lines = format_summary(result).splitlines()
    assert lines[0] == "foreground (1 sample)"
    assert lines[1] == "dir is undefined for 1 sample with nothing hidden; it is left out of its mean"


def test_cli_invalid_submission(split_and_zip, stand_in_weights, tmp_path, capsys):
    split_path, zip_path = split_and_zip
    broken = tmp_path / "broken.zip"
    with zipfile.ZipFile(zip_path) as source, zipfile.ZipFile(broken, "w") as target:
        for item in source.infolist()[1:]:
            target.writestr(item, source.read(item))
    assert run_cli(split_path, broken, tmp_path / "out", stand_in_weights, tmp_path / "cache") == 1
    printed = capsys.readouterr().out
    assert printed.startswith(f"invalid submission {broken}\n")
    assert "problem" in printed.splitlines()[1]
    assert not (tmp_path / "out" / "report.json").exists()


def test_cli_missing_weights(split_and_zip, tmp_path, capsys):
    split_path, zip_path = split_and_zip
    empty = tmp_path / "weights"
    empty.mkdir()
    assert run_cli(split_path, zip_path, tmp_path / "out", empty, tmp_path / "cache") == 1
    assert capsys.readouterr().err == (
        f"error: manifest.json not found in {empty}; run `python -m evaluator weights fetch --dir {empty}`, "
        f"or `python -m evaluator weights check --dir {empty} --write-manifest` for files copied in by hand\n"
    )


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message on a machine without CUDA")
def test_cli_cuda_missing(split_and_zip, stand_in_weights, tmp_path, capsys):
    split_path, zip_path = split_and_zip
    code = main([
        "score", "--split", str(split_path), "--predictions", str(zip_path), "--out", str(tmp_path / "out"),
        "--config", "test-tiny", "--weights", str(stand_in_weights), "--device", "cuda",
    ])
    assert code == 1
    assert capsys.readouterr().err == (
        "error: device cuda was requested but torch finds no CUDA device; use --device cpu\n"
    )


def with_broken_images(zip_path, out, broken_names):
    """Copy the zip, replacing the named members with bytes that are not a PNG."""
    with zipfile.ZipFile(zip_path) as source, zipfile.ZipFile(out, "w") as target:
        for item in source.infolist():
            target.writestr(item, b"not a png" if item.filename in broken_names else source.read(item))
    return out


@pytest.mark.parametrize("workers", [0, 1])
def test_bad_images_reported_in_full(split_and_zip, stand_in_weights, tmp_path, workers):
    split_path, zip_path = split_and_zip
    split = Split(split_path)
    names = [f"{split.samples[0].sample_id}/1.png", f"{split.samples[-1].sample_id}/0.png"]
    broken = with_broken_images(zip_path, tmp_path / "broken.zip", names)

    with pytest.raises(SubmissionError) as error:
        score_submission(split_path, broken, config="test-tiny", weights_dir=stand_in_weights, progress=False,
                         device="cpu", workers=workers, cache_dir=tmp_path / "cache")

    expected = validate_submission(broken, split)
    assert [problem.file for problem in expected.problems] == names
    assert error.value.report.problems == expected.problems


def test_chunk_reports_bad_image_from_loader(split_and_zip, stand_in_weights, tmp_path):
    split_path, zip_path = split_and_zip
    split = Split(split_path)
    name = f"{split.samples[1].sample_id}/0.png"
    broken = with_broken_images(zip_path, tmp_path / "broken.zip", [name])
    config = load_config("test-tiny")

    with SubmissionArchive(broken, split, config.max_candidates, check_images=False) as archive:
        with pytest.raises(SubmissionError) as error:
            score_chunk(split, archive, 0, len(split), config, weights_dir=stand_in_weights, device="cpu",
                        workers=1, cache_dir=tmp_path / "cache")

    assert [problem.file for problem in error.value.report.problems] == [name]

"""The hpa command: values computed by hand from the default bounds, clipping, options."""

from __future__ import annotations

import json

import pytest

from evaluator.cli import main
from evaluator.config import load_config


def run_hpa(capsys, *arguments: str) -> tuple[int, str]:
    status = main(["hpa", *arguments])
    return status, capsys.readouterr().out


def test_background_example_exact_output(capsys):
    status, out = run_hpa(capsys, "--layer-kind", "background", "--fid", "13.14", "--lpips-vis", "0.0437", "--dir", "0.7673")
    assert status == 0
    # (39.96 - 13.14) / 39.96 = 0.6712, (0.2391 - 0.0437) / 0.2391 = 0.8172,
    # (0.7673 - 0.5190) / (1 - 0.5190) = 0.5162; their mean is 0.6682.
    assert out == (
        "HPA 0.6682 (background, calibration reflade-table-v1)\n"
        "term            value       lo       hi normalised\n"
        "fid           13.1400   0.0000  39.9600     0.6712\n"
        "lpips_vis      0.0437   0.0000   0.2391     0.8172\n"
        "dir            0.7673   0.5190   1.0000     0.5162\n"
    )


def test_hand_computed_values():
    calibration = load_config().calibration
    expected = ((39.96 - 13.14) / 39.96 + (0.2391 - 0.0437) / 0.2391 + (0.7673 - 0.5190) / (1.0 - 0.5190)) / 3
    assert calibration.hpa("background", 13.14, 0.0437, 0.7673) == pytest.approx(expected, abs=1e-15)
    expected = ((66.30 - 30.0) / 66.30 + (0.2736 - 0.1) / 0.2736 + (0.6 - 0.1947) / (1.0 - 0.1947)) / 3
    assert calibration.hpa("foreground", 30.0, 0.1, 0.6) == pytest.approx(expected, abs=1e-15)


def test_clipping_at_both_ends(capsys):
    status, out = run_hpa(capsys, "--layer-kind", "foreground", "--fid", "0", "--lpips-vis", "-0.1", "--dir", "1.5")
    assert status == 0
    assert out.splitlines()[0] == "HPA 1.0000 (foreground, calibration reflade-table-v1)"
    status, out = run_hpa(capsys, "--layer-kind", "foreground", "--fid", "500", "--lpips-vis", "0.9", "--dir", "0.1")
    assert out.splitlines()[0] == "HPA 0.0000 (foreground, calibration reflade-table-v1)"
    assert out.splitlines()[2] == "fid          500.0000   0.0000  66.3000     0.0000"


def test_calibration_file_replaces_bounds(tmp_path, capsys):
    calibration = load_config().calibration.to_json()
    calibration["version"] = "wide"
    calibration["hpa_bounds"]["background"]["fid"] = {"lo": 0.0, "hi": 100.0}
    path = tmp_path / "wide.json"
    path.write_text(json.dumps(calibration))
    status, out = run_hpa(capsys, "--layer-kind", "background", "--fid", "50", "--lpips-vis", "0", "--dir", "1",
                          "--calibration", str(path))
    assert status == 0
    assert out.splitlines()[0] == "HPA 0.8333 (background, calibration wide)"


def test_missing_calibration_file(tmp_path, capsys):
    path = tmp_path / "absent.json"
    status, out = run_hpa(capsys, "--layer-kind", "background", "--fid", "1", "--lpips-vis", "0", "--dir", "1",
                          "--calibration", str(path))
    assert status == 1
    assert out == f"error: calibration file {path} not found; give a .json written by python -m evaluator calibrate\n"


def test_non_finite_value_rejected(capsys):
    status, out = run_hpa(capsys, "--layer-kind", "background", "--fid", "nan", "--lpips-vis", "0", "--dir", "1")
    assert status == 1
    assert out == "error: --fid must be a finite number, found nan\n"

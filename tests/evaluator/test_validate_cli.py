"""`python -m evaluator validate`: output and exit status."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from evaluator.cli import main
from evaluator.problems import format_count
from tests.evaluator.zips import Entry, ground_truth_entries, make_split, write_zip


@pytest.fixture
def split(tmp_path):
    return make_split(tmp_path / "split")


def test_valid_submission_exits_zero(tmp_path, split, capsys):
    path = write_zip(tmp_path / "sub.zip", ground_truth_entries(split))
    status = main(["validate", "--split", str(split.path), "--predictions", str(path)])
    assert status == 0
    assert capsys.readouterr().out == "valid: 3 samples, 1 candidate each\n"


def test_valid_summary_one_sample(tmp_path, capsys):
    split = make_split(tmp_path / "one", sample_ids=["s0"])
    path = write_zip(tmp_path / "sub.zip", ground_truth_entries(split))
    assert main(["validate", "--split", str(split.path), "--predictions", str(path)]) == 0
    assert capsys.readouterr().out == "valid: 1 sample, 1 candidate each\n"


@pytest.mark.parametrize(("count", "expected"), [(0, "0 problems"), (1, "1 problem"), (2, "2 problems")])
def test_format_count_plural(count, expected):
    assert format_count(count, "problem") == expected


def test_format_count_irregular_plural():
    assert format_count(3, "entry", "entries") == "3 entries"


def test_valid_summary_names_method(tmp_path, split, capsys):
    entries = ground_truth_entries(split) + [Entry("metadata.json", b'{"method": "gt copy"}')]
    path = write_zip(tmp_path / "sub.zip", entries)
    status = main(["validate", "--split", str(split.path), "--predictions", str(path)])
    assert status == 0
    assert capsys.readouterr().out == "valid: 3 samples, 1 candidate each (method: gt copy)\n"


def test_invalid_submission_exits_one(tmp_path, split, capsys):
    path = write_zip(tmp_path / "sub.zip", ground_truth_entries(split)[:2])
    status = main(["validate", "--split", str(split.path), "--predictions", str(path)])
    assert status == 1
    assert capsys.readouterr().out.splitlines() == [
        f"invalid submission {path}",
        "1 problem:",
        "- s2.png: sample has no prediction (expected s2.png or s2/0.png, found no such file). "
        "Add a PNG for every sample of the split.",
    ]


def test_too_many_candidates_option(tmp_path, split, capsys):
    entries = [Entry(f"{s.sample_id}/{k}.png", e.data)
               for s, e in zip(split, ground_truth_entries(split), strict=True) for k in range(3)]
    path = write_zip(tmp_path / "sub.zip", entries)
    args = ["validate", "--split", str(split.path), "--predictions", str(path)]
    assert main(args + ["--max-candidates", "3"]) == 0
    assert capsys.readouterr().out == "valid: 3 samples, 3 candidates each\n"
    assert main(args + ["--max-candidates", "2"]) == 1
    assert "sub.zip: too many candidates per sample (expected at most 2, found 3)" in capsys.readouterr().out


def test_json_output(tmp_path, split, capsys):
    path = write_zip(tmp_path / "sub.zip", ground_truth_entries(split)[1:])
    status = main(["validate", "--split", str(split.path), "--predictions", str(path), "--json"])
    assert status == 1
    report = json.loads(capsys.readouterr().out)
    assert report["valid"] is False
    assert report["summary"] == {"samples": 2, "candidates": 1}
    assert report["problems"] == [{
        "code": "sample_missing", "file": "s0.png", "message": "sample has no prediction",
        "expected": "s0.png or s0/0.png", "found": "no such file",
        "hint": "Add a PNG for every sample of the split.",
    }]


def test_broken_split_exits_two(tmp_path, capsys):
    path = write_zip(tmp_path / "sub.zip", [Entry("s0.png", b"x")])
    status = main(["validate", "--split", str(tmp_path / "nowhere"), "--predictions", str(path)])
    assert status == 2
    assert capsys.readouterr().out.startswith(f"invalid split {tmp_path / 'nowhere'}\n1 problem:\n")


def test_module_entry_point(tmp_path, split):
    path = write_zip(tmp_path / "sub.zip", ground_truth_entries(split))
    result = subprocess.run(
        [sys.executable, "-m", "evaluator", "validate", "--split", str(split.path),
         "--predictions", str(path), "--json"],
        capture_output=True, text=True, timeout=60, check=False,
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == {
        "valid": True, "summary": {"samples": 3, "candidates": 1}, "problems": [],
    }

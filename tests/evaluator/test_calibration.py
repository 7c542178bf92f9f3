"""Calibration: recovering known weights and threshold, Elo order, and the calibrate command."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest

from evaluator.calibration import (
    elo_ratings,
    fit_from_labels,
    fit_from_preferences,
    load_calibration,
    write_calibration,
)
from evaluator.cli import main
from evaluator.config import QUALITY_METRICS, load_config
from evaluator.judgments import JudgmentError, load_judgments
from evaluator.pass_rate import quality_array

CONFIG = load_config()
BASE = CONFIG.calibration
TRUE_WEIGHTS = {"lpips_vis": 0.5, "dir": 0.3, "lpips_comp": 0.2}
TRUE_THRESHOLD = 0.55
# Recovery tolerances for 3000 labels with label noise of standard deviation 0.02 in q.
WEIGHT_TOLERANCE = 0.03
THRESHOLD_TOLERANCE = 0.01
# 1500 per-sample preferences between five entries, noise of standard deviation 0.05 in q.
PREFERENCE_WEIGHT_TOLERANCE = 0.05


def synthetic_samples(samples: int, n: int, seed: int, entry: str = "m", shift: float = 0.0) -> pd.DataFrame:
    """Metrics spread over the pass bounds; a positive shift makes every metric better."""
    rng = np.random.default_rng(seed)
    count = samples * n
    kinds = np.repeat(np.where(np.arange(samples) % 2 == 0, "foreground", "background"), n)
    low_dir = np.where(kinds == "foreground", 0.15, 0.45)
    return pd.DataFrame({
        "sample_id": np.repeat([f"s{i}" for i in range(samples)], n),
        "candidate": np.tile(np.arange(n), samples),
        "layer_kind": kinds,
        "prompt_type": "text",
        "gt_kind": "rgba",
        "category": None,
        "occlusion_rate": 0.3,
        "lpips_vis": np.clip(rng.uniform(0, 0.3, count) - 0.1 * shift, 0, None),
        "dir": np.clip(rng.uniform(low_dir, 1.0) + 0.2 * shift, None, 1.0),
        "lpips_comp": np.clip(rng.uniform(0, 0.55, count) - 0.15 * shift, 0, None),
        "iou": 0.5,
        "iou_occ": 0.5,
        "entry": entry,
    })


def true_quality(table: pd.DataFrame) -> np.ndarray:
    calibration = replace(BASE, pass_weights=TRUE_WEIGHTS, threshold=TRUE_THRESHOLD)
    quality = np.empty(len(table))
    for kind in ("foreground", "background"):
        rows = (table["layer_kind"] == kind).to_numpy()
        metrics = {name: table[name].to_numpy()[rows] for name in QUALITY_METRICS}
        quality[rows] = quality_array(calibration, kind, metrics)
    return quality


def synthetic_labels(table: pd.DataFrame, seed: int) -> pd.DataFrame:
    noise = np.random.default_rng(seed).normal(0, 0.02, len(table))
    passed = (true_quality(table) + noise >= TRUE_THRESHOLD).astype(int)
    return pd.DataFrame({"sample_id": table["sample_id"], "candidate": table["candidate"], "passed": passed})


def test_labels_recover_weights_and_threshold():
    table = synthetic_samples(1500, 2, seed=0)
    fit = fit_from_labels(table, synthetic_labels(table, seed=1), BASE, "test-v1", "synthetic")
    for name, weight in TRUE_WEIGHTS.items():
        assert fit.calibration.pass_weights[name] == pytest.approx(weight, abs=WEIGHT_TOLERANCE), name
    assert sum(fit.calibration.pass_weights.values()) == pytest.approx(1.0)
    assert fit.calibration.threshold == pytest.approx(TRUE_THRESHOLD, abs=THRESHOLD_TOLERANCE)
    assert fit.calibration.human is True
    assert fit.calibration.hpa_bounds == BASE.hpa_bounds
    assert fit.fit["accuracy_fitted"]["accuracy"] > fit.fit["accuracy_base"]["accuracy"]
    rows = {row["metric"]: row for row in fit.agreement}
    assert rows["quality (fitted)"]["spearman"] > rows["quality (base)"]["spearman"]
    assert rows["lpips_vis"]["pearson"] > 0


def test_labels_leave_out_undefined_metrics():
    table = synthetic_samples(600, 1, seed=2)
    labels = synthetic_labels(table, seed=3)
    table.loc[:9, "dir"] = np.nan
    fit = fit_from_labels(table, labels, BASE, "test-v1", "synthetic")
    assert fit.fit["left_out_undefined"] == 10
    assert fit.fit["labels"] == 600


def test_labels_unknown_candidate_rejected():
    table = synthetic_samples(30, 1, seed=4)
    labels = synthetic_labels(table, seed=5)
    labels.loc[0, "candidate"] = 3
    with pytest.raises(JudgmentError) as error:
        fit_from_labels(table, labels, BASE, "v", "s")
    assert str(error.value) == (
        "labels refer to candidates not in the samples: m/s0/3; check entry, sample_id and candidate"
    )


ENTRY_SHIFTS = {"e0": -1.0, "e1": -0.5, "e2": 0.0, "e3": 0.5, "e4": 1.0}


def synthetic_preferences(tables: dict[str, pd.DataFrame], pairs: int, seed: int, per_sample: bool) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    names = list(tables)
    quality = {name: true_quality(table) for name, table in tables.items()}
    rows = []
    for _ in range(pairs):
        a, b = rng.choice(len(names), size=2, replace=False)
        sample = int(rng.integers(len(tables[names[a]])))
        difference = quality[names[a]][sample] - quality[names[b]][sample] + rng.normal(0, 0.05)
        row = {"entry_a": names[a], "entry_b": names[b], "winner": names[a] if difference > 0 else names[b]}
        if per_sample:
            row["sample_id"] = f"s{sample}"
        rows.append(row)
    return pd.DataFrame(rows)


def entry_tables(samples: int = 200) -> dict[str, pd.DataFrame]:
    return {
        name: synthetic_samples(samples, 1, seed=10 + index, entry=name, shift=shift)
        for index, (name, shift) in enumerate(ENTRY_SHIFTS.items())
    }


def test_preferences_rank_entries_by_quality():
    tables = entry_tables()
    preferences = synthetic_preferences(tables, 1500, seed=20, per_sample=True)
    fit = fit_from_preferences(pd.concat(tables.values(), ignore_index=True), preferences, BASE, "v", "s")
    elo = fit.fit["elo"]
    assert sorted(elo, key=elo.get) == list(ENTRY_SHIFTS)
    assert np.mean(list(elo.values())) == pytest.approx(1500.0)
    assert fit.calibration.threshold == BASE.threshold
    for name, weight in TRUE_WEIGHTS.items():
        assert fit.calibration.pass_weights[name] == pytest.approx(weight, abs=PREFERENCE_WEIGHT_TOLERANCE), name
    rows = {row["metric"]: row for row in fit.agreement}
    assert rows["quality (fitted)"]["spearman"] == pytest.approx(1.0)
    assert rows["quality (fitted)"]["count"] == 5


def test_elo_is_order_independent():
    preferences = synthetic_preferences(entry_tables(50), 300, seed=21, per_sample=False)
    shuffled = preferences.sample(frac=1.0, random_state=0).reset_index(drop=True)
    pd.testing.assert_series_equal(elo_ratings(preferences), elo_ratings(shuffled), atol=1e-6)


def test_elo_tie_gives_equal_ratings():
    preferences = pd.DataFrame({"entry_a": ["x", "y"], "entry_b": ["y", "x"], "winner": ["tie", "tie"]})
    ratings = elo_ratings(preferences)
    assert ratings["x"] == pytest.approx(1500.0)
    assert ratings["y"] == pytest.approx(1500.0)


def test_calibrate_command_writes_loadable_calibration(tmp_path, capsys):
    table = synthetic_samples(500, 2, seed=30)
    samples_path = tmp_path / "method.parquet"
    table.drop(columns="entry").to_parquet(samples_path)
    labels_path = tmp_path / "labels.csv"
    synthetic_labels(table, seed=31).to_csv(labels_path, index=False)
    out = tmp_path / "calibration.json"

    status = main(["calibrate", "--samples", str(samples_path), "--judgments", str(labels_path),
                   "--out", str(out), "--version", "human-test"])
    printed = capsys.readouterr().out.splitlines()
    assert status == 0
    assert printed[0] == "calibration human-test from 1000 labels (0 left out: undefined metrics)"
    assert printed[4] == "metric               count  pearson  spearman"
    assert printed[-1] == f"wrote {out}"

    calibration = load_calibration(out)
    assert calibration.version == "human-test"
    assert calibration.human is True
    configured = CONFIG.with_calibration(calibration)
    assert configured.calibration.pass_weights == calibration.pass_weights
    stored = json.loads(out.read_text())
    assert [row["metric"] for row in stored["agreement"]] == [
        "lpips_vis", "dir", "lpips_comp", "quality (base)", "quality (fitted)",
    ]
    assert stored["source"].startswith("labels from labels.csv (sha256 ")


def test_calibrate_command_rejects_existing_out(tmp_path, capsys):
    out = tmp_path / "calibration.json"
    out.write_text("{}")
    status = main(["calibrate", "--samples", "x.parquet", "--judgments", "j.csv", "--out", str(out)])
    assert status == 1
    assert capsys.readouterr().out == f"error: {out} already exists; choose another --out or remove it\n"


def test_judgments_with_unknown_columns_rejected(tmp_path):
    path = tmp_path / "judgments.jsonl"
    path.write_text('{"sample_id": "s0", "score": 3}\n')
    with pytest.raises(JudgmentError) as error:
        load_judgments(path)
    assert str(error.value) == (
        f"{path} has the columns sample_id, score; expected pass/fail labels (sample_id, candidate, passed) "
        "or pairwise preferences (entry_a, entry_b, winner)"
    )


def test_preference_winner_must_name_an_entry(tmp_path):
    path = tmp_path / "preferences.csv"
    path.write_text("entry_a,entry_b,winner\nx,y,z\n")
    with pytest.raises(JudgmentError) as error:
        load_judgments(path)
    assert str(error.value) == f"{path}: winner 'z' is neither 'x', 'y' nor 'tie'; write the preferred entry's name or tie"


def test_written_calibration_round_trips(tmp_path):
    table = synthetic_samples(300, 1, seed=40)
    fit = fit_from_labels(table, synthetic_labels(table, seed=41), BASE, "round-trip", "synthetic")
    path = tmp_path / "calibration.json"
    write_calibration(fit, path)
    assert load_calibration(path) == fit.calibration


def test_calibrate_command_with_preferences(tmp_path, capsys):
    tables = entry_tables(100)
    arguments = []
    for name, table in tables.items():
        path = tmp_path / f"{name}.parquet"
        table.drop(columns="entry").to_parquet(path)
        arguments += ["--samples", f"{name}={path}"]
    preferences_path = tmp_path / "preferences.jsonl"
    preferences = synthetic_preferences(tables, 400, seed=50, per_sample=True)
    preferences.to_json(preferences_path, orient="records", lines=True)
    for index, name in enumerate(tables):
        report_path = tmp_path / f"{name}.report.json"
        report_path.write_text(json.dumps({"hpa": {"value": 0.3 + 0.1 * index, "ci": None}}))
        arguments += ["--report", f"{name}={report_path}"]
    out = tmp_path / "calibration.json"

    status = main(["calibrate", *arguments, "--judgments", str(preferences_path), "--out", str(out)])
    printed = capsys.readouterr().out.splitlines()
    assert status == 0
    assert printed[0].startswith("calibration reflade-human-")
    assert printed[0].endswith(" from 400 preferences (0 left out: undefined metrics)")
    assert [line.split()[-1] for line in printed[2:7]] == ["e4", "e3", "e2", "e1", "e0"]
    stored = json.loads(out.read_text())
    assert stored["human"] is True
    assert stored["threshold"] == BASE.threshold
    assert sorted(stored["fit"]["elo"]) == list(ENTRY_SHIFTS)
    hpa_row = stored["agreement"][-1]
    assert hpa_row["metric"] == "hpa (reports)"
    assert hpa_row["count"] == 5
    assert hpa_row["spearman"] == pytest.approx(1.0)


def test_entry_level_preferences_fit():
    tables = entry_tables(100)
    preferences = synthetic_preferences(tables, 600, seed=60, per_sample=False)
    fit = fit_from_preferences(pd.concat(tables.values(), ignore_index=True), preferences, BASE, "v", "s")
    elo = fit.fit["elo"]
    assert sorted(elo, key=elo.get) == list(ENTRY_SHIFTS)
    assert sum(fit.calibration.pass_weights.values()) == pytest.approx(1.0)
    assert min(fit.calibration.pass_weights.values()) >= 0.0


def test_preference_on_unknown_sample_rejected():
    tables = entry_tables(30)
    preferences = synthetic_preferences(tables, 40, seed=61, per_sample=True)
    preferences.loc[3, "sample_id"] = "s999"
    with pytest.raises(JudgmentError) as error:
        fit_from_preferences(pd.concat(tables.values(), ignore_index=True), preferences, BASE, "v", "s")
    entry = preferences.loc[3, "entry_a"]
    assert str(error.value) == (
        f"preference on sample s999 names {entry}, which has no such sample; "
        "check the sample_id or pass that entry's full table"
    )


def test_report_option_rejected_for_labels(tmp_path, capsys):
    table = synthetic_samples(30, 1, seed=70)
    samples_path = tmp_path / "method.parquet"
    table.to_parquet(samples_path)
    labels_path = tmp_path / "labels.csv"
    synthetic_labels(table, seed=71).to_csv(labels_path, index=False)
    status = main(["calibrate", "--samples", str(samples_path), "--judgments", str(labels_path),
                   "--out", str(tmp_path / "out.json"), "--report", f"m={tmp_path / 'r.json'}"])
    assert status == 1
    assert capsys.readouterr().out == "error: --report applies to pairwise preferences only; drop it for pass/fail labels\n"

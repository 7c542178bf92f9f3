"""Aggregation: pass@K, quality, groups, bootstrap intervals, ranks and paired comparison."""

from __future__ import annotations

import itertools
import json
import math

import numpy as np
import pandas as pd
import pytest

from evaluator.aggregate import (
    METRICS,
    AggregateError,
    add_quality,
    aggregate_samples,
    compare_paired,
    hpa_array,
    metric_info,
    pass_at_k,
    pass_at_k_array,
    rank_entries,
)
from evaluator.bootstrap import bootstrap_means, make_rng, percentile_interval
from evaluator.config import load_config

CONFIG = load_config()
PERFECT = {"lpips_vis": 0.0, "dir": 1.0, "lpips_comp": 0.0}
WORST = {"lpips_vis": 1.0, "dir": 0.0, "lpips_comp": 1.0}


def brute_force_pass_at_k(n: int, c: int, k: int) -> float:
    candidates = [True] * c + [False] * (n - c)
    subsets = list(itertools.combinations(candidates, k))
    return sum(any(subset) for subset in subsets) / len(subsets)


def test_pass_at_k_matches_enumeration():
    for n in range(1, 9):
        for c in range(n + 1):
            for k in range(1, n + 1):
                expected = brute_force_pass_at_k(n, c, k)
                assert pass_at_k(n, c, k) == pytest.approx(expected, abs=1e-12), (n, c, k)


def test_pass_at_k_array_matches_scalar():
    for n in range(1, 9):
        counts = np.arange(n + 1)
        for k in range(1, n + 1):
            expected = [pass_at_k(n, int(c), k) for c in counts]
            np.testing.assert_allclose(pass_at_k_array(n, counts, k), expected, rtol=0, atol=1e-12)


def test_pass_at_k_rejects_k_above_n():
    with pytest.raises(ValueError) as error:
        pass_at_k(2, 1, 4)
    assert str(error.value) == "pass@K needs 1 <= K <= n, found K=4, n=2; lower K or add candidates"


def row(sample_id, candidate, kind, prompt_type, category, occlusion, metrics, iou=0.5, iou_occ=0.25, gt_kind="rgba"):
    return {
        "sample_id": sample_id, "candidate": candidate, "layer_kind": kind, "prompt_type": prompt_type,
        "gt_kind": gt_kind, "category": category, "occlusion_rate": occlusion,
        "lpips_vis": metrics["lpips_vis"], "dir": metrics["dir"], "lpips_comp": metrics["lpips_comp"],
        "iou": iou, "iou_occ": iou_occ,
    }


def hand_made_table() -> pd.DataFrame:
    """Six samples, two candidates each; candidate 1 is always the worst."""
    nan_metrics = {"lpips_vis": math.nan, "dir": math.nan, "lpips_comp": math.nan}
    mid = {"lpips_vis": 0.1, "dir": 0.8, "lpips_comp": 0.2}
    rows = []
    specs = [
        ("s1", "foreground", "text", "cat", 0.0, PERFECT, 0.9, math.nan, "rgba"),
        ("s2", "foreground", "box", "cat", 0.2, mid, 0.7, 0.4, "rgba"),
        ("s3", "foreground", "text", None, 0.6, WORST, 0.2, 0.1, "rgba"),
        ("s4", "background", "text", None, math.nan, mid, 0.6, 0.3, "rgba"),
        ("s5", "background", "text", None, 0.3, PERFECT, 0.8, 0.5, "rgba"),
        ("s6", "foreground", "box", "dog", 0.4, nan_metrics, 0.5, 0.3, "amodal_mask"),
    ]
    for sample_id, kind, prompt_type, category, occlusion, metrics, iou, iou_occ, gt_kind in specs:
        rows.append(row(sample_id, 0, kind, prompt_type, category, occlusion, metrics, iou, iou_occ, gt_kind))
        worst = nan_metrics if gt_kind == "amodal_mask" else WORST
        rows.append(row(sample_id, 1, kind, prompt_type, category, occlusion, worst, 0.0, 0.0, gt_kind))
    return pd.DataFrame(rows)


FID = {"foreground/all/all": 20.0, "background/all/all": 13.14, "foreground/prompt_type/text": 30.0}


def test_groups_and_counts():
    report = aggregate_samples(hand_made_table(), FID, CONFIG)
    assert list(report["groups"]) == [
        "foreground/all/all",
        "foreground/prompt_type/box",
        "foreground/prompt_type/text",
        "foreground/occlusion/none",
        "foreground/occlusion/le25",
        "foreground/occlusion/le50",
        "foreground/occlusion/gt50",
        "foreground/category/cat",
        "foreground/category/dog",
        "foreground/category/none",
        "background/all/all",
        "background/prompt_type/text",
        "background/occlusion/le50",
        "background/occlusion/unknown",
        "background/category/none",
    ]
    counts = {name: group["count"] for name, group in report["groups"].items()}
    assert counts["foreground/all/all"] == 4
    assert counts["foreground/prompt_type/box"] == 2
    assert counts["foreground/category/none"] == 1
    assert counts["background/all/all"] == 2
    assert report["groups"]["foreground/occlusion/gt50"]["label"] == "above 50%"
    assert report["n_candidates"] == 2
    assert report["k_list"] == [1, 2]
    assert report["sample_count"] == 6


def test_means_leave_out_undefined():
    metrics = aggregate_samples(hand_made_table(), FID, CONFIG)["groups"]["foreground/all/all"]["metrics"]
    assert metrics["lpips_vis"]["value"] == pytest.approx((0.0 + 0.1 + 1.0) / 3)
    assert metrics["lpips_vis"]["count"] == 3
    assert metrics["dir"]["value"] == pytest.approx((1.0 + 0.8 + 0.0) / 3)
    assert metrics["miou"]["value"] == pytest.approx((0.9 + 0.7 + 0.2 + 0.5) / 4)
    assert metrics["miou"]["count"] == 4


def test_miou_occ_leaves_out_empty_hidden_part():
    groups = aggregate_samples(hand_made_table(), FID, CONFIG)["groups"]
    miou_occ = groups["foreground/all/all"]["metrics"]["miou_occ"]
    assert miou_occ["value"] == pytest.approx((0.4 + 0.1 + 0.3) / 3)
    assert miou_occ["count"] == 3
    assert miou_occ["left_out_empty"] == 1
    background = groups["background/all/all"]["metrics"]
    assert background["miou"] == {"value": None, "ci": None, "count": 0}
    assert background["miou_occ"]["value"] is None


def test_pass_rate_per_sample_mean():
    metrics = aggregate_samples(hand_made_table(), FID, CONFIG)["groups"]["foreground/all/all"]["metrics"]
    # s1 passes with candidate 0 only; s2 (mid) passes with candidate 0 only; s3 never; s6 has no quality.
    assert metrics["pass_rate@1"]["value"] == pytest.approx((0.5 + 0.5 + 0.0) / 3)
    assert metrics["pass_rate@2"]["value"] == pytest.approx((1.0 + 1.0 + 0.0) / 3)
    assert metrics["pass_rate@1"]["count"] == 3
    assert "pass_rate@4" not in metrics


def test_pass_rates_over_all_samples():
    report = aggregate_samples(hand_made_table(), FID, CONFIG)
    kinds = [report["layer_kinds"][kind]["metrics"]["pass_rate@1"] for kind in ("foreground", "background")]
    overall = report["pass_rates"]["pass_rate@1"]
    expected = sum(kind["value"] * kind["count"] for kind in kinds) / sum(kind["count"] for kind in kinds)
    assert overall["value"] == pytest.approx(expected, abs=1e-15)
    assert overall["count"] == sum(kind["count"] for kind in kinds)
    assert overall["ci"][0] <= overall["value"] <= overall["ci"][1]
    assert sorted(report["pass_rates"]) == ["pass_rate@1", "pass_rate@2"]


def test_hpa_per_group_and_top_level():
    report = aggregate_samples(hand_made_table(), FID, CONFIG)
    calibration = CONFIG.calibration
    foreground = report["layer_kinds"]["foreground"]["metrics"]
    background = report["layer_kinds"]["background"]["metrics"]
    expected_fg = calibration.hpa("foreground", 20.0, foreground["lpips_vis"]["value"], foreground["dir"]["value"])
    expected_bg = calibration.hpa("background", 13.14, background["lpips_vis"]["value"], background["dir"]["value"])
    assert foreground["hpa"]["value"] == pytest.approx(expected_fg, abs=1e-15)
    assert background["hpa"]["value"] == pytest.approx(expected_bg, abs=1e-15)
    assert report["hpa"]["value"] == pytest.approx((expected_fg + expected_bg) / 2, abs=1e-15)
    assert report["hpa"]["layer_kinds"] == ["foreground", "background"]
    assert report["primary"]["value"] == report["hpa"]["value"]
    assert report["groups"]["foreground/prompt_type/box"]["metrics"]["hpa"]["value"] is None
    assert report["groups"]["foreground/prompt_type/box"]["metrics"]["fid"]["value"] is None


def test_report_is_strict_json():
    report = aggregate_samples(hand_made_table(), FID, CONFIG)
    text = json.dumps(report, allow_nan=False)
    assert json.loads(text)["pass_rate_calibrated"] is False
    assert report["config"]["hash"] == CONFIG.hash
    assert report["calibration"]["version"] == "reflade-table-v1"


def random_table(samples: int, seed: int, n: int = 1) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    count = samples * n
    return pd.DataFrame({
        "sample_id": np.repeat([f"s{i}" for i in range(samples)], n),
        "candidate": np.tile(np.arange(n), samples),
        "layer_kind": np.repeat(rng.choice(["foreground", "background"], samples), n),
        "prompt_type": "text+box",
        "gt_kind": "rgba",
        "category": None,
        "occlusion_rate": np.repeat(rng.uniform(0, 0.9, samples), n),
        "lpips_vis": rng.uniform(0, 0.3, count),
        "dir": rng.uniform(0.2, 1.0, count),
        "lpips_comp": rng.uniform(0, 0.5, count),
        "iou": rng.uniform(0, 1, count),
        "iou_occ": rng.uniform(0, 1, count),
    })


def test_bootstrap_deterministic_and_contains_mean():
    table = random_table(400, seed=3, n=2)
    fid = {"foreground/all/all": 25.0, "background/all/all": 15.0}
    first = aggregate_samples(table, fid, CONFIG)
    second = aggregate_samples(table, fid, CONFIG)
    assert first == second
    for group in first["groups"].values():
        for name, metric in group["metrics"].items():
            if metric["ci"] is None:
                continue
            low, high = metric["ci"]
            assert low <= metric["value"] <= high, (group["group"], name)
            assert low < high, (group["group"], name)
    other_seed = load_config({**CONFIG.to_json(), "bootstrap": {"samples": 1000, "seed": 1}})
    third = aggregate_samples(table, fid, other_seed)
    assert third["hpa"]["value"] == first["hpa"]["value"]
    assert third["hpa"]["ci"] != first["hpa"]["ci"]


def test_hpa_interval_holds_fid_fixed():
    table = random_table(300, seed=4)
    report = aggregate_samples(table, {"foreground/all/all": 1000.0, "background/all/all": 1000.0}, CONFIG)
    # FID far above hi clips its term to 0 in every resample, so HPA = (lpips term + dir term) / 3.
    metrics = report["layer_kinds"]["foreground"]["metrics"]
    bounds = CONFIG.calibration.hpa_bounds["foreground"]
    lpips_term = (bounds["lpips_vis"].hi - metrics["lpips_vis"]["value"]) / bounds["lpips_vis"].hi
    dir_term = (metrics["dir"]["value"] - bounds["dir"].lo) / (bounds["dir"].hi - bounds["dir"].lo)
    assert metrics["hpa"]["value"] == pytest.approx((lpips_term + dir_term) / 3)
    assert metrics["hpa"]["ci"][1] < 2 / 3


def test_bootstrap_means_skip_nan():
    values = np.array([[1.0, np.nan], [3.0, 2.0], [5.0, np.nan]])
    resampled = bootstrap_means(values, 200, make_rng(0, "test"))
    assert resampled.shape == (200, 2)
    assert set(np.unique(resampled[~np.isnan(resampled[:, 1]), 1])) == {2.0}
    assert percentile_interval(np.array([np.nan, np.nan])) is None


def test_hpa_array_matches_calibration():
    calibration = CONFIG.calibration
    lpips_vis = np.array([0.0, 0.0437, 0.3, 0.1])
    direction = np.array([1.0, 0.7673, 0.0, 0.6])
    vectorised = hpa_array(calibration, "background", 13.14, lpips_vis, direction)
    expected = [calibration.hpa("background", 13.14, a, b) for a, b in zip(lpips_vis, direction, strict=True)]
    np.testing.assert_allclose(vectorised, expected, rtol=0, atol=1e-15)


def test_add_quality_renormalises_undefined_dir():
    table = pd.DataFrame([
        row("a", 0, "foreground", "text", None, 0.1, {"lpips_vis": 0.0, "dir": math.nan, "lpips_comp": 0.5}),
        row("b", 0, "background", "text", None, 0.1, {"lpips_vis": 0.1, "dir": 0.8, "lpips_comp": 0.2}),
        row("c", 0, "foreground", "text", None, 0.1, {"lpips_vis": math.nan, "dir": math.nan, "lpips_comp": math.nan},
            gt_kind="amodal_mask"),
    ])
    scored = add_quality(table, CONFIG)
    assert scored["quality"].iloc[0] == pytest.approx(0.5)
    assert bool(scored["passed"].iloc[0]) is True
    expected = CONFIG.calibration.quality("background", {"lpips_vis": 0.1, "dir": 0.8, "lpips_comp": 0.2})
    assert scored["quality"].iloc[1] == pytest.approx(expected, abs=1e-15)
    assert math.isnan(scored["quality"].iloc[2])
    assert scored["passed"].iloc[2] is pd.NA
    assert "quality" not in table.columns


def test_unequal_candidates_rejected():
    table = hand_made_table()
    table = table[~((table["sample_id"] == "s3") & (table["candidate"] == 1))]
    with pytest.raises(AggregateError) as error:
        aggregate_samples(table, FID, CONFIG)
    assert str(error.value) == "every sample needs candidates 0..1; these differ: s3 (found 1 candidates numbered 0..0 for s3)"


def test_rank_entries_ties_at_display_precision():
    assert rank_entries([0.66824, 0.66821, 0.7, None], higher_is_better=True, decimals=4) == [2, 2, 1, None]
    assert rank_entries([0.66824, 0.66821, 0.7, None], higher_is_better=True, decimals=5) == [2, 3, 1, None]
    assert rank_entries([13.141, 13.14, 20.0], higher_is_better=False, decimals=2) == [1, 1, 3]
    assert rank_entries([math.nan, 1.0], higher_is_better=False, decimals=2) == [None, 1]


def test_metric_table_directions():
    assert METRICS["hpa"].higher_is_better is True
    assert METRICS["fid"].higher_is_better is False
    assert METRICS["lpips_vis"].higher_is_better is False
    assert METRICS["dir"].higher_is_better is True
    assert METRICS["miou_occ"].higher_is_better is True
    assert metric_info("pass_rate@4").label == "Pass-rate@4"
    with pytest.raises(KeyError):
        metric_info("psnr")


def test_compare_paired_detects_difference():
    a = random_table(500, seed=5)
    b = a.copy()
    b["lpips_vis"] = a["lpips_vis"] + 0.02 + np.random.default_rng(6).normal(0, 0.01, len(a))
    result = compare_paired(a, b, "lpips_vis", CONFIG)
    assert result["count"] == 500
    assert result["difference"] == pytest.approx(-0.02, abs=0.002)
    assert result["ci"][1] < 0
    assert result["a_better_share"] == 1.0
    reverse = compare_paired(b, a, "lpips_vis", CONFIG)
    assert reverse["a_better_share"] == 0.0
    assert reverse["difference"] == pytest.approx(-result["difference"])


def test_compare_paired_rejects_different_samples():
    a = random_table(10, seed=7)
    b = a[a["sample_id"] != "s3"]
    with pytest.raises(AggregateError) as error:
        compare_paired(a, b, "dir", CONFIG)
    assert str(error.value) == "entries were scored on different samples: 1 only in a (s3); compare entries of the same split"
    with pytest.raises(AggregateError) as error:
        compare_paired(a, a, "hpa", CONFIG)
    assert str(error.value) == (
        "metric 'hpa' has no per-sample values to pair; choose one of lpips_vis, dir, lpips_comp, miou, miou_occ or pass_rate@K"
    )


def test_compare_paired_mask_metrics_cover_foreground_only():
    a = random_table(300, seed=11)
    b = a.copy()
    background = b["layer_kind"] == "background"
    b.loc[background, "iou_occ"] = 0.0  # a difference on background samples only
    foreground = a[a["layer_kind"] == "foreground"]
    result = compare_paired(a, b, "miou_occ", CONFIG)
    assert result["layer_kind"] == "foreground"
    assert result["count"] == len(foreground)
    assert result["difference"] == 0.0
    assert result["mean_a"] == pytest.approx(foreground["iou_occ"].mean())
    with pytest.raises(AggregateError) as error:
        compare_paired(a, b, "miou", CONFIG, layer_kind="background")
    assert str(error.value) == "miou is defined on foreground samples only; pass layer_kind 'foreground' or None"
    backgrounds = a[a["layer_kind"] == "background"]
    with pytest.raises(AggregateError) as error:
        compare_paired(backgrounds, backgrounds, "miou_occ", CONFIG)
    assert str(error.value) == (
        "miou_occ is defined on foreground samples only, and the entries have no foreground sample; "
        "compare another metric or layer kind"
    )
    with pytest.raises(AggregateError) as error:
        compare_paired(backgrounds, backgrounds, "dir", CONFIG, layer_kind="foreground")
    assert str(error.value) == (
        "layer_kind is 'foreground', and the entries have no foreground sample; compare another metric or layer kind"
    )


def test_compare_paired_by_layer_kind():
    a = random_table(300, seed=12)
    b = a.copy()
    b.loc[b["layer_kind"] == "background", "lpips_vis"] += 0.1
    both = compare_paired(a, b, "lpips_vis", CONFIG)
    assert both["layer_kind"] is None
    assert both["count"] == 300
    share = float((a["layer_kind"] == "background").mean())
    assert both["difference"] == pytest.approx(-0.1 * share)
    background = compare_paired(a, b, "lpips_vis", CONFIG, layer_kind="background")
    assert background["difference"] == pytest.approx(-0.1)
    assert compare_paired(a, b, "lpips_vis", CONFIG, layer_kind="foreground")["difference"] == 0.0
    with pytest.raises(AggregateError) as error:
        compare_paired(a, b, "lpips_vis", CONFIG, layer_kind="fg")
    assert str(error.value) == "unknown layer_kind 'fg'; use 'foreground', 'background' or None for both"


def config_with(**fields):
    return load_config({**CONFIG.to_json(), **fields})


def test_primary_metric_choices():
    table = hand_made_table()
    report = aggregate_samples(table, FID, config_with(primary_metric="foreground/miou"))
    assert report["primary"]["metric"] == "foreground/miou"
    assert report["primary"]["value"] == report["layer_kinds"]["foreground"]["metrics"]["miou"]["value"]
    report = aggregate_samples(table, FID, config_with(primary_metric="lpips_vis"))
    expected = (report["layer_kinds"]["foreground"]["metrics"]["lpips_vis"]["value"]
                + report["layer_kinds"]["background"]["metrics"]["lpips_vis"]["value"]) / 2
    assert report["primary"]["value"] == pytest.approx(expected)
    report = aggregate_samples(table, FID, config_with(primary_metric="pass_rate@4"))
    assert report["primary"] == {"value": None, "ci": None, "layer_kinds": [], "metric": "pass_rate@4"}
    with pytest.raises(AggregateError) as error:
        aggregate_samples(table, FID, config_with(primary_metric="psnr"))
    assert str(error.value).startswith("primary_metric 'psnr': unknown metric 'psnr'; known metrics: hpa, fid,")


def test_stored_passed_column_is_recomputed():
    table = add_quality(hand_made_table(), CONFIG)
    table["passed"] = pd.array([True] * len(table), dtype="boolean")
    metrics = aggregate_samples(table, FID, CONFIG)["groups"]["foreground/all/all"]["metrics"]
    assert metrics["pass_rate@1"]["value"] == pytest.approx(1 / 3)
    strict = CONFIG.calibration.to_json()
    strict["threshold"] = 1.5
    metrics = aggregate_samples(table, FID, config_with(calibration=strict))["groups"]["foreground/all/all"]["metrics"]
    assert metrics["pass_rate@1"]["value"] == 0.0


def test_compare_paired_pass_rate():
    a = hand_made_table()
    b = a.copy()
    for metric, value in WORST.items():
        b[metric] = b[metric].where(b[metric].isna(), value)
    result = compare_paired(a, b, "pass_rate@1", CONFIG)
    assert result["count"] == 5
    assert result["mean_b"] == 0.0
    assert result["difference"] == pytest.approx((0.5 + 0.5 + 0.0 + 0.5 + 0.5) / 5)
    assert result["a_better_share"] > 0.95


def test_scored_table_survives_parquet(tmp_path):
    scored = add_quality(hand_made_table(), CONFIG)
    path = tmp_path / "samples.parquet"
    scored.to_parquet(path)
    loaded = pd.read_parquet(path)
    assert str(loaded["passed"].dtype) == "boolean"
    assert loaded["passed"].isna().sum() == 2
    assert aggregate_samples(loaded, FID, CONFIG) == aggregate_samples(hand_made_table(), FID, CONFIG)

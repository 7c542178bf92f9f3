"""Aggregation: from the per-sample table and the FID values to the JSON report.

Input: the per-sample table (one row per sample and candidate, see
`REQUIRED_COLUMNS`) and FID values keyed by `evaluator.groups.group_name`.
Output of `aggregate_samples`: a JSON-serialisable dict (None where a value is
undefined, never NaN) with, for every breakdown group of every layer kind present,
the sample count and each metric as `{"value", "ci", "count"}`:

- `lpips_vis`, `dir`, `lpips_comp`: means over the group's samples, candidate 0,
  leaving out samples where the metric is undefined (NaN).
- `fid`: the given value for the group (computed elsewhere from candidate 0); no
  interval, because FID comes from summed statistics, not from per-sample values.
- `hpa`: `Calibration.hpa` of fid, mean lpips_vis and mean dir.
- `pass_rate@K` for each K of `config.k_list` with K <= n (see `evaluator.pass_rate`).
- `miou`, `miou_occ`: means of `iou` and `iou_occ` over foreground samples,
  candidate 0; `miou_occ` also reports `left_out_empty`, the count of foreground
  samples with nothing hidden. Background groups report None with count 0.

Intervals are 95% percentile bootstrap intervals over samples (`evaluator.bootstrap`).
NOTE: the HPA interval resamples only the lpips_vis and dir terms and keeps FID at
its point estimate, because FID cannot be recomputed per resample from summed
statistics. So it understates HPA's uncertainty by FID's share.

Top level: `hpa` is the mean of the HPA of the layer kinds present. Its interval
comes from the per-resample means of the kinds' HPA distributions. `primary` is the
value of `config.primary_metric`. The report also carries per-kind values, the
config and calibration identity, `pass_rate_calibrated` and n candidates.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from evaluator.bootstrap import CONFIDENCE_LEVEL, bootstrap_means, make_rng, percentile_interval
from evaluator.compare import compare_paired
from evaluator.config import LAYER_KINDS, BenchmarkConfig, Calibration
from evaluator.groups import (
    DIMENSIONS,
    OCCLUSION_LABELS,
    category_label,
    group_name,
    occlusion_bucket,
)
from evaluator.pass_rate import (
    add_quality,
    normalise_array,
    pass_at_k,
    pass_at_k_array,
    sample_pass_at_k,
)
from evaluator.reported_metrics import METRICS, MetricInfo, metric_info, rank_entries
from evaluator.sample_table import REQUIRED_COLUMNS, AggregateError, check_samples

__all__ = [
    "METRICS", "REQUIRED_COLUMNS", "AggregateError", "MetricInfo", "add_quality", "aggregate_samples",
    "compare_paired", "hpa_array", "metric_info", "pass_at_k", "pass_at_k_array", "rank_entries",
]

# Columns of the bootstrap matrix: report name and the per-sample column behind it.
_MEAN_COLUMNS = {"lpips_vis": "lpips_vis", "dir": "dir", "lpips_comp": "lpips_comp", "miou": "iou", "miou_occ": "iou_occ"}
_OCCLUSION_ORDER = ("none", "le25", "le50", "gt50", "unknown")


def hpa_array(calibration: Calibration, layer_kind: str, fid: float, lpips_vis: np.ndarray, dir: np.ndarray) -> np.ndarray:
    """Vectorised `Calibration.hpa` over arrays of mean lpips_vis and mean dir, FID fixed."""
    bounds = calibration.hpa_bounds[layer_kind]
    terms = (
        normalise_array(bounds["fid"], np.asarray(fid, dtype=np.float64), False),
        normalise_array(bounds["lpips_vis"], np.asarray(lpips_vis, dtype=np.float64), False),
        normalise_array(bounds["dir"], np.asarray(dir, dtype=np.float64), True),
    )
    return (terms[0] + terms[1] + terms[2]) / 3.0


def aggregate_samples(samples: pd.DataFrame, fid: dict[str, float], config: BenchmarkConfig) -> dict:
    """Build the report of one evaluation; see the module docstring for its fields."""
    n = check_samples(samples)
    k_list = [k for k in config.k_list if k <= n]
    per_sample = _per_sample_table(samples, config, n, k_list)

    groups: dict[str, dict] = {}
    distributions: dict[str, dict[str, np.ndarray]] = {}
    for group, rows in _iter_groups(per_sample):
        name = group_name(group)
        groups[name], distributions[name] = _aggregate_group(group, per_sample[rows], fid.get(name), config, k_list)

    kinds = [kind for kind in LAYER_KINDS if group_name(("all", kind, "all")) in groups]
    report = {
        "config": {"name": config.name, "version": config.version, "hash": config.hash},
        "calibration": {
            "version": config.calibration.version,
            "human": config.calibration.human,
            "source": config.calibration.source,
        },
        "pass_rate_calibrated": config.calibration.human,
        "n_candidates": n,
        "k_list": k_list,
        "sample_count": int(len(per_sample)),
        "bootstrap": {
            "samples": int(config.bootstrap["samples"]),
            "seed": int(config.bootstrap["seed"]),
            "level": CONFIDENCE_LEVEL,
            "method": "percentile",
        },
        "hpa": _across_kinds("hpa", kinds, groups, distributions),
        "pass_rates": {
            f"pass_rate@{k}": _over_samples(f"pass_rate@{k}", kinds, groups, distributions) for k in k_list
        },
        "layer_kinds": {kind: groups[group_name(("all", kind, "all"))] for kind in kinds},
        "groups": groups,
    }
    report["primary_metric"] = config.primary_metric
    report["primary"] = _primary(config.primary_metric, kinds, groups, distributions)
    return report


def _per_sample_table(samples: pd.DataFrame, config: BenchmarkConfig, n: int, k_list: list[int]) -> pd.DataFrame:
    """Build one row per sample: candidate 0's metrics, pass@K over all candidates, group labels."""
    # Always recomputed: a stored `passed` column may come from an older calibration.
    samples = add_quality(samples, config)
    first = samples[samples["candidate"] == 0].set_index("sample_id")
    passes = sample_pass_at_k(samples, n, k_list)
    table = first.join(passes, how="left")

    rates = table["occlusion_rate"].to_numpy(dtype=np.float64)
    table["occlusion_bucket"] = [occlusion_bucket(float(rate)) for rate in rates]
    table["category_label"] = [category_label(value) for value in table["category"]]
    return table


def _iter_groups(table: pd.DataFrame):
    """Yield (group, row mask) in a stable order: kind, dimension, then value."""
    columns = {"prompt_type": "prompt_type", "occlusion": "occlusion_bucket", "category": "category_label"}
    kinds = table["layer_kind"].to_numpy()
    for kind in LAYER_KINDS:
        in_kind = kinds == kind
        if not in_kind.any():
            continue
        for dimension in DIMENSIONS:
            if dimension == "all":
                yield ("all", kind, "all"), in_kind
                continue
            labels = table[columns[dimension]].to_numpy()
            present = set(labels[in_kind])
            order = _OCCLUSION_ORDER if dimension == "occlusion" else sorted(present)
            for value in order:
                if value in present:
                    yield (dimension, kind, value), in_kind & (labels == value)


def _aggregate_group(group, table: pd.DataFrame, fid: float | None, config: BenchmarkConfig, k_list: list[int]):
    """Compute the report entry of one group and its bootstrap distributions."""
    dimension, kind, value = group
    foreground = kind == "foreground"
    columns = {name: table[column].to_numpy(dtype=np.float64) for name, column in _MEAN_COLUMNS.items()}
    if not foreground:
        columns["miou"] = np.full(len(table), np.nan)
        columns["miou_occ"] = np.full(len(table), np.nan)
    for k in k_list:
        columns[f"pass_rate@{k}"] = table[f"pass@{k}"].to_numpy(dtype=np.float64)

    names = list(columns)
    values = np.column_stack([columns[name] for name in names])
    rng = make_rng(config.bootstrap["seed"], group_name(group))
    resampled = bootstrap_means(values, int(config.bootstrap["samples"]), rng)
    distributions = {name: resampled[:, index] for index, name in enumerate(names)}

    metrics = {}
    for index, name in enumerate(names):
        defined = ~np.isnan(values[:, index])
        point = float(values[defined, index].mean()) if defined.any() else None
        metrics[name] = _entry(point, distributions[name], int(defined.sum()))
    left_out = int(np.isnan(columns["miou_occ"]).sum()) if foreground else 0
    metrics["miou_occ"]["left_out_empty"] = left_out

    rgba_count = int((table["gt_kind"] == "rgba").sum())
    fid = _number(fid)
    metrics["fid"] = {"value": fid, "ci": None, "count": rgba_count if fid is not None else 0}
    metrics["hpa"], distributions["hpa"] = _group_hpa(config.calibration, kind, fid, metrics, distributions, rgba_count)

    entry = {
        "group": group_name(group),
        "layer_kind": kind,
        "dimension": dimension,
        "value": value,
        "label": OCCLUSION_LABELS.get(value, value) if dimension == "occlusion" else value,
        "count": int(len(table)),
        "metrics": {name: metrics[name] for name in _metric_order(k_list)},
    }
    return entry, distributions


def _group_hpa(calibration, kind, fid, metrics, distributions, count):
    """Compute the HPA of a group and its distribution, FID kept at its point estimate."""
    lpips_vis = metrics["lpips_vis"]["value"]
    direction = metrics["dir"]["value"]
    if fid is None or lpips_vis is None or direction is None:
        return {"value": None, "ci": None, "count": 0}, np.full(len(distributions["dir"]), np.nan)
    point = calibration.hpa(kind, fid, lpips_vis, direction)
    distribution = hpa_array(calibration, kind, fid, distributions["lpips_vis"], distributions["dir"])
    return _entry(point, distribution, count), distribution


def _across_kinds(metric: str, kinds: list[str], groups: dict, distributions: dict) -> dict:
    """Average a metric of the layer kinds' `all` groups, with the interval of that mean."""
    points, resampled, used = [], [], []
    for kind in kinds:
        name = group_name(("all", kind, "all"))
        point = groups[name]["metrics"][metric]["value"]
        if point is None:
            continue
        points.append(point)
        resampled.append(distributions[name].get(metric))
        used.append(kind)
    if not points:
        return {"value": None, "ci": None, "layer_kinds": []}
    ci = None
    if all(distribution is not None for distribution in resampled):
        ci = percentile_interval(np.mean(np.stack(resampled), axis=0))
    return {"value": float(np.mean(points)), "ci": _interval(ci), "layer_kinds": used}


def _over_samples(metric: str, kinds: list[str], groups: dict, distributions: dict) -> dict:
    """Average a per-sample metric over the samples of every layer kind, with its interval.

    The mean is the kinds' means weighted by their sample counts. Each bootstrap
    replicate resamples within each kind, so the interval comes from the same
    weighted mean of the kinds' replicates.
    """
    points, counts, resampled = [], [], []
    for kind in kinds:
        name = group_name(("all", kind, "all"))
        entry = groups[name]["metrics"].get(metric)
        if entry is None or entry["value"] is None or not entry["count"]:
            continue
        points.append(entry["value"])
        counts.append(entry["count"])
        resampled.append(distributions[name].get(metric))
    if not points:
        return {"value": None, "ci": None, "count": 0}
    weights = np.array(counts, dtype=np.float64) / sum(counts)
    ci = None
    if all(distribution is not None for distribution in resampled):
        ci = percentile_interval(np.tensordot(weights, np.stack(resampled), axes=1))
    return {"value": float(np.dot(weights, points)), "ci": _interval(ci), "count": int(sum(counts))}


def _primary(metric: str, kinds: list[str], groups: dict, distributions: dict) -> dict:
    """Resolve `hpa`, a reported metric (mean over kinds) or `<layer_kind>/<metric>` (one kind)."""
    kind, _, name = metric.rpartition("/")
    if kind and kind not in LAYER_KINDS:
        raise AggregateError(f"primary_metric {metric!r} names an unknown layer kind {kind!r}; use one of {', '.join(LAYER_KINDS)}")
    try:
        metric_info(name)
    except KeyError as error:
        raise AggregateError(f"primary_metric {metric!r}: {error.args[0]}") from None
    selected = [kind] if kind else kinds
    selected = [item for item in selected if item in kinds]
    first = groups[group_name(("all", kinds[0], "all"))]["metrics"]
    if name not in first:
        # A valid metric this report lacks, such as pass_rate@4 with n = 2 candidates.
        return {"value": None, "ci": None, "layer_kinds": [], "metric": metric}
    result = _across_kinds(name, selected, groups, distributions)
    result["metric"] = metric
    return result


def _metric_order(k_list: list[int]) -> list[str]:
    return ["hpa", "fid", "lpips_vis", "dir", "lpips_comp", *(f"pass_rate@{k}" for k in k_list), "miou", "miou_occ"]


def _entry(point: float | None, distribution: np.ndarray, count: int) -> dict:
    if point is None:
        return {"value": None, "ci": None, "count": count}
    return {"value": _number(point), "ci": _interval(percentile_interval(distribution)), "count": count}


def _interval(interval: tuple[float, float] | None) -> list[float] | None:
    return None if interval is None else [float(interval[0]), float(interval[1])]


def _number(value) -> float | None:
    if value is None:
        return None
    value = float(value)
    return None if math.isnan(value) else value

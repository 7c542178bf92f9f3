"""Paired bootstrap comparison of two entries scored on the same samples.

Both entries' per-sample tables are joined on `sample_id`: candidate 0, or all
candidates for `pass_rate@K`. Samples where the metric is undefined for either entry
are left out. `miou` and `miou_occ` compare foreground samples only, the samples
their report means cover; the other metrics compare every sample unless a layer
kind is given. The per-sample differences a - b are resampled together, so the
interval reflects the pairing rather than two independent means.
"""

from __future__ import annotations

import re

import numpy as np
import pandas as pd

from evaluator.bootstrap import bootstrap_means, make_rng, percentile_interval
from evaluator.config import BenchmarkConfig
from evaluator.pass_rate import add_quality, sample_pass_at_k
from evaluator.reported_metrics import metric_info
from evaluator.sample_table import AggregateError, check_samples, format_ids

# Report names whose per-sample values sit in another column.
_PER_SAMPLE_COLUMNS = {"lpips_vis": "lpips_vis", "dir": "dir", "lpips_comp": "lpips_comp",
                       "miou": "iou", "miou_occ": "iou_occ"}
_PASS_RATE = re.compile(r"^pass_rate@([1-9][0-9]*)$")
# Metrics whose report means cover foreground samples only.
_FOREGROUND_ONLY = {"miou", "miou_occ"}


def compare_paired(
    a: pd.DataFrame, b: pd.DataFrame, metric: str, config: BenchmarkConfig, layer_kind: str | None = None
) -> dict:
    """Mean difference a - b of a per-sample metric, its 95% interval and P(a better).

    `layer_kind` ("foreground" or "background") restricts both entries to samples of
    that kind. `a_better_share` is the share of resamples whose mean difference
    favours a strictly, in the metric's direction. Raises AggregateError when the
    entries were scored on different samples, the metric has no per-sample values
    (hpa, fid), or a mask metric is asked for background samples.
    """
    info = _paired_metric(metric)
    kind = _compared_kind(metric, layer_kind)
    values_a = _per_sample_values(a, metric, config, kind)
    values_b = _per_sample_values(b, metric, config, kind)

    only_a = sorted(set(values_a.index) - set(values_b.index))
    only_b = sorted(set(values_b.index) - set(values_a.index))
    if only_a or only_b:
        parts = []
        if only_a:
            parts.append(f"{len(only_a)} only in a ({format_ids(only_a)})")
        if only_b:
            parts.append(f"{len(only_b)} only in b ({format_ids(only_b)})")
        raise AggregateError(f"entries were scored on different samples: {'; '.join(parts)}; compare entries of the same split")

    if kind is not None and values_a.empty:
        reason = f"{metric} is defined on {kind} samples only" if metric in _FOREGROUND_ONLY else f"layer_kind is {kind!r}"
        raise AggregateError(f"{reason}, and the entries have no {kind} sample; compare another metric or layer kind")
    joined = pd.DataFrame({"a": values_a, "b": values_b.reindex(values_a.index)})
    joined = joined.dropna()
    if joined.empty:
        raise AggregateError(f"metric {metric!r} is undefined on every shared sample; choose a metric these samples have")

    differences = (joined["a"] - joined["b"]).to_numpy(dtype=np.float64)
    rng = make_rng(config.bootstrap["seed"], f"compare/{metric}")
    resampled = bootstrap_means(differences, int(config.bootstrap["samples"]), rng)[:, 0]
    better = resampled > 0 if info.higher_is_better else resampled < 0
    return {
        "metric": metric,
        "higher_is_better": info.higher_is_better,
        "mean_a": float(joined["a"].mean()),
        "mean_b": float(joined["b"].mean()),
        "difference": float(differences.mean()),
        "ci": list(percentile_interval(resampled)),
        "a_better_share": float(better.mean()),
        "count": int(len(joined)),
        "layer_kind": kind,
    }


def _compared_kind(metric: str, layer_kind: str | None) -> str | None:
    if layer_kind not in (None, "foreground", "background"):
        raise AggregateError(f"unknown layer_kind {layer_kind!r}; use 'foreground', 'background' or None for both")
    if metric in _FOREGROUND_ONLY:
        if layer_kind == "background":
            raise AggregateError(f"{metric} is defined on foreground samples only; pass layer_kind 'foreground' or None")
        return "foreground"
    return layer_kind


def _paired_metric(metric: str):
    if metric not in _PER_SAMPLE_COLUMNS and not _PASS_RATE.match(metric):
        raise AggregateError(
            f"metric {metric!r} has no per-sample values to pair; choose one of "
            f"{', '.join(_PER_SAMPLE_COLUMNS)} or pass_rate@K"
        )
    return metric_info(metric)


def _per_sample_values(table: pd.DataFrame, metric: str, config: BenchmarkConfig, kind: str | None) -> pd.Series:
    """Return one value per sample_id (of layer kind `kind`, or all): candidate 0's metric, or pass@K."""
    n = check_samples(table)
    if kind is not None:
        table = table[table["layer_kind"] == kind]
    match = _PASS_RATE.match(metric)
    if match:
        k = int(match.group(1))
        if k > n:
            raise AggregateError(f"{metric} needs K <= n candidates, found K={k}, n={n}; choose a smaller K")
        table = add_quality(table, config)
        return sample_pass_at_k(table, n, [k])[f"pass@{k}"]
    first = table[table["candidate"] == 0]
    return pd.Series(first[_PER_SAMPLE_COLUMNS[metric]].to_numpy(dtype=np.float64), index=first["sample_id"].to_numpy())

"""Human-preference-aligned Pass-rate@K: candidate quality, pass/fail and pass@K.

A candidate's quality is q = sum_j w_j * norm_j(x_j) over the metrics `lpips_vis`,
`dir` and `lpips_comp`, with the bounds and weights of the calibration; it passes
when q >= threshold. Where a metric is undefined (NaN) for a candidate, q is the
weighted mean of the defined terms, with the weights renormalised to sum 1. An
undefined metric means that the ground truth offers nothing to judge (`dir` where
nothing is hidden), not that the candidate failed. Where no metric is defined
(`amodal_mask` samples), q is undefined and the candidate neither passes nor fails.

With n candidates of which c pass, pass@K = 1 - C(n - c, K) / C(n, K), the unbiased
estimator of the chance that at least one of K candidates drawn without replacement
passes. Pass-rate@K is its mean over samples.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from evaluator.config import QUALITY_METRICS, BenchmarkConfig, Bounds, Calibration, ConfigError

# Slack in q >= threshold, so weights stored to 16 digits (1/3 as 0.3333333333333333)
# do not turn a quality that equals the threshold exactly into a fail.
THRESHOLD_TOLERANCE = 1e-9


def pass_at_k(n: int, c: int, k: int) -> float:
    """Return 1 - C(n - c, k) / C(n, k), as a product of factors in [0, 1] (no large binomials)."""
    if not 1 <= k <= n:
        raise ValueError(f"pass@K needs 1 <= K <= n, found K={k}, n={n}; lower K or add candidates")
    if not 0 <= c <= n:
        raise ValueError(f"pass@K needs 0 <= c <= n passing candidates, found c={c}, n={n}")
    if n - c < k:
        return 1.0
    # C(n - c, k) / C(n, k) = prod_{i = n - c + 1}^{n} (1 - k / i)
    failure = 1.0
    for i in range(n - c + 1, n + 1):
        failure *= 1.0 - k / i
    return 1.0 - failure


def pass_at_k_array(n: int, c: np.ndarray, k: int) -> np.ndarray:
    """Vectorised `pass_at_k` for an array of passing counts `c` with the same n."""
    if not 1 <= k <= n:
        raise ValueError(f"pass@K needs 1 <= K <= n, found K={k}, n={n}; lower K or add candidates")
    c = np.asarray(c, dtype=np.int64)
    if c.size and (c.min() < 0 or c.max() > n):
        raise ValueError(f"pass@K needs 0 <= c <= n passing candidates, found c in {c.min()}..{c.max()}, n={n}")

    # Row r multiplies (1 - k / i) over the i in n - c_r + 1 .. n; other factors are 1.
    i = np.arange(1, n + 1, dtype=np.float64)
    factors = np.where(i[None, :] > (n - c)[:, None], 1.0 - k / i[None, :], 1.0)
    failure = np.prod(factors, axis=1)
    return np.where(n - c < k, 1.0, 1.0 - failure)


def normalise_array(bounds: Bounds, values: np.ndarray, higher_is_better: bool) -> np.ndarray:
    """Vectorised `Bounds.normalise`: clipped to [0, 1], NaN stays NaN."""
    span = bounds.hi - bounds.lo
    score = (values - bounds.lo) / span if higher_is_better else (bounds.hi - values) / span
    return np.clip(score, 0.0, 1.0)


def quality_array(calibration: Calibration, layer_kind: str, metrics: dict[str, np.ndarray]) -> np.ndarray:
    """Quality q of many candidates of one layer kind; NaN metrics drop out (module docstring)."""
    if layer_kind not in calibration.pass_bounds:
        raise ConfigError(f"calibration {calibration.version} has no pass_bounds for layer kind {layer_kind!r}")
    weighted = 0.0
    weight_sum = 0.0
    for name, higher in QUALITY_METRICS.items():
        values = np.asarray(metrics[name], dtype=np.float64)
        terms = normalise_array(calibration.pass_bounds[layer_kind][name], values, higher)
        defined = ~np.isnan(terms)
        weight = calibration.pass_weights[name]
        weighted = weighted + np.where(defined, weight * np.nan_to_num(terms), 0.0)
        weight_sum = weight_sum + np.where(defined, weight, 0.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(weight_sum > 0, weighted / np.where(weight_sum > 0, weight_sum, 1.0), np.nan)


def passes(quality: np.ndarray, threshold: float) -> np.ndarray:
    """Apply the pass rule q >= threshold (within THRESHOLD_TOLERANCE); False where q is NaN."""
    return np.asarray(quality, dtype=np.float64) >= threshold - THRESHOLD_TOLERANCE


def add_quality(samples: pd.DataFrame, config: BenchmarkConfig) -> pd.DataFrame:
    """Return a copy of the per-sample table with `quality` (float) and `passed` columns.

    `passed` is a nullable boolean: NA where the quality is undefined. The numbers
    come from `config.calibration`, so recalibrating is calling this again.
    """
    calibration = config.calibration
    missing = [name for name in ("layer_kind", *QUALITY_METRICS) if name not in samples.columns]
    if missing:
        raise ValueError(f"per-sample table lacks the columns {', '.join(missing)}; score the samples first")
    result = samples.copy()
    quality = np.full(len(result), np.nan)
    kinds = result["layer_kind"].to_numpy()
    for kind in pd.unique(kinds):
        rows = kinds == kind
        metrics = {name: result[name].to_numpy(dtype=np.float64)[rows] for name in QUALITY_METRICS}
        quality[rows] = quality_array(calibration, kind, metrics)
    result["quality"] = quality
    passed = pd.array(passes(quality, calibration.threshold), dtype="boolean")
    passed[np.isnan(quality)] = pd.NA
    result["passed"] = passed
    return result


def sample_pass_at_k(samples: pd.DataFrame, n: int, k_list: list[int]) -> pd.DataFrame:
    """Per sample: `passing` (c), and `pass@K` for each K, from a table with `passed`.

    Samples whose every candidate has an undefined quality get NaN. A candidate with
    an undefined quality among defined ones counts as failing.
    """
    flags = pd.DataFrame(
        {
            "sample_id": samples["sample_id"].to_numpy(),
            "passing": samples["passed"].fillna(False).to_numpy(dtype=np.int64),
            "defined": samples["passed"].notna().to_numpy(dtype=np.int64),
        }
    )
    counts = flags.groupby("sample_id", sort=False).sum()
    result = pd.DataFrame({"passing": counts["passing"].astype(np.int64)})
    defined = counts["defined"].to_numpy() > 0
    for k in k_list:
        values = pass_at_k_array(n, result["passing"].to_numpy(), k)
        result[f"pass@{k}"] = np.where(defined, values, np.nan)
    return result

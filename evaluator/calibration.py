"""Fitting a calibration to human judgments, and its agreement with them.

Two sources, read by `evaluator.judgments`:

(a) Pass/fail labels per candidate. Each labelled candidate's metrics are
    normalised with the base calibration's `pass_bounds` (kept, not refitted, so
    quality and HPA keep one meaning of "0" and "1"), giving x in [0, 1]^3 oriented
    so higher is better. A logistic model P(pass) = sigmoid(beta . x - beta_0) with
    beta >= 0 is fitted by maximum likelihood (L-BFGS-B, L2 penalty `RIDGE` on beta).
    Its decision rule beta . x >= beta_0 is the pass rule q >= tau with
    w = beta / sum(beta) and tau = beta_0 / sum(beta). Candidates with an undefined
    metric are left out of the fit and counted.
(b) Pairwise preferences between entries, optionally per sample. Ratings: a
    Bradley-Terry model fitted by maximum likelihood (ties count half a win to each
    side, L2 penalty `RIDGE` on the log-strengths), reported on the Elo scale:
    1500 + 400 * log10(strength), centred on 1500. It does not depend on the order
    of the judgments. Weights: the same Bradley-Terry model with strength w . x,
    fitted on the metric differences x_a - x_b of each judgment (per-sample metrics
    where the judgment names a sample, else each entry's mean metrics). Preferences
    are relative, so they fix the weights but not the threshold: tau is kept from
    the base calibration. HPA bounds are kept in both paths, because FID is not in
    the per-sample tables and HPA's three terms have fixed equal weights.

Agreement: Pearson and Spearman correlation (scipy.stats) of each metric, signed so
higher is better, and of the quality under the base and the fitted calibration.
Path (a) correlates them with the labels, per candidate. Path (b) correlates each
entry's mean over its candidate-0 samples with the entry's Elo rating.

The output is a calibration JSON: the fields `Calibration.from_json` reads,
`human: true`, plus `fit` (method and counts) and `agreement` (the table).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import optimize, special, stats

from evaluator.config import QUALITY_METRICS, Calibration, ConfigError
from evaluator.judgments import TIE, JudgmentError
from evaluator.pass_rate import normalise_array, passes, quality_array
from evaluator.sample_table import format_ids

# L2 penalty on the fitted coefficients, added to the summed log-loss: a Gaussian prior
# of variance 1 / RIDGE that keeps the fit finite when the judgments are separable.
RIDGE = 1e-2
ELO_BASE = 1500.0
ELO_SCALE = 400.0 / math.log(10.0)
# Fewer labelled candidates than this cannot support three weights and a threshold.
MIN_LABELS = 20


@dataclass(frozen=True)
class CalibrationFit:
    """A fitted calibration with its method details and agreement table."""

    calibration: Calibration
    fit: dict
    agreement: list[dict]

    def to_json(self) -> dict:
        obj = self.calibration.to_json()
        obj["fit"] = self.fit
        obj["agreement"] = self.agreement
        return obj


def features(samples: pd.DataFrame, calibration: Calibration) -> np.ndarray:
    """Normalise the quality metrics of each row: (rows, 3) in [0, 1], NaN where undefined."""
    result = np.full((len(samples), len(QUALITY_METRICS)), np.nan)
    kinds = samples["layer_kind"].to_numpy()
    for kind in pd.unique(kinds):
        rows = kinds == kind
        for column, (name, higher) in enumerate(QUALITY_METRICS.items()):
            values = samples[name].to_numpy(dtype=np.float64)[rows]
            result[rows, column] = normalise_array(calibration.pass_bounds[kind][name], values, higher)
    return result


def fit_logistic(x: np.ndarray, y: np.ndarray, intercept: bool) -> tuple[np.ndarray, float]:
    """Maximum-likelihood logistic fit with beta >= 0; y may be soft (0.5 for a tie)."""
    m = x.shape[1]

    def loss(params: np.ndarray) -> tuple[float, np.ndarray]:
        beta, beta_0 = params[:m], (params[m] if intercept else 0.0)
        z = x @ beta - beta_0
        # Summed log(1 + e^z) - y z, written stably; its gradient is x^T (sigmoid(z) - y).
        value = np.sum(np.logaddexp(0.0, z) - y * z) + 0.5 * RIDGE * beta @ beta
        residual = special.expit(z) - y
        gradient = np.concatenate([x.T @ residual + RIDGE * beta, [-residual.sum()] if intercept else []])
        return value, gradient

    start = np.concatenate([np.ones(m), [0.5 * m] if intercept else []])
    bounds = [(0.0, None)] * m + ([(None, None)] if intercept else [])
    result = optimize.minimize(loss, start, jac=True, method="L-BFGS-B", bounds=bounds)
    if not result.success:
        raise JudgmentError(f"the logistic fit did not converge: {result.message}; check the judgments for contradictions")
    return result.x[:m], float(result.x[m]) if intercept else 0.0


def _weights_from_beta(beta: np.ndarray) -> dict[str, float]:
    total = float(beta.sum())
    if total <= 0:
        raise JudgmentError("the judgments do not depend on any metric (all fitted weights are 0); collect more judgments")
    return {name: float(value / total) for name, value in zip(QUALITY_METRICS, beta, strict=True)}


def fit_from_labels(samples: pd.DataFrame, labels: pd.DataFrame, base: Calibration, version: str, source: str) -> CalibrationFit:
    """Path (a): fit weights and threshold to per-candidate pass/fail labels."""
    joined = _join_labels(samples, labels)
    x = features(joined, base)
    usable = ~np.isnan(x).any(axis=1)
    x, y = x[usable], joined["passed"].to_numpy(dtype=np.float64)[usable]
    if len(y) < MIN_LABELS or y.min() == y.max():
        raise JudgmentError(
            f"need at least {MIN_LABELS} labelled candidates with every metric defined and both "
            f"outcomes, found {len(y)} with {int(y.sum())} passing; label more candidates"
        )

    beta, beta_0 = fit_logistic(x, y, intercept=True)
    weights = _weights_from_beta(beta)
    calibration = replace(base, version=version, pass_weights=weights, threshold=beta_0 / float(beta.sum()),
                          human=True, source=source)

    rows = joined[usable]
    agreement = _metric_agreement(rows, y)
    for name, fitted in (("quality (base)", base), ("quality (fitted)", calibration)):
        agreement.append(_correlations(name, _quality(rows, fitted), y))
    fit = {
        "method": "logistic regression, non-negative weights, pass when quality >= threshold",
        "judgments": "labels",
        "labels": int(len(joined)),
        "left_out_undefined": int((~usable).sum()),
        "accuracy_base": _accuracy(passes(_quality(rows, base), base.threshold), y),
        "accuracy_fitted": _accuracy(passes(_quality(rows, calibration), calibration.threshold), y),
    }
    return CalibrationFit(calibration, fit, agreement)


def _join_labels(samples: pd.DataFrame, labels: pd.DataFrame) -> pd.DataFrame:
    entries = pd.unique(samples["entry"])
    # A scored table may carry the previous calibration's verdict; the labels replace it.
    samples = samples.drop(columns=["quality", "passed"], errors="ignore")
    labels = labels.copy()
    if "entry" not in labels.columns:
        if len(entries) > 1:
            raise JudgmentError(f"labels have no entry column but the samples hold {len(entries)} entries; add entry to each label")
        labels["entry"] = entries[0]
    joined = labels.merge(samples, on=["entry", "sample_id", "candidate"], how="left", indicator=True)
    unmatched = joined[joined["_merge"] == "left_only"]
    if len(unmatched):
        keys = [f"{row.entry}/{row.sample_id}/{row.candidate}" for row in unmatched.itertuples()]
        raise JudgmentError(f"labels refer to candidates not in the samples: {format_ids(keys)}; check entry, sample_id and candidate")
    return joined.drop(columns="_merge")


def elo_ratings(preferences: pd.DataFrame) -> pd.Series:
    """Bradley-Terry maximum-likelihood ratings on the Elo scale, mean 1500."""
    entries = sorted(set(preferences["entry_a"]) | set(preferences["entry_b"]))
    index = {name: position for position, name in enumerate(entries)}
    a = preferences["entry_a"].map(index).to_numpy()
    b = preferences["entry_b"].map(index).to_numpy()
    x = np.zeros((len(preferences), len(entries)))
    x[np.arange(len(a)), a] = 1.0
    x[np.arange(len(b)), b] = -1.0
    y = _outcomes(preferences)

    def loss(strength: np.ndarray) -> tuple[float, np.ndarray]:
        z = x @ strength
        residual = special.expit(z) - y
        value = np.sum(np.logaddexp(0.0, z) - y * z) + 0.5 * RIDGE * strength @ strength
        return value, x.T @ residual + RIDGE * strength

    result = optimize.minimize(loss, np.zeros(len(entries)), jac=True, method="L-BFGS-B")
    if not result.success:
        raise JudgmentError(f"the Bradley-Terry fit did not converge: {result.message}; check the preferences")
    strength = result.x - result.x.mean()
    return pd.Series(ELO_BASE + ELO_SCALE * strength, index=entries, name="elo")


def fit_from_preferences(
    samples: pd.DataFrame,
    preferences: pd.DataFrame,
    base: Calibration,
    version: str,
    source: str,
    entry_hpa: dict[str, float] | None = None,
) -> CalibrationFit:
    """Path (b): Elo ratings of the entries, and weights whose quality explains the preferences.

    `entry_hpa` (entry name to its report's top-level HPA) adds an `hpa` row to the
    agreement table; entries without one are left out of that row.
    """
    unknown = sorted((set(preferences["entry_a"]) | set(preferences["entry_b"])) - set(samples["entry"]))
    if unknown:
        raise JudgmentError(f"preferences name entries without samples: {format_ids(unknown)}; pass their tables with --samples NAME=PATH")
    first = samples[samples["candidate"] == 0].reset_index(drop=True)
    x = features(first, base)
    differences, usable = _preference_differences(first, x, preferences)
    y = _outcomes(preferences)[usable]
    if len(y) < MIN_LABELS:
        raise JudgmentError(f"need at least {MIN_LABELS} preferences with every metric defined, found {len(y)}; collect more")

    beta, _ = fit_logistic(differences, y, intercept=False)
    calibration = replace(base, version=version, pass_weights=_weights_from_beta(beta), human=True, source=source)

    ratings = elo_ratings(preferences)
    per_entry = first.groupby("entry")
    means = per_entry[list(QUALITY_METRICS)].mean().reindex(ratings.index)
    agreement = _metric_agreement(means, ratings.to_numpy())
    for name, fitted in (("quality (base)", base), ("quality (fitted)", calibration)):
        quality = pd.Series(_quality(first, fitted)).groupby(first["entry"]).mean().reindex(ratings.index)
        agreement.append(_correlations(name, quality.to_numpy(), ratings.to_numpy()))
    if entry_hpa is not None:
        hpa = np.array([entry_hpa.get(name, np.nan) for name in ratings.index], dtype=np.float64)
        agreement.append(_correlations("hpa (reports)", hpa, ratings.to_numpy()))
    fit = {
        "method": "Bradley-Terry maximum likelihood on the Elo scale; weights by Bradley-Terry on metric differences; threshold kept",
        "judgments": "preferences",
        "preferences": int(len(preferences)),
        "left_out_undefined": int((~usable).sum()),
        "elo": {name: float(value) for name, value in ratings.items()},
    }
    return CalibrationFit(calibration, fit, agreement)


def _outcomes(preferences: pd.DataFrame) -> np.ndarray:
    """1 where entry_a won, 0 where entry_b won, 0.5 for a tie."""
    winner = preferences["winner"].to_numpy()
    return np.where(winner == TIE, 0.5, (winner == preferences["entry_a"].to_numpy()).astype(np.float64))


def _preference_differences(first: pd.DataFrame, x: np.ndarray, preferences: pd.DataFrame):
    """Return the rows x_a - x_b of the judgments with every metric defined, and that mask."""
    sample_index = pd.MultiIndex.from_arrays([first["entry"].astype(str), first["sample_id"].astype(str)])
    by_entry = pd.DataFrame(x).groupby(first["entry"].to_numpy()).mean()
    if "sample_id" in preferences.columns:
        named = preferences["sample_id"].notna().to_numpy()
        sample_ids = preferences["sample_id"].astype(str).to_numpy()
    else:
        named = np.zeros(len(preferences), dtype=bool)
        sample_ids = np.full(len(preferences), "", dtype=object)

    sides = []
    for column in ("entry_a", "entry_b"):
        entries = preferences[column].to_numpy()
        positions = sample_index.get_indexer(pd.MultiIndex.from_arrays([entries, sample_ids]))
        missing = named & (positions < 0)
        if missing.any():
            row = int(np.flatnonzero(missing)[0])
            raise JudgmentError(
                f"preference on sample {sample_ids[row]} names {entries[row]}, which has no such sample; "
                "check the sample_id or pass that entry's full table"
            )
        per_sample = x[np.where(positions < 0, 0, positions)]
        per_entry = by_entry.reindex(entries).to_numpy()
        sides.append(np.where(named[:, None], per_sample, per_entry))

    differences = sides[0] - sides[1]
    usable = ~np.isnan(differences).any(axis=1)
    return differences[usable], usable


def _quality(rows: pd.DataFrame, calibration: Calibration) -> np.ndarray:
    quality = np.full(len(rows), np.nan)
    kinds = rows["layer_kind"].to_numpy()
    for kind in pd.unique(kinds):
        mask = kinds == kind
        metrics = {name: rows[name].to_numpy(dtype=np.float64)[mask] for name in QUALITY_METRICS}
        quality[mask] = quality_array(calibration, kind, metrics)
    return quality


def _metric_agreement(rows: pd.DataFrame, target: np.ndarray) -> list[dict]:
    """Correlation of each metric, signed so higher is better, with the target."""
    table = []
    for name, higher in QUALITY_METRICS.items():
        values = rows[name].to_numpy(dtype=np.float64)
        table.append(_correlations(name, values if higher else -values, target))
    return table


def _correlations(name: str, values: np.ndarray, target: np.ndarray) -> dict:
    defined = ~np.isnan(values) & ~np.isnan(target)
    values, target = values[defined], target[defined]
    row = {"metric": name, "count": int(defined.sum()), "pearson": None, "spearman": None}
    if len(values) >= 3 and np.ptp(values) > 0 and np.ptp(target) > 0:
        row["pearson"] = float(stats.pearsonr(values, target).statistic)
        row["spearman"] = float(stats.spearmanr(values, target).statistic)
    return row


def _accuracy(predicted: np.ndarray, y: np.ndarray) -> dict:
    predicted = predicted.astype(bool)
    truth = y.astype(bool)
    accuracy = float((predicted == truth).mean())
    balanced = float(0.5 * (predicted[truth].mean() + (~predicted[~truth]).mean()))
    return {"accuracy": accuracy, "balanced_accuracy": balanced}


def format_agreement(agreement: list[dict]) -> str:
    """Format the agreement table as aligned text."""
    lines = [f"{'metric':<18} {'count':>7} {'pearson':>8} {'spearman':>9}"]
    for row in agreement:
        pearson = "-" if row["pearson"] is None else f"{row['pearson']:.3f}"
        spearman = "-" if row["spearman"] is None else f"{row['spearman']:.3f}"
        lines.append(f"{row['metric']:<18} {row['count']:>7} {pearson:>8} {spearman:>9}")
    return "\n".join(lines)


def write_calibration(fit: CalibrationFit, path: str | Path) -> None:
    Path(path).write_text(json.dumps(fit.to_json(), indent=2, allow_nan=False) + "\n", encoding="utf-8")


def load_calibration(path: str | Path) -> Calibration:
    """Read a calibration JSON (as `calibrate` writes it, or a config's `calibration` object)."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"calibration file {path} not found; give a .json written by python -m evaluator calibrate")
    try:
        obj = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise ConfigError(f"calibration file {path} is not valid JSON: {error}") from None
    return Calibration.from_json(obj)

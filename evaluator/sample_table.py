"""The per-sample table: its columns and the checks made before aggregating it.

One row per sample and candidate. Metric columns are float, NaN where undefined:
`lpips_vis`, `dir` and `lpips_comp` for `amodal_mask` samples, `dir` where the
visible mask covers the whole layer, `iou_occ` where nothing of the ground truth
is hidden. Scoring adds `quality` and `passed` (`evaluator.pass_rate.add_quality`).
"""

from __future__ import annotations

import pandas as pd

from evaluator.config import LAYER_KINDS

REQUIRED_COLUMNS = (
    "sample_id", "candidate", "layer_kind", "prompt_type", "gt_kind", "category", "occlusion_rate",
    "lpips_vis", "dir", "lpips_comp", "iou", "iou_occ",
)
# Sample ids quoted in an error before the rest are counted.
_IDS_SHOWN = 5


class AggregateError(ValueError):
    """An invalid per-sample table or aggregation request; the message names the value and the fix."""


def format_ids(ids) -> str:
    """Join at most five ids with commas, then "and N more"."""
    ids = [str(value) for value in ids]
    listed = ", ".join(ids[:_IDS_SHOWN])
    return listed if len(ids) <= _IDS_SHOWN else f"{listed} and {len(ids) - _IDS_SHOWN} more"


def check_samples(samples: pd.DataFrame) -> int:
    """Check the table's shape and return n, the candidates per sample."""
    missing = [name for name in REQUIRED_COLUMNS if name not in samples.columns]
    if missing:
        raise AggregateError(f"per-sample table lacks the columns {', '.join(missing)}; score the samples first")
    if samples.empty:
        raise AggregateError("per-sample table is empty; score at least one sample")

    kinds = samples["layer_kind"]
    unknown = sorted(set(kinds[~kinds.isin(LAYER_KINDS)].astype(str)))
    if unknown:
        raise AggregateError(f"unknown layer_kind {', '.join(unknown)}; expected one of {', '.join(LAYER_KINDS)}")

    if not pd.api.types.is_integer_dtype(samples["candidate"]) or samples["candidate"].isna().any():
        raise AggregateError(
            f"column candidate must hold integers with no missing value, found dtype {samples['candidate'].dtype}"
        )
    duplicated = samples.duplicated(["sample_id", "candidate"])
    if duplicated.any():
        ids = pd.unique(samples.loc[duplicated, "sample_id"])
        raise AggregateError(f"samples with a candidate listed twice: {format_ids(ids)}; keep one row each")

    sizes = samples.groupby("sample_id", sort=False)["candidate"].agg(["size", "min", "max"])
    n = int(sizes["size"].max())
    wrong = sizes[(sizes["size"] != n) | (sizes["min"] != 0) | (sizes["max"] != n - 1)]
    if len(wrong):
        raise AggregateError(
            f"every sample needs candidates 0..{n - 1}; these differ: {format_ids(wrong.index)} "
            f"(found {int(wrong['size'].iloc[0])} candidates numbered {int(wrong['min'].iloc[0])}.."
            f"{int(wrong['max'].iloc[0])} for {wrong.index[0]})"
        )
    return n

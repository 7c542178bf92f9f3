"""The metrics a report carries: direction, label, unit and meaning; and tie-aware ranks.

The leaderboard sorts each metric in its own direction from `METRICS` and ranks
entries with `rank_entries`, so two entries that look equal on the page share a rank.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass


@dataclass(frozen=True)
class MetricInfo:
    """Presentation facts of one reported metric."""

    name: str
    higher_is_better: bool
    label: str
    unit: str
    description: str
    # Decimals shown on the leaderboard; ranks compare values rounded to these.
    decimals: int = 4


METRICS: dict[str, MetricInfo] = {
    info.name: info
    for info in (
        MetricInfo(
            "hpa", True, "HPA", "score in [0, 1]",
            "Human-preference-aligned score: the mean of the clipped, min-max normalised "
            "FID, mean lpips_vis and mean dir, with the calibration's bounds.",
        ),
        MetricInfo(
            "fid", False, "FID", "squared feature distance",
            "Frechet Inception Distance between the composited predictions and the "
            "composited ground-truth layers (candidate 0), Inception-v3 pool features.",
            decimals=2,
        ),
        MetricInfo(
            "lpips_vis", False, "LPIPS (visible)", "LPIPS distance",
            "Preservation: LPIPS between ground truth and prediction inside the visible mask.",
        ),
        MetricInfo(
            "dir", True, "Completion direction", "cosine in [-1, 1]",
            "Completion: cosine between the CLIP embedding directions from the visible part "
            "to the ground-truth layer and to the predicted layer.",
        ),
        MetricInfo(
            "lpips_comp", False, "LPIPS (composite)", "LPIPS distance",
            "Composite faithfulness: LPIPS between the layers composited over the neutral background.",
        ),
        MetricInfo(
            "miou", True, "mIoU", "IoU in [0, 1]",
            "Mean IoU of the amodal masks (alpha >= 0.5) over foreground samples.",
        ),
        MetricInfo(
            "miou_occ", True, "mIoU (occluded)", "IoU in [0, 1]",
            "Mean IoU of the amodal masks restricted to the hidden region, over foreground "
            "samples whose hidden region is not empty.",
        ),
        MetricInfo(
            "pass_rate@K", True, "Pass-rate@K", "share in [0, 1]",
            "Mean over samples of the unbiased pass@K: the chance that at least one of K of "
            "the n candidates reaches the calibration's quality threshold.",
        ),
    )
}

_PASS_RATE_NAME = re.compile(r"^pass_rate@([1-9][0-9]*)$")


def metric_info(name: str) -> MetricInfo:
    """Look up a metric name in `METRICS`; `pass_rate@4` resolves to `pass_rate@K`."""
    if name in METRICS:
        return METRICS[name]
    match = _PASS_RATE_NAME.match(name)
    if match:
        generic = METRICS["pass_rate@K"]
        return MetricInfo(name, generic.higher_is_better, f"Pass-rate@{match.group(1)}", generic.unit,
                          generic.description.replace("K of", f"{match.group(1)} of"), generic.decimals)
    raise KeyError(f"unknown metric {name!r}; known metrics: {', '.join(METRICS)} (K a positive integer)")


def rank_entries(values: list[float | None], higher_is_better: bool, decimals: int) -> list[int | None]:
    """Competition ranks ("1, 2, 2, 4") of values compared at `decimals` decimals.

    Values equal after rounding share the best of their ranks. None and NaN get no rank.
    """
    rounded = [None if value is None or math.isnan(value) else round(value, decimals) for value in values]
    ranked = sorted((value for value in rounded if value is not None), reverse=higher_is_better)
    first_rank: dict[float, int] = {}
    for position, value in enumerate(ranked, start=1):
        first_rank.setdefault(value, position)
    return [None if value is None else first_rank[value] for value in rounded]

"""Leaderboard columns: which flat metric keys are shown, in what order, how they read.

A flat key is a reported metric name (`hpa`, `fid`, `pass_rate@2`, ...) with an
optional layer kind suffix (`fid_foreground`). Direction, label and decimals come
from `evaluator.aggregate.METRICS`, so the page, the API and the evaluator agree.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from evaluator.aggregate import metric_info
from evaluator.config import LAYER_KINDS

KIND_SHORT = {"foreground": "fg", "background": "bg"}
# Leaderboard column order by base metric; a key not listed goes after these.
BASE_ORDER = ("hpa", "pass_rate", "fid", "lpips_vis", "dir", "lpips_comp", "miou", "miou_occ")


@dataclass(frozen=True)
class Column:
    """One metric column: flat key, label, direction and display precision."""

    key: str
    base: str
    layer_kind: str
    label: str
    description: str
    higher_is_better: bool
    decimals: int

    @property
    def is_pass_rate(self) -> bool:
        return self.base.startswith("pass_rate@")


def split_key(key: str) -> tuple[str, str]:
    """Split `fid_foreground` into (`fid`, `foreground`); a key without a kind gives ''."""
    for kind in LAYER_KINDS:
        suffix = f"_{kind}"
        if key.endswith(suffix):
            return key[: -len(suffix)], kind
    return key, ""


def column_for(key: str) -> Column | None:
    """Return the column of a flat metric key, or None for a key that names no known metric."""
    base, kind = split_key(key)
    try:
        info = metric_info(base)
    except KeyError:
        return None
    label = f"{info.label} ({KIND_SHORT[kind]})" if kind else info.label
    description = f"{info.description} {kind.capitalize()} layers only." if kind else info.description
    return Column(key, base, kind, label, description, info.higher_is_better, info.decimals)


def _order(column: Column) -> tuple:
    family = column.base.split("@")[0]
    position = BASE_ORDER.index(family) if family in BASE_ORDER else len(BASE_ORDER)
    k = int(column.base.split("@")[1]) if "@" in column.base else 0
    kind = ("", *LAYER_KINDS).index(column.layer_kind)
    return (position, k, kind, column.key)


# The leaderboard shows mask IoU (foreground only) as `miou` and `miou_occ`, and
# Pass-rate@K over all samples. It leaves out their per-kind copies.
LEADERBOARD_SKIPPED_BASES = ("miou", "miou_occ", "pass_rate")


def columns_for_keys(keys, *, all_keys: bool = False) -> list[Column]:
    """List the known columns of the given flat keys, in leaderboard order.

    Per-kind copies of mIoU and Pass-rate@K are left out unless `all_keys` is set.
    """
    columns = []
    for key in set(keys):
        column = column_for(key)
        if column is None:
            continue
        if not all_keys and column.layer_kind and column.base.split("@")[0] in LEADERBOARD_SKIPPED_BASES:
            continue
        columns.append(column)
    return sorted(columns, key=_order)


def selector_ordering(ordering: str) -> str:
    """Translate `?ordering=` (`-` for descending) to the selector's form (`-` reverses the best-first order).

    `-hpa` and `fid_foreground` both list the best entry first, and the selector
    writes both without a prefix. Raises KeyError for an unknown metric.
    """
    key = ordering.lstrip("-")
    column = column_for(key)
    if column is None:
        raise KeyError(key)
    descending = ordering.startswith("-")
    return key if descending == column.higher_is_better else f"-{key}"


def format_value(value: float | None, decimals: int) -> str:
    """Format a metric value at display precision, or an en dash where it is undefined."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    return f"{value:.{decimals}f}"


def format_interval(interval, decimals: int) -> str:
    """Format a confidence interval as `[lo, hi]`, or an empty string where there is none."""
    if not interval or interval[0] is None or interval[1] is None:
        return ""
    lo, hi = interval
    return f"[{lo:.{decimals}f}, {hi:.{decimals}f}]"


def format_cell(column: Column, value, interval) -> dict:
    """Build the template's view of one value: text, interval text and the value to sort by."""
    text = format_value(value, column.decimals)
    return {
        "key": column.key,
        "text": text,
        "interval": format_interval(interval, column.decimals),
        "sort_value": "" if text == "–" else repr(float(value)),
    }

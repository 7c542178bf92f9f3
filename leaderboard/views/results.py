"""Tables of one evaluation's report: every metric, and the breakdowns by group.

The report is the evaluator's aggregate JSON: a top-level `hpa`, `layer_kinds`
(the `all` group of each layer kind) and `groups` keyed `<kind>/<dimension>/<value>`,
each with `count` and `metrics` of `{"value", "ci", "count"}`.
"""

from __future__ import annotations

from leaderboard.views.columns import column_for, format_interval, format_value

BREAKDOWN_TITLES = {"prompt_type": "prompt type", "occlusion": "occlusion bucket", "category": "category"}


def metric_rows(report: dict) -> list[dict]:
    """The overall HPA, then every metric of every layer kind, with its interval."""
    rows = []
    overall = report.get("hpa") or {}
    if "value" in overall:
        rows.append(_metric_row("hpa", overall.get("value"), overall.get("ci")))
    for kind, group in (report.get("layer_kinds") or {}).items():
        for name, entry in group.get("metrics", {}).items():
            rows.append(_metric_row(f"{name}_{kind}", entry.get("value"), entry.get("ci")))
    return [row for row in rows if row is not None]


def _metric_row(key: str, value, interval) -> dict | None:
    column = column_for(key)
    if column is None:
        return None
    return {
        "key": key,
        "label": column.label,
        "text": format_value(value, column.decimals),
        "interval": format_interval(interval, column.decimals),
        "higher_is_better": column.higher_is_better,
    }


def breakdown_tables(report: dict) -> list[dict]:
    """One table per breakdown dimension: a row per group, a column per metric."""
    groups = list((report.get("groups") or {}).values())
    tables = []
    for dimension, title in BREAKDOWN_TITLES.items():
        entries = [entry for entry in groups if entry.get("dimension") == dimension]
        if not entries:
            continue
        names = list(dict.fromkeys(name for entry in entries for name in entry.get("metrics", {})))
        columns = [column for column in (column_for(name) for name in names) if column is not None]
        rows = []
        for entry in entries:
            metrics = entry.get("metrics", {})
            cells = []
            for column in columns:
                metric = metrics.get(column.key) or {}
                cells.append({
                    "text": format_value(metric.get("value"), column.decimals),
                    "interval": format_interval(metric.get("ci"), column.decimals),
                })
            rows.append({"layer_kind": entry.get("layer_kind"), "value": entry.get("label", entry.get("value")),
                         "count": entry.get("count"), "cells": cells})
        tables.append({"dimension": dimension, "title": title, "columns": columns, "rows": rows})
    return tables

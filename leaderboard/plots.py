"""Plotly figures of a split's leaderboard, as JSON-ready dicts for `json_script`.

Every function takes leaderboard rows (objects with `method_name`, `metrics`,
`intervals` and `evaluation.metrics`, the evaluator's aggregate report) and returns
`{"data": [...], "layout": {...}}`, which `Plotly.newPlot` draws unchanged.
Error bars are the reports' 95% bootstrap confidence intervals.
"""

from __future__ import annotations

import json
import math

import plotly.graph_objects as go
import plotly.io
from plotly.subplots import make_subplots

from evaluator.config import LAYER_KINDS

# Charts stay readable with this many entries; the leaderboard's best rows are drawn.
MAX_CHART_ENTRIES = 10
FONT = {"family": "system-ui, -apple-system, Segoe UI, Roboto, sans-serif", "size": 12}


def _number(value) -> float | None:
    if value is None:
        return None
    value = float(value)
    return None if math.isnan(value) else value


def _error_bars(values, intervals) -> dict:
    """Asymmetric error bars from [lo, hi] intervals; zero length where one is missing."""
    plus, minus = [], []
    for value, interval in zip(values, intervals, strict=True):
        if value is None or not interval or interval[0] is None or interval[1] is None:
            plus.append(0.0)
            minus.append(0.0)
            continue
        plus.append(max(0.0, interval[1] - value))
        minus.append(max(0.0, value - interval[0]))
    return {"type": "data", "symmetric": False, "array": plus, "arrayminus": minus, "thickness": 1.2}


def _to_dict(figure: go.Figure) -> dict:
    # plotly.io serialises numpy values and typed arrays to plain JSON.
    return json.loads(plotly.io.to_json(figure, validate=False))


def _layout(figure: go.Figure, title: str, **extra) -> None:
    figure.update_layout(
        title={"text": title, "x": 0.02},
        font=FONT,
        margin={"l": 55, "r": 15, "t": 60, "b": 50},
        legend={"orientation": "h", "y": -0.2},
        plot_bgcolor="#ffffff",
        **extra,
    )
    figure.update_xaxes(showline=True, linecolor="#c9ced8", gridcolor="#eef0f4")
    figure.update_yaxes(showline=True, linecolor="#c9ced8", gridcolor="#eef0f4", zeroline=False)


def _prompt_groups(report: dict, kind: str) -> dict[str, dict]:
    """Select the report's per-prompt-type groups of one layer kind, keyed by prompt type."""
    groups = (report or {}).get("groups", {})
    return {
        entry["value"]: entry
        for entry in groups.values()
        if entry.get("dimension") == "prompt_type" and entry.get("layer_kind") == kind
    }


def hpa_by_prompt_type(rows) -> dict:
    """Grouped bars of HPA per prompt type, one panel per layer kind, one colour per entry."""
    rows = list(rows)[:MAX_CHART_ENTRIES]
    kinds = [kind for kind in LAYER_KINDS if any(_prompt_groups(row.evaluation.metrics, kind) for row in rows)]
    kinds = kinds or list(LAYER_KINDS)
    figure = make_subplots(rows=1, cols=len(kinds), subplot_titles=[kind.capitalize() for kind in kinds],
                           shared_yaxes=True, horizontal_spacing=0.06)

    # Prompt types with an HPA for at least one entry, per layer kind.
    prompt_types_with_hpa = {kind: sorted({name for row in rows for name, group in _prompt_groups(row.evaluation.metrics, kind).items()
                           if group["metrics"]["hpa"]["value"] is not None}) for kind in kinds}
    for index, row in enumerate(rows):
        colour = _colour(index)
        for column, kind in enumerate(kinds, start=1):
            groups = _prompt_groups(row.evaluation.metrics, kind)
            prompt_types = [name for name in prompt_types_with_hpa[kind] if name in groups]
            values = [_number(groups[name]["metrics"]["hpa"]["value"]) for name in prompt_types]
            intervals = [groups[name]["metrics"]["hpa"]["ci"] for name in prompt_types]
            counts = [groups[name].get("count", 0) for name in prompt_types]
            figure.add_trace(
                go.Bar(
                    x=prompt_types, y=values, name=row.method_name, legendgroup=row.method_name,
                    showlegend=column == 1, marker_color=colour, error_y=_error_bars(values, intervals),
                    customdata=counts,
                    hovertemplate="%{x}: HPA %{y:.4f} (%{customdata} samples)<extra>" + row.method_name + "</extra>",
                ),
                row=1, col=column,
            )

    _layout(figure, "HPA per prompt type and layer kind", barmode="group")
    figure.update_yaxes(title_text="HPA", range=[0, 1], row=1, col=1)
    return _to_dict(figure)


def pass_rate_curve(rows, k_list, calibrated: bool = True) -> dict:
    """Pass-rate@K against K, one line per entry, with interval error bars."""
    rows = list(rows)[:MAX_CHART_ENTRIES]
    figure = go.Figure()
    for index, row in enumerate(rows):
        ks = [k for k in k_list if row.metrics.get(f"pass_rate@{k}") is not None]
        if not ks:
            continue
        values = [_number(row.metrics[f"pass_rate@{k}"]) for k in ks]
        intervals = [row.intervals.get(f"pass_rate@{k}") for k in ks]
        figure.add_trace(
            go.Scatter(
                x=ks, y=values, mode="lines+markers", name=row.method_name,
                line={"color": _colour(index)}, error_y=_error_bars(values, intervals),
                hovertemplate="K=%{x}: %{y:.4f}<extra>" + row.method_name + "</extra>",
            )
        )
    _layout(figure, "Pass-rate@K against K" + ("" if calibrated else " (uncalibrated)"))
    figure.update_xaxes(title_text="K (candidates drawn)", tickmode="array", tickvals=list(k_list))
    figure.update_yaxes(title_text="Pass-rate@K", range=[0, 1.02])
    return _to_dict(figure)


def lpips_against_dir(rows) -> dict:
    """Preservation (LPIPS, visible part) against completion (DIR), one point per entry.

    One trace per layer kind; buttons switch between them, so each view shows one
    point per entry.
    """
    rows = list(rows)[:MAX_CHART_ENTRIES]
    figure = go.Figure()
    kinds = []
    for kind in LAYER_KINDS:
        x_key, y_key = f"lpips_vis_{kind}", f"dir_{kind}"
        drawn = [row for row in rows if row.metrics.get(x_key) is not None and row.metrics.get(y_key) is not None]
        if not drawn:
            continue
        x = [_number(row.metrics[x_key]) for row in drawn]
        y = [_number(row.metrics[y_key]) for row in drawn]
        figure.add_trace(
            go.Scatter(
                x=x, y=y, mode="markers+text", name=kind.capitalize(), visible=not kinds,
                text=[row.method_name for row in drawn], textposition="top center",
                marker={"size": 11, "color": [_colour(rows.index(row)) for row in drawn]},
                error_x=_error_bars(x, [row.intervals.get(x_key) for row in drawn]),
                error_y=_error_bars(y, [row.intervals.get(y_key) for row in drawn]),
                hovertemplate="%{text}<br>LPIPS %{x:.4f}, DIR %{y:.4f}<extra></extra>",
            )
        )
        kinds.append(kind)

    buttons = [
        {"label": kind.capitalize(), "method": "update",
         "args": [{"visible": [other == kind for other in kinds]}]}
        for kind in kinds
    ]
    _layout(figure, "LPIPS (visible part) against DIR", showlegend=False,
            updatemenus=[{"type": "buttons", "direction": "right", "buttons": buttons,
                          "x": 1.0, "xanchor": "right", "y": 1.15, "yanchor": "top"}] if len(kinds) > 1 else [])
    figure.update_xaxes(title_text="LPIPS on the visible part (lower is better)")
    figure.update_yaxes(title_text="DIR (higher is better)")
    return _to_dict(figure)


# A colour-blind-safe qualitative palette (Okabe and Ito, 2008), extended with greys.
PALETTE = ("#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#F0E442", "#000000",
           "#7f7f7f", "#b0b0b0")


def _colour(index: int) -> str:
    return PALETTE[index % len(PALETTE)]


def leaderboard_charts(rows, k_list, pass_rate_calibrated: bool = True) -> list[dict]:
    """Build the benchmark page's charts: id, title and figure of each."""
    charts = [
        ("chart-hpa-prompt", "HPA per prompt type and layer kind", hpa_by_prompt_type(rows)),
        ("chart-pass-rate", "Pass-rate@K against K", pass_rate_curve(rows, k_list, pass_rate_calibrated)),
        ("chart-lpips-dir", "LPIPS against DIR", lpips_against_dir(rows)),
    ]
    return [{"id": chart_id, "data_id": f"{chart_id}-data", "title": title, "figure": figure}
            for chart_id, title, figure in charts]

"""Public pages: the benchmark list, a split's leaderboard and its public inputs."""

from __future__ import annotations

import logging
from pathlib import PurePosixPath

from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.http import require_GET

from leaderboard import plots, selectors
from leaderboard.models import Benchmark, Split
from leaderboard.storage import public_storage
from leaderboard.views.columns import Column, columns_for_keys, format_cell, selector_ordering
from leaderboard.views.downloads import storage_download

logger = logging.getLogger(__name__)


@require_GET
def benchmark_list(request: HttpRequest) -> HttpResponse:
    benchmarks = list(selectors.benchmark_list(user=request.user).prefetch_related("splits"))
    for benchmark in benchmarks:
        benchmark.active_splits = [split for split in benchmark.splits.all() if split.is_active]
    return render(request, "leaderboard/benchmark_list.html", {"benchmarks": benchmarks, "nav": "benchmarks"})


@require_GET
def benchmark_detail(request: HttpRequest, slug: str) -> HttpResponse:
    """Render the benchmark page with its first active split (or its first split)."""
    benchmark = selectors.benchmark_get(slug=slug, user=request.user)
    splits = list(benchmark.splits.order_by("name"))
    active = [split for split in splits if split.is_active]
    split = (active or splits or [None])[0]
    return _render_split(request, benchmark, splits, split)


@require_GET
def split_detail(request: HttpRequest, slug: str, split_name: str) -> HttpResponse:
    benchmark = selectors.benchmark_get(slug=slug, user=request.user)
    splits = list(benchmark.splits.order_by("name"))
    split = next((item for item in splits if item.name == split_name), None)
    if split is None:
        raise Http404(f"The benchmark {benchmark.slug} has no split named {split_name!r}.")
    return _render_split(request, benchmark, splits, split)


def _requested_ordering(request: HttpRequest, columns: list[Column]) -> str | None:
    """Return `?ordering=` when it names a shown column, or None for the default order."""
    ordering = request.GET.get("ordering", "").strip()
    if ordering.lstrip("-") in {column.key for column in columns}:
        return ordering
    return None


def _ordering_state(ordering: str | None, benchmark: Benchmark, columns: list[Column]) -> tuple[str, str]:
    """Return the sorted column's key and its direction (`asc` or `desc`) for the header marks."""
    if ordering:
        return ordering.lstrip("-"), "desc" if ordering.startswith("-") else "asc"
    # A primary metric is `hpa` or `<layer_kind>/<metric>`, whose flat key is `<metric>_<layer_kind>`.
    kind, _, metric = (benchmark.config or {}).get("primary_metric", "hpa").rpartition("/")
    key = f"{metric}_{kind}" if kind else metric
    column = next((column for column in columns if column.key == key), None)
    if column is None:
        return "", ""
    return key, "desc" if column.higher_is_better else "asc"


def _display_rows(rows, columns: list[Column]) -> list[dict]:
    display = []
    for row in rows:
        display.append({
            "rank": row.rank if row.rank is not None else "–",
            "submission_id": row.submission.pk,
            "method_name": row.method_name,
            "owner_name": row.owner_name,
            "is_baseline": row.is_baseline,
            "weights_verified": row.weights_verified,
            "created_at": row.created_at,
            "cells": [format_cell(column, row.metrics.get(column.key), row.intervals.get(column.key))
                      for column in columns],
        })
    return display


def _render_split(request: HttpRequest, benchmark: Benchmark, splits: list[Split], split: Split | None):
    context = {"benchmark": benchmark, "splits": splits, "split": split, "nav": "benchmarks", "rows": []}
    if split is None:
        return render(request, "leaderboard/benchmark_detail.html", context)

    default_rows = selectors.leaderboard_rows(split=split)
    columns = columns_for_keys(key for row in default_rows for key in row.metrics)
    ordering = _requested_ordering(request, columns)
    if ordering:
        rows = selectors.leaderboard_rows(split=split, ordering=selector_ordering(ordering))
    else:
        rows = default_rows
    ordering_key, ordering_direction = _ordering_state(ordering, benchmark, columns)

    k_list = sorted(int(column.base.split("@")[1]) for column in columns if column.is_pass_rate)
    # Pass-rate@K is marked uncalibrated until the calibration is fitted to human judgments.
    calibrated = all(row.pass_rate_calibrated for row in default_rows)
    context.update({
        "pass_rate_calibrated": calibrated,
        "columns": columns,
        "rows": _display_rows(rows, columns),
        "ordering_key": ordering_key,
        "ordering_direction": ordering_direction,
        # Charts draw the leaderboard's best entries in its default order.
        "charts": plots.leaderboard_charts(default_rows, k_list, calibrated) if default_rows else [],
    })
    return render(request, "leaderboard/benchmark_detail.html", context)


@require_GET
def split_inputs(request: HttpRequest, slug: str, split_name: str) -> HttpResponse:
    """Send the split's public inputs .tar (images, prompts, manifest without ground truth).

    In S3 mode the response redirects to a presigned URL; otherwise Django streams the file.
    """
    benchmark = selectors.benchmark_get(slug=slug, user=request.user)
    split = benchmark.splits.filter(name=split_name).first()
    if split is None or not split.public_package:
        raise Http404(f"The benchmark {benchmark.slug} has no public inputs for a split named {split_name!r}.")
    filename = PurePosixPath(split.public_package.name).name
    logger.info("public inputs of split %s downloaded by user %s", split.pk, request.user.pk)
    return storage_download(public_storage(), split.public_package.name, filename=filename,
                            content_type="application/x-tar")

"""Selectors: every read of the leaderboard that applies visibility rules.

Objects a viewer may not see raise `NotFound`, the same error as missing ones, so
the site and the API respond with 404 and reveal nothing about private entries.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import pandas as pd
from django.db.models import Count, Max, OuterRef, QuerySet, Subquery
from django.db.models.fields.json import KeyTransform

from evaluator.reported_metrics import metric_info, rank_entries
from leaderboard.models import Benchmark, Evaluation, EvaluationState, Split, Submission
from leaderboard.quotas import QuotaStatus
from leaderboard.quotas import quota_status as count_quota
from leaderboard.services.errors import NotFound, ServiceError
from leaderboard.storage import private_storage


def is_staff(user) -> bool:
    return bool(user is not None and user.is_authenticated and user.is_staff)


def benchmark_list(*, user) -> QuerySet[Benchmark]:
    """Benchmarks the user may see: public ones, and every one for staff."""
    benchmarks = Benchmark.objects.all()
    if not is_staff(user):
        benchmarks = benchmarks.filter(is_public=True)
    return benchmarks.order_by("slug")


def benchmark_get(*, slug: str, user) -> Benchmark:
    benchmark = benchmark_list(user=user).filter(slug=slug).first()
    if benchmark is None:
        raise NotFound(f"No benchmark named {slug!r}.")
    return benchmark


def split_get(*, benchmark: Benchmark, name: str) -> Split:
    split = benchmark.splits.filter(name=name).first()
    if split is None:
        raise NotFound(f"Benchmark {benchmark.slug!r} has no split named {name!r}.")
    return split


# Leaderboard -----------------------------------------------------------------------


@dataclass
class LeaderboardRow:
    rank: int | None
    submission: Submission
    evaluation: Evaluation
    method_name: str
    owner_name: str
    is_baseline: bool
    weights_verified: bool
    # Metric name to value, e.g. hpa, hpa_foreground, fid_background, pass_rate@1.
    metrics: dict[str, float | None]
    # Metric name to the 95% bootstrap interval (lo, hi), where the evaluator gives one.
    intervals: dict[str, tuple[float, float]]
    created_at: datetime
    # Whether Pass-rate@K comes from a calibration fitted to human judgments.
    pass_rate_calibrated: bool = False


def _interval(entry: dict) -> tuple[float, float] | None:
    pair = entry.get("ci")
    if isinstance(pair, list | tuple) and len(pair) == 2 and None not in pair:
        return (float(pair[0]), float(pair[1]))
    return None


def flatten_metrics(report: dict) -> tuple[dict[str, float | None], dict[str, tuple[float, float]]]:
    """Flatten an evaluator report (`evaluator.aggregate.aggregate_samples`) for the leaderboard.

    Gives `hpa` (mean over layer kinds), `<metric>_<layer kind>` for every metric of
    each kind's whole-kind group, `miou` and `miou_occ` (foreground only) and
    `pass_rate@K` over all samples with its interval (the report's `pass_rates`).
    Reports written before `pass_rates` existed give the sample-weighted mean of
    the kinds without an interval.
    """
    values: dict[str, float | None] = {}
    intervals: dict[str, tuple[float, float]] = {}

    def put(name: str, entry: dict) -> None:
        values[name] = entry.get("value")
        interval = _interval(entry)
        if interval is not None:
            intervals[name] = interval

    if isinstance(report.get("hpa"), dict):
        put("hpa", report["hpa"])
    pass_rates: dict[str, list[tuple[float, int]]] = {}
    for kind, group in (report.get("layer_kinds") or {}).items():
        for metric, entry in group.get("metrics", {}).items():
            put(f"{metric}_{kind}", entry)
            if metric.startswith("pass_rate@") and entry.get("value") is not None:
                pass_rates.setdefault(metric, []).append((entry["value"], entry.get("count", group.get("count", 0))))
        if kind == "foreground":
            for metric in ("miou", "miou_occ"):
                if metric in group.get("metrics", {}):
                    put(metric, group["metrics"][metric])
    if isinstance(report.get("pass_rates"), dict):
        for metric, entry in report["pass_rates"].items():
            put(metric, entry)
        return values, intervals
    for metric, parts in pass_rates.items():
        total = sum(count for _, count in parts)
        values[metric] = sum(value * count for value, count in parts) / total if total else None
    return values, intervals


# The parts of an evaluator report that the leaderboard reads. The per-group breakdowns,
# most of a report's size, stay in the database until code reads `metrics`.
LEADERBOARD_REPORT_KEYS = ("hpa", "layer_kinds", "pass_rate_calibrated", "pass_rates")


def leaderboard_evaluations(split: Split) -> QuerySet[Evaluation]:
    """Select the latest finished evaluation of each public, unflagged submission of a split.

    Each evaluation carries `report_<key>` for every key of LEADERBOARD_REPORT_KEYS,
    extracted by the database; `metrics` itself is deferred and loads on first access.
    """
    latest_finished = Evaluation.objects.filter(
        submission=OuterRef("submission"), state=EvaluationState.FINISHED
    ).order_by("-created_at", "-pk")
    return (
        Evaluation.objects.filter(
            submission__split=split,
            submission__is_public=True,
            submission__flagged=False,
            state=EvaluationState.FINISHED,
        )
        .filter(pk=Subquery(latest_finished.values("pk")[:1]))
        .select_related("submission__owner")
        .defer("metrics", "validation_problems", "staff_detail", "submission__metadata", "submission__description",
               "submission__owner__password")
        .annotate(**{f"report_{key}": KeyTransform(key, "metrics") for key in LEADERBOARD_REPORT_KEYS})
    )


def leaderboard_version(split: Split) -> tuple:
    """Return (count, highest id, latest finish) of the finished evaluations on the split's leaderboard.

    A newly finished evaluation changes the highest id and the latest finish;
    hiding, flagging or deleting an entry changes the count. Caches of the
    leaderboard key on this tuple. Edits that change none of them, such as a
    renamed method, are not seen, so such caches also expire after a while.
    """
    totals = Evaluation.objects.filter(
        submission__split=split,
        submission__is_public=True,
        submission__flagged=False,
        state=EvaluationState.FINISHED,
    ).aggregate(count=Count("pk"), latest=Max("pk"), finished=Max("finished_at"))
    finished = totals["finished"].isoformat() if totals["finished"] else ""
    return totals["count"], totals["latest"] or 0, finished


LAYER_KIND_SUFFIXES = ("_foreground", "_background")


def base_metric(name: str) -> str:
    """Strip the layer kind from a metric name: `fid_foreground` gives `fid`."""
    for suffix in LAYER_KIND_SUFFIXES:
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return name


def metric_direction(name: str) -> bool:
    """Whether higher is better for a flat metric name such as `fid_foreground`."""
    try:
        return metric_info(base_metric(name)).higher_is_better
    except KeyError:
        raise ServiceError("unknown_metric", f"Unknown metric {name!r} to order by.", 400) from None


def metric_decimals(name: str) -> int:
    return metric_info(base_metric(name)).decimals


def leaderboard_entries(split: Split) -> list[LeaderboardRow]:
    """Build one unranked row per public finished entry, in no particular order."""
    rows = []
    for evaluation in leaderboard_evaluations(split):
        submission = evaluation.submission
        values, intervals = flatten_metrics({
            "hpa": evaluation.report_hpa, "layer_kinds": evaluation.report_layer_kinds,
            "pass_rates": evaluation.report_pass_rates,
        })
        rows.append(
            LeaderboardRow(
                rank=None,
                submission=submission,
                evaluation=evaluation,
                method_name=submission.method_name,
                owner_name=submission.owner.get_username(),
                is_baseline=submission.is_baseline,
                weights_verified=evaluation.weights_verified,
                metrics=values,
                intervals=intervals,
                created_at=submission.created_at,
                pass_rate_calibrated=bool(evaluation.report_pass_rate_calibrated),
            )
        )
    return rows


def rank_rows(rows: list, *, split: Split, ordering: str | None = None, primary_metric: str | None = None) -> list:
    """Sort rows in place by `ordering` (see `leaderboard_rows`), set their ranks and return them.

    Rows are LeaderboardRow objects or any others with `metrics`, `created_at` and `rank`.
    """
    key = ordering or primary_metric or split.benchmark.config.get("primary_metric", "hpa")
    reverse_direction = key.startswith("-")
    key = key.lstrip("-")
    higher_is_better = metric_direction(key)
    if reverse_direction:
        higher_is_better = not higher_is_better

    def sort_key(row):
        value = row.metrics.get(key)
        if value is None:
            return (1, 0.0, row.created_at)
        return (0, -value if higher_is_better else value, row.created_at)

    rows.sort(key=sort_key)
    ranks = rank_entries([row.metrics.get(key) for row in rows], higher_is_better, metric_decimals(key))
    for row, rank in zip(rows, ranks, strict=True):
        row.rank = rank
    return rows


def leaderboard_rows(*, split: Split, ordering: str | None = None, primary_metric: str | None = None) -> list[LeaderboardRow]:
    """One row per public finished entry, sorted and ranked.

    `ordering` is a metric name, with a `-` prefix to reverse its natural direction;
    None sorts by the benchmark's primary metric. Rank always follows the sort key,
    with ties at display precision sharing a rank; entries without a value come last.
    """
    return rank_rows(leaderboard_entries(split), split=split, ordering=ordering, primary_metric=primary_metric)


# Submissions and evaluations ---------------------------------------------------------


def submission_list_for_user(*, user) -> QuerySet[Submission]:
    return Submission.objects.filter(owner=user).select_related("split__benchmark").order_by("-created_at", "-pk")


def submission_visible(submission: Submission, user) -> bool:
    if is_staff(user):
        return True
    if user is not None and user.is_authenticated and submission.owner_id == user.pk:
        return True
    return submission.is_public and not submission.flagged


def submission_get_for_viewer(*, submission_id: int, user) -> Submission:
    """The submission, if the viewer may see it: its owner, staff, or anyone when public."""
    submission = (
        Submission.objects.select_related("split__benchmark", "owner").filter(pk=submission_id).first()
    )
    if submission is None or not submission_visible(submission, user):
        raise NotFound(f"No submission {submission_id}.")
    return submission


def evaluation_current(*, submission: Submission) -> Evaluation | None:
    return submission.evaluations.order_by("-created_at", "-pk").first()


def evaluation_list(*, submission: Submission) -> QuerySet[Evaluation]:
    """Every evaluation of a submission, newest first (the history of re-scores)."""
    return submission.evaluations.order_by("-created_at", "-pk")


def evaluation_get_for_viewer(*, evaluation_id: int, user) -> Evaluation:
    evaluation = (
        Evaluation.objects.select_related("submission__split__benchmark", "submission__owner")
        .filter(pk=evaluation_id)
        .first()
    )
    if evaluation is None or not submission_visible(evaluation.submission, user):
        raise NotFound(f"No evaluation {evaluation_id}.")
    return evaluation


def evaluation_samples_for_viewer(*, evaluation_id: int, user) -> pd.DataFrame:
    """Per-sample results of a finished evaluation on a public split.

    Hidden splits keep per-sample results private even from the owner, since they
    would reveal the ground truth sample by sample; staff see them everywhere.
    """
    evaluation = evaluation_get_for_viewer(evaluation_id=evaluation_id, user=user)
    split = evaluation.submission.split
    if split.visibility != Split.VISIBILITY_PUBLIC and not is_staff(user):
        raise NotFound(f"Per-sample results of split {split} are not published.")
    if evaluation.state != EvaluationState.FINISHED or not evaluation.samples_file:
        raise NotFound(f"Evaluation {evaluation_id} has no per-sample results yet.")
    with private_storage().open(evaluation.samples_file.name, "rb") as handle:
        return pd.read_parquet(handle)


def quota_status(*, user, split: Split) -> QuotaStatus:
    return count_quota(user=user, split=split)


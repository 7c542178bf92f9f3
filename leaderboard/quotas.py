"""Submission quotas: per user and split, over a rolling window.

A slot is used by every evaluation that `counts_for_quota`: a user's upload counts
from the moment it is stored until it fails; validation failures (the user's fault)
and infrastructure failures give the slot back, and staff re-scores never take one.
Counting is race-free only inside `quota_lock`, which callers hold from the count
to the insert of the new row.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from django.contrib.auth import get_user_model
from django.utils import timezone

from leaderboard.models import Evaluation, EvaluationState, Split


@dataclass(frozen=True)
class QuotaStatus:
    """Slots a user has used on a split within the window, and when the next one opens."""

    used: int
    limit: int
    window_hours: int
    # When the oldest counted submission leaves the window; None while a slot is free
    # or when the limit is 0.
    next_slot_at: datetime | None
    # Counted uploads not yet validated: each gives its slot back if it turns out invalid.
    validating: int = 0

    @property
    def remaining(self) -> int:
        return max(0, self.limit - self.used)

    @property
    def exhausted(self) -> bool:
        return self.used >= self.limit


def quota_lock(user) -> None:
    """Lock the user's row until the transaction ends, serialising their quota checks.

    PostgreSQL takes a row lock (SELECT ... FOR UPDATE). SQLite ignores FOR UPDATE,
    but the settings open every transaction with BEGIN IMMEDIATE, which takes the
    database's write lock, so concurrent checks run one after the other there too.
    Must run inside `transaction.atomic()`.
    """
    get_user_model().objects.select_for_update().filter(pk=user.pk).values_list("pk", flat=True).first()


def quota_status(*, user, split: Split, now: datetime | None = None) -> QuotaStatus:
    """Count the user's slots in use on `split` over the benchmark's rolling window."""
    benchmark = split.benchmark
    now = now or timezone.now()
    window = timedelta(hours=benchmark.quota_window_hours)
    counted = (
        Evaluation.objects.filter(
            submission__owner=user,
            submission__split=split,
            counts_for_quota=True,
            created_at__gt=now - window,
        )
        .order_by("created_at")
        .values_list("created_at", "state")
    )
    rows = list(counted)
    times = [created_at for created_at, _ in rows]
    validating = sum(state in (EvaluationState.UPLOADED, EvaluationState.VALIDATING) for _, state in rows)
    limit = benchmark.quota_limit
    next_slot_at = None
    if limit > 0 and len(times) >= limit:
        # A slot opens when enough of the oldest entries have left the window to
        # bring the count below the limit.
        next_slot_at = times[len(times) - limit] + window
    return QuotaStatus(
        used=len(times), limit=limit, window_hours=benchmark.quota_window_hours, next_slot_at=next_slot_at,
        validating=validating,
    )


def quota_exempt(user) -> bool:
    """Staff submit baselines and test entries without a quota."""
    return bool(user.is_staff)

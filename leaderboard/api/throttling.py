"""API rate limits, read from settings when a request comes in.

`REFLADE_API_THROTTLE_RATES` may override any of `DEFAULT_RATES` (DRF rate strings
such as "60/min"); a rate of None turns that limit off. Counters live in Django's
default cache. The local-memory default counts per process, so several web
processes enforce one limit together only with a shared cache such as Redis.
"""

from __future__ import annotations

from django.conf import settings
from rest_framework.throttling import SimpleRateThrottle

from evaluator.problems import format_count

DEFAULT_RATES = {
    "anon": "120/min",
    "user": "600/min",
    # Submissions also have a per-split quota; this only stops bursts of uploads.
    "submissions": "30/hour",
}


def throttle_rate(scope: str) -> str | None:
    rates = {**DEFAULT_RATES, **getattr(settings, "REFLADE_API_THROTTLE_RATES", {})}
    return rates.get(scope)


PERIOD_NAMES = {"s": "second", "m": "minute", "h": "hour", "d": "day"}


class SettingsRateThrottle(SimpleRateThrottle):
    """A throttle whose rate comes from the settings at request time, not at import.

    A throttle that rejects a request adds itself to the request's
    `reflade_exceeded_throttles`, so the error response can name the limit.
    """

    # What the limit counts, in the singular, as the error message names it.
    counted = "request"

    def get_rate(self) -> str | None:
        return throttle_rate(self.scope)

    def allow_request(self, request, view) -> bool:
        allowed = super().allow_request(request, view)
        if not allowed:
            request.reflade_exceeded_throttles = [*getattr(request, "reflade_exceeded_throttles", []), self]
        return allowed

    def limit_text(self) -> str:
        """Describe the limit, such as "30 uploads per hour"."""
        count, period = self.rate.split("/")
        return f"{format_count(int(count), self.counted)} per {PERIOD_NAMES.get(period[:1], period)}"


class AnonThrottle(SettingsRateThrottle):
    """Requests without credentials, counted per client address."""

    scope = "anon"

    def get_cache_key(self, request, view):
        if request.user and request.user.is_authenticated:
            return None
        return self.cache_format % {"scope": self.scope, "ident": self.get_ident(request)}


class UserThrottle(SettingsRateThrottle):
    """Authenticated requests, counted per user."""

    scope = "user"

    def get_cache_key(self, request, view):
        if not (request.user and request.user.is_authenticated):
            return None
        return self.cache_format % {"scope": self.scope, "ident": request.user.pk}


class SubmissionCreateThrottle(SettingsRateThrottle):
    """Submission uploads, counted per user, on top of the general user rate."""

    scope = "submissions"
    counted = "upload"

    def get_cache_key(self, request, view):
        if not (request.user and request.user.is_authenticated):
            return None
        return self.cache_format % {"scope": self.scope, "ident": request.user.pk}

"""One error shape for the whole API.

Every error response has the body `{"error": {"code": ..., "message": ..., "details": {...}}}`.
`code` is stable for machines and `message` is a sentence for people. `details`
carries structured extras: the field errors of a validation, the `retry_after` of a
throttled request, the `next_slot_at` of an exhausted quota.
"""

from __future__ import annotations

import logging
import math
from datetime import UTC

from django.core.exceptions import PermissionDenied
from django.db import InterfaceError, OperationalError
from django.http import Http404
from django.utils import timezone
from rest_framework import exceptions, status
from rest_framework.response import Response
from rest_framework.views import set_rollback

from evaluator.problems import format_count
from leaderboard.middleware import (
    DATABASE_UNAVAILABLE_CODE,
    DATABASE_UNAVAILABLE_MESSAGE,
    RETRY_AFTER_SECONDS,
)
from leaderboard.services import QuotaExceeded, ServiceError

logger = logging.getLogger(__name__)

VALIDATION_MESSAGE = "The request is invalid; see details for the problem with each field."
SERVER_ERROR_MESSAGE = "The server failed to handle the request. The error is logged; try again later."


def error_body(code: str, message: str, details: dict | None = None) -> dict:
    return {"error": {"code": code, "message": message, "details": details or {}}}


def api_exception_handler(exc, context) -> Response:
    """Turn any exception raised in an API view into the error envelope.

    Service errors keep their code, message and status. Unexpected exceptions are
    logged and get status 500, so a client never sees an HTML error page.
    """
    if isinstance(exc, ServiceError):
        return _service_error(exc)
    if isinstance(exc, Http404):
        exc = exceptions.NotFound(*exc.args)
    elif isinstance(exc, PermissionDenied):
        exc = exceptions.PermissionDenied(*exc.args)

    if isinstance(exc, exceptions.APIException):
        return _api_exception(exc, context.get("request"))

    if isinstance(exc, OperationalError | InterfaceError):
        # The database is down or restarting: a temporary condition, not a server bug.
        logger.warning("database unavailable in API view: %s", exc)
        return Response(
            error_body(DATABASE_UNAVAILABLE_CODE, DATABASE_UNAVAILABLE_MESSAGE),
            status=status.HTTP_503_SERVICE_UNAVAILABLE,
            headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
        )

    view = context.get("view")
    logger.exception("unhandled error in API view %s", type(view).__name__ if view else "?")
    set_rollback()
    return Response(error_body("server_error", SERVER_ERROR_MESSAGE), status=status.HTTP_500_INTERNAL_SERVER_ERROR)


def _service_error(exc: ServiceError) -> Response:
    details = {}
    headers = {}
    if isinstance(exc, QuotaExceeded) and exc.next_slot_at is not None:
        next_slot_at = exc.next_slot_at.astimezone(UTC)
        details["next_slot_at"] = next_slot_at.isoformat().replace("+00:00", "Z")
        seconds = math.ceil((next_slot_at - timezone.now()).total_seconds())
        headers["Retry-After"] = str(max(1, seconds))
    set_rollback()
    return Response(error_body(exc.code, exc.message, details), status=exc.status, headers=headers)


def _api_exception(exc: exceptions.APIException, request=None) -> Response:
    headers = {}
    auth_header = getattr(exc, "auth_header", None)
    if auth_header:
        headers["WWW-Authenticate"] = auth_header

    if isinstance(exc, exceptions.ValidationError):
        detail = exc.detail if isinstance(exc.detail, dict) else {"non_field_errors": exc.detail}
        body = error_body("invalid", VALIDATION_MESSAGE, {"fields": _plain(detail)})
    elif isinstance(exc, exceptions.Throttled):
        retry_after = exc.wait if exc.wait is not None else None
        if retry_after is not None:
            headers["Retry-After"] = str(retry_after)
        body = error_body("throttled", _throttled_message(request, retry_after), {"retry_after": retry_after})
    else:
        code = exc.get_codes() if isinstance(exc.get_codes(), str) else exc.default_code
        body = error_body(code, str(exc.detail))

    set_rollback()
    return Response(body, status=exc.status_code, headers=headers)


def _throttled_message(request, retry_after: int | None) -> str:
    """Name the rate limits the request exceeded and when to try again."""
    exceeded = getattr(request, "reflade_exceeded_throttles", []) if request is not None else []
    limits = " and ".join(throttle.limit_text() for throttle in exceeded)
    wait = f"in {format_count(retry_after, 'second')}" if retry_after is not None else "later"
    return f"Rate limit reached{f': at most {limits}' if limits else ''}. Try again {wait}."


def _plain(detail):
    """ErrorDetail trees as plain lists and dicts of strings."""
    if isinstance(detail, dict):
        return {key: _plain(value) for key, value in detail.items()}
    if isinstance(detail, list):
        return [_plain(item) for item in detail]
    return str(detail)

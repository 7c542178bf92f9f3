"""Middleware: respond 503 while the database is unreachable, instead of a 500 page.

A database restart or failover makes every query raise `OperationalError` or
`InterfaceError` for a few seconds. Pages then get a short HTML page and the API
gets its error envelope, both with status 503 and `Retry-After`. Django closes the
broken connection at the end of the request (and, with `CONN_HEALTH_CHECKS`, checks
a persistent one before reusing it), so the next request reconnects without a restart.
"""

from __future__ import annotations

import logging

from django.db import InterfaceError, OperationalError
from django.http import HttpResponse, JsonResponse

logger = logging.getLogger(__name__)

DATABASE_UNAVAILABLE_MESSAGE = "The database is unavailable; try again in a minute."
DATABASE_UNAVAILABLE_CODE = "database_unavailable"
RETRY_AFTER_SECONDS = 60
API_PREFIX = "/api/"

PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Service unavailable - RefLade</title></head>
<body><h1>Service unavailable</h1><p>{message}</p></body></html>
"""


def is_database_unavailable(error: BaseException) -> bool:
    return isinstance(error, (OperationalError, InterfaceError))


def database_unavailable_response(request) -> HttpResponse:
    """Return the 503 response: the API's error envelope under /api/, a short HTML page elsewhere."""
    if request.path.startswith(API_PREFIX):
        body = {"error": {"code": DATABASE_UNAVAILABLE_CODE, "message": DATABASE_UNAVAILABLE_MESSAGE, "details": {}}}
        response = JsonResponse(body, status=503)
    else:
        response = HttpResponse(PAGE.format(message=DATABASE_UNAVAILABLE_MESSAGE), status=503)
    response["Retry-After"] = str(RETRY_AFTER_SECONDS)
    response["Cache-Control"] = "no-store"
    return response


class DatabaseUnavailableMiddleware:
    """Turn a database connection error raised by a view into a 503 response.

    API views handle their own exceptions, so the API's exception handler must map
    these errors to `database_unavailable_response` too.
    """

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        return self.get_response(request)

    def process_exception(self, request, exception):
        if is_database_unavailable(exception):
            return self.unavailable(request, exception)
        return None

    @staticmethod
    def unavailable(request, error: BaseException) -> HttpResponse:
        logger.warning("database unavailable while serving %s %s: %s", request.method, request.path, error)
        return database_unavailable_response(request)

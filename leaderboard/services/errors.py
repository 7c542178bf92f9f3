"""Errors that services and selectors raise when they reject a request.

Each carries a stable `code` for machines, a `message` for the user that says
what to do, and the HTTP `status` that the site and the API answer with.
"""

from __future__ import annotations

from datetime import datetime

from django.http import Http404


class ServiceError(Exception):
    def __init__(self, code: str, message: str, status: int = 400):
        super().__init__(message)
        self.code = code
        self.message = message
        self.status = status


class QuotaExceeded(ServiceError):
    def __init__(self, message: str, next_slot_at: datetime | None):
        super().__init__("quota_exceeded", message, 429)
        self.next_slot_at = next_slot_at


class UploadTooLarge(ServiceError):
    def __init__(self, message: str):
        super().__init__("upload_too_large", message, 413)


class SplitClosed(ServiceError):
    def __init__(self, message: str):
        super().__init__("split_closed", message, 409)


class InvalidState(ServiceError):
    def __init__(self, message: str):
        super().__init__("invalid_state", message, 409)


class NotPermitted(ServiceError):
    def __init__(self, message: str):
        super().__init__("permission_denied", message, 403)


class NotFound(ServiceError, Http404):
    """A missing object, or one the viewer may not see; both answer 404."""

    def __init__(self, message: str):
        super().__init__("not_found", message, 404)

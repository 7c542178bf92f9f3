"""Structured logs: ids of the evaluation being worked on, attached to every record.

Tasks bind `evaluation_id` (and, once known, `submission_id`) for their duration
with `bound_ids`. `ContextFilter` copies the bound ids onto each log record, and
`JsonFormatter` writes one JSON object per line with them, which log collectors
index without parsing messages. `REFLADE_LOG_FORMAT=json` selects it; the default
is plain text, where the ids appear as `[evaluation=12]`.
"""

from __future__ import annotations

import contextlib
import contextvars
import json
import logging
from collections.abc import Iterator

_IDS: contextvars.ContextVar[dict[str, int] | None] = contextvars.ContextVar("reflade_log_ids", default=None)
ID_FIELDS = ("evaluation_id", "submission_id")


@contextlib.contextmanager
def bound_ids(**ids: int | None) -> Iterator[None]:
    """Attach the given ids to every log record made inside the block."""
    merged = {**(_IDS.get() or {}), **{name: value for name, value in ids.items() if value is not None}}
    token = _IDS.set(merged)
    try:
        yield
    finally:
        _IDS.reset(token)


def bind_ids(**ids: int | None) -> None:
    """Add ids to the current block, e.g. the submission once a task has loaded it."""
    _IDS.set({**(_IDS.get() or {}), **{name: value for name, value in ids.items() if value is not None}})


class ContextFilter(logging.Filter):
    """Copy the bound ids onto the record, and a `context` text for plain logs."""

    def filter(self, record: logging.LogRecord) -> bool:
        ids = _IDS.get() or {}
        for name in ID_FIELDS:
            setattr(record, name, ids.get(name))
        parts = [f"{name.removesuffix('_id')}={ids[name]}" for name in ID_FIELDS if name in ids]
        record.context = f" [{' '.join(parts)}]" if parts else ""
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per record: time, level, logger, message, ids, exception."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for name in ID_FIELDS:
            value = getattr(record, name, None)
            if value is not None:
                entry[name] = value
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry)

"""Structured logs carry the ids of the evaluation being worked on."""

import io
import json
import logging

from leaderboard.log_context import ContextFilter, JsonFormatter, bind_ids, bound_ids


def capture(formatter: logging.Formatter) -> tuple[logging.Logger, io.StringIO]:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(formatter)
    handler.addFilter(ContextFilter())
    logger = logging.getLogger(f"test.log_context.{id(stream)}")
    logger.handlers = [handler]
    logger.propagate = False
    logger.setLevel(logging.INFO)
    return logger, stream


def test_json_lines_carry_bound_ids():
    logger, stream = capture(JsonFormatter())

    with bound_ids(evaluation_id=12):
        bind_ids(submission_id=7)
        logger.info("chunk %d scored", 3)
    logger.info("outside")

    inside, outside = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert inside["message"] == "chunk 3 scored"
    assert inside["evaluation_id"] == 12
    assert inside["submission_id"] == 7
    assert inside["level"] == "INFO"
    assert "evaluation_id" not in outside
    assert "submission_id" not in outside


def test_plain_lines_show_ids():
    logger, stream = capture(logging.Formatter("%(name)s%(context)s: %(message)s"))

    with bound_ids(evaluation_id=5):
        logger.warning("retrying")
    logger.warning("idle")

    inside, outside = stream.getvalue().splitlines()
    assert inside.endswith(" [evaluation=5]: retrying")
    assert outside.endswith(": idle")
    assert "[" not in outside

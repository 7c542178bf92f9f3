"""Validate a submission zip against a split, exactly as the leaderboard does before queueing.

Exit status: 0 when the submission is valid, 1 when it is not, 2 when the split
cannot be opened.
"""

from __future__ import annotations

import argparse
import dataclasses

from evaluator.archive import DEFAULT_LIMITS, ArchiveLimits
from evaluator.problems import Report, format_count
from evaluator.split import Split, SplitError
from evaluator.submission import validate_submission

HELP = "check a submission zip against a split (names, sizes, alpha, candidates, limits)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--split", required=True,
                        help="split folder or .tar; its public inputs package is enough")
    parser.add_argument("--predictions", required=True, help="submission zip to check")
    parser.add_argument("--max-candidates", type=int, default=8,
                        help="largest number of candidates per sample the benchmark accepts (default 8)")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    limits = parser.add_argument_group("archive limits", "the server's limits for an uploaded zip")
    for field in dataclasses.fields(ArchiveLimits):
        default = getattr(DEFAULT_LIMITS, field.name)
        limits.add_argument("--" + field.name.replace("_", "-"), type=type(default), default=default,
                            metavar="N", help=f"ArchiveLimits.{field.name} (default {default})")


def archive_limits(args: argparse.Namespace) -> ArchiveLimits:
    """Return the ArchiveLimits that the command line options set; raises ValueError when not positive."""
    return ArchiveLimits(**{field.name: getattr(args, field.name) for field in dataclasses.fields(ArchiveLimits)})


def format_valid_summary(report: Report) -> str:
    """Return the one-line summary of a valid report: `valid: 120 samples, 1 candidate each`."""
    samples = report.summary.get("samples", 0)
    candidates = report.summary.get("candidates", 0)
    line = f"valid: {format_count(samples, 'sample')}, {format_count(candidates, 'candidate')} each"
    if "method" in report.summary:
        line += f" (method: {report.summary['method']})"
    return line


def run(args: argparse.Namespace) -> int:
    try:
        limits = archive_limits(args)
    except ValueError as error:
        print(error)
        return 2
    try:
        split = Split(args.split, check_files=False)
    except SplitError as error:
        print(error)
        return 2
    with split:
        report = validate_submission(args.predictions, split, max_candidates=args.max_candidates,
                                     limits=limits)

    if args.json:
        print(report.to_json())
    elif report.valid:
        print(format_valid_summary(report))
    else:
        print(f"invalid submission {args.predictions}")
        print(report.format())
    return 0 if report.valid else 1

"""Command line entry point: `python -m evaluator COMMAND ...`.

Each command lives in its own module under `evaluator.commands` and provides
`HELP` (one line), `add_arguments(parser)` and `run(args) -> int` (the exit status).
Only the chosen command's module is imported, because some of them load torch and
the metric networks, which takes seconds.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

# Command name, module, and the one-line help shown by `python -m evaluator --help`.
COMMANDS = {
    "validate": ("evaluator.commands.validate", "check a submission zip against a split"),
    "make-synthetic": ("evaluator.commands.make_synthetic", "write synthetic val and test splits"),
    "import-cocoa": ("evaluator.commands.import_cocoa", "convert COCO-amodal annotations into a split"),
    "export-public": ("evaluator.commands.export_public", "write the public inputs package of a split"),
    "score": ("evaluator.commands.score", "score a submission zip against a split"),
    "weights": ("evaluator.commands.weights", "fetch, check or write stand-ins for the metric networks"),
    "calibrate": ("evaluator.commands.calibrate", "fit a calibration to human judgments"),
    "hpa": ("evaluator.commands.hpa", "print the HPA that a calibration gives for aggregate values"),
}


def _chosen_command(argv: list[str]) -> str | None:
    for arg in argv:
        if arg in COMMANDS:
            return arg
    return None


def build_parser(argv: list[str]) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m evaluator",
        description="Validate and score Referring Layer Decomposition submissions.",
    )
    parser.add_argument("--log-level", default="WARNING", help="logging level (default WARNING)")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    chosen = _chosen_command(argv)
    for name, (module_name, help_text) in COMMANDS.items():
        sub = commands.add_parser(name, help=help_text, description=help_text)
        if name == chosen:
            module = importlib.import_module(module_name)
            module.add_arguments(sub)
            sub.set_defaults(handler=module.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = build_parser(argv).parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), format="%(levelname)s %(name)s: %(message)s")
    return args.handler(args)

"""Command line entry point: `python -m evaluator COMMAND ...`.

Each command lives in its own module under `evaluator.commands` and provides
`HELP` (one line), `add_arguments(parser)` and `run(args) -> int` (the exit status).
Modules are imported only when their command runs, so `--help` stays fast.
"""

from __future__ import annotations

import argparse
import importlib
import logging

COMMANDS = {
    "validate": "evaluator.commands.validate",
    "make-synthetic": "evaluator.commands.make_synthetic",
    "import-cocoa": "evaluator.commands.import_cocoa",
    "export-public": "evaluator.commands.export_public",
    "score": "evaluator.commands.score",
    "weights": "evaluator.commands.weights",
    "calibrate": "evaluator.commands.calibrate",
    "hpa": "evaluator.commands.hpa",
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m evaluator",
        description="Validate and score Referring Layer Decomposition submissions.",
    )
    parser.add_argument("--log-level", default="WARNING", help="logging level (default WARNING)")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, module_name in COMMANDS.items():
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as error:
            if error.name != module_name:
                raise
            continue
        sub = commands.add_parser(name, help=module.HELP, description=module.HELP)
        module.add_arguments(sub)
        sub.set_defaults(handler=module.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), format="%(levelname)s %(name)s: %(message)s")
    return args.handler(args)

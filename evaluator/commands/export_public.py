"""Write a split's public inputs package."""

from __future__ import annotations

import argparse

from evaluator.split import SplitError, export_public

HELP = "write the public inputs package of a split (no gt/, no ground-truth-only fields)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--split", required=True, help="split folder or .tar with gt/")
    parser.add_argument("--out", required=True, help="output folder, or a path ending in .tar")


def run(args: argparse.Namespace) -> int:
    try:
        out = export_public(args.split, args.out)
    except SplitError as error:
        print(error)
        return 1
    except FileExistsError as error:
        print(f"error: {error}")
        return 1
    print(f"wrote {out}")
    return 0

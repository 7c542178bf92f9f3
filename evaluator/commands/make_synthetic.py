"""Write synthetic splits with exact ground truth."""

from __future__ import annotations

import argparse

from evaluator.problems import format_count
from evaluator.split import Split, summarize
from evaluator.synthetic.engine import DEFAULT_SIZE, DEFAULT_SPLIT_NAMES, make_synthetic_splits
from evaluator.synthetic.scene import MIN_SIZE

HELP = "write synthetic splits (photographs with drawn objects) with exact ground truth"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", required=True, help="folder that receives one folder per split")
    parser.add_argument("--samples", type=int, default=200, help="samples per split (default 200)")
    parser.add_argument(
        "--size",
        type=int,
        default=DEFAULT_SIZE,
        help=f"image width and height in pixels, at least {MIN_SIZE} (default {DEFAULT_SIZE})",
    )
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.add_argument(
        "--splits",
        default=",".join(DEFAULT_SPLIT_NAMES),
        help=f"comma-separated split names (default {','.join(DEFAULT_SPLIT_NAMES)})",
    )
    parser.add_argument("--overwrite", action="store_true", help="replace existing split folders")


def run(args: argparse.Namespace) -> int:
    names = [name.strip() for name in args.splits.split(",") if name.strip()]
    try:
        folders = make_synthetic_splits(
            args.out,
            args.samples,
            args.size,
            args.seed,
            names=names,
            overwrite=args.overwrite,
        )
    except ValueError as error:
        print(f"error: {error}")
        return 1
    except FileExistsError as error:
        print(f"error: {error} (on the command line: --overwrite)")
        return 1
    for name, folder in folders.items():
        with Split(folder) as split:
            summary = summarize(split)
        print(f"wrote {folder}: {format_count(summary.samples, 'sample')}, "
              f"{format_count(summary.images, 'image')} ({name})")
    return 0

"""Convert COCO-amodal (COCOA) annotations into a split with amodal-mask ground truth."""

from __future__ import annotations

import argparse

from evaluator.cocoa import CocoaError, import_cocoa
from evaluator.problems import format_count

HELP = "convert COCO-amodal (COCOA) annotations and images into a split (gt_kind amodal_mask)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--annotations", required=True, help="COCOA annotation JSON file")
    parser.add_argument("--images", required=True, help="folder with the images named by file_name")
    parser.add_argument("--out", required=True, help="split folder to write")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing split folder")


def run(args: argparse.Namespace) -> int:
    try:
        summary = import_cocoa(args.annotations, args.images, args.out, overwrite=args.overwrite)
    except CocoaError as error:
        print(f"error: {error}")
        return 1
    except FileExistsError as error:
        print(f"error: {error} (on the command line: --overwrite)")
        return 1
    print(
        f"wrote {summary.split}: {format_count(summary.samples, 'sample')}, "
        f"{format_count(summary.images, 'image')}, {format_count(summary.skipped_regions, 'region')} skipped"
    )
    return 0

"""Score a submission zip against a split with ground truth, exactly as the server does.

Writes `report.json` (provenance, warnings, FID per group and the metrics report)
and `samples.parquet` (one row per sample and candidate) into `--out`, and prints a
summary per layer kind. Exit status: 0 when scored, 1 when the submission is
invalid or the weights are missing, 2 when the split cannot be opened.
"""

from __future__ import annotations

import argparse
import sys

from evaluator.config import ConfigError, load_config
from evaluator.metrics.scoring import DeviceError
from evaluator.pipeline import score_submission
from evaluator.problems import format_count
from evaluator.split import Split, SplitError
from evaluator.submission import SubmissionError
from evaluator.weights import WEIGHTS_ENV, WeightsError

HELP = "score a submission zip against a split with ground truth; writes report.json and samples.parquet"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--split", required=True, help="split folder or .tar with gt/")
    parser.add_argument("--predictions", required=True, help="submission zip")
    parser.add_argument("--out", required=True, help="folder for report.json and samples.parquet")
    parser.add_argument("--config", help="benchmark config name or .json path (default reflade-v1)")
    parser.add_argument("--weights", help=f"weights folder (default: ${WEIGHTS_ENV}, else ./weights)")
    parser.add_argument("--device", choices=("cpu", "cuda"), help="device (default: cuda when present)")
    parser.add_argument("--workers", type=int, help="image loader processes (default: spare CPU cores, at most 4)")
    parser.add_argument("--cache", help="ground-truth cache folder (default: $REFLADE_CACHE, else ~/.cache/reflade)")


def _format_value(entry: dict | None) -> str:
    if not entry or entry.get("value") is None:
        return "-"
    text = f"{entry['value']:.4f}"
    if entry.get("ci"):
        low, high = entry["ci"]
        text += f" [{low:.4f}, {high:.4f}]"
    return f"{text} n={entry.get('count', 0)}"


def format_summary(result) -> str:
    """Format a table per layer kind: each metric with its 95% interval and sample count."""
    lines = []
    for warning in result.warnings:
        lines.append(f"WARNING: {warning}")
    report = result.report
    if report["hpa"]["value"] is not None:
        lines.append(f"HPA (mean over layer kinds): {report['hpa']['value']:.4f}")
    for kind, entry in report["layer_kinds"].items():
        lines.append(f"{kind} ({format_count(entry['count'], 'sample')})")
        for name, metric in entry["metrics"].items():
            line = f"  {name:<14} {_format_value(metric)}"
            if name == "miou_occ" and metric.get("left_out_empty"):
                line += f" ({metric['left_out_empty']} with nothing hidden left out)"
            lines.append(line)
    undefined = result.provenance.get("dir_undefined", 0)
    if undefined:
        they = "it is" if undefined == 1 else "they are"
        lines.append(f"dir is undefined for {format_count(undefined, 'sample')} with nothing hidden; "
                     f"{they} left out of its mean")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    try:
        config = load_config(args.config)
        Split(args.split).close()
    except ConfigError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    except SplitError as error:
        print(error, file=sys.stderr)
        return 2
    try:
        result = score_submission(
            args.split, args.predictions, out_dir=args.out, config=config, weights_dir=args.weights,
            progress=True, device=args.device, workers=args.workers, cache_dir=args.cache,
        )
    except SubmissionError as error:
        print(f"invalid submission {args.predictions}")
        print(error.report.format())
        return 1
    except (WeightsError, DeviceError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    print(format_summary(result))
    print(f"wrote {args.out}/report.json and {args.out}/samples.parquet")
    return 0

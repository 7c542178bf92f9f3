"""Fit a calibration (Pass-rate@K weights and threshold) to human judgments.

See `evaluator.calibration` for the two fitting paths and `evaluator.judgments` for
the input formats.
"""

from __future__ import annotations

import argparse
import hashlib
import logging
from pathlib import Path

from evaluator.config import ConfigError, load_config
from evaluator.sample_table import AggregateError

HELP = "fit Pass-rate@K weights and threshold to human pass/fail labels or pairwise preferences"
logger = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--samples", required=True, action="append",
        help="per-sample .parquet of one entry, as NAME=PATH or PATH (the name is then the file stem); repeat per entry",
    )
    parser.add_argument("--judgments", required=True, help=".csv or .jsonl of pass/fail labels or pairwise preferences")
    parser.add_argument("--out", required=True, help="path of the calibration .json to write")
    parser.add_argument("--config", default=None, help="shipped config name or .json path whose calibration is the base (default reflade-v1)")
    parser.add_argument(
        "--report", action="append", default=[],
        help="an entry's report .json as NAME=PATH, for preferences only: adds its top-level HPA to the agreement table; repeat per entry",
    )
    parser.add_argument(
        "--version", default=None,
        help="version of the new calibration (default: the config name, 'human' and the first 12 hex digits of the judgments' SHA-256)",
    )


def run(args: argparse.Namespace) -> int:
    from evaluator.calibration import (
        fit_from_labels,
        fit_from_preferences,
        format_agreement,
        write_calibration,
    )
    from evaluator.judgments import (
        JudgmentError,
        load_judgments,
        load_sample_tables,
        read_report_hpa,
    )

    out = Path(args.out)
    if out.exists():
        print(f"error: {out} already exists; choose another --out or remove it")
        return 1
    try:
        config = load_config(args.config)
        kind, judgments = load_judgments(args.judgments)
        samples = load_sample_tables(args.samples)
        digest = hashlib.sha256(Path(args.judgments).read_bytes()).hexdigest()[:12]
        version = args.version or f"{config.name}-human-{digest}"
        source = f"{kind} from {Path(args.judgments).name} (sha256 {digest}) on base calibration {config.calibration.version}"
        if kind == "labels":
            if args.report:
                raise JudgmentError("--report applies to pairwise preferences only; drop it for pass/fail labels")
            fit = fit_from_labels(samples, judgments, config.calibration, version, source)
        else:
            entry_hpa = read_report_hpa(args.report) if args.report else None
            fit = fit_from_preferences(samples, judgments, config.calibration, version, source, entry_hpa)
    except (ConfigError, JudgmentError, AggregateError) as error:
        print(f"error: {error}")
        return 1
    logger.info("fitted calibration %s from %d %s", version, len(judgments), kind)

    calibration = fit.calibration
    print(f"calibration {calibration.version} from {len(judgments)} {kind} ({fit.fit['left_out_undefined']} left out: undefined metrics)")
    weights = ", ".join(f"{name} {value:.4f}" for name, value in calibration.pass_weights.items())
    print(f"weights: {weights}; threshold {calibration.threshold:.4f}")
    if kind == "labels":
        for name in ("base", "fitted"):
            scores = fit.fit[f"accuracy_{name}"]
            print(f"accuracy ({name}): {scores['accuracy']:.4f}, balanced {scores['balanced_accuracy']:.4f}")
    else:
        for entry, rating in sorted(fit.fit["elo"].items(), key=lambda item: -item[1]):
            print(f"elo {rating:8.1f}  {entry}")
    print(format_agreement(fit.agreement))
    write_calibration(fit, out)
    print(f"wrote {out}")
    return 0

"""Fetch, check and make the weights folder of the metric networks.

`fetch` needs internet access; `check` and `make-test` run offline. See
`evaluator.weights` for the folder layout.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from evaluator.config import ConfigError, load_config
from evaluator.weights import (
    WEIGHTS_ENV,
    WeightsError,
    check_weights,
    fetch_weights,
    required_files,
    resolve_weights_dir,
    weights_fingerprint,
    write_manifest,
)

HELP = "download (fetch), verify (check) or write test stand-ins (make-test) of the metric weights"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("action", choices=("fetch", "check", "make-test"), help="what to do with the folder")
    parser.add_argument("--dir", help=f"weights folder (default: ${WEIGHTS_ENV}, else ./weights)")
    parser.add_argument("--config", help="benchmark config name or .json path (default reflade-v1)")
    parser.add_argument("--write-manifest", action="store_true",
                        help="check: rewrite manifest.json from the files the config needs, as they are")


def _print_table(rows: list) -> None:
    width = max([len("file")] + [len(row.name) for row in rows])
    print(f"{'file':<{width}}  {'size':>11}  {'sha256':<64}  verified")
    for row in rows:
        size = "-" if row.size is None else str(row.size)
        print(f"{row.name:<{width}}  {size:>11}  {row.sha256 or '-':<64}  {'yes' if row.verified else 'no'}"
              f"  ({row.note})")


def run(args: argparse.Namespace) -> int:
    weights_dir = resolve_weights_dir(args.dir)
    try:
        config = load_config(args.config)
        if args.action == "fetch":
            fetch_weights(weights_dir, config)
        elif args.action == "make-test":
            from evaluator.metrics.networks import make_test_weights

            make_test_weights(weights_dir, config)
            print(f"wrote stand-in weights for {config.name} to {weights_dir}; results made with them "
                  "are marked unverified")
            return 0
        elif args.write_manifest:
            write_manifest(weights_dir, required_files(config), {})
    except (WeightsError, ConfigError, OSError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1

    rows = check_weights(Path(weights_dir))
    _print_table(rows)
    fingerprint, verified = weights_fingerprint(weights_dir)
    print(f"fingerprint {fingerprint}: {'verified' if verified else 'unverified weights'}")
    return 0 if all(row.matches_manifest for row in rows) else 1

"""Fetch, check and make the weights folder of the metric networks.

`fetch` needs internet access; `check` and `make-test` run offline. See
`evaluator.weights` for the folder layout.

`check` exits with status 0 only when every file that the config needs is present
and listed in manifest.json, and every listed file matches its SHA-256 there.
Without --config it checks for reflade-v1, the config that `score` uses by default.
"""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

from evaluator.config import DEFAULT_CONFIG_NAME, BenchmarkConfig, ConfigError, load_config
from evaluator.weights import (
    WEIGHTS_ENV,
    FileCheck,
    WeightsError,
    check_weights,
    fetch_weights,
    published_files,
    required_files,
    resolve_weights_dir,
    weights_fingerprint,
    write_manifest,
)

HELP = "download (fetch), verify (check) or write test stand-ins (make-test) of the metric weights"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "action", choices=("fetch", "check", "make-test"),
        help="fetch: download the files that the config needs; check: verify that every file the "
        "config needs is present and that every file matches manifest.json by SHA-256, exit 1 "
        "otherwise; make-test: write random stand-ins of the config's files")
    parser.add_argument("--dir", help=f"weights folder (default: ${WEIGHTS_ENV}, else ./weights)")
    parser.add_argument("--config", help="benchmark config name or .json path (default reflade-v1, "
                        "as for score); check requires every file that this config needs")
    parser.add_argument("--write-manifest", action="store_true",
                        help="check: rewrite manifest.json from the files the config needs, as they are")


def _print_table(rows: list[FileCheck]) -> None:
    width = max([len("file")] + [len(row.name) for row in rows])
    print(f"{'file':<{width}}  {'size':>11}  {'sha256':<64}  verified")
    for row in rows:
        size = "-" if row.size is None else str(row.size)
        print(f"{row.name:<{width}}  {size:>11}  {row.sha256 or '-':<64}  {'yes' if row.verified else 'no'}"
              f"  ({row.note})")


def _command(action: str, weights_dir: Path, config_option: str | None, *extra: str) -> str:
    command = f"python -m evaluator weights {action} --dir {shlex.quote(str(weights_dir))}"
    if config_option:
        command += f" --config {shlex.quote(config_option)}"
    return " ".join([command, *extra])


def _missing_fix(config: BenchmarkConfig, weights_dir: Path, config_option: str | None) -> str:
    """Return the fix for a missing file of the config: the command that gets it, or the alternatives."""
    try:
        published_files(config)
    except WeightsError:
        return (f"`weights fetch` cannot get the files of this config, because its CLIP model has no "
                f"published download. Write stand-ins of every file with "
                f"`{_command('make-test', weights_dir, config_option)}`, or copy the file in by hand and "
                f"run `{_command('check', weights_dir, config_option, '--write-manifest')}`.")
    return (f"Get it with `{_command('fetch', weights_dir, config_option)}` on a machine with "
            "internet access.")


def _problem_lines(rows: list[FileCheck], config: BenchmarkConfig, weights_dir: Path,
                   config_option: str | None) -> list[str]:
    """Return one line per missing or unlisted file, with the command that fixes it."""
    needed = set(required_files(config))
    label = config_option or DEFAULT_CONFIG_NAME
    record = _command("check", weights_dir, config_option, "--write-manifest")
    lines = []
    for row in rows:
        if row.size is None and row.name in needed:
            lines.append(f"missing: {row.name}, which config {label} needs. "
                         f"{_missing_fix(config, weights_dir, config_option)}")
        elif row.size is None:
            lines.append(f"missing: {row.name}, which manifest.json lists. Copy it back, or drop it "
                         f"from the manifest with `{record}`.")
        elif not row.in_manifest:
            lines.append(f"not in manifest.json: {row.name}, which config {label} needs. "
                         f"Record it with `{record}`.")
    return lines


def check(weights_dir: Path, config: BenchmarkConfig, config_option: str | None) -> int:
    """Print the table of every file, the fingerprint and a line per problem, and return the exit status."""
    needed = required_files(config)
    try:
        rows = check_weights(weights_dir, needed)
    except WeightsError as error:
        # The manifest is missing or invalid, and the error names the fix. The files are
        # still checked for presence, so an empty folder lists every file it lacks.
        print(f"error: {error}", file=sys.stderr)
        missing = [FileCheck(name, None, None, False, False, "missing", False)
                   for name in sorted(needed) if not (weights_dir / name).is_file()]
        for line in _problem_lines(missing, config, weights_dir, config_option):
            print(line)
        return 1

    _print_table(rows)
    status = 0 if all(row.matches_manifest for row in rows) else 1
    if all(row.matches_manifest for row in rows if row.in_manifest):
        try:
            fingerprint, verified = weights_fingerprint(weights_dir)
        except WeightsError as error:
            print(f"error: {error}", file=sys.stderr)
            return 1
        print(f"fingerprint {fingerprint}: {'verified' if verified else 'unverified weights'}")
    for line in _problem_lines(rows, config, weights_dir, config_option):
        print(line)
    return status


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
    return check(weights_dir, config, args.config)

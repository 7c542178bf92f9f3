"""Command line entry point: `python -m reference_model COMMAND ...`.

Commands: `train` (train a preset on a split), `predict` (write a submission zip
from a checkpoint), `evaluate` (predict, then score with the evaluator) and
`baseline` (write a submission zip of a simple baseline).
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import math
import os
import sys
from pathlib import Path

from evaluator.split import open_split
from evaluator.weights import WeightsError
from reference_model.visible import FILLS, VisibleSettings

logger = logging.getLogger(__name__)


def _add_train(commands) -> None:
    parser = commands.add_parser("train", help="train RefLayer on a split with ground truth")
    parser.add_argument("--preset", default="tiny", help="configuration preset: tiny or sd3-medium (default tiny)")
    data = parser.add_mutually_exclusive_group(required=True)
    data.add_argument("--data", help="split folder or .tar with gt/ to train on")
    data.add_argument(
        "--synthetic", type=int, metavar="N",
        help="train on N synthetic samples generated at the preset's resolution into <out>/data (seed 0)",
    )
    parser.add_argument("--out", required=True, help="run folder for checkpoints, metrics and the final export")
    parser.add_argument("--steps", type=int, default=None, help="denoiser-stage steps (default: the preset's)")
    parser.add_argument("--vae-steps", type=int, default=None, help="VAE-stage steps for a VAE trained from scratch (default: the preset's)")
    parser.add_argument("--pretrained", default=None, help="diffusers-format SD3 folder (sd3-medium)")
    parser.add_argument("--resume", action="store_true", help="continue from the run folder's latest checkpoint")
    parser.set_defaults(handler=_run_train)


def _add_predict_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--checkpoint", required=True, help="checkpoint folder (config.json + model.safetensors)")
    parser.add_argument("--split", required=True, help="split folder or .tar (public inputs suffice)")
    parser.add_argument("--candidates", type=int, default=1, help="candidates per sample, one seed each (default 1)")
    parser.add_argument("--out", required=True, help="path of the submission zip to write")
    parser.add_argument("--steps", type=int, default=None, help="sampling steps (default: the checkpoint's config)")
    parser.add_argument("--guidance-scale", type=float, default=None, help="classifier-free guidance scale (default: the checkpoint's config)")
    parser.add_argument("--seed", type=int, default=0, help="seed of candidate 0; candidate k uses seed + k (default 0)")
    parser.add_argument("--max-candidates", type=int, default=8, help="largest n the validator accepts (default 8)")
    parser.add_argument("--visible-tolerance", type=float, default=None,
                        help="foreground layers: copy the input's pixels where the predicted alpha is at least 0.5 "
                             "and the model's colour is within this mean difference in [0, 1] "
                             f"(default {VisibleSettings.tolerance})")
    parser.add_argument("--visibility-threshold", type=float, default=None,
                        help="background layers: copy the input's pixels where the visibility decoder's "
                             f"probability is at least this (default {VisibleSettings.threshold})")
    parser.add_argument("--fill", choices=FILLS, default=None,
                        help="colours of the hidden part: the visible pixels' colours spread by a Gaussian "
                             f"(nearby) or the model's (model) (default {VisibleSettings.fill})")
    parser.add_argument("--fill-sigma", type=float, default=None,
                        help=f"width in pixels of the nearby fill's Gaussian (default {VisibleSettings.fill_sigma})")
    parser.add_argument("--no-preserve-visible", action="store_true",
                        help="keep the model's colours everywhere, also where the layer is visible")


def _add_predict(commands) -> None:
    parser = commands.add_parser("predict", help="write a submission zip with RefLayer's predictions")
    _add_predict_arguments(parser)
    parser.set_defaults(handler=_run_predict)


def _add_evaluate(commands) -> None:
    parser = commands.add_parser("evaluate", help="predict on a split with ground truth, then score it")
    _add_predict_arguments(parser)
    parser.add_argument("--score-dir", default=None, help="folder for the scoring outputs (default: next to --out)")
    parser.add_argument("--weights-dir", "--weights", default=None,
                        help="folder of the evaluator's pretrained networks (--weights, as the evaluator names it, also works)")
    parser.set_defaults(handler=_run_evaluate)


def _add_baseline(commands) -> None:
    parser = commands.add_parser("baseline", help="write a submission zip of a simple baseline")
    parser.add_argument("--kind", required=True, choices=("cutout", "visible-oracle"), help="which baseline")
    parser.add_argument("--split", required=True, help="split folder or .tar (visible-oracle needs gt/)")
    parser.add_argument("--out", required=True, help="path of the submission zip to write")
    parser.set_defaults(handler=_run_baseline)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m reference_model", description="Train and run RefLayer and simple baselines.")
    parser.add_argument(
        "--log-level", default="INFO", type=str.upper, choices=("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"),
        help="logging level (default INFO); DEBUG also logs the traceback of a reported error",
    )
    parser.add_argument(
        "--threads", type=int, default=None,
        help="CPU threads for torch (default: torch's choice); 1 is fastest for the tiny preset on a busy CPU",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for add in (_add_train, _add_predict, _add_evaluate, _add_baseline):
        add(commands)
    return parser


def _check_train_arguments(args) -> None:
    """Reject invalid train arguments before torch is imported, because importing it takes seconds."""
    if args.synthetic is not None and args.synthetic < 1:
        raise ValueError(f"--synthetic must be at least 1 sample, got {args.synthetic}")
    for flag, value in (("--steps", args.steps), ("--vae-steps", args.vae_steps)):
        if value is not None and value < 0:
            raise ValueError(f"{flag} must be at least 0, got {value}")


def _run_train(args) -> int:
    _check_train_arguments(args)
    from reference_model.config import preset
    from reference_model.train import train

    config = preset(args.preset, args.pretrained)
    if args.steps is not None:
        config.train.steps = args.steps
    if args.vae_steps is not None:
        config.train.vae_steps = args.vae_steps
    data = args.data if args.data is not None else _synthetic_training_split(args.synthetic, config.resolution, args.out)
    final = train(config, data, args.out, resume=args.resume)
    print(f"wrote {final}")
    return 0


def _synthetic_training_split(samples: int, resolution: int, out: str) -> Path:
    """Generate the training split once; a resumed run finds it already there."""
    from evaluator.synthetic import make_synthetic_split

    folder = Path(out) / "data" / "train"
    if (folder / "manifest.jsonl").is_file():
        return folder
    return make_synthetic_split(Path(out) / "data", samples, resolution, seed=0, name="train", overwrite=True)


def _visible_settings(args) -> VisibleSettings | None:
    """Build the `preserve_visible` settings from the flags, or return None for --no-preserve-visible."""
    flags = {
        "--visible-tolerance": ("tolerance", args.visible_tolerance),
        "--visibility-threshold": ("threshold", args.visibility_threshold),
        "--fill": ("fill", args.fill),
        "--fill-sigma": ("fill_sigma", args.fill_sigma),
    }
    set_flags = [(flag, field_name, value) for flag, (field_name, value) in flags.items() if value is not None]
    if args.no_preserve_visible and set_flags:
        raise ValueError(f"{set_flags[0][0]} has no effect with --no-preserve-visible; give only one of them")
    visible = None if args.no_preserve_visible else VisibleSettings()
    for flag, field_name, value in set_flags:
        try:
            visible = dataclasses.replace(visible, **{field_name: value})
        except ValueError as error:
            raise ValueError(f"{flag}: {error}") from None
    return visible


def _check_out(out: str) -> None:
    """Reject an --out that names a folder, before any work is done."""
    if Path(out).is_dir():
        raise ValueError(f"--out {out} is a folder; give the path of the zip to write, such as {Path(out) / 'predictions.zip'}")


def _check_predict_arguments(args, needs_ground_truth: bool) -> VisibleSettings | None:
    """Check the predict and evaluate arguments and return the `preserve_visible` settings.

    The checks run before torch is imported and the model is loaded, because those take seconds.
    """
    visible = _visible_settings(args)
    if args.max_candidates < 1:
        raise ValueError(f"--max-candidates must be at least 1, got {args.max_candidates}")
    if not 1 <= args.candidates <= args.max_candidates:
        raise ValueError(f"--candidates must be between 1 and {args.max_candidates}, got {args.candidates}")
    if args.steps is not None and args.steps < 1:
        raise ValueError(f"--steps must be at least 1, got {args.steps}")
    if args.guidance_scale is not None and not math.isfinite(args.guidance_scale):
        raise ValueError(f"--guidance-scale must be a finite number, got {args.guidance_scale}")
    _check_out(args.out)
    config = Path(args.checkpoint) / "config.json"
    if not config.is_file():
        raise FileNotFoundError(
            f"{config} not found; --checkpoint must be a folder written by `python -m reference_model train`"
        )
    # Opening validates the split and raises SplitError listing its problems.
    split = open_split(args.split)
    split.close()
    if needs_ground_truth and not split.has_ground_truth:
        raise ValueError(
            f"split {split.path} has no gt/ folder, so its predictions cannot be scored; "
            "use the full split, or `predict` for its public inputs package"
        )
    return visible


def _predict_from_args(args, visible: VisibleSettings | None) -> Path:
    from reference_model.predict import predict

    return predict(
        checkpoint=args.checkpoint, split=args.split, out=args.out, candidates=args.candidates,
        steps=args.steps, guidance_scale=args.guidance_scale, seed=args.seed, max_candidates=args.max_candidates,
        visible=visible,
    )


def _run_predict(args) -> int:
    visible = _check_predict_arguments(args, needs_ground_truth=False)
    print(f"wrote {_predict_from_args(args, visible)}")
    return 0


def _run_evaluate(args) -> int:
    visible = _check_predict_arguments(args, needs_ground_truth=True)
    try:
        from evaluator.pipeline import score_submission
    except ModuleNotFoundError as error:
        if not (error.name or "").startswith("evaluator"):
            raise
        logger.error("scoring is not installed: evaluator.pipeline is missing (%s); the predictions were not scored", error)
        return 2
    zip_path = _predict_from_args(args, visible)
    score_dir = Path(args.score_dir) if args.score_dir else zip_path.with_suffix("")
    result = score_submission(args.split, zip_path, score_dir, weights_dir=args.weights_dir)
    print(f"wrote {zip_path}; scores in {score_dir}")
    _print_scores(result)
    return 0


def _print_scores(result) -> None:
    """Print the warnings, the metrics of each layer kind and the primary metric."""
    summary = result.to_json() if hasattr(result, "to_json") else result
    for warning in summary.get("warnings", []):
        print(f"warning: {warning}")
    report = summary.get("report", {})
    for kind, group in report.get("layer_kinds", {}).items():
        values = ", ".join(
            f"{name} {metric['value']:.4f}" for name, metric in group.get("metrics", {}).items()
            if isinstance(metric, dict) and isinstance(metric.get("value"), int | float)
        )
        print(f"{kind} ({group.get('count')} samples): {values}")
    primary = report.get("primary")
    if isinstance(primary, dict) and isinstance(primary.get("value"), int | float):
        print(f"primary metric: {primary['value']:.4f}")


def _run_baseline(args) -> int:
    from reference_model.baselines import check_baseline_split, write_baseline

    _check_out(args.out)
    # Opening and checking the split first rejects a bad --split, or one without the
    # ground truth that visible-oracle reads, before write_baseline imports torch.
    with open_split(args.split) as split:
        check_baseline_split(args.kind, split)

        print(f"wrote {write_baseline(args.kind, split, args.out)}")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=args.log_level, format="%(levelname)s %(name)s: %(message)s")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    # Bad input raises the exceptions caught below, which print as one line. SplitError,
    # SubmissionError and ConfigError subclass ValueError, and WeightsError means missing
    # metric weights. Other exceptions are bugs and keep their traceback.
    try:
        if args.threads is not None:
            if args.threads < 1:
                raise ValueError(f"--threads must be at least 1, got {args.threads}")
            import torch

            torch.set_num_threads(args.threads)
        return args.handler(args)
    except (ValueError, FileNotFoundError, WeightsError) as error:
        logger.debug("traceback of the error that follows", exc_info=True)
        print(f"error: {error}", file=sys.stderr)
        return 1

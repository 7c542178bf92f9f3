"""Print the HPA that a calibration gives for one layer kind's FID, lpips_vis and dir."""

from __future__ import annotations

import argparse
import math

from evaluator.config import HPA_METRICS, LAYER_KINDS, ConfigError, load_config

HELP = "print the HPA of one layer kind from its FID, mean lpips_vis and mean dir"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--layer-kind", required=True, choices=LAYER_KINDS, help="layer kind whose bounds apply")
    parser.add_argument("--fid", required=True, type=float, help="FID of the layer kind (lower is better)")
    parser.add_argument("--lpips-vis", required=True, type=float, help="mean lpips_vis (lower is better)")
    parser.add_argument("--dir", required=True, type=float, help="mean dir, a cosine in [-1, 1] (higher is better)")
    parser.add_argument("--config", default=None, help="shipped config name or .json path (default reflade-v1)")
    parser.add_argument("--calibration", default=None, help="calibration .json replacing the config's calibration")


def run(args: argparse.Namespace) -> int:
    from evaluator.calibration import load_calibration

    try:
        config = load_config(args.config)
        calibration = load_calibration(args.calibration) if args.calibration else config.calibration
    except ConfigError as error:
        print(f"error: {error}")
        return 1

    values = {"fid": args.fid, "lpips_vis": args.lpips_vis, "dir": args.dir}
    for name, value in values.items():
        if not math.isfinite(value):
            print(f"error: --{name.replace('_', '-')} must be a finite number, found {value}")
            return 1
    hpa = calibration.hpa(args.layer_kind, **values)
    print(f"HPA {hpa:.4f} ({args.layer_kind}, calibration {calibration.version})")
    print(f"{'term':<10} {'value':>10} {'lo':>8} {'hi':>8} {'normalised':>10}")
    for name, higher in HPA_METRICS.items():
        bounds = calibration.hpa_bounds[args.layer_kind][name]
        term = bounds.normalise(values[name], higher)
        print(f"{name:<10} {values[name]:>10.4f} {bounds.lo:>8.4f} {bounds.hi:>8.4f} {term:>10.4f}")
    return 0

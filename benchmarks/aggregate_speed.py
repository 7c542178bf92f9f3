"""Time the bootstrap and the whole aggregation on a random per-sample table.

Prints wall and CPU time for `bootstrap_means` on one group and for
`aggregate_samples` on a table of both layer kinds, three prompt types, three
categories and all occlusion buckets (20 groups).

    python benchmarks/aggregate_speed.py --samples 100000 --candidates 8
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np
import pandas as pd

from evaluator.aggregate import aggregate_samples
from evaluator.bootstrap import bootstrap_means, make_rng
from evaluator.config import load_config


def random_table(samples: int, candidates: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    rows = samples * candidates

    def per_sample(values):
        return np.repeat(values, candidates)

    table = pd.DataFrame({
        "sample_id": per_sample([f"s{i}" for i in range(samples)]),
        "candidate": np.tile(np.arange(candidates), samples),
        "layer_kind": per_sample(rng.choice(["foreground", "background"], samples)),
        "prompt_type": per_sample(rng.choice(["text", "box", "text+box"], samples)),
        "gt_kind": per_sample(np.where(rng.uniform(size=samples) < 0.1, "amodal_mask", "rgba")),
        "category": per_sample(rng.choice(["cat", "dog", None], samples)),
        "occlusion_rate": per_sample(rng.uniform(0, 0.9, samples)),
        "lpips_vis": rng.uniform(0, 0.3, rows),
        "dir": rng.uniform(0.2, 1.0, rows),
        "lpips_comp": rng.uniform(0, 0.5, rows),
        "iou": rng.uniform(0, 1, rows),
        "iou_occ": rng.uniform(0, 1, rows),
    })
    amodal = table["gt_kind"] == "amodal_mask"
    table.loc[amodal, ["lpips_vis", "dir", "lpips_comp"]] = np.nan
    return table


def timed(function):
    wall, cpu = time.perf_counter(), time.process_time()
    result = function()
    return result, time.perf_counter() - wall, time.process_time() - cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=100_000, help="samples in the table (default 100000)")
    parser.add_argument("--candidates", type=int, default=8, help="candidates per sample (default 8)")
    parser.add_argument("--resamples", type=int, default=1000, help="bootstrap resamples (default 1000)")
    args = parser.parse_args()

    config = load_config({**load_config().to_json(), "bootstrap": {"samples": args.resamples, "seed": 0}})
    values = np.random.default_rng(0).uniform(size=(args.samples, 8))
    _, wall, cpu = timed(lambda: bootstrap_means(values, args.resamples, make_rng(0, "bench")))
    print(f"bootstrap_means, {args.samples} samples x 8 metrics, {args.resamples} resamples: wall {wall:.2f} s, CPU {cpu:.2f} s")

    table = random_table(args.samples, args.candidates, seed=1)
    fid = {"foreground/all/all": 20.0, "background/all/all": 13.0}
    report, wall, cpu = timed(lambda: aggregate_samples(table, fid, config))
    print(
        f"aggregate_samples, {args.samples} samples x {args.candidates} candidates, {len(report['groups'])} groups: "
        f"wall {wall:.2f} s, CPU {cpu:.2f} s"
    )
    print(f"load average {os.getloadavg()[0]:.1f}, {os.cpu_count()} CPUs")


if __name__ == "__main__":
    main()

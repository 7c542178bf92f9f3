"""Throughput, cache effect and memory of the scoring pipeline.

Measures, on one synthetic split of `--samples` samples of `--size` pixels:

1. `batched`: `score_submission` with a cold ground-truth cache (loader workers,
   batched forward passes);
2. `warm`: a second submission on the same split, ground-truth cache warm;
3. `naive`: a per-sample loop computing the same metrics with batch size 1, no
   cache and no loader workers, checked against the batched values;
4. the same three in the way a leaderboard worker scores (`worker_*`): the
   networks are loaded once before the timed calls and kept in one
   `ScoringContext`, and the ground-truth cache starts cold in a new folder.
   Steps 1 to 3 load the networks in every call, as the command line does;
5. the CPU seconds of steps 1 to 3, loader processes included, and from them
   `naive_over_batched_limit`: naive / batched if the batched run kept every core
   busy from start to end (its CPU seconds / cores);
6. with `--rss`, peak resident memory of scoring `--samples` and 10x that many
   samples, each in a fresh process.

Stand-in weights for the config are written to a temporary folder unless
`--weights` is given. Example (the CPU run whose numbers are in
benchmarks/results/score.md):

    python benchmarks/score_throughput.py --samples 500 --size 256 --config test-tiny --rss
    python benchmarks/score_throughput.py --device cuda --size 512 --config reflade-v1
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402

from evaluator.config import load_config  # noqa: E402
from evaluator.fid import FidStats, frechet_distance  # noqa: E402
from evaluator.metrics.images import (  # noqa: E402
    amodal_ious,
    amodal_mask,
    background_bytes,
    prepare_layer,
    prepare_mask,
    restrict,
)
from evaluator.metrics.networks import make_test_weights  # noqa: E402
from evaluator.metrics.scoring import MetricNetworks, completion_direction, pick_device  # noqa: E402
from evaluator.pipeline import ScoringContext, score_submission  # noqa: E402
from evaluator.split import Split  # noqa: E402
from evaluator.submission import SubmissionArchive, write_submission  # noqa: E402
from evaluator.synthetic.engine import make_synthetic_split  # noqa: E402


def make_inputs(folder: Path, samples: int, size: int, candidates: int = 1) -> tuple[Path, Path, Path]:
    """Write a split and two submissions: darkened and brightened ground truth.

    Candidate k of a sample is the ground truth scaled by the submission's factor
    times 1 - 0.05 k.
    """
    split_path = make_synthetic_split(folder, samples=samples, size=size, seed=0)
    split = Split(split_path)

    def scaled(layer: np.ndarray, factor: float) -> np.ndarray:
        layer = layer.copy()
        layer[..., :3] = np.clip(layer[..., :3] * factor, 0, 255).astype(np.uint8)
        return layer

    def shifted(factor: float):
        for sample in split:
            layer = split.read_gt_layer(sample)
            yield sample.sample_id, [scaled(layer, factor * (1 - 0.05 * k)) for k in range(candidates)]

    first = write_submission(folder / "first.zip", shifted(0.8))
    second = write_submission(folder / "second.zip", shifted(1.2))
    return split_path, first, second


def naive_score(split_path: Path, zip_path: Path, config, networks: MetricNetworks) -> tuple[dict, dict]:
    """Score sample by sample with batch size 1 (`networks` built with batch_size=1).

    Returns the metrics per (sample id, candidate) and the FID per layer kind.
    """
    split = Split(split_path)
    submission = SubmissionArchive(zip_path, split, config.max_candidates)
    background = background_bytes(config.i_bkgd)
    size = config.eval_size
    dims = int(config.inception.get("dims", 2048))
    stats = {kind: (FidStats.empty(dims), FidStats.empty(dims)) for kind in ("foreground", "background")}
    values = {}
    for sample in split:
        layer = split.read_gt_layer(sample)
        visible = split.read_gt_visible(sample)
        truth = prepare_layer(layer, size, background)
        visible_eval = prepare_mask(visible, size)
        truth_visible = restrict(truth, visible_eval, background)
        truth_mask = amodal_mask(layer)
        nothing_hidden = np.array([not (truth_mask & ~visible).any()])
        f_g = networks.clip_embedding(truth[None])
        f_gv = networks.clip_embedding(truth_visible[None])

        for k in range(submission.n_candidates):
            candidate = submission.read_candidate(sample.sample_id, k)
            predicted = prepare_layer(candidate, size, background)
            predicted_visible = restrict(predicted, visible_eval, background)
            iou, iou_occ = amodal_ious(amodal_mask(candidate), truth_mask, visible)
            f_p = networks.clip_embedding(predicted[None])
            values[sample.sample_id, k] = {
                "lpips_vis": networks.lpips_distance(truth_visible[None], predicted_visible[None])[0],
                "dir": completion_direction(f_g, f_gv, f_p, nothing_hidden)[0],
                "lpips_comp": networks.lpips_distance(predicted[None], truth[None])[0],
                "iou": iou,
                "iou_occ": iou_occ,
            }
            if k == 0:
                predicted_stats, truth_stats = stats[sample.layer_kind]
                predicted_stats.add_features(networks.inception_features(predicted[None]))
                truth_stats.add_features(networks.inception_features(truth[None]))
    return values, {kind: frechet_distance(*pair) for kind, pair in stats.items()}


def cpu_seconds() -> float:
    """Return the CPU seconds of this process (every thread) and of its children that
    have exited, which include the loader processes once a chunk has stopped them."""
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return time.process_time() + children.ru_utime + children.ru_stime


def timed(function, *args, **kwargs):
    """Call `function` and return (its result, wall seconds, CPU seconds)."""
    wall, cpu = time.perf_counter(), cpu_seconds()
    result = function(*args, **kwargs)
    return result, time.perf_counter() - wall, cpu_seconds() - cpu


def peak_rss_mib() -> dict:
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    return {"main_mib": round(own, 1), "largest_worker_mib": round(children, 1)}


def measure_rss(args, weights_dir: Path, samples: int) -> dict:
    """Score `samples` samples in a fresh process and return its peak RSS."""
    command = [
        sys.executable, __file__, "--rss-child", "--samples", str(samples), "--size", str(args.size),
        "--config", args.config, "--weights", str(weights_dir), "--workers", str(args.workers),
        "--chunk-size", str(args.chunk_size), "--batch-size", str(args.batch_size),
        "--candidates", str(args.candidates),
    ]
    if args.threads:
        command += ["--threads", str(args.threads)]
    output = subprocess.run(command, check=True, capture_output=True, text=True).stdout
    return json.loads(output.strip().splitlines()[-1])


def load_benchmark_config(args):
    # Batch and chunk sizes only change speed, never a score, so overriding them keeps the config hash.
    return dataclasses.replace(load_config(args.config), chunk_size=args.chunk_size, batch_size=args.batch_size)


def rss_child(args) -> None:
    config = load_benchmark_config(args)
    with tempfile.TemporaryDirectory() as folder:
        split_path, first, _ = make_inputs(Path(folder), args.samples, args.size, args.candidates)
        _, seconds, _ = timed(score_submission, split_path, first, config=config, weights_dir=args.weights,
                           progress=False, device=args.device, workers=args.workers,
                           cache_dir=Path(folder) / "cache")
    print(json.dumps({"samples": args.samples, "seconds": round(seconds, 1), **peak_rss_mib()}))


def compare(batched, naive_values: dict, naive_fid: dict) -> dict:
    table = batched.samples.set_index(["sample_id", "candidate"])
    differences = {}
    for name in ("lpips_vis", "dir", "lpips_comp", "iou", "iou_occ"):
        ours = table[name].to_numpy()
        theirs = np.array([naive_values[key][name] for key in table.index])
        both = ~(np.isnan(ours) | np.isnan(theirs))
        if (np.isnan(ours) != np.isnan(theirs)).any():
            differences[name] = "NaN pattern differs"
        else:
            differences[name] = float(np.abs(ours[both] - theirs[both]).max(initial=0.0))
    for kind, value in naive_fid.items():
        differences[f"fid_{kind}_relative"] = abs(batched.fid[f"{kind}/all/all"] - value) / max(abs(value), 1e-12)
    return differences


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=500)
    parser.add_argument("--size", type=int, default=256, help="image side of the synthetic split in pixels")
    parser.add_argument("--config", default="test-tiny", help="benchmark config name or .json path")
    parser.add_argument("--weights", help="weights folder (default: stand-ins written to a temporary folder)")
    parser.add_argument("--device", help="cpu or cuda (default: cuda when present)")
    parser.add_argument("--workers", type=int, default=1, help="loader processes of the batched pipeline")
    parser.add_argument("--chunk-size", type=int, default=256,
                        help="samples per chunk (default 256, as reflade-v1; test-tiny's own is small for tests)")
    parser.add_argument("--batch-size", type=int, default=16,
                        help="samples per forward pass of the batched pipeline (default 16, as reflade-v1)")
    parser.add_argument("--candidates", type=int, default=1, help="candidates per sample in each submission")
    parser.add_argument("--threads", type=int, help="torch intra-op threads (default: torch's own)")
    parser.add_argument("--rss", action="store_true", help="also measure peak RSS at --samples and 10x")
    parser.add_argument("--rss-child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.rss_child:
        rss_child(args)
        return

    config = load_benchmark_config(args)
    device = pick_device(args.device)
    with tempfile.TemporaryDirectory() as folder:
        folder = Path(folder)
        weights_dir = Path(args.weights) if args.weights else folder / "weights"
        if not args.weights:
            make_test_weights(weights_dir, config)
        (split_path, first, second), setup_seconds, _ = timed(
            make_inputs, folder / "data", args.samples, args.size, args.candidates
        )
        common = dict(config=config, weights_dir=weights_dir, progress=False, device=str(device),
                      workers=args.workers, cache_dir=folder / "cache")
        batched, batched_seconds, batched_cpu = timed(score_submission, split_path, first, **common)
        _, warm_seconds, warm_cpu = timed(score_submission, split_path, second, **common)
        naive_networks, naive_load_seconds, naive_load_cpu = timed(
            MetricNetworks, weights_dir, config, device, batch_size=1
        )
        (naive_values, naive_fid), naive_loop_seconds, naive_loop_cpu = timed(
            naive_score, split_path, first, config, naive_networks
        )
        naive_seconds = naive_load_seconds + naive_loop_seconds
        cores = len(os.sched_getaffinity(0))

        context = ScoringContext(config, weights_dir, str(device))
        _ = context.networks
        worker_common = {**common, "cache_dir": folder / "worker-cache", "context": context}
        _, worker_batched_seconds, _ = timed(score_submission, split_path, first, **worker_common)
        _, worker_warm_seconds, _ = timed(score_submission, split_path, second, **worker_common)
        result = {
            "samples": args.samples, "candidates": args.candidates, "size": args.size, "config": config.name, "eval_size": config.eval_size,
            "device": str(device), "threads": torch.get_num_threads(), "workers": args.workers,
            "chunk_size": config.chunk_size, "batch_size": config.batch_size,
            "setup_seconds": round(setup_seconds, 1),
            "batched_seconds": round(batched_seconds, 2),
            "warm_seconds": round(warm_seconds, 2),
            "naive_seconds": round(naive_seconds, 2),
            "naive_over_batched": round(naive_seconds / batched_seconds, 2),
            "warm_over_batched": round(warm_seconds / batched_seconds, 3),
            # CPU seconds of each call, loader processes included. With every core busy for
            # the whole call, the batched run could take no less than its CPU time / cores,
            # which bounds naive / batched on this machine.
            "cores": cores,
            "batched_cpu_seconds": round(batched_cpu, 2),
            "warm_cpu_seconds": round(warm_cpu, 2),
            "naive_cpu_seconds": round(naive_load_cpu + naive_loop_cpu, 2),
            "naive_over_batched_limit": round(naive_seconds / (batched_cpu / cores), 2),
            "worker_batched_seconds": round(worker_batched_seconds, 2),
            "worker_warm_seconds": round(worker_warm_seconds, 2),
            "worker_naive_seconds": round(naive_loop_seconds, 2),
            "worker_naive_over_batched": round(naive_loop_seconds / worker_batched_seconds, 2),
            "worker_warm_over_batched": round(worker_warm_seconds / worker_batched_seconds, 3),
            "max_abs_difference_naive_vs_batched": compare(batched, naive_values, naive_fid),
        }
        if args.rss:
            result["rss"] = [measure_rss(args, weights_dir, n) for n in (args.samples, 10 * args.samples)]
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()

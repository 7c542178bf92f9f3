"""How far HPA and `dir` can move: RefLayer against the cut-out and against
ground-truth-derived entries on one synthetic split.

Each entry is scored with the same config, weights and cache. The entries:

- `cutout`: `reference_model.baselines`' prompt cut-out.
- `reflayer`: `predict` with the checkpoint (visible pixels kept, the default).
- `reflayer, true alpha`: RefLayer's RGB with the ground-truth alpha, which
  isolates the colours of its completions.
- `reflayer, true colours`: the ground-truth RGB with RefLayer's alpha, which
  isolates its amodal shape.
- `truth, hidden part blurred`: the ground truth with a Gaussian blur (sigma 3 px)
  in the hidden region only, a completion with the right colours and no detail.
- `truth, hidden part through the VAE`: the ground truth with its hidden region
  replaced by the checkpoint VAE's reconstruction, the best a model decoding
  through that VAE can complete.
- `truth, hidden part mean colour`: the hidden region filled with the mean colour
  of the layer's visible part.

All ground-truth-derived entries keep the true alpha and the true visible pixels, so
only the completion differs between them. Example (the numbers in
benchmarks/results/reflayer.md):

    python benchmarks/reflayer_headroom.py --samples 200 --seed 2 --checkpoint reference_model/checkpoints/tiny
"""

from __future__ import annotations

import argparse
import os
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402
from PIL import Image  # noqa: E402
from scipy import ndimage  # noqa: E402

from evaluator.config import load_config  # noqa: E402
from evaluator.metrics.networks import make_test_weights  # noqa: E402
from evaluator.pipeline import score_submission  # noqa: E402
from evaluator.split import Split  # noqa: E402
from evaluator.submission import SubmissionArchive, write_submission  # noqa: E402
from evaluator.synthetic.engine import make_synthetic_split  # noqa: E402
from reference_model.baselines import write_baseline  # noqa: E402
from reference_model.checkpoint import load_model  # noqa: E402
from reference_model.predict import predict  # noqa: E402

Layers = Iterator[tuple[str, list[np.ndarray]]]


def hidden_region(layer: np.ndarray, visible: np.ndarray) -> np.ndarray:
    """Return A∖v, the layer's amodal mask outside its visible part: bool (H, W)."""
    return (layer[..., 3] >= 128) & ~visible


def vae_round_trip(model, layer: np.ndarray) -> np.ndarray:
    """Encode and decode the layer, composited over mid-gray, with the checkpoint's VAE: uint8 (H, W, 3)."""
    alpha = layer[..., 3:4] / 255
    composite = np.round(layer[..., :3] * alpha + 127.5 * (1 - alpha)).astype(np.uint8)
    side = model.config.resolution
    small = np.asarray(Image.fromarray(composite).resize((side, side), Image.BICUBIC), dtype=np.float32)
    pixels = torch.from_numpy(small).permute(2, 0, 1)[None] / 127.5 - 1
    with torch.inference_mode():
        decoded = model.decode_rgb(model.encode(pixels)).clamp(-1, 1)[0]
    rgb = ((decoded.permute(1, 2, 0).numpy() + 1) * 127.5).round().astype(np.uint8)
    return np.asarray(Image.fromarray(rgb).resize((layer.shape[1], layer.shape[0]), Image.BICUBIC))


def completed_truth(split: Split, fill: Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray]) -> Layers:
    """Yield the ground truth with its hidden region's RGB taken from `fill(layer, visible, hidden)`."""
    for sample in split:
        layer = split.read_gt_layer(sample).copy()
        visible = split.read_gt_visible(sample)
        hidden = hidden_region(layer, visible)
        if hidden.any():
            layer[hidden, :3] = fill(layer, visible, hidden)[hidden]
        yield sample.sample_id, [layer]


def blurred_fill(layer: np.ndarray, visible: np.ndarray, hidden: np.ndarray) -> np.ndarray:
    return np.round(ndimage.gaussian_filter(layer[..., :3].astype(np.float32), (3, 3, 0))).astype(np.uint8)


def mean_colour_fill(layer: np.ndarray, visible: np.ndarray, hidden: np.ndarray) -> np.ndarray:
    seen = visible & (layer[..., 3] >= 128)
    colour = layer[seen, :3].mean(axis=0) if seen.any() else np.full(3, 127.5)
    return np.broadcast_to(np.round(colour).astype(np.uint8), layer[..., :3].shape)


def mixed(split: Split, prediction: Path, keep: str) -> Layers:
    """Yield RefLayer's candidate 0 with the ground truth's alpha (`keep="rgb"`) or RGB (`keep="alpha"`)."""
    archive = SubmissionArchive(prediction, split, 8)
    try:
        for sample in split:
            layer = archive.read_candidate(sample.sample_id, 0).copy()
            truth = split.read_gt_layer(sample)
            if keep == "rgb":
                layer[..., 3] = truth[..., 3]
            else:
                layer[..., :3] = truth[..., :3]
            yield sample.sample_id, [layer]
    finally:
        archive.close()


def summary(result) -> dict:
    kinds = result.report["layer_kinds"]

    def metric(kind: str, name: str) -> float:
        return kinds[kind]["metrics"][name]["value"]

    row = {}
    for kind, short in (("foreground", "fg"), ("background", "bg")):
        row[f"HPA {short}"] = metric(kind, "hpa")
        row[f"dir {short}"] = metric(kind, "dir")
        row[f"lpips_vis {short}"] = metric(kind, "lpips_vis")
        row[f"FID {short}"] = result.fid[f"{kind}/all/all"]
    row["miou_occ"] = metric("foreground", "miou_occ")
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=200)
    parser.add_argument("--size", type=int, default=64, help="image side of the synthetic split in pixels")
    parser.add_argument("--seed", type=int, default=2, help="seed of the synthetic split")
    parser.add_argument("--checkpoint", default="reference_model/checkpoints/tiny")
    parser.add_argument("--config", default="test-tiny", help="benchmark config name or .json path")
    parser.add_argument("--weights", help="weights folder (default: stand-ins written to a temporary folder)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    config = load_config(args.config)
    model = load_model(args.checkpoint).eval()

    with tempfile.TemporaryDirectory() as folder:
        folder = Path(folder)
        weights = Path(args.weights) if args.weights else folder / "weights"
        if not args.weights:
            make_test_weights(weights, config)
        split_path = make_synthetic_split(folder / "data", samples=args.samples, size=args.size, seed=args.seed)
        split = Split(split_path)
        zips = {
            "cutout": write_baseline("cutout", split, folder / "cutout.zip"),
            "reflayer": predict(args.checkpoint, split_path, folder / "reflayer.zip", device=torch.device("cpu")),
        }
        entries = {
            "reflayer, true alpha": lambda: mixed(split, zips["reflayer"], keep="rgb"),
            "reflayer, true colours": lambda: mixed(split, zips["reflayer"], keep="alpha"),
            "truth, hidden part blurred": lambda: completed_truth(split, blurred_fill),
            "truth, hidden part through the VAE": lambda: completed_truth(
                split, lambda layer, visible, hidden: vae_round_trip(model, layer)
            ),
            "truth, hidden part mean colour": lambda: completed_truth(split, mean_colour_fill),
        }
        for position, (name, layers) in enumerate(entries.items()):
            zips[name] = write_submission(folder / f"entry{position}.zip", layers())

        rows = {}
        for name, path in zips.items():
            result = score_submission(split_path, path, config=config, weights_dir=weights, progress=False,
                                      device="cpu", workers=1, cache_dir=folder / "cache")
            rows[name] = summary(result)
        columns = list(next(iter(rows.values())))
        print(f"split: {args.samples} samples, {args.size} px, seed {args.seed}; config {config.name}; "
              f"checkpoint {args.checkpoint}; weights {'given' if args.weights else 'stand-ins'}")
        print("| entry | " + " | ".join(columns) + " |")
        print("|---" * (len(columns) + 1) + "|")
        for name, row in rows.items():
            print(f"| {name} | " + " | ".join(f"{row[column]:.4f}" for column in columns) + " |")


if __name__ == "__main__":
    main()

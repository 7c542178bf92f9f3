"""Time `validate_submission` on large synthetic splits and record its peak memory.

The script builds, once under the cache folder, a split of the largest requested
size at `--size` pixels with generated layers, written by SplitWriter. Each smaller
count gets a split that links to the first samples' files. Every count gets a valid
submission zip of its ground-truth layers. Each validation runs in a fresh
subprocess that reports its wall time, CPU time and peak resident memory (VmHWM), so runs
do not share memory and the numbers include the interpreter and its imports.

    python benchmarks/validate_throughput.py --cache /tmp/validate-bench --samples 1000 5000
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import numpy as np

from evaluator.split import Prompt, Sample, SplitWriter

IMAGES_PER_SCENE = 10


def _photos() -> list[np.ndarray]:
    from skimage import data

    return [data.astronaut(), data.coffee(), data.chelsea(), data.rocket()]


def _layer(index: int, size: int, photos: list[np.ndarray] | None) -> np.ndarray:
    """Generate an RGBA layer, uint8 (S, S, 4), whose elliptical alpha matte moves with `index`.

    The RGB is a smooth gradient, or with `photos` a crop of a photograph, which
    gives PNG files of realistic size.
    """
    y, x = np.mgrid[0:size, 0:size].astype(np.float32) / size
    cx, cy = 0.3 + 0.4 * ((index * 37) % 100) / 100, 0.3 + 0.4 * ((index * 61) % 100) / 100
    inside = ((x - cx) / 0.25) ** 2 + ((y - cy) / 0.18) ** 2
    alpha = np.clip((1.2 - inside) * 255, 0, 255)
    if photos is None:
        rgb = np.stack([x * 255, y * 255, np.full_like(x, (index * 13) % 256)], axis=-1)
    else:
        photo = photos[index % len(photos)]
        top = (index * 7) % (photo.shape[0] - size)
        left = (index * 11) % (photo.shape[1] - size)
        rgb = photo[top:top + size, left:left + size]
    return np.concatenate([rgb, alpha[..., None]], axis=-1).astype(np.uint8)


def build_split(root: Path, count: int, size: int, content: str) -> None:
    if (root / "manifest.jsonl").exists():
        return
    photos = _photos() if content == "photo" else None
    started = time.perf_counter()
    with SplitWriter(root, overwrite=True) as writer:
        for index in range(count):
            image_id = f"scene{index // IMAGES_PER_SCENE:05d}"
            layer = _layer(index, size, photos)
            if index % IMAGES_PER_SCENE == 0:
                writer.add_image(image_id, layer[..., :3])
            writer.add_sample(
                Sample(f"s{index:06d}", image_id, size, size, "foreground",
                       Prompt(box=(8.0, 8.0, size - 8.0, size - 8.0))),
                gt_layer=layer,
                gt_visible=layer[..., 3] >= 128,
            )
    print(f"wrote split {root} ({count} samples) in {time.perf_counter() - started:.1f} s")


def build_subset(full: Path, root: Path, count: int) -> None:
    """Write a split of the first `count` samples that links to the full split's files."""
    if (root / "manifest.jsonl").exists():
        return
    root.mkdir(parents=True, exist_ok=True)
    for folder in ("images", "prompts", "gt"):
        (root / folder).symlink_to((full / folder).resolve())
    lines = (full / "manifest.jsonl").read_text().splitlines(keepends=True)[:count]
    (root / "manifest.jsonl").write_text("".join(lines))


def build_submission(split_root: Path, path: Path) -> None:
    """Zip the split's ground-truth layers as `<sample_id>.png`, the bytes unchanged."""
    if path.exists():
        return
    partial = path.with_name(path.name + ".partial")
    with zipfile.ZipFile(partial, "w") as archive:
        for line in (split_root / "manifest.jsonl").read_text().splitlines():
            sample_id = json.loads(line)["sample_id"]
            data = (split_root / f"gt/layers/{sample_id}.png").read_bytes()
            archive.writestr(f"{sample_id}.png", data, compress_type=zipfile.ZIP_STORED)
    partial.replace(path)


def _peak_rss_mib() -> float:
    """Return this process's peak resident memory in MiB.

    VmHWM starts afresh at exec, whereas Linux carries ru_maxrss over from the
    forked parent, so ru_maxrss is only the fallback where /proc is missing.
    """
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def measure_in_this_process(split_root: str, zip_path: str) -> None:
    """Validate once and print a JSON line with wall and CPU seconds, peak RSS and the outcome."""
    from evaluator.split import Split
    from evaluator.submission import validate_submission

    split = Split(split_root, check_files=False)
    baseline_mib = _peak_rss_mib()
    started = time.perf_counter()
    cpu_started = time.process_time()
    report = validate_submission(zip_path, split)
    print(json.dumps({
        "seconds": time.perf_counter() - started,
        "cpu_seconds": time.process_time() - cpu_started,
        "valid": report.valid,
        "problems": len(report.problems),
        "baseline_rss_mib": baseline_mib,
        "peak_rss_mib": _peak_rss_mib(),
    }))


def measure(split_root: Path, zip_path: Path) -> dict:
    command = [sys.executable, __file__, "--measure", str(split_root), str(zip_path)]
    output = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    return json.loads(output.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cache", type=Path, help="folder for the generated splits and zips")
    parser.add_argument("--samples", type=int, nargs="+", default=[1000, 5000],
                        help="sample counts to measure (default 1000 5000)")
    parser.add_argument("--size", type=int, default=256, help="image side in pixels (default 256)")
    parser.add_argument("--content", choices=["smooth", "photo"], default="photo",
                        help="layer RGB: crops of photographs (default) or smooth gradients")
    parser.add_argument("--repeat", type=int, default=1, help="runs per sample count (default 1)")
    parser.add_argument("--measure", nargs=2, metavar=("SPLIT", "ZIP"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure:
        measure_in_this_process(*args.measure)
        return
    if args.cache is None:
        parser.error("--cache is required")

    largest = max(args.samples)
    name = f"{args.content}-{args.size}px"
    full = args.cache / f"split-{largest}-{name}"
    build_split(full, largest, args.size, args.content)
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
          f"load average {os.getloadavg()[0]:.1f} before the runs, Python {platform.python_version()}")
    print("| samples | zip MiB | wall s | CPU s | samples/s (wall) | peak RSS MiB | RSS with split open MiB | valid |")
    print("|---|---|---|---|---|---|---|---|")
    for count in sorted(args.samples):
        root = full if count == largest else args.cache / f"split-{count}-of-{largest}-{name}"
        if root != full:
            build_subset(full, root, count)
        zip_path = args.cache / f"submission-{count}-of-{largest}-{name}.zip"
        build_submission(root, zip_path)
        for _ in range(args.repeat):
            result = measure(root, zip_path)
            print(f"| {count} | {zip_path.stat().st_size / 2**20:.0f} | {result['seconds']:.1f} | "
                  f"{result['cpu_seconds']:.1f} | {count / result['seconds']:.0f} | "
                  f"{result['peak_rss_mib']:.0f} | "
                  f"{result['baseline_rss_mib']:.0f} | {result['valid']} |")


if __name__ == "__main__":
    main()

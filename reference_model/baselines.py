"""Simple baselines that need no training; both write validated submission zips.

`cutout`: the image inside the prompt's region, alpha 255 inside and 0 outside,
with no completion of hidden parts. The region is, in order of preference, the
mask prompt, the box, or discs around the points (radius 10% of the image's
shorter side). A text-only prompt gives the whole image, and so does any prompt of
a background layer, since the background fills the frame.

`visible-oracle`: for splits with ground truth only. The image where the layer is
visible (its ground-truth visible mask), alpha = that mask; again no completion,
so it bounds what a method scores without completing occluded parts.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from evaluator.split import Sample, Split, open_split

logger = logging.getLogger(__name__)

POINT_RADIUS_FRACTION = 0.1
BASELINES = ("cutout", "visible-oracle")


def prompt_region(split: Split, sample: Sample) -> np.ndarray:
    """Return the cut-out region of a sample as bool (height, width)."""
    height, width = sample.height, sample.width
    if sample.layer_kind == "background":
        return np.ones((height, width), bool)
    mask = split.read_mask_prompt(sample)
    if mask is not None:
        return mask
    prompt = sample.prompt
    if prompt.box is not None:
        x0, y0, x1, y1 = prompt.box
        region = np.zeros((height, width), bool)
        region[int(np.floor(y0)):int(np.ceil(y1)), int(np.floor(x0)):int(np.ceil(x1))] = True
        return region
    if prompt.points is not None:
        radius = POINT_RADIUS_FRACTION * min(width, height)
        yy, xx = np.mgrid[0:height, 0:width] + 0.5
        region = np.zeros((height, width), bool)
        for x, y in prompt.points:
            region |= (xx - x) ** 2 + (yy - y) ** 2 <= radius**2
        return region
    return np.ones((height, width), bool)


def _layer(image: np.ndarray, region: np.ndarray) -> np.ndarray:
    """uint8 RGBA (H, W, 4): the image's RGB everywhere, alpha 255 inside the region."""
    alpha = region.astype(np.uint8)[..., None] * 255
    return np.concatenate([image, alpha], axis=-1)


def cutout_predictions(split: Split) -> Iterator[tuple[str, list[np.ndarray]]]:
    for sample in split.samples:
        yield sample.sample_id, [_layer(split.read_image(sample), prompt_region(split, sample))]


def visible_oracle_predictions(split: Split) -> Iterator[tuple[str, list[np.ndarray]]]:
    for sample in split.samples:
        yield sample.sample_id, [_layer(split.read_image(sample), split.read_gt_visible(sample))]


def check_baseline_split(kind: str, split: Split) -> None:
    """Raise ValueError for an unknown baseline, or for visible-oracle on a split without gt/."""
    if kind not in BASELINES:
        raise ValueError(f"unknown baseline {kind!r}; choose one of {', '.join(BASELINES)}")
    if kind == "visible-oracle" and not split.has_ground_truth:
        raise ValueError(
            f"the visible-oracle baseline reads gt/visible, but split {split.path} has no gt/ folder; "
            "use the full split, not its public inputs package"
        )


def write_baseline(kind: str, split: str | Path | Split, out: str | Path, metadata: dict | None = None) -> Path:
    """Write the `kind` baseline's submission zip for `split`; returns its path.

    `metadata` adds entries to the zip's metadata.json.
    """
    # Imported here because it imports torch, so `check_baseline_split` loads fast.
    from reference_model.predict import validated_write

    opened = split if isinstance(split, Split) else open_split(split)
    check_baseline_split(kind, opened)
    if kind == "visible-oracle":
        predictions = visible_oracle_predictions(opened)
    else:
        predictions = cutout_predictions(opened)
    logger.info("writing the %s baseline for %d samples of %s", kind, len(opened), opened.path)
    return validated_write(
        out, opened, predictions, {**(metadata or {}), "method": f"baseline:{kind}"}, max_candidates=1
    )

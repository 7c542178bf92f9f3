"""A small deterministic split for RefLayer tests: coloured discs over a photograph.

Each scene is a crop of a scikit-image photograph with two overlapping discs; the
second disc occludes part of the first. Samples refer to either disc (foreground)
or to the photograph (background), with point, box, mask, text and text+box
prompts in rotation.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image
from skimage import data as skimage_data

from evaluator.split import Prompt, Sample, SplitWriter

COLOURS = {"red": (220, 40, 40), "green": (40, 200, 60), "blue": (50, 80, 230), "yellow": (230, 210, 40)}
PROMPT_KINDS = ("point", "box", "mask", "text", "text+box")


def _photo(rng: np.random.Generator, size: int) -> np.ndarray:
    photo = skimage_data.astronaut() if rng.random() < 0.5 else skimage_data.coffee()
    top = int(rng.integers(0, photo.shape[0] - 256))
    left = int(rng.integers(0, photo.shape[1] - 256))
    crop = photo[top:top + 256, left:left + 256]
    return np.array(Image.fromarray(crop).resize((size, size), Image.BILINEAR))


def _disc(size: int, rng: np.random.Generator) -> tuple[np.ndarray, tuple[float, float], float]:
    radius = float(rng.uniform(0.15, 0.28) * size)
    cx, cy = rng.uniform(radius, size - radius, 2)
    yy, xx = np.mgrid[0:size, 0:size] + 0.5
    return (xx - cx) ** 2 + (yy - cy) ** 2 <= radius**2, (float(cx), float(cy)), radius


def _prompt(kind: str, mask: np.ndarray, centre, text: str, size: int) -> tuple[Prompt, np.ndarray | None]:
    ys, xs = np.nonzero(mask)
    box = (float(xs.min()), float(ys.min()), float(xs.max() + 1), float(ys.max() + 1))
    if kind == "point":
        return Prompt(points=((min(centre[0], size), min(centre[1], size)),)), None
    if kind == "box":
        return Prompt(box=box), None
    if kind == "mask":
        return Prompt(), mask
    if kind == "text":
        return Prompt(text=text), None
    return Prompt(text=text, box=box), None


def make_disc_split(root: str | Path, scenes: int = 4, size: int = 64, seed: int = 0) -> Path:
    """Write a split of `scenes` images with three samples each (two discs, background)."""
    rng = np.random.default_rng(seed)
    root = Path(root)
    names = list(COLOURS)
    with SplitWriter(root, overwrite=True) as writer:
        for scene in range(scenes):
            image = _photo(rng, size)
            background = image.copy()
            picked = rng.choice(len(names), 2, replace=False)
            discs = [_disc(size, rng) for _ in range(2)]
            for (mask, _, _), colour_index in zip(discs, picked, strict=True):
                image[mask] = COLOURS[names[colour_index]]
            image_id = f"scene{scene:03d}"
            writer.add_image(image_id, image)
            covered = np.zeros((size, size), bool)
            for order in (1, 0):
                mask, centre, _ = discs[order]
                visible = mask & ~covered
                covered |= mask
                layer = np.zeros((size, size, 4), np.uint8)
                layer[mask, :3] = COLOURS[names[picked[order]]]
                layer[mask, 3] = 255
                kind = PROMPT_KINDS[(scene * 3 + order) % len(PROMPT_KINDS)]
                prompt, mask_prompt = _prompt(kind, visible if visible.any() else mask, centre, f"the {names[picked[order]]} disc", size)
                hidden = mask & ~visible
                writer.add_sample(
                    Sample(
                        sample_id=f"{image_id}_disc{order}", image_id=image_id, width=size, height=size,
                        layer_kind="foreground", prompt=prompt, category="disc",
                        occlusion_rate=float(hidden.sum() / mask.sum()),
                    ),
                    gt_layer=layer, gt_visible=visible, mask_prompt=mask_prompt,
                )
            layer = np.concatenate([background, np.full((size, size, 1), 255, np.uint8)], axis=-1)
            writer.add_sample(
                Sample(
                    sample_id=f"{image_id}_background", image_id=image_id, width=size, height=size,
                    layer_kind="background", prompt=Prompt(text="the background"), category="background",
                    occlusion_rate=float(covered.mean()),
                ),
                gt_layer=layer, gt_visible=~covered,
            )
    return root

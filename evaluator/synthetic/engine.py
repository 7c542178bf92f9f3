"""Write synthetic splits: scenes drawn from a seed, one sample per layer.

Each scene gives one background sample and one foreground sample per object, in
that order, until the split has the requested number of samples (the last scene
may contribute only some of its layers). Image ids are `<split>_<scene:05d>`;
sample ids add `_bg` for the background and `_o<k>` for the k-th object counted
from the back (o0 is the rearmost). Sample number i of a split gets prompt
type PROMPT_TYPES[i % 6], so all six types are equally represented. Scene k of the
split named `name` is drawn from its own generator seeded with (seed, crc32(name),
k), so the output is byte-identical for the same arguments, and the val and test
splits of one seed differ.
"""

from __future__ import annotations

import logging
import re
import time
import zlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from evaluator.split import Sample, SplitWriter
from evaluator.synthetic.prompts import PROMPT_TYPES, make_prompt
from evaluator.synthetic.scene import MIN_SIZE, Scene, make_scene, occlusion_rate
from evaluator.synthetic.text import background_text, describe_scene

logger = logging.getLogger(__name__)

DEFAULT_SIZE = 128
DEFAULT_SPLIT_NAMES = ("val", "test")
# Split names prefix image and sample ids, which allow at most 128 characters.
SPLIT_NAME_PATTERN = re.compile(r"^[A-Za-z0-9_-]{1,100}$")


def scene_rng(seed: int, name: str, index: int) -> np.random.Generator:
    """The generator of scene `index` of split `name`."""
    return np.random.default_rng([seed, zlib.crc32(name.encode("utf-8")), index])


def generate_scenes(
    size: int, seed: int, name: str = "val"
) -> Iterator[tuple[int, Scene, np.random.Generator]]:
    """Yield (index, scene, generator) forever; the generator continues for the scene's prompts."""
    index = 0
    while True:
        rng = scene_rng(seed, name, index)
        yield index, make_scene(size, rng), rng
        index += 1


@dataclass(frozen=True)
class LayerSample:
    """One layer of a scene with what its sample needs; `box` None means the visible box."""

    suffix: str
    layer_kind: str
    layer: np.ndarray  # uint8 (H, W, 4)
    visible: np.ndarray  # bool (H, W)
    support: np.ndarray  # bool (H, W)
    text: str
    box: tuple[float, float, float, float] | None
    category: str
    tags: tuple[str, ...]


def scene_layers(scene: Scene) -> list[LayerSample]:
    """List the layers of a scene: the background first, then the objects back to front."""
    size = scene.image.shape[0]
    layers = [
        LayerSample(
            suffix="bg",
            layer_kind="background",
            layer=scene.background_layer,
            visible=scene.background_visible,
            support=np.ones_like(scene.background_visible),
            text=background_text(scene),
            box=(0.0, 0.0, float(size), float(size)),
            category="background",
            tags=("synthetic", f"background:{scene.background_name}"),
        )
    ]
    for index, (obj, text) in enumerate(zip(scene.objects, describe_scene(scene), strict=True)):
        spec = obj.spec
        tags = ["synthetic", f"background:{scene.background_name}"]
        if spec.colour is not None:
            tags += [f"colour:{spec.colour}", f"texture:{spec.texture}"]
        tags.append("semi-transparent" if spec.opacity < 1.0 else "opaque")
        layers.append(
            LayerSample(
                suffix=f"o{index}",
                layer_kind="foreground",
                layer=obj.layer,
                visible=obj.visible,
                support=obj.support,
                text=text,
                box=None,
                category=spec.category,
                tags=tuple(tags),
            )
        )
    return layers


def _check_arguments(samples: int, size: int, name: str) -> None:
    if samples < 1:
        raise ValueError(f"samples must be at least 1, got {samples}")
    if size < MIN_SIZE:
        raise ValueError(f"size must be at least {MIN_SIZE} px, got {size}")
    if not SPLIT_NAME_PATTERN.match(name):
        raise ValueError(
            f"invalid split name {name!r}; use 1 to 100 characters of A-Z, a-z, 0-9, _ and -"
        )


def make_synthetic_split(
    out_dir: str | Path,
    samples: int,
    size: int = DEFAULT_SIZE,
    seed: int = 0,
    name: str = "val",
    overwrite: bool = False,
) -> Path:
    """Write the split `out_dir/name` with `samples` samples of `size` x `size` pixels.

    Returns the split folder. Raises ValueError for a non-positive sample count, a
    size below MIN_SIZE or a split name unfit for sample ids, and FileExistsError
    when the folder is not empty and `overwrite` is False.
    """
    _check_arguments(samples, size, name)
    root = Path(out_dir) / name
    started = time.monotonic()
    logger.info("writing synthetic split %s: %d samples, %d px, seed %d", root, samples, size, seed)

    written = 0
    images = 0
    with SplitWriter(root, overwrite=overwrite) as writer:
        for scene_index, scene, rng in generate_scenes(size, seed, name):
            image_id = f"{name}_{scene_index:05d}"
            writer.add_image(image_id, scene.image)
            images += 1
            for layer in scene_layers(scene):
                if written == samples:
                    break
                sample_id = f"{image_id}_{layer.suffix}"
                prompt, mask_prompt = make_prompt(
                    PROMPT_TYPES[written % len(PROMPT_TYPES)],
                    layer.visible,
                    layer.text,
                    rng,
                    mask_path=f"prompts/{sample_id}.png",
                    box=layer.box,
                )
                sample = Sample(
                    sample_id=sample_id,
                    image_id=image_id,
                    width=size,
                    height=size,
                    layer_kind=layer.layer_kind,
                    prompt=prompt,
                    gt_kind="rgba",
                    category=layer.category,
                    occlusion_rate=round(occlusion_rate(layer.support, layer.visible), 6),
                    tags=layer.tags,
                )
                writer.add_sample(sample, layer.layer, layer.visible, mask_prompt)
                written += 1
            if written == samples:
                break

    logger.info(
        "wrote %s: %d samples, %d images in %.2f s",
        root,
        written,
        images,
        time.monotonic() - started,
    )
    return root


def make_synthetic_splits(
    out_dir: str | Path,
    samples: int,
    size: int = DEFAULT_SIZE,
    seed: int = 0,
    names: Sequence[str] = DEFAULT_SPLIT_NAMES,
    overwrite: bool = False,
) -> dict[str, Path]:
    """Write one split per name under `out_dir`, each with `samples` samples; returns name -> folder."""
    if len(set(names)) != len(names) or not names:
        raise ValueError(f"split names must be distinct and at least one, got {list(names)}")
    for name in names:
        _check_arguments(samples, size, name)
    return {
        name: make_synthetic_split(out_dir, samples, size, seed, name, overwrite) for name in names
    }

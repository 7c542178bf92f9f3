"""Model inputs and training targets read from a split.

Every image is stretched to the model's square resolution (aspect ratio not kept)
and predictions are stretched back to the sample's width and height. The layer
target's RGB is the layer composited over mid-gray, the neutral background the
evaluator composites over, so pixels outside the alpha carry no colour.
"""

from __future__ import annotations

import logging

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from evaluator.split import Sample, Split
from reference_model.canvas import render_canvas

logger = logging.getLogger(__name__)

MID_GRAY = 0.5
# Largest difference, in 0..255 levels of any channel, between the image and a
# layer's colour at which the image still shows that colour unchanged.
VISIBILITY_TOLERANCE = 8


def resize_array(array: np.ndarray, resolution: int, resample=Image.BICUBIC) -> np.ndarray:
    """Stretch float (H, W, C) in [0, 1] to (resolution, resolution, C)."""
    channels = [
        np.asarray(Image.fromarray(array[..., c].astype(np.float32), mode="F").resize((resolution, resolution), resample))
        for c in range(array.shape[-1])
    ]
    return np.clip(np.stack(channels, axis=-1), 0.0, 1.0)


def to_tensor(array: np.ndarray) -> torch.Tensor:
    """Convert float (H, W, C) in [0, 1] to a tensor (C, H, W) in [-1, 1]."""
    return torch.from_numpy(np.ascontiguousarray(array.transpose(2, 0, 1))) * 2 - 1


def composite_over_gray(layer: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Split a uint8 RGBA layer (H, W, 4) into RGB over mid-gray and alpha, floats in [0, 1]."""
    rgba = layer.astype(np.float32) / 255
    alpha = rgba[..., 3:]
    rgb = rgba[..., :3] * alpha + MID_GRAY * (1 - alpha)
    return rgb, alpha


def visibility_target(image: np.ndarray, layer: np.ndarray) -> np.ndarray:
    """Mark where the image shows the layer's own colour: bool (H, W).

    For background layers this is the visibility decoder's target.

    `image` is uint8 RGB (H, W, 3) and `layer` uint8 RGBA (H, W, 4). A pixel counts
    when the layer's alpha is at least 128 and every channel of the image is within
    VISIBILITY_TOLERANCE of the layer's colour. Unlike the ground-truth visible mask,
    this leaves out pixels that a semi-transparent layer in front tints, pixels of a
    semi-transparent layer (the image mixes it with what lies behind) and soft edges.
    """
    difference = np.abs(image.astype(np.int16) - layer[..., :3].astype(np.int16)).max(axis=-1)
    return (layer[..., 3] >= 128) & (difference <= VISIBILITY_TOLERANCE)


def inputs_from_arrays(
    pixels: np.ndarray, mask_prompt: np.ndarray | None, sample: Sample, resolution: int
) -> tuple[torch.Tensor, torch.Tensor, str]:
    """Build the model's inputs from an image (uint8 (H, W, 3)) and its mask prompt (bool (H, W) or None).

    Returns the image (3, R, R) and canvas (3, R, R) in [-1, 1], and the text ("" when absent).
    """
    image = pixels.astype(np.float32) / 255
    canvas = render_canvas(sample.prompt, sample.width, sample.height, resolution, mask_prompt)
    text = sample.prompt.text or ""
    return to_tensor(resize_array(image, resolution)), to_tensor(canvas), text


class LayerDataset(Dataset):
    """Training examples of a split with ground truth, decoded once and kept in memory.

    Samples with `gt_kind: amodal_mask` are skipped because their layer has no RGB
    ground truth. Each item is a dict: `image`, `canvas`, `layer_rgb` (3, R, R) in
    [-1, 1], `alpha` and `visibility` (1, R, R) in [0, 1] (see `visibility_target`),
    `background` (bool, the layer kind), `text` (str) and `index`.
    """

    def __init__(self, split: Split, resolution: int, cache: bool = True):
        if not split.has_ground_truth:
            raise ValueError(f"split {split.path} has no gt/ folder; training needs a split with ground truth")
        self.split = split
        self.resolution = resolution
        self.samples = [sample for sample in split.samples if sample.gt_kind == "rgba"]
        skipped = len(split.samples) - len(self.samples)
        if skipped:
            logger.info("skipping %d amodal_mask samples of %s (no RGB ground truth)", skipped, split.path)
        if not self.samples:
            raise ValueError(f"split {split.path} has no sample with gt_kind 'rgba' to train on")
        self.cache = cache
        self._items: dict[int, dict] = {}

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> dict:
        if index in self._items:
            return self._items[index]
        sample = self.samples[index]
        pixels = self.split.read_image(sample)
        image, canvas, text = inputs_from_arrays(pixels, self.split.read_mask_prompt(sample), sample, self.resolution)
        layer = self.split.read_gt_layer(sample)
        rgb, alpha = composite_over_gray(layer)
        visibility = visibility_target(pixels, layer).astype(np.float32)[..., None]
        item = {
            "image": image,
            "canvas": canvas,
            "layer_rgb": to_tensor(resize_array(rgb, self.resolution)),
            "alpha": torch.from_numpy(resize_array(alpha, self.resolution, Image.BILINEAR).transpose(2, 0, 1).copy()),
            "visibility": torch.from_numpy(
                resize_array(visibility, self.resolution, Image.BILINEAR).transpose(2, 0, 1).copy()
            ),
            "background": sample.layer_kind == "background",
            "text": text,
            "index": index,
        }
        if self.cache:
            self._items[index] = item
        return item

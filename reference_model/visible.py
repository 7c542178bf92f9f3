"""Keep the input image's pixels where a predicted layer is visible.

Where a layer is visible, the input image shows it, so the layer's correct colour
there is the image's colour. RefLayer's colours pass through its VAE, which blurs
them and shifts them. `preserve_visible` copies the image into a predicted layer
where the layer is estimated visible and keeps the model's colours elsewhere, in
the hidden part the model completed. The alpha channel stays the model's, with two
facts of the prompt applied first:

- a background layer fills the frame, so its alpha is 255 everywhere;
- the mask prompt of a foreground layer is its visible part, so the alpha is 255
  there and those pixels count as visible.

A pixel is estimated visible when its alpha is at least 128 and the model's colour
is within `tolerance` of the image's. The difference is the mean absolute
difference over R, G and B, in [0, 1]. It is taken against the image blurred by a
Gaussian of `sigma` pixels, so the VAE's blur alone does not count. Pixels the
model repainted, such as an occluder it removed, differ by more and keep the
model's colours.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class VisibleSettings:
    """Settings of the visible-pixel estimate of `preserve_visible`."""

    tolerance: float = 0.35
    sigma: float = 1.0

    def __post_init__(self) -> None:
        if not 0.0 <= self.tolerance <= 1.0:
            raise ValueError(f"the visible tolerance must be in [0, 1], got {self.tolerance}")
        if not (math.isfinite(self.sigma) and self.sigma >= 0.0):
            raise ValueError(f"the visible blur sigma must be a finite number of pixels >= 0, got {self.sigma}")


DEFAULT_SETTINGS = VisibleSettings()


def preserve_visible(
    layer: np.ndarray,
    image: np.ndarray,
    layer_kind: str,
    mask_prompt: np.ndarray | None = None,
    settings: VisibleSettings = DEFAULT_SETTINGS,
) -> np.ndarray:
    """Copy `layer` (uint8 RGBA (H, W, 4)) and give it the image's colours where it is visible.

    `image` is the input, uint8 RGB (H, W, 3). `mask_prompt` is a bool (H, W) mask or None.
    """
    if layer.shape[:2] != image.shape[:2]:
        raise ValueError(f"the layer is {layer.shape[1]}x{layer.shape[0]} px but the image is "
                         f"{image.shape[1]}x{image.shape[0]} px; resize the layer to the image first")
    rgb = layer[..., :3]
    alpha = layer[..., 3].copy()
    if layer_kind == "background":
        alpha[:] = 255
    has_mask = mask_prompt is not None and layer_kind == "foreground"
    if has_mask:
        alpha[mask_prompt] = 255

    reference = image.astype(np.float32)
    if settings.sigma > 0:
        from scipy import ndimage

        reference = ndimage.gaussian_filter(reference, (settings.sigma, settings.sigma, 0))
    difference = np.abs(reference - rgb.astype(np.float32)).mean(axis=-1) / 255
    visible = (alpha >= 128) & (difference <= settings.tolerance)
    if has_mask:
        visible |= mask_prompt
    out = np.concatenate([np.where(visible[..., None], image, rgb), alpha[..., None]], axis=-1)
    return out.astype(np.uint8)

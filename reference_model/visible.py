"""Keep the input image's pixels where a predicted layer is visible, and complete the rest.

Where a layer is visible, the input image shows it, so the layer's correct colour
there is the image's colour. RefLayer's colours pass through its VAE, which blurs
them and shifts them. `preserve_visible` copies the image into a predicted layer
where the layer is estimated visible. The alpha channel stays the model's, with two
facts of the prompt applied first:

- a background layer fills the frame, so its alpha is 255 everywhere;
- the mask prompt of a foreground layer is its visible part, so the alpha is 255
  there and those pixels count as visible.

Which pixels are visible comes from one of two estimates:

- a visibility map, when the caller passes one: visible where its probability is
  at least `threshold` and the alpha at least 128. `predict` passes the map of
  RefLayer's visibility decoder for background layers;
- otherwise the colours: visible where the alpha is at least 128 and the model's
  colour is within `tolerance` of the image's. The difference is the mean absolute
  difference over R, G and B, in [0, 1], taken against the image blurred by a
  Gaussian of `sigma` pixels, so the VAE's blur alone does not count.

The other pixels with alpha above 0, the hidden part the model completed, keep the
model's colours (`fill="model"`) or take the visible pixels' colours spread by a
normalised Gaussian of `fill_sigma` pixels (`fill="nearby"`): each such pixel gets
the Gaussian-weighted mean of the visible pixels near it, and the mean of all
visible pixels where none lies within 4 `fill_sigma`. A layer with no visible pixel
keeps the model's colours.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

FILLS = ("model", "nearby")


@dataclass(frozen=True)
class VisibleSettings:
    """Settings of `preserve_visible`: the visible-pixel estimate and the hidden part's colours."""

    tolerance: float = 0.35
    sigma: float = 1.0
    threshold: float = 0.5
    fill: str = "nearby"
    fill_sigma: float = 4.0

    def __post_init__(self) -> None:
        if not 0.0 <= self.tolerance <= 1.0:
            raise ValueError(f"the visible tolerance must be in [0, 1], got {self.tolerance}")
        if not (math.isfinite(self.sigma) and self.sigma >= 0.0):
            raise ValueError(f"the visible blur sigma must be a finite number of pixels >= 0, got {self.sigma}")
        if not 0.0 <= self.threshold <= 1.0:
            raise ValueError(f"the visibility threshold must be in [0, 1], got {self.threshold}")
        if self.fill not in FILLS:
            raise ValueError(f"unknown hidden-part fill {self.fill!r}; use one of {', '.join(FILLS)}")
        if not (math.isfinite(self.fill_sigma) and self.fill_sigma > 0.0):
            raise ValueError(f"the fill sigma must be a finite number of pixels > 0, got {self.fill_sigma}")

    def to_dict(self) -> dict:
        """Return the settings as a submission's metadata records them."""
        return {
            "tolerance": self.tolerance, "sigma": self.sigma, "threshold": self.threshold,
            "fill": self.fill, "fill_sigma": self.fill_sigma,
        }


DEFAULT_SETTINGS = VisibleSettings()


def nearby_colours(image: np.ndarray, known: np.ndarray, sigma: float) -> np.ndarray:
    """Spread the colours of `known` pixels: float32 (H, W, 3), the fill of `fill="nearby"`.

    `image` is uint8 RGB (H, W, 3) and `known` a bool (H, W) mask with at least one pixel.
    """
    weights = ndimage.gaussian_filter(known.astype(np.float32), sigma)
    spread = ndimage.gaussian_filter(image.astype(np.float32) * known[..., None], (sigma, sigma, 0))
    reached = weights > 1e-6
    colours = np.empty(image.shape, np.float32)
    colours[reached] = spread[reached] / weights[reached, None]
    colours[~reached] = image[known].mean(axis=0)
    return colours


def preserve_visible(
    layer: np.ndarray,
    image: np.ndarray,
    layer_kind: str,
    mask_prompt: np.ndarray | None = None,
    settings: VisibleSettings = DEFAULT_SETTINGS,
    visibility: np.ndarray | None = None,
) -> np.ndarray:
    """Copy `layer` (uint8 RGBA (H, W, 4)) with the image's colours where it is visible.

    `image` is the input, uint8 RGB (H, W, 3). `mask_prompt` is a bool (H, W) mask or
    None. `visibility` is the visibility decoder's float (H, W) map in [0, 1], or None
    to estimate the visible pixels from the colours.
    """
    for name, array in (("layer", layer), ("visibility map", visibility)):
        if array is not None and array.shape[:2] != image.shape[:2]:
            raise ValueError(f"the {name} is {array.shape[1]}x{array.shape[0]} px but the image is "
                             f"{image.shape[1]}x{image.shape[0]} px; resize the {name} to the image first")
    if visibility is not None and not (np.isfinite(visibility).all() and 0 <= visibility.min() <= visibility.max() <= 1):
        raise ValueError(
            f"the visibility map must hold probabilities in [0, 1], found values from {np.min(visibility)} to "
            f"{np.max(visibility)}; pass the decoder's sigmoid output, not logits or 0..255 values"
        )
    rgb = layer[..., :3]
    alpha = layer[..., 3].copy()
    if layer_kind == "background":
        alpha[:] = 255
    has_mask = mask_prompt is not None and layer_kind == "foreground"
    if has_mask:
        alpha[mask_prompt] = 255

    if visibility is not None:
        visible = (alpha >= 128) & (visibility >= settings.threshold)
    else:
        reference = image.astype(np.float32)
        if settings.sigma > 0:
            reference = ndimage.gaussian_filter(reference, (settings.sigma, settings.sigma, 0))
        difference = np.abs(reference - rgb.astype(np.float32)).mean(axis=-1) / 255
        visible = (alpha >= 128) & (difference <= settings.tolerance)
    if has_mask:
        visible |= mask_prompt

    colours = rgb
    hidden = (alpha > 0) & ~visible
    if settings.fill == "nearby" and visible.any() and hidden.any():
        colours = rgb.copy()
        colours[hidden] = np.round(nearby_colours(image, visible, settings.fill_sigma)[hidden]).astype(np.uint8)
    out = np.concatenate([np.where(visible[..., None], image, colours), alpha[..., None]], axis=-1)
    return out.astype(np.uint8)

"""The prompt canvas: points, box and mask drawn into one RGB image.

Coordinates are pixels of the input image with the origin at the top-left corner
(x to the right, y downwards), as in split manifests. The canvas is drawn at the
model's square resolution, so coordinates are scaled by resolution / width and
resolution / height. Values are floats in [0, 1], channels (R, G, B):

- empty pixels are blue (0, 0, 1);
- mask pixels are red: R = 1, B = 0;
- the box is green: its interior G = 0.5 and its outline (about resolution / 64 px
  thick, at least 1 px) G = 1, with B = 0 in both;
- each point is a Gaussian peak h (sigma = resolution / 32 px) added as white:
  R, G and B are raised to at least h, so a point's centre is near white.

Text does not appear on the canvas; an image with a text-only prompt has the empty
canvas.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

from evaluator.split import Prompt

BOX_INTERIOR = 0.5
BOX_OUTLINE = 1.0


def empty_canvas(resolution: int) -> np.ndarray:
    """The canvas with nothing drawn, float32 (resolution, resolution, 3)."""
    canvas = np.zeros((resolution, resolution, 3), np.float32)
    canvas[..., 2] = 1.0
    return canvas


def render_canvas(
    prompt: Prompt,
    width: int,
    height: int,
    resolution: int,
    mask: np.ndarray | None = None,
) -> np.ndarray:
    """Draw the prompt at `resolution`, float32 (resolution, resolution, 3) in [0, 1].

    `width` and `height` are the input image's size; `mask` is the mask prompt as
    bool (height, width), required when `prompt.mask` is set.
    """
    if prompt.mask is not None and mask is None:
        raise ValueError(f"prompt has mask {prompt.mask!r} but no mask array was given; read it with Split.read_mask_prompt")
    canvas = empty_canvas(resolution)
    scale_x = resolution / width
    scale_y = resolution / height

    if mask is not None:
        if mask.shape != (height, width):
            raise ValueError(f"mask prompt has shape {mask.shape}, expected {(height, width)} (height, width)")
        resized = Image.fromarray(mask.astype(np.uint8) * 255).resize((resolution, resolution), Image.NEAREST)
        inside = np.asarray(resized) >= 128
        canvas[inside, 0] = 1.0
        canvas[inside, 2] = 0.0

    if prompt.box is not None:
        _draw_box(canvas, prompt.box, scale_x, scale_y)

    if prompt.points is not None:
        heat = _point_heatmap(prompt.points, scale_x, scale_y, resolution)
        np.maximum(canvas, heat[..., None], out=canvas)
    return canvas


def _draw_box(canvas: np.ndarray, box, scale_x: float, scale_y: float) -> None:
    resolution = canvas.shape[0]
    x0 = int(np.clip(np.floor(box[0] * scale_x), 0, resolution - 1))
    y0 = int(np.clip(np.floor(box[1] * scale_y), 0, resolution - 1))
    x1 = int(np.clip(np.ceil(box[2] * scale_x), x0 + 1, resolution))
    y1 = int(np.clip(np.ceil(box[3] * scale_y), y0 + 1, resolution))
    thickness = max(1, round(resolution / 64))

    region = canvas[y0:y1, x0:x1]
    region[..., 1] = BOX_INTERIOR
    region[..., 2] = 0.0
    for rows, cols in (
        (slice(y0, y0 + thickness), slice(x0, x1)),
        (slice(max(y1 - thickness, y0), y1), slice(x0, x1)),
        (slice(y0, y1), slice(x0, x0 + thickness)),
        (slice(y0, y1), slice(max(x1 - thickness, x0), x1)),
    ):
        canvas[rows, cols, 1] = BOX_OUTLINE


def _point_heatmap(points, scale_x: float, scale_y: float, resolution: int) -> np.ndarray:
    sigma = resolution / 32
    # Pixel centres, so a point at (x, y) peaks at the pixel that contains it.
    centres = np.arange(resolution, dtype=np.float32) + 0.5
    heat = np.zeros((resolution, resolution), np.float32)
    for x, y in points:
        dx = (centres - x * scale_x) ** 2
        dy = (centres - y * scale_y) ** 2
        peak = np.exp(-(dy[:, None] + dx[None, :]) / (2 * sigma**2))
        np.maximum(heat, peak, out=heat)
    return heat

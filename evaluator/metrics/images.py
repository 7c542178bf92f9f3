"""Image preparation at the evaluation size and the mask metrics.

Every layer is brought to `eval_size` x `eval_size` the same way, for the ground
truth and the prediction alike:

1. The straight-alpha layer x (uint8 RGBA) is composited over the neutral background
   at its own size: x̂ = x_rgb * x_a + i_bkgd * (1 - x_a). This is "the RGB of the
   layer". `i_bkgd` is first rounded to 8 bits (0.5 becomes 128/255), so the
   background of every image, masked or composited, is the same byte value.
2. x̂ and x_a are resized to eval_size with antialiased bilinear filtering
   (`torch.nn.functional.interpolate(mode="bilinear", antialias=True)`; for
   upsampling this is plain bilinear). Compositing before resizing equals resizing
   premultiplied colour and alpha, so no colour of a transparent pixel leaks in.
3. x̂ is rounded to uint8. The visible mask v used for x ⊙ v is resized as an
   area fraction the same way and thresholded at 0.5.

The amodal masks are compared at the sample's own resolution, not at eval_size:
â = p_a >= 0.5 and A = g_a >= 0.5 on the 8-bit alpha (a >= 128), with v as stored.
Thresholding resized masks leaves slivers along soft alpha edges (a synthetic layer
with nothing hidden showed 2 hidden pixels at 64 px), which would make `iou_occ`
defined, and noisy, for layers with no occlusion. For the same reason a sample has
nothing hidden exactly when A∖v is empty at its own resolution.

"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F


def background_bytes(i_bkgd: tuple[float, float, float]) -> np.ndarray:
    """i_bkgd rounded to 8 bits, uint8 (3,)."""
    return np.array([round(value * 255) for value in i_bkgd], dtype=np.uint8)


def _resize(planes: torch.Tensor, size: int) -> torch.Tensor:
    """(C, H, W) float -> (C, size, size), antialiased bilinear."""
    if planes.shape[-2:] == (size, size):
        return planes
    resized = F.interpolate(planes[None], size=(size, size), mode="bilinear", antialias=True, align_corners=False)
    return resized[0]


def prepare_layer(layer: np.ndarray, size: int, background: np.ndarray) -> np.ndarray:
    """Composite and resize a layer: uint8 (H, W, 4) -> x̂ uint8 (S, S, 3)."""
    if layer.ndim != 3 or layer.shape[2] != 4 or layer.dtype != np.uint8:
        raise ValueError(f"a layer must be uint8 (H, W, 4), found {layer.dtype} {layer.shape}")
    # Planar (4, H, W) in 0..255. Compositing contiguous planes took 0.34 ms against
    # 0.45 ms on the interleaved layout (256 px, one core), with bit-identical results.
    pixels = torch.from_numpy(np.ascontiguousarray(layer.transpose(2, 0, 1))).float()
    alpha = pixels[3:] / 255
    fill = torch.from_numpy(background.astype(np.float32)).view(3, 1, 1)
    composite = pixels[:3] * alpha + fill * (1 - alpha)
    rgb = _resize(composite, size).round().clamp(0, 255).to(torch.uint8).permute(1, 2, 0).numpy()
    return np.ascontiguousarray(rgb)


def amodal_mask(layer: np.ndarray) -> np.ndarray:
    """x_a >= 0.5 at the layer's own resolution: bool (H, W)."""
    return layer[:, :, 3] >= 128


def prepare_mask(mask: np.ndarray, size: int) -> np.ndarray:
    """Resize a bool (H, W) mask as its area fraction and threshold at 0.5 -> bool (S, S)."""
    plane = torch.from_numpy(np.ascontiguousarray(mask, dtype=np.float32))[None]
    return (_resize(plane, size)[0] >= 0.5).numpy()


def restrict(rgb: np.ndarray, mask: np.ndarray, background: np.ndarray) -> np.ndarray:
    """x ⊙ v: the image inside the mask, the background outside. uint8 (S, S, 3)."""
    return np.where(mask[..., None], rgb, background[None, None, :])


def mask_iou(pred: np.ndarray, target: np.ndarray) -> float:
    """|pred ∩ target| / |pred ∪ target|; NaN when the target is empty."""
    target_area = int(target.sum())
    if target_area == 0:
        return math.nan
    union = int(np.logical_or(pred, target).sum())
    return int(np.logical_and(pred, target).sum()) / union


def amodal_ious(pred_mask: np.ndarray, gt_mask: np.ndarray, visible: np.ndarray) -> tuple[float, float]:
    """(`iou`, `iou_occ`): the IoU of â with A, and of â∖v with A∖v (NaN when A∖v is empty)."""
    hidden = ~visible
    return mask_iou(pred_mask, gt_mask), mask_iou(pred_mask & hidden, gt_mask & hidden)

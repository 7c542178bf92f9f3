"""Batched forward passes of the metric networks on prepared uint8 images."""

from __future__ import annotations

import logging
import math
from pathlib import Path

import lpips
import numpy as np
import torch

from evaluator.config import BenchmarkConfig
from evaluator.metrics import MIN_DIRECTION_NORM
from evaluator.metrics.networks import load_clip, load_inception, load_lpips

logger = logging.getLogger(__name__)


class DeviceError(RuntimeError):
    """A requested device that this machine does not have."""


def pick_device(device: str | torch.device | None = None) -> torch.device:
    """Return the requested device, else CUDA when present, else the CPU."""
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise DeviceError("device cuda was requested but torch finds no CUDA device; use --device cpu")
    return device


class MetricNetworks:
    """LPIPS, CLIP and the FID Inception on one device, fed uint8 (N, S, S, 3) images.

    Each call runs in slices of at most `batch_size` images, so a caller may pass
    all candidates of a batch of samples at once.
    """

    def __init__(self, weights_dir: Path, config: BenchmarkConfig, device: torch.device, batch_size: int = 16):
        self.device = device
        self.batch_size = batch_size
        self.lpips = load_lpips(weights_dir, config).to(device)
        self.clip = load_clip(weights_dir, config).to(device)
        self.inception = load_inception(weights_dir, config).to(device)
        self._feature_shapes: dict[int, dict] = {}
        logger.info("loaded the metric networks from %s on %s", weights_dir, device)

    def _unit_range(self, images: np.ndarray) -> torch.Tensor:
        """uint8 (N, S, S, 3) -> float (N, 3, S, S) in [0, 1] on the device."""
        tensor = torch.from_numpy(np.ascontiguousarray(images)).to(self.device, non_blocking=True)
        return tensor.permute(0, 3, 1, 2).float() / 255

    def _slices(self, count: int, step: int | None = None):
        step = step or self.batch_size
        for start in range(0, count, step):
            yield slice(start, min(start + step, count))

    def _lpips_features(self, images: torch.Tensor) -> list[torch.Tensor]:
        """Compute the channel-normalised AlexNet feature maps of images in [-1, 1], as LPIPS does.

        Version 0.1 scales the inputs first. Version 0.0 does not (a bug of that release).
        """
        if self.lpips.version == "0.1":
            images = self.lpips.scaling_layer(images)
        images = images.contiguous(memory_format=torch.channels_last)
        return [lpips.normalize_tensor(output) for output in self.lpips.net(images)]

    @torch.no_grad()
    def lpips_features(self, images: np.ndarray) -> list[np.ndarray]:
        """Compute the LPIPS feature maps of uint8 images (N, S, S, 3): per AlexNet layer, float32 (N, C, h, w).

        `lpips_distance` accepts these in place of its first images, so a cache can
        keep them and spare the ground truth's AlexNet passes.
        """
        parts = []
        # Up to 2 x batch_size images per pass, as many as lpips_distance sends.
        for part in self._slices(len(images), 2 * self.batch_size):
            maps = self._lpips_features(self._unit_range(images[part]) * 2 - 1)
            parts.append([layer.float().cpu().numpy() for layer in maps])
        return [np.concatenate(layer) for layer in zip(*parts, strict=True)]

    def feature_shapes(self, size: int) -> dict:
        """Return the shapes of one size x size image's features: `clip` and `inception`
        (one tuple each) and `lpips` (a list, one (C, h, w) per AlexNet layer)."""
        if size not in self._feature_shapes:
            image = np.zeros((1, size, size, 3), dtype=np.uint8)
            self._feature_shapes[size] = {
                "clip": self.clip_embedding(image).shape[1:],
                "inception": self.inception_features(image).shape[1:],
                "lpips": [layer.shape[1:] for layer in self.lpips_features(image)],
            }
        return self._feature_shapes[size]

    def lpips_feature_bytes(self, size: int) -> int:
        """Return the size in bytes of one size x size image's `lpips_features` (float32)."""
        return sum(4 * math.prod(shape) for shape in self.feature_shapes(size)["lpips"])

    @torch.no_grad()
    def lpips_distance(
        self, first: np.ndarray | None, second: np.ndarray, repeats: int = 1,
        first_features: list[np.ndarray] | None = None,
    ) -> np.ndarray:
        """Return the LPIPS distances of paired images, inputs scaled to [-1, 1]: float64 (len(second),).

        Row i of `second` is paired with row i // repeats of `first`, so a sample's
        ground truth passes through AlexNet once for all of its `repeats` candidates.
        With `first_features` (the output of `lpips_features`), `first` may be None
        and passes through AlexNet not at all. The arithmetic is that of
        `lpips.LPIPS.forward` (not spatial).
        """
        count = len(first_features[0]) if first_features is not None else len(first)
        if len(second) != count * repeats:
            raise ValueError(f"lpips_distance needs {count} x {repeats} second images, found {len(second)}")
        out = np.empty(len(second), dtype=np.float64)
        # A pass takes at most batch_size images of `first` and max(batch_size, repeats)
        # of `second`, or with `first_features` max(2 x batch_size, repeats) of `second`.
        per_slice = max(1, (self.batch_size if first_features is None else 2 * self.batch_size) // repeats)
        for start in range(0, count, per_slice):
            stop = min(start + per_slice, count)
            b = self._unit_range(second[start * repeats:stop * repeats]) * 2 - 1
            if first_features is None:
                a = self._unit_range(first[start:stop]) * 2 - 1
                features = self._lpips_features(torch.cat([a, b]))
                ours = [layer[: len(a)] for layer in features]
                theirs = [layer[len(a):] for layer in features]
            else:
                ours = [torch.from_numpy(layer[start:stop]).to(self.device) for layer in first_features]
                theirs = self._lpips_features(b)
            total = 0
            for mine, other, linear in zip(ours, theirs, self.lpips.lins, strict=True):
                total = total + linear((mine.repeat_interleave(repeats, dim=0) - other) ** 2).mean(dim=(2, 3))
            out[start * repeats:stop * repeats] = total.flatten().double().cpu().numpy()
        return out

    @torch.no_grad()
    def clip_embedding(self, images: np.ndarray) -> np.ndarray:
        """L2-normalised CLIP image embeddings, float32 (N, D)."""
        parts = [self.clip(self._unit_range(images[part])).cpu().numpy() for part in self._slices(len(images))]
        return np.concatenate(parts) if parts else np.zeros((0, 0), dtype=np.float32)

    @torch.no_grad()
    def inception_features(self, images: np.ndarray) -> np.ndarray:
        """FID Inception features, float64 (N, dims)."""
        parts = [
            self.inception(self._unit_range(images[part])).double().cpu().numpy()
            for part in self._slices(len(images))
        ]
        return np.concatenate(parts) if parts else np.zeros((0, self.inception.dims))


def completion_direction(
    f_g: np.ndarray, f_gv: np.ndarray, f_p: np.ndarray, nothing_hidden: np.ndarray
) -> np.ndarray:
    """`dir` per row: cos(f_g - f_gv, f_p - f_gv), float64 (N,).

    NaN where nothing is hidden or the target direction is shorter than
    MIN_DIRECTION_NORM; 0 where the prediction's direction is that short.
    """
    target = f_g.astype(np.float64) - f_gv
    predicted = f_p.astype(np.float64) - f_gv
    target_norm = np.linalg.norm(target, axis=-1)
    predicted_norm = np.linalg.norm(predicted, axis=-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        cosine = np.einsum("nd,nd->n", target, predicted) / (target_norm * predicted_norm)
    cosine = np.where(predicted_norm < MIN_DIRECTION_NORM, 0.0, cosine)
    undefined = np.asarray(nothing_hidden, dtype=bool) | (target_norm < MIN_DIRECTION_NORM)
    return np.where(undefined, np.nan, np.clip(cosine, -1.0, 1.0))

"""FID from statistics that add up across chunks and workers.

`FidStats` keeps the count n, the feature sum s (D,) and the sum of outer products
S (D, D), all float64, so the statistics of a split scored in N chunks are the sum of
the chunks' statistics. From them, mean mu = s / n and the unbiased covariance
C = (S - n mu mu^T) / (n - 1), as numpy's `np.cov` computes it.

FID = |mu_1 - mu_2|^2 + tr(C_1) + tr(C_2) - 2 tr((C_1 C_2)^(1/2)). The trace of the
matrix square root is the sum of sqrt(eigenvalues) of the symmetric positive
semi-definite C_1^(1/2) C_2 C_1^(1/2), which has the same eigenvalues as C_1 C_2.
So the result is real and needs no clean-up of imaginary parts. Eigenvalues within
rounding noise of 0, or below it, are set to 0. With fewer than 2 samples on a side the
covariance is undefined and the FID is NaN. With fewer samples than dimensions the
covariances are singular; the formula stays defined but the value is biased upwards,
as every FID from few samples is.
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass

import numpy as np


@dataclass
class FidStats:
    """Additive FID statistics: count, feature sum (D,), outer-product sum (D, D)."""

    count: int
    total: np.ndarray
    outer: np.ndarray

    @classmethod
    def empty(cls, dims: int) -> FidStats:
        return cls(0, np.zeros(dims, dtype=np.float64), np.zeros((dims, dims), dtype=np.float64))

    @classmethod
    def from_features(cls, features: np.ndarray) -> FidStats:
        """Statistics of float (N, D) features."""
        features = np.asarray(features, dtype=np.float64)
        return cls(len(features), features.sum(axis=0), features.T @ features)

    @property
    def dims(self) -> int:
        return self.total.shape[0]

    def add_features(self, features: np.ndarray) -> None:
        """Add float (N, D) features in place."""
        features = np.asarray(features, dtype=np.float64)
        self.count += len(features)
        self.total += features.sum(axis=0)
        self.outer += features.T @ features

    def __add__(self, other: FidStats) -> FidStats:
        if other.dims != self.dims:
            raise ValueError(f"cannot add FID statistics of {other.dims} features to {self.dims}")
        return FidStats(self.count + other.count, self.total + other.total, self.outer + other.outer)

    def mean_and_covariance(self) -> tuple[np.ndarray, np.ndarray]:
        if self.count < 2:
            raise ValueError(f"a covariance needs at least 2 samples, found {self.count}")
        mean = self.total / self.count
        covariance = (self.outer - self.count * np.outer(mean, mean)) / (self.count - 1)
        return mean, (covariance + covariance.T) / 2

    def to_bytes(self) -> bytes:
        """Serialise as an uncompressed .npz (count, total, outer)."""
        buffer = io.BytesIO()
        np.savez(buffer, count=np.array(self.count, dtype=np.int64), total=self.total, outer=self.outer)
        return buffer.getvalue()

    @classmethod
    def from_bytes(cls, data: bytes) -> FidStats:
        with np.load(io.BytesIO(data)) as arrays:
            return cls(int(arrays["count"]), arrays["total"].astype(np.float64), arrays["outer"].astype(np.float64))


def _clip_eigenvalues(values: np.ndarray) -> np.ndarray:
    """Eigenvalues below rounding noise (numpy's matrix-rank tolerance) set to 0.

    With fewer samples than features most eigenvalues are 0 up to rounding, and the
    square root magnifies noise of 1e-16 to 1e-8; zeroing them keeps the FID of
    differently chunked but equal statistics equal to about 1e-12.
    """
    tolerance = np.abs(values).max(initial=0.0) * len(values) * np.finfo(np.float64).eps
    return np.where(values > tolerance, values, 0.0)


def _psd_sqrt(matrix: np.ndarray) -> np.ndarray:
    values, vectors = np.linalg.eigh(matrix)
    return (vectors * np.sqrt(_clip_eigenvalues(values))) @ vectors.T


def frechet_distance(first: FidStats, second: FidStats) -> float:
    """Compute the Fréchet distance between the Gaussians of two statistics (NaN below 2 samples)."""
    if first.count < 2 or second.count < 2:
        return math.nan
    mean_1, cov_1 = first.mean_and_covariance()
    mean_2, cov_2 = second.mean_and_covariance()
    root_1 = _psd_sqrt(cov_1)
    middle = root_1 @ cov_2 @ root_1
    trace_sqrt = np.sqrt(_clip_eigenvalues(np.linalg.eigvalsh((middle + middle.T) / 2))).sum()
    difference = mean_1 - mean_2
    distance = difference @ difference + np.trace(cov_1) + np.trace(cov_2) - 2 * trace_sqrt
    return float(max(distance, 0.0))

import math

import numpy as np
import pytest
import scipy.linalg

from evaluator.fid import FidStats, frechet_distance


def reference_fid(first: np.ndarray, second: np.ndarray) -> float:
    """FID straight from features: np.cov and scipy's matrix square root."""
    mean_1, mean_2 = first.mean(axis=0), second.mean(axis=0)
    cov_1, cov_2 = np.cov(first, rowvar=False), np.cov(second, rowvar=False)
    root = scipy.linalg.sqrtm(cov_1 @ cov_2).real
    return float(((mean_1 - mean_2) ** 2).sum() + np.trace(cov_1 + cov_2 - 2 * root))


@pytest.fixture
def features():
    rng = np.random.default_rng(0)
    first = rng.normal(size=(70, 8)) @ rng.normal(size=(8, 8))
    second = rng.normal(loc=0.5, size=(70, 8)) @ rng.normal(size=(8, 8))
    return first, second


def chunked(features: np.ndarray, chunks: int) -> FidStats:
    parts = [FidStats.from_features(part) for part in np.array_split(features, chunks)]
    total = parts[0]
    for part in parts[1:]:
        total = total + part
    return total


def test_fid_chunkings_agree(features):
    first, second = features
    expected = reference_fid(first, second)
    for chunks in (1, 3, 7):
        value = frechet_distance(chunked(first, chunks), chunked(second, chunks))
        assert value == pytest.approx(expected, rel=1e-9)


def test_fid_add_features_equals_sum(features):
    first, _ = features
    stats = FidStats.empty(8)
    stats.add_features(first[:30])
    stats.add_features(first[30:])
    direct = FidStats.from_features(first)
    assert stats.count == direct.count
    np.testing.assert_allclose(stats.total, direct.total, rtol=1e-12)
    np.testing.assert_allclose(stats.outer, direct.outer, rtol=1e-12)


def test_fid_identical_sets_zero(features):
    first, _ = features
    stats = FidStats.from_features(first)
    scale = np.trace(stats.mean_and_covariance()[1])
    assert frechet_distance(stats, stats) < 1e-9 * scale


def test_fid_one_dimension_closed_form():
    first = np.array([[0.0], [2.0], [4.0]])  # mean 2, variance 4
    second = np.array([[1.0], [2.0], [3.0]])  # mean 2, variance 1
    value = frechet_distance(FidStats.from_features(first), FidStats.from_features(second))
    assert value == pytest.approx(0 + 4 + 1 - 2 * math.sqrt(4 * 1), rel=1e-12)


def test_fid_fewer_samples_than_dimensions(features):
    first, second = features
    value = frechet_distance(FidStats.from_features(first[:4]), FidStats.from_features(second[:5]))
    assert math.isfinite(value)
    assert value == pytest.approx(reference_fid(first[:4], second[:5]), rel=1e-6)


def test_fid_below_two_samples_nan(features):
    first, second = features
    assert math.isnan(frechet_distance(FidStats.from_features(first[:1]), FidStats.from_features(second)))
    assert math.isnan(frechet_distance(FidStats.empty(8), FidStats.from_features(second)))


def test_fid_stats_bytes_round_trip(features):
    stats = FidStats.from_features(features[0])
    copy = FidStats.from_bytes(stats.to_bytes())
    assert copy.count == stats.count
    assert np.array_equal(copy.total, stats.total)
    assert np.array_equal(copy.outer, stats.outer)


def test_fid_stats_dims_mismatch_raises():
    with pytest.raises(ValueError, match="cannot add FID statistics of 4 features to 8"):
        FidStats.empty(8) + FidStats.empty(4)

"""The visibility decoder's target and the training items that carry it."""

import numpy as np
import torch

from evaluator.split import open_split
from reference_model.data import VISIBILITY_TOLERANCE, LayerDataset, visibility_target


def test_visibility_target_marks_unchanged_colours():
    image = np.full((2, 3, 3), 100, np.uint8)
    layer = np.zeros((2, 3, 4), np.uint8)
    layer[..., :3] = 100
    layer[..., 3] = 255
    layer[0, 1, :3] = 100 + VISIBILITY_TOLERANCE  # within the tolerance
    layer[0, 2, 2] = 100 + VISIBILITY_TOLERANCE + 1  # one channel beyond it: tinted
    layer[1, 0, 3] = 127  # mostly transparent
    layer[1, 1, 3] = 128  # opaque enough
    layer[1, 2, :3] = 100 - VISIBILITY_TOLERANCE - 1  # darker beyond the tolerance
    expected = np.array([[True, True, False], [False, True, False]])
    np.testing.assert_array_equal(visibility_target(image, layer), expected)


def test_dataset_items_carry_visibility(disc_split_path):
    split = open_split(disc_split_path)
    dataset = LayerDataset(split, 32)
    for index, sample in enumerate(dataset.samples):
        item = dataset[index]
        assert item["visibility"].shape == (1, 32, 32)
        assert item["visibility"].dtype == torch.float32
        assert 0.0 <= float(item["visibility"].min()) <= float(item["visibility"].max()) <= 1.0
        full = visibility_target(split.read_image(sample), split.read_gt_layer(sample))
        # Resizing keeps the share of visible pixels up to interpolation at the edges.
        assert abs(float(item["visibility"].mean()) - full.mean()) < 0.05

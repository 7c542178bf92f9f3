"""Loader datasets of the scoring pipeline: decoding and preparation in worker processes.

`GtDataset` prepares the ground truth of samples missing from the cache.
`PredictionDataset` prepares the candidates of a submission next to the cached ground
truth. It also computes the mask metrics (`iou`, `iou_occ`), because they need no
network. Both
pickle the `Split` and `SubmissionArchive` by path, so `torch.utils.data.DataLoader`
workers reopen them.
"""

from __future__ import annotations

import os

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from evaluator.gt_cache import GtCache, GtEntry
from evaluator.metrics.images import amodal_ious, amodal_mask, prepare_layer, prepare_mask, restrict
from evaluator.split import Split


def default_workers() -> int:
    """Loader processes: one per CPU core beyond the main process, at most 4."""
    return max(0, min(4, (os.cpu_count() or 1) - 1))


def _single_thread(_worker_id: int) -> None:
    # Each loader process resizes with torch; one thread each keeps them from
    # competing with the forward passes for the same cores.
    torch.set_num_threads(1)


def make_loader(dataset: Dataset, batch_size: int, workers: int) -> DataLoader:
    return DataLoader(
        dataset,
        batch_size=batch_size,
        num_workers=workers,
        collate_fn=list,
        worker_init_fn=_single_thread if workers else None,
        prefetch_factor=2 if workers else None,
        persistent_workers=False,
    )


class GtDataset(Dataset):
    """Items: (sample index, GtEntry without network features)."""

    def __init__(self, split: Split, indices: list[int], size: int, background: np.ndarray):
        self.split = split
        self.indices = indices
        self.size = size
        self.background = background

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, position: int) -> tuple[int, GtEntry]:
        index = self.indices[position]
        sample = self.split.samples[index]
        layer = self.split.read_gt_layer(sample)
        visible = self.split.read_gt_visible(sample)
        entry = GtEntry(mask=amodal_mask(layer), visible=visible, visible_eval=prepare_mask(visible, self.size))
        entry.nothing_hidden = not bool((entry.mask & ~visible).any())
        if sample.gt_kind == "rgba":
            entry.rgb = prepare_layer(layer, self.size, self.background)
            entry.restricted = restrict(entry.rgb, entry.visible_eval, self.background)
        return index, entry


class PredictionDataset(Dataset):
    """Items: a dict with the sample index, its GtEntry, and per candidate the prepared
    composite p_rgb (uint8 (n, S, S, 3)), p_rgb ⊙ v, `iou` and `iou_occ`."""

    def __init__(self, split: Split, submission, indices: list[int], cache: GtCache, size: int,
                 background: np.ndarray):
        self.split = split
        self.submission = submission
        self.indices = indices
        self.cache = cache
        self.size = size
        self.background = background

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, position: int) -> dict:
        index = self.indices[position]
        sample = self.split.samples[index]
        gt = self.cache.read(sample.sample_id, self.background)
        composites, restricted, ious, ious_occ = [], [], [], []
        for k in range(self.submission.n_candidates):
            layer = self.submission.read_candidate(sample.sample_id, k)
            rgb = prepare_layer(layer, self.size, self.background)
            composites.append(rgb)
            restricted.append(restrict(rgb, gt.visible_eval, self.background))
            iou, iou_occ = amodal_ious(amodal_mask(layer), gt.mask, gt.visible)
            ious.append(iou)
            ious_occ.append(iou_occ)
        return {
            "index": index,
            "gt": gt,
            "composites": np.stack(composites),
            "restricted": np.stack(restricted),
            "iou": np.array(ious),
            "iou_occ": np.array(ious_occ),
        }

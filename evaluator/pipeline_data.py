"""The loader dataset of the scoring pipeline: decoding and preparation in worker processes.

`ScoringDataset` prepares each sample's candidates next to its ground truth, read
from the cache or, when the cache lacks it, prepared from the split (the main process
then adds the network features and stores it). It also computes the mask metrics
(`iou`, `iou_occ`), because they need no network. It pickles the `Split` and
`SubmissionArchive` by path, so `torch.utils.data.DataLoader` workers reopen them.
A candidate that fails to decode comes back as the item's `error` (a `Report`),
because DataLoader re-raises a worker's exception as a plain RuntimeError.
"""

from __future__ import annotations

import os

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from evaluator.gt_cache import GtCache, GtEntry
from evaluator.metrics.images import amodal_ious, amodal_mask, prepare_layer, prepare_mask, restrict
from evaluator.split import Sample, Split
from evaluator.submission import SubmissionError


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


def prepare_ground_truth(split: Split, sample: Sample, size: int, background: np.ndarray) -> GtEntry:
    """Prepare the ground truth of a sample, without the network features."""
    layer = split.read_gt_layer(sample)
    visible = split.read_gt_visible(sample)
    entry = GtEntry(mask=amodal_mask(layer), visible=visible, visible_eval=prepare_mask(visible, size))
    entry.nothing_hidden = not bool((entry.mask & ~visible).any())
    if sample.gt_kind == "rgba":
        entry.rgb = prepare_layer(layer, size, background)
        entry.restricted = restrict(entry.rgb, entry.visible_eval, background)
    return entry


class ScoringDataset(Dataset):
    """Items: a dict with the sample index, its GtEntry, `gt_cached` (False when the
    entry still lacks its network features), and per candidate the prepared composite
    p_rgb (uint8 (n, S, S, 3)), p_rgb ⊙ v, `iou` and `iou_occ`. An item whose
    candidate is invalid has only `index` and `error`, the `Report`."""

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
        gt = self.cache.read(
            sample.sample_id, self.background,
            lambda entry: entry.mismatch(sample.height, sample.width, self.size, sample.gt_kind == "rgba"),
        )
        cached = gt is not None
        if not cached:
            gt = prepare_ground_truth(self.split, sample, self.size, self.background)
        composites, restricted, ious, ious_occ = [], [], [], []
        for k in range(self.submission.n_candidates):
            try:
                layer = self.submission.read_candidate(sample.sample_id, k)
            except SubmissionError as error:
                return {"index": index, "error": error.report}
            rgb = prepare_layer(layer, self.size, self.background)
            composites.append(rgb)
            restricted.append(restrict(rgb, gt.visible_eval, self.background))
            iou, iou_occ = amodal_ious(amodal_mask(layer), gt.mask, gt.visible)
            ious.append(iou)
            ious_occ.append(iou_occ)
        return {
            "index": index,
            "gt": gt,
            "gt_cached": cached,
            "composites": np.stack(composites),
            "restricted": np.stack(restricted),
            "iou": np.array(ious),
            "iou_occ": np.array(ious_occ),
        }

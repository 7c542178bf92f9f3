import dataclasses
import math
import multiprocessing
import shutil
import tarfile

import numpy as np
import pandas as pd
import pytest
import torch
import torchvision

from evaluator.config import load_config
from evaluator.fid import FidStats, frechet_distance
from evaluator.gt_cache import GtCache, ground_truth_version, pack_arrays, unpack_arrays
from evaluator.pipeline import (
    SAMPLE_COLUMNS,
    ChunkResult,
    ScoringContext,
    aggregate,
    score_chunk,
    score_submission,
)
from evaluator.split import Prompt, Sample, Split, SplitWriter
from evaluator.submission import SubmissionArchive, write_submission
from evaluator.synthetic.engine import make_synthetic_split
from evaluator.weights import WeightsError

SAMPLES = 14


@pytest.fixture(scope="module")
def split_path(tmp_path_factory):
    return make_synthetic_split(tmp_path_factory.mktemp("split"), samples=SAMPLES, size=64, seed=1)


def blur(layer: np.ndarray) -> np.ndarray:
    planes = torch.from_numpy(layer.copy()).permute(2, 0, 1)
    return torchvision.transforms.functional.gaussian_blur(planes, kernel_size=9, sigma=3.0).permute(1, 2, 0).numpy()


def cut_out(layer: np.ndarray, visible: np.ndarray) -> np.ndarray:
    layer = layer.copy()
    layer[~visible, 3] = 0
    return layer


@pytest.fixture(scope="module")
def submissions(split_path, tmp_path_factory):
    """Zips whose single candidate is the ground truth, its blur, or its visible part."""
    folder = tmp_path_factory.mktemp("submissions")
    split = Split(split_path)
    makers = {
        "truth": lambda sample: split.read_gt_layer(sample),
        "blurred": lambda sample: blur(split.read_gt_layer(sample)),
        "cutout": lambda sample: cut_out(split.read_gt_layer(sample), split.read_gt_visible(sample)),
    }
    paths = {}
    for name, make in makers.items():
        paths[name] = write_submission(folder / f"{name}.zip", ((s.sample_id, [make(s)]) for s in split))
    return paths


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("cache")


def score(split_path, zip_path, config, context, cache_dir, chunks=1, workers=0):
    split = Split(split_path)
    submission = SubmissionArchive(zip_path, split, config.max_candidates)
    bounds = np.linspace(0, len(split), chunks + 1).round().astype(int)
    try:
        return [
            score_chunk(split, submission, int(start), int(stop), config, cache_dir=cache_dir, workers=workers,
                        context=context)
            for start, stop in zip(bounds[:-1], bounds[1:], strict=True)
        ]
    finally:
        # Closed here, so an exception that outlives the call does not leave the zip open.
        submission.close()


@pytest.fixture(scope="module")
def truth_result(split_path, submissions, tiny_config, scoring_context, cache_dir):
    return aggregate(score(split_path, submissions["truth"], tiny_config, scoring_context, cache_dir), tiny_config)


def test_table_columns(truth_result):
    assert tuple(truth_result.samples.columns) == SAMPLE_COLUMNS
    assert len(truth_result.samples) == SAMPLES


def test_truth_scores_perfect(truth_result):
    table = truth_result.samples
    assert (table["lpips_vis"] == 0).all()
    assert (table["lpips_comp"] == 0).all()
    assert (table["iou"] == 1).all()
    defined = table["dir"].dropna()
    assert len(defined) > 0
    np.testing.assert_allclose(defined, 1.0, atol=1e-6)


def test_dir_nan_exactly_where_nothing_hidden(truth_result):
    table = truth_result.samples
    assert (table["dir"].isna() == table["iou_occ"].isna()).all()
    assert truth_result.provenance["dir_undefined"] == int(table["dir"].isna().sum())


def test_cutout_scores(split_path, submissions, tiny_config, scoring_context, cache_dir, truth_result):
    cutout = aggregate(score(split_path, submissions["cutout"], tiny_config, scoring_context, cache_dir), tiny_config)
    table = cutout.samples
    hidden = table["iou_occ"].notna()
    assert hidden.sum() > 0
    assert (table.loc[hidden, "iou_occ"] == 0).all()
    assert table["dir"].mean() < truth_result.samples["dir"].mean()
    assert (table.loc[hidden, "dir"] < 1 - 1e-3).all()


def test_blur_raises_lpips_vis(split_path, submissions, tiny_config, scoring_context, cache_dir):
    blurred = aggregate(score(split_path, submissions["blurred"], tiny_config, scoring_context, cache_dir), tiny_config)
    assert (blurred.samples["lpips_vis"] > 0).all()
    assert blurred.fid["foreground/all/all"] > 0


def test_fid_independent_of_chunking(split_path, submissions, tiny_config, scoring_context, cache_dir):
    fids = {}
    for chunks in (1, 3, 7):
        results = score(split_path, submissions["blurred"], tiny_config, scoring_context, cache_dir, chunks=chunks)
        fids[chunks] = aggregate(results, tiny_config).fid
        if chunks == 1:
            whole = results[0]
    for chunks in (3, 7):
        assert fids[chunks].keys() == fids[1].keys()
        for name, value in fids[1].items():
            if math.isnan(value):
                assert math.isnan(fids[chunks][name])
            else:
                assert fids[chunks][name] == pytest.approx(value, rel=1e-9), name

    rows = [i for i, groups in enumerate(whole.fid_groups) if "background/all/all" in groups]
    direct = frechet_distance(FidStats.from_features(whole.prediction_features[rows]),
                              FidStats.from_features(whole.ground_truth_features[rows]))
    assert fids[1]["background/all/all"] == pytest.approx(direct, rel=1e-9)


def test_warm_cache_same_table(split_path, submissions, tiny_config, scoring_context, cache_dir, truth_result):
    again = aggregate(score(split_path, submissions["truth"], tiny_config, scoring_context, cache_dir), tiny_config)
    pd.testing.assert_frame_equal(again.samples, truth_result.samples)
    folders = list((cache_dir / "gt").iterdir())
    assert len(folders) == 1
    assert len(list(folders[0].glob("*.gt"))) == SAMPLES


def test_loader_workers_same_table(split_path, submissions, tiny_config, scoring_context, tmp_path, truth_result):
    results = score(split_path, submissions["truth"], tiny_config, scoring_context, tmp_path, workers=1)
    pd.testing.assert_frame_equal(aggregate(results, tiny_config).samples, truth_result.samples)


def test_chunk_result_round_trip(split_path, submissions, tiny_config, scoring_context, cache_dir):
    chunk = score(split_path, submissions["truth"], tiny_config, scoring_context, cache_dir, chunks=3)[1]
    copy = ChunkResult.from_bytes(chunk.to_bytes())
    assert (copy.start, copy.stop) == (chunk.start, chunk.stop)
    pd.testing.assert_frame_equal(copy.samples, chunk.samples)
    assert copy.fid_groups == chunk.fid_groups
    assert np.array_equal(copy.prediction_features, chunk.prediction_features)
    assert np.array_equal(copy.ground_truth_features, chunk.ground_truth_features)
    assert copy.provenance == chunk.provenance


def test_aggregate_rejects_gap(split_path, submissions, tiny_config, scoring_context, cache_dir):
    results = score(split_path, submissions["truth"], tiny_config, scoring_context, cache_dir, chunks=3)
    with pytest.raises(ValueError, match=r"expected a chunk starting at sample 5, found \[9, 14\)"):
        aggregate([results[0], results[2]], tiny_config)


def test_amodal_mask_sample(tmp_path, tiny_config, scoring_context):
    layer = np.zeros((48, 48, 4), dtype=np.uint8)
    layer[8:40, 8:40] = 255
    visible = np.zeros((48, 48), dtype=bool)
    visible[8:40, 8:24] = True
    with SplitWriter(tmp_path / "split") as writer:
        writer.add_image("scene", np.full((48, 48, 3), 90, dtype=np.uint8))
        sample = Sample("mask_only", "scene", 48, 48, "foreground", Prompt(text="a square"), gt_kind="amodal_mask",
                        occlusion_rate=0.5)
        writer.add_sample(sample, gt_layer=layer, gt_visible=visible)
    zip_path = write_submission(tmp_path / "pred.zip", [("mask_only", [cut_out(layer, visible)])])
    result = score_submission(tmp_path / "split", zip_path, config=tiny_config, weights_dir=scoring_context.weights_dir,
                              progress=False, device="cpu", workers=0, cache_dir=tmp_path / "cache")
    row = result.samples.iloc[0]
    assert math.isnan(row["lpips_vis"])
    assert math.isnan(row["dir"])
    assert math.isnan(row["lpips_comp"])
    assert row["iou"] == pytest.approx(0.5)
    assert row["iou_occ"] == 0.0
    assert result.fid == {}


def test_gt_version_folder_equals_tar(split_path, tmp_path):
    tar_path = tmp_path / "split.tar"
    with tarfile.open(tar_path, "w") as tar:
        tar.add(split_path, arcname="val")
    assert ground_truth_version(Split(tar_path)) == ground_truth_version(Split(split_path))


def test_gt_version_changes_with_ground_truth(split_path, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(split_path, copy)
    before = ground_truth_version(Split(copy))
    first = sorted((copy / "gt" / "visible").iterdir())[0]
    first.write_bytes(first.read_bytes() + b"\0")
    assert ground_truth_version(Split(copy)) != before


def test_context_config_mismatch(split_path, submissions, scoring_context):
    other = load_config("reflade-v1")
    with pytest.raises(ValueError, match="the scoring context was made for config test-tiny"):
        score_chunk(split_path, submissions["truth"], 0, 1, other, context=scoring_context)


def test_submission_context_reused(split_path, submissions, tiny_config, scoring_context, cache_dir, truth_result):
    networks = scoring_context.networks
    result = score_submission(split_path, submissions["truth"], config=tiny_config, progress=False, workers=0,
                              cache_dir=cache_dir, context=scoring_context)
    assert scoring_context.networks is networks
    pd.testing.assert_frame_equal(result.samples, truth_result.samples)
    with pytest.raises(ValueError, match="the scoring context was made for config test-tiny"):
        score_submission(split_path, submissions["truth"], config=load_config("reflade-v1"), progress=False,
                         workers=0, cache_dir=cache_dir, context=scoring_context)


def test_chunk_outside_split(split_path, submissions, tiny_config, scoring_context):
    with pytest.raises(ValueError, match=rf"chunk \[10, 20\) is outside the split's samples \[0, {SAMPLES}\)"):
        score_chunk(split_path, submissions["truth"], 10, 20, tiny_config, context=scoring_context)


def test_candidates_scored_independently(split_path, submissions, tiny_config, scoring_context, cache_dir,
                                         tmp_path):
    split = Split(split_path)
    both = write_submission(tmp_path / "both.zip", (
        (sample.sample_id, [blur(split.read_gt_layer(sample)), split.read_gt_layer(sample)]) for sample in split
    ))
    paired = aggregate(score(split_path, both, tiny_config, scoring_context, cache_dir), tiny_config).samples
    for k, name in enumerate(("blurred", "truth")):
        alone = aggregate(score(split_path, submissions[name], tiny_config, scoring_context, cache_dir), tiny_config)
        ours = paired[paired["candidate"] == k].reset_index(drop=True)
        theirs = alone.samples
        for column in ("lpips_vis", "dir", "lpips_comp", "iou", "iou_occ"):
            np.testing.assert_allclose(ours[column], theirs[column], rtol=1e-5, atol=1e-7, err_msg=column)


def test_unwritable_cache_keeps_scores(split_path, submissions, tiny_config, scoring_context, tmp_path, truth_result,
                                       caplog):
    blocked = tmp_path / "cache"
    blocked.write_text("a file where the cache folder should be")
    with caplog.at_level("WARNING", logger="evaluator.pipeline"):
        results = score(split_path, submissions["truth"], tiny_config, scoring_context, blocked, chunks=3)
    pd.testing.assert_frame_equal(aggregate(results, tiny_config).samples, truth_result.samples)
    # One warning for the folder, from the first chunk (samples 0 to 4), not one per chunk.
    warnings = [record.getMessage() for record in caplog.records if record.levelname == "WARNING"]
    assert len(warnings) == 1
    assert warnings[0].startswith(f"could not write 5 ground-truth cache entries to {blocked / 'gt'}/")
    assert warnings[0].endswith("point --cache or REFLADE_CACHE at a writable folder")


def test_damaged_cache_entries_recomputed(split_path, submissions, tiny_config, scoring_context, tmp_path,
                                          truth_result, caplog):
    score(split_path, submissions["truth"], tiny_config, scoring_context, tmp_path)
    (folder,) = (tmp_path / "gt").iterdir()
    entries = sorted(folder.glob("*.gt"))
    entries[0].write_bytes(b"")
    entries[1].write_bytes(entries[1].read_bytes()[:100])
    with caplog.at_level("WARNING", logger="evaluator.gt_cache"):
        results = score(split_path, submissions["truth"], tiny_config, scoring_context, tmp_path)
    pd.testing.assert_frame_equal(aggregate(results, tiny_config).samples, truth_result.samples)
    warnings = sorted(record.getMessage() for record in caplog.records if record.levelname == "WARNING")
    assert len(warnings) == 2
    assert warnings[0].startswith(f"ground-truth cache entry {entries[0]} is unreadable (")
    assert warnings[1].startswith(f"ground-truth cache entry {entries[1]} is unreadable (")
    assert all(warning.endswith("); recomputing it") for warning in warnings)
    for entry in entries[:2]:
        assert len(entry.read_bytes()) == len(entries[2].read_bytes())


def count_alexnet_images(context) -> list[int]:
    """Record the batch size of every AlexNet pass of the context's LPIPS network."""
    seen: list[int] = []
    context.networks.lpips.net.register_forward_hook(lambda module, inputs, output: seen.append(len(inputs[0])))
    return seen


def test_warm_cache_skips_ground_truth_alexnet(split_path, submissions, tiny_config, stand_in_weights, tmp_path,
                                               truth_result):
    context = ScoringContext(tiny_config, stand_in_weights, "cpu")
    assert context.keeps_lpips_features  # 2 x 0.12 MiB at 64 px, under the default 1 MiB
    seen = count_alexnet_images(context)
    cold = aggregate(score(split_path, submissions["truth"], tiny_config, context, tmp_path), tiny_config)
    # g_rgb, g_rgb ⊙ v and the candidate's two images, per sample.
    assert sum(seen) == 4 * SAMPLES
    seen.clear()
    warm = aggregate(score(split_path, submissions["blurred"], tiny_config, context, tmp_path), tiny_config)
    assert sum(seen) == 2 * SAMPLES
    pd.testing.assert_frame_equal(cold.samples, truth_result.samples)
    fresh = aggregate(score(split_path, submissions["blurred"], tiny_config, context, tmp_path / "other"), tiny_config)
    pd.testing.assert_frame_equal(warm.samples, fresh.samples)

    split = Split(split_path)
    (folder,) = (tmp_path / "gt").iterdir()
    cache = GtCache(tmp_path, ground_truth_version(split), tiny_config.hash, context.weights_fingerprint)
    assert cache.folder == folder
    entry = cache.read(split.samples[0].sample_id, context.background)
    maps = context.networks.lpips_features(np.stack([entry.rgb, entry.restricted]))
    assert [layer.shape for layer in entry.lpips_full] == [layer.shape[1:] for layer in maps]
    for stored_full, stored_visible, computed in zip(entry.lpips_full, entry.lpips_visible, maps, strict=True):
        np.testing.assert_allclose(stored_full, computed[0], atol=1e-6)
        np.testing.assert_allclose(stored_visible, computed[1], atol=1e-6)


def test_lpips_cache_off(split_path, submissions, tiny_config, stand_in_weights, tmp_path, truth_result):
    config = dataclasses.replace(tiny_config, lpips_cache_mib=0)
    assert config.hash == tiny_config.hash
    context = ScoringContext(config, stand_in_weights, "cpu")
    assert not context.keeps_lpips_features
    seen = count_alexnet_images(context)
    for _ in range(2):
        seen.clear()
        result = aggregate(score(split_path, submissions["truth"], config, context, tmp_path), config)
        assert sum(seen) == 4 * SAMPLES
        pd.testing.assert_frame_equal(result.samples, truth_result.samples)
    split = Split(split_path)
    cache = GtCache(tmp_path, ground_truth_version(split), config.hash, context.weights_fingerprint)
    entry = cache.read(split.samples[0].sample_id, context.background)
    assert entry.rgb is not None
    assert entry.clip_full is not None
    assert entry.lpips_full is None
    assert entry.lpips_visible is None


def rewrite_entry(cache: GtCache, sample_id: str, change) -> None:
    """Rewrite a cache entry after `change(arrays)` edits its arrays in place (the CRC stays valid)."""
    path = cache.path(sample_id)
    arrays = {name: value.copy() for name, value in unpack_arrays(path.read_bytes()).items()}
    change(arrays)
    path.write_bytes(pack_arrays(arrays))


def test_mismatched_entries_recomputed(split_path, submissions, tiny_config, scoring_context, tmp_path,
                                       truth_result, caplog):
    split = Split(split_path)
    score(split_path, submissions["truth"], tiny_config, scoring_context, tmp_path)
    cache = GtCache(tmp_path, ground_truth_version(split), tiny_config.hash, scoring_context.weights_fingerprint)
    first, second, third = (sample.sample_id for sample in split.samples[:3])
    rewrite_entry(cache, first, lambda arrays: arrays.pop("rgb"))
    rewrite_entry(cache, second, lambda arrays: arrays.update(clip_full=arrays["clip_full"][:5].copy(),
                                                               clip_visible=arrays["clip_visible"][:5].copy()))
    rewrite_entry(cache, third, lambda arrays: arrays.update(lpips_full_0=arrays["lpips_full_0"][:, :2].copy(),
                                                              lpips_visible_0=arrays["lpips_visible_0"][:, :2].copy()))
    with caplog.at_level("WARNING"):
        results = score(split_path, submissions["truth"], tiny_config, scoring_context, tmp_path)
    pd.testing.assert_frame_equal(aggregate(results, tiny_config).samples, truth_result.samples)
    warnings = [record.getMessage() for record in caplog.records if record.levelname == "WARNING"]
    assert len(warnings) == 3
    assert warnings[0] == (f"ground-truth cache entry {cache.path(first)} is unreadable (ValueError: the entry "
                           "does not fit the sample: it lacks the RGB arrays of an rgba sample); recomputing it")
    assert warnings[1] == (f"ground-truth cache entry of sample {second} does not fit the networks (clip_full has "
                           "shape (5,), the network gives (32,)); recomputing it")
    assert warnings[2].startswith(f"ground-truth cache entry of sample {third} does not fit the networks (its "
                                  "LPIPS maps have shapes [(64, 2, 15), ")
    # The recomputed entries were written again and now read back whole.
    for sample in split.samples[:3]:
        entry = cache.read(sample.sample_id, scoring_context.background)
        assert entry.mismatch(sample.height, sample.width, tiny_config.eval_size, True) is None
        assert entry.clip_full.shape == (32,)
        assert entry.lpips_full[0].shape == (64, 15, 15)


def test_weights_failure_stops_loader(split_path, submissions, tiny_config, stand_in_weights, tmp_path):
    folder = tmp_path / "weights"
    shutil.copytree(stand_in_weights, folder)
    inception = folder / "inception" / "pt_inception-2015-12-05-6726825d.pth"
    with inception.open("r+b") as file:  # damaged, but of the size the manifest records
        file.write(bytes(1000))
    context = ScoringContext(tiny_config, folder, "cpu")
    before = set(multiprocessing.active_children())
    with pytest.raises(WeightsError) as raised:
        score(split_path, submissions["truth"], tiny_config, context, tmp_path / "cache", workers=1)
    # The exception and its traceback are still referenced here, yet the loader's worker has stopped.
    assert str(raised.value).startswith(f"weights file {inception} could not be read (")
    assert set(multiprocessing.active_children()) == before

"""The scoring pipeline: chunks of samples in, per-sample metrics and FID sums out.

`score_chunk` scores samples [start, stop) of a split and returns a `ChunkResult`.
It contains one table row per sample and candidate (see `SAMPLE_COLUMNS`). Metrics
are float, NaN where undefined. For FID it contains the candidate-0 Inception
features of the predictions and of the ground truth, with the breakdown groups of
each row. `aggregate`
adds the chunks up: FID statistics per group are sums over chunks (`FidStats`), so
any chunking gives the same FID, and the report comes from
`evaluator.aggregate.aggregate_samples`. `score_submission` runs every chunk in one
process. See `evaluator.metrics` for the metric definitions and
`evaluator.gt_cache` for what is cached.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import math
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from evaluator import __version__
from evaluator.aggregate import aggregate_samples
from evaluator.config import BenchmarkConfig, load_config
from evaluator.fid import FidStats, frechet_distance
from evaluator.groups import group_name, sample_groups
from evaluator.gt_cache import CACHE_ENV, GtCache, ground_truth_version, resolve_cache_dir
from evaluator.metrics import metrics_version
from evaluator.metrics.images import background_bytes
from evaluator.metrics.scoring import MetricNetworks, completion_direction, pick_device
from evaluator.pipeline_data import ScoringDataset, default_workers, make_loader
from evaluator.problems import Report
from evaluator.split import Split
from evaluator.submission import SubmissionArchive, SubmissionError, validate_submission
from evaluator.weights import resolve_weights_dir, weights_fingerprint

logger = logging.getLogger(__name__)

SAMPLE_COLUMNS = (
    "sample_id", "candidate", "layer_kind", "prompt_type", "gt_kind", "category", "occlusion_rate",
    "lpips_vis", "dir", "lpips_comp", "iou", "iou_occ",
)
UNVERIFIED_WEIGHTS = (
    "unverified weights: the metric networks do not match the published checksums, "
    "so these numbers are not comparable with published results"
)


class ScoringContext:
    """The shared state of one scoring run's chunks: config, weights, device, networks."""

    def __init__(self, config: BenchmarkConfig, weights_dir: str | Path | None = None, device: str | None = None):
        self.config = config
        self.weights_dir = resolve_weights_dir(weights_dir)
        self.weights_fingerprint, self.weights_verified = weights_fingerprint(self.weights_dir)
        self.device = pick_device(device)
        self.background = background_bytes(config.i_bkgd)
        self._networks: MetricNetworks | None = None
        # Cache folders whose failed writes were already reported by this context.
        self.unwritable_cache_folders: set[Path] = set()

    @property
    def networks(self) -> MetricNetworks:
        if self._networks is None:
            self._networks = MetricNetworks(self.weights_dir, self.config, self.device, self.config.batch_size)
        return self._networks

    @property
    def keeps_lpips_features(self) -> bool:
        """True when ground-truth cache entries keep the LPIPS feature maps of g_rgb and
        g_rgb ⊙ v, because both fit the config's `lpips_cache_mib`."""
        per_sample = 2 * self.networks.lpips_feature_bytes(self.config.eval_size)
        return per_sample <= self.config.lpips_cache_mib * 2**20


@dataclass
class ChunkResult:
    """The scores of samples [start, stop): per-sample rows and candidate-0 FID features.

    The features (float32, as the network computes them, so no precision is lost)
    are kept instead of per-group (D, D) sums, because a chunk has fewer samples
    than features. `fid_stats` turns them into additive `FidStats`.
    """

    start: int
    stop: int
    samples: pd.DataFrame
    fid_groups: list[list[str]]
    prediction_features: np.ndarray
    ground_truth_features: np.ndarray
    provenance: dict = field(default_factory=dict)

    def fid_stats(self, group: str) -> tuple[FidStats, FidStats]:
        """(predictions, ground truth) statistics of this chunk's rows in `group`."""
        rows = [i for i, names in enumerate(self.fid_groups) if group in names]
        return (FidStats.from_features(self.prediction_features[rows]),
                FidStats.from_features(self.ground_truth_features[rows]))

    def to_bytes(self) -> bytes:
        """Serialise as an .npz with the provenance and groups as JSON and the table as Parquet."""
        table = io.BytesIO()
        self.samples.to_parquet(table, index=False)
        meta = {"start": self.start, "stop": self.stop, "fid_groups": self.fid_groups, "provenance": self.provenance}
        buffer = io.BytesIO()
        np.savez(
            buffer,
            meta=np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8),
            samples=np.frombuffer(table.getvalue(), dtype=np.uint8),
            prediction_features=self.prediction_features,
            ground_truth_features=self.ground_truth_features,
        )
        return buffer.getvalue()

    @classmethod
    def from_bytes(cls, data: bytes) -> ChunkResult:
        with np.load(io.BytesIO(data)) as arrays:
            meta = json.loads(arrays["meta"].tobytes())
            samples = pd.read_parquet(io.BytesIO(arrays["samples"].tobytes()))
            return cls(meta["start"], meta["stop"], samples, meta["fid_groups"],
                       arrays["prediction_features"], arrays["ground_truth_features"], meta["provenance"])


# Scoring one chunk ---------------------------------------------------------------------


def _open_inputs(split, submission, config: BenchmarkConfig) -> tuple[Split, SubmissionArchive]:
    if not isinstance(split, Split):
        split = Split(split)
    if not isinstance(submission, SubmissionArchive):
        submission = SubmissionArchive(submission, split, config.max_candidates)
    return split, submission


def _complete_ground_truth(batch: list[dict], split: Split, networks: MetricNetworks, store: Callable,
                           keep_lpips: bool) -> None:
    """Add the network features to the batch's ground-truth entries the cache lacked, and pass
    each to `store(sample_id, entry)`. With `keep_lpips` the entries also get their LPIPS
    feature maps."""
    fresh = [item for item in batch if not item["gt_cached"]]
    rgba = [item["gt"] for item in fresh if item["gt"].rgb is not None]
    if rgba:
        embeddings = networks.clip_embedding(np.stack([gt.rgb for gt in rgba] + [gt.restricted for gt in rgba]))
        features = networks.inception_features(np.stack([gt.rgb for gt in rgba]))
        for j, gt in enumerate(rgba):
            gt.clip_full = embeddings[j]
            gt.clip_visible = embeddings[len(rgba) + j]
            gt.inception = features[j].astype(np.float32)
        if keep_lpips:
            maps = networks.lpips_features(np.stack([gt.rgb for gt in rgba] + [gt.restricted for gt in rgba]))
            for j, gt in enumerate(rgba):
                gt.lpips_full = [layer[j] for layer in maps]
                gt.lpips_visible = [layer[len(rgba) + j] for layer in maps]
    for item in fresh:
        store(split.samples[item["index"]].sample_id, item["gt"])


def _feature_mismatch(gt, expected: dict) -> str | None:
    """Describe how a cached entry's network features differ from `MetricNetworks.feature_shapes`, or None."""
    vectors = (("clip_full", gt.clip_full, "clip"), ("clip_visible", gt.clip_visible, "clip"),
               ("inception", gt.inception, "inception"))
    for name, value, network in vectors:
        if value.shape != expected[network]:
            return f"{name} has shape {value.shape}, the network gives {expected[network]}"
    if gt.lpips_full is not None and [m.shape for m in gt.lpips_full] != expected["lpips"]:
        return f"its LPIPS maps have shapes {[m.shape for m in gt.lpips_full]}, the network gives {expected['lpips']}"
    return None


def _recompute_mismatched(batch: list[dict], split: Split, expected: dict) -> None:
    """Mark cached entries whose features do not fit the networks as fresh, so they are
    recomputed and written again."""
    for item in batch:
        gt = item["gt"]
        if not item["gt_cached"] or gt.rgb is None:
            continue
        problem = _feature_mismatch(gt, expected)
        if problem is not None:
            logger.warning("ground-truth cache entry of sample %s does not fit the networks (%s); recomputing it",
                           split.samples[item["index"]].sample_id, problem)
            gt.clip_full = gt.clip_visible = gt.inception = None
            gt.lpips_full = gt.lpips_visible = None
            item["gt_cached"] = False


def _stacked_maps(gts: list, name: str) -> list[np.ndarray]:
    """Stack the entries' per-layer LPIPS feature maps `name` into (len(gts), C, h, w) per layer."""
    return [np.stack(layer) for layer in zip(*(getattr(gt, name) for gt in gts), strict=True)]


def _rgb_metrics(items: list[dict], networks: MetricNetworks, n: int) -> tuple[dict, np.ndarray]:
    """Compute lpips_vis, dir and lpips_comp, (len(items) * n,) each, for items with RGB
    ground truth, and the candidate-0 Inception features (len(items), dims)."""
    gts = [item["gt"] for item in items]
    predicted = np.concatenate([item["composites"] for item in items])  # (B * n, S, S, 3)
    predicted_visible = np.concatenate([item["restricted"] for item in items])
    truth = np.stack([gt.rgb for gt in gts])
    truth_visible = np.stack([gt.restricted for gt in gts])
    direction = completion_direction(
        np.repeat(np.stack([gt.clip_full for gt in gts]), n, axis=0),
        np.repeat(np.stack([gt.clip_visible for gt in gts]), n, axis=0),
        networks.clip_embedding(predicted),
        np.repeat([gt.nothing_hidden for gt in gts], n),
    )
    # lpips_vis and lpips_comp in one call: row i of the candidates pairs with row i // n
    # of the ground truth, so stacking both pairs keeps the pairing and fills the passes.
    candidates = np.concatenate([predicted_visible, predicted])
    if all(gt.lpips_full is not None for gt in gts):
        # The ground truth's feature maps came from the cache or from _complete_ground_truth.
        maps = [
            np.concatenate(pair)
            for pair in zip(_stacked_maps(gts, "lpips_visible"), _stacked_maps(gts, "lpips_full"), strict=True)
        ]
        distances = networks.lpips_distance(None, candidates, n, maps)
    else:
        distances = networks.lpips_distance(np.concatenate([truth_visible, truth]), candidates, n)
    lpips_vis, lpips_comp = distances[: len(predicted)], distances[len(predicted):]
    values = {"lpips_vis": lpips_vis, "dir": direction, "lpips_comp": lpips_comp}
    return values, networks.inception_features(predicted[::n])


def _score_batches(split: Split, loader, networks: MetricNetworks, n: int, store: Callable,
                   progress: Callable[[int], None] | None, keep_lpips: bool,
                   expected: dict) -> tuple[list, list, list, list]:
    """Score the loader's batches: (table rows, FID groups, prediction and ground-truth features).

    `keep_lpips` gives new ground-truth cache entries their LPIPS feature maps.
    `expected` is `MetricNetworks.feature_shapes` at the evaluation size."""
    rows: list[dict] = []
    fid_groups: list[list[str]] = []
    prediction_features, truth_features = [], []
    for batch in loader:
        for item in batch:
            if "error" in item:
                raise SubmissionError(item["error"])
        _recompute_mismatched(batch, split, expected)
        _complete_ground_truth(batch, split, networks, store, keep_lpips)
        rgba = [item for item in batch if item["gt"].rgb is not None]
        values, features = _rgb_metrics(rgba, networks, n) if rgba else ({}, None)
        position = {id(item): j for j, item in enumerate(rgba)}
        for item in batch:
            sample = split.samples[item["index"]]
            j = position.get(id(item))
            if j is not None:
                fid_groups.append([group_name(group) for group in sample_groups(sample)])
                prediction_features.append(features[j].astype(np.float32))
                truth_features.append(item["gt"].inception)
            for k in range(n):
                row = _sample_row(sample, k)
                for name in ("lpips_vis", "dir", "lpips_comp"):
                    row[name] = math.nan if j is None else float(values[name][j * n + k])
                row["iou"] = float(item["iou"][k])
                row["iou_occ"] = float(item["iou_occ"][k])
                rows.append(row)
        if progress is not None:
            progress(len(batch))
    return rows, fid_groups, prediction_features, truth_features


def _stop_loader(batches) -> None:
    """Stop a DataLoader iterator's worker processes now (a no-op without workers)."""
    shutdown = getattr(batches, "_shutdown_workers", None)
    if shutdown is not None:
        shutdown()


def score_chunk(
    split: Split | str | Path,
    submission: SubmissionArchive | str | Path,
    start: int,
    stop: int,
    config: BenchmarkConfig,
    weights_dir: str | Path | None = None,
    cache_dir: str | Path | None = None,
    device: str | None = None,
    *,
    workers: int | None = None,
    context: ScoringContext | None = None,
    progress: Callable[[int], None] | None = None,
    gt_version: str | None = None,
) -> ChunkResult:
    """Score samples [start, stop) of the split; see the module docstring.

    `context` shares loaded networks between chunks of one process. `workers` is the
    number of loader processes (default: one per spare CPU core, at most 4).
    `progress` is called with the number of samples after each batch. `gt_version`
    passes `ground_truth_version(split)` when the caller has it already.
    """
    started = time.monotonic()
    split, submission = _open_inputs(split, submission, config)
    if not 0 <= start < stop <= len(split):
        raise ValueError(f"chunk [{start}, {stop}) is outside the split's samples [0, {len(split)})")
    context = context or ScoringContext(config, weights_dir, device)
    if context.config.hash != config.hash:
        raise ValueError(
            f"the scoring context was made for config {context.config.name} ({context.config.hash[:12]}) "
            f"but the chunk asks for {config.name} ({config.hash[:12]}); make a context for this config"
        )
    workers = default_workers() if workers is None else workers
    # Recomputed per chunk unless given, because a long-lived context may outlive a
    # change of the ground truth under the same path.
    gt_version = gt_version or ground_truth_version(split)
    cache = GtCache(resolve_cache_dir(cache_dir), gt_version, config.hash, context.weights_fingerprint)
    indices = list(range(start, stop))
    logger.info("scoring samples %d..%d of %s on %s", start, stop, split.path, context.device)

    n = submission.n_candidates
    dataset = ScoringDataset(split, submission, indices, cache, config.eval_size, context.background)
    # A thread serialises and writes the cache entries while the forward passes run.
    # The chunk returns after every write has finished.
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="gt-cache") as writer:
        writes = []

        def store(sample_id: str, entry) -> None:
            writes.append(writer.submit(cache.write, sample_id, entry))

        # The loader starts first, so its workers decode the first batches while the networks load.
        batches = iter(make_loader(dataset, config.batch_size, workers))
        try:
            networks = context.networks
            rows, fid_groups, prediction_features, truth_features = _score_batches(
                split, batches, networks, n, store, progress, context.keeps_lpips_features,
                networks.feature_shapes(config.eval_size),
            )
        finally:
            # An exception's traceback would keep the iterator, and its worker processes, alive.
            _stop_loader(batches)
        _report_failed_writes(writes, cache, context.unwritable_cache_folders)

    dims = int(config.inception.get("dims", 2048))
    return ChunkResult(
        start=start,
        stop=stop,
        samples=pd.DataFrame(rows, columns=list(SAMPLE_COLUMNS)),
        fid_groups=fid_groups,
        prediction_features=np.array(prediction_features, dtype=np.float32).reshape(-1, dims),
        ground_truth_features=np.array(truth_features, dtype=np.float32).reshape(-1, dims),
        provenance={
            **_provenance(config, context, gt_version),
            "n_candidates": n,
            "device": str(context.device),
            "seconds": time.monotonic() - started,
        },
    )


def _report_failed_writes(writes: list, cache: GtCache, reported: set[Path]) -> None:
    """Log a warning when cache writes failed with an OSError, and re-raise any other error.

    The cache only saves work, so an unwritable cache folder (no space, no
    permission, a file in its place) slows later submissions but changes no score.
    Each folder is reported once: folders in `reported` are skipped, and the
    reported one is added to it.
    """
    failed = []
    for write in writes:
        error = write.exception()
        if isinstance(error, OSError):
            failed.append(error)
        elif error is not None:
            raise error
    if failed and cache.folder not in reported:
        reported.add(cache.folder)
        logger.warning(
            "could not write %d ground-truth cache entries to %s (first error: %s); the scores are "
            "complete, but the next submission recomputes these samples; point --cache or %s at a "
            "writable folder", len(failed), cache.folder, failed[0], CACHE_ENV,
        )


def _sample_row(sample, k: int) -> dict:
    return {
        "sample_id": sample.sample_id,
        "candidate": k,
        "layer_kind": sample.layer_kind,
        "prompt_type": sample.prompt_type,
        "gt_kind": sample.gt_kind,
        "category": sample.category,
        "occlusion_rate": math.nan if sample.occlusion_rate is None else sample.occlusion_rate,
    }


def _provenance(config: BenchmarkConfig, context: ScoringContext, gt_version: str) -> dict:
    return {
        "evaluator_version": __version__,
        "metrics_version": metrics_version(),
        "config": {"name": config.name, "version": config.version, "hash": config.hash},
        "calibration_version": config.calibration.version,
        "weights": {"fingerprint": context.weights_fingerprint, "verified": context.weights_verified},
        "ground_truth_version": gt_version,
    }


# Aggregation ---------------------------------------------------------------------------


@dataclass
class ScoreResult:
    """One evaluation: the report, the per-sample table, FID per group and provenance."""

    report: dict
    samples: pd.DataFrame
    fid: dict[str, float]
    provenance: dict

    @property
    def weights_verified(self) -> bool:
        return bool(self.provenance["weights"]["verified"])

    @property
    def warnings(self) -> list[str]:
        return [] if self.weights_verified else [UNVERIFIED_WEIGHTS]

    def to_json(self) -> dict:
        """Build the content of report.json: provenance, warnings, FID per group, the report."""
        fid = {name: (None if math.isnan(value) else value) for name, value in self.fid.items()}
        return {**self.provenance, "warnings": self.warnings, "fid": fid, "report": self.report}

    def write(self, out_dir: str | Path) -> None:
        """Write `report.json` and `samples.parquet` into `out_dir`."""
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        (out / "report.json").write_text(json.dumps(self.to_json(), indent=2) + "\n")
        self.samples.to_parquet(out / "samples.parquet", index=False)


def _check_chunks(chunks: list[ChunkResult]) -> list[ChunkResult]:
    if not chunks:
        raise ValueError("no chunk results to aggregate; score the chunks first")
    chunks = sorted(chunks, key=lambda chunk: chunk.start)
    expected = 0
    for chunk in chunks:
        if chunk.start != expected:
            raise ValueError(
                f"chunk results do not tile the split: expected a chunk starting at sample {expected}, "
                f"found [{chunk.start}, {chunk.stop}); score the missing chunk or drop the duplicate"
            )
        expected = chunk.stop
    keys = ("evaluator_version", "config", "weights", "ground_truth_version", "n_candidates")
    first = {key: chunks[0].provenance.get(key) for key in keys}
    for chunk in chunks[1:]:
        for key in keys:
            if chunk.provenance.get(key) != first[key]:
                raise ValueError(
                    f"chunk [{chunk.start}, {chunk.stop}) has {key} {chunk.provenance.get(key)!r} but chunk "
                    f"[{chunks[0].start}, {chunks[0].stop}) has {first[key]!r}; rescore it with the same setup"
                )
    return chunks


def group_fids(chunks: list[ChunkResult]) -> dict[str, float]:
    """Compute the FID per group from the chunks' summed statistics.

    Groups with exactly the same rows (such as a category that covers a whole layer
    kind) share one computation.
    """
    names = sorted({name for chunk in chunks for groups in chunk.fid_groups for name in groups})
    by_rows: dict[tuple, float] = {}
    fid: dict[str, float] = {}
    for name in names:
        rows = tuple(
            (c, i) for c, chunk in enumerate(chunks) for i, groups in enumerate(chunk.fid_groups) if name in groups
        )
        if rows not in by_rows:
            predicted, truth = None, None
            for chunk in chunks:
                chunk_predicted, chunk_truth = chunk.fid_stats(name)
                predicted = chunk_predicted if predicted is None else predicted + chunk_predicted
                truth = chunk_truth if truth is None else truth + chunk_truth
            by_rows[rows] = frechet_distance(predicted, truth)
        fid[name] = by_rows[rows]
    return fid


def aggregate(chunks: list[ChunkResult], config: BenchmarkConfig) -> ScoreResult:
    """Add up the chunks of one evaluation into its `ScoreResult`."""
    chunks = _check_chunks(chunks)
    samples = pd.concat([chunk.samples for chunk in chunks], ignore_index=True)
    fid = group_fids(chunks)
    report = aggregate_samples(samples, fid, config)
    provenance = {key: value for key, value in chunks[0].provenance.items() if key not in ("device", "seconds")}
    provenance["seconds"] = sum(chunk.provenance.get("seconds", 0.0) for chunk in chunks)
    first = samples[(samples["candidate"] == 0) & (samples["gt_kind"] == "rgba")]
    provenance["dir_undefined"] = int(first["dir"].isna().sum())
    return ScoreResult(report=report, samples=samples, fid=fid, provenance=provenance)


def _score_chunks(split: Split, submission: SubmissionArchive, config: BenchmarkConfig, context: ScoringContext,
                  gt_version: str, cache_dir, workers: int | None, bar) -> list[ChunkResult]:
    """Score every chunk of the split in this process, in order."""
    chunks = []
    for start in range(0, len(split), config.chunk_size):
        stop = min(start + config.chunk_size, len(split))
        chunks.append(score_chunk(
            split, submission, start, stop, config, cache_dir=cache_dir, workers=workers,
            context=context, progress=bar.update if bar else None, gt_version=gt_version,
        ))
    return chunks


def score_submission(
    split_path: str | Path,
    predictions_zip: str | Path,
    out_dir: str | Path | None = None,
    config: BenchmarkConfig | str | Path | None = None,
    weights_dir: str | Path | None = None,
    progress: bool = True,
    *,
    device: str | None = None,
    workers: int | None = None,
    cache_dir: str | Path | None = None,
    context: ScoringContext | None = None,
) -> ScoreResult:
    """Score a submission zip against a split in this process, chunk by chunk.

    Raises `SubmissionError` (with `.report`) when the zip is invalid. Writes
    `report.json` and `samples.parquet` when `out_dir` is given. A `context` built
    for the same config keeps its loaded networks across calls, as the leaderboard's
    workers keep theirs. `weights_dir` and `device` are then ignored, and a context
    for another config raises ValueError.

    The zip's names and counts are checked before scoring. Each image is decoded
    once, while it is scored. An image that fails then stops scoring, and a full
    validation lists every problem of the zip in the error.
    """
    if not isinstance(config, BenchmarkConfig):
        config = load_config(config)
    split = Split(split_path)

    def full_report(found: Report) -> Report:
        report = validate_submission(predictions_zip, split, config.max_candidates)
        return found if report.valid else report

    try:
        submission = SubmissionArchive(predictions_zip, split, config.max_candidates, check_images=False)
    except SubmissionError as error:
        raise SubmissionError(full_report(error.report)) from None
    context = context or ScoringContext(config, weights_dir, device)
    gt_version = ground_truth_version(split)
    bar = None
    # Log lines go through tqdm.write while the bar is shown, so they do not share its line.
    redirect = contextlib.nullcontext()
    if progress:
        from tqdm import tqdm
        from tqdm.contrib.logging import logging_redirect_tqdm

        bar = tqdm(total=len(split), unit="sample", desc="scoring")
        redirect = logging_redirect_tqdm()
    try:
        with redirect:
            chunks = _score_chunks(split, submission, config, context, gt_version, cache_dir, workers, bar)
    except SubmissionError as error:
        raise SubmissionError(full_report(error.report)) from None
    finally:
        if bar is not None:
            bar.close()
        submission.close()
    result = aggregate(chunks, config)
    if out_dir is not None:
        result.write(out_dir)
    return result

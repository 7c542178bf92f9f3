"""Finished leaderboard entries for the page and API tests, built without a worker.

An entry is a real upload (`submission_create`) moved through the evaluation
states by the services a worker calls, finishing with a report that
`evaluator.aggregate.aggregate_samples` computes from a deterministic per-sample
table. The numbers are made up; the report's shape is the evaluator's own.
"""

from __future__ import annotations

import copy
import functools
from pathlib import Path

import numpy as np
import pandas as pd
from django.core.files import File

from evaluator.aggregate import aggregate_samples
from evaluator.config import load_config
from evaluator.groups import group_name, occlusion_bucket
from leaderboard import services

PROMPT_TYPES = ("point", "box", "text+box")
CANDIDATES = 2
SAMPLES_PER_KIND = 6


def samples_table(quality: float, seed: int) -> pd.DataFrame:
    """Per-sample metrics of 12 samples x 2 candidates; higher `quality` means better values."""
    rng = np.random.default_rng(seed)
    rows = []
    for kind in ("foreground", "background"):
        for index in range(SAMPLES_PER_KIND):
            sample_id = f"{kind[:2]}{index:02d}"
            occlusion = (0.0, 0.2, 0.4, 0.7)[index % 4]
            for candidate in range(CANDIDATES):
                noise = rng.normal(0.0, 0.02)
                rows.append({
                    "sample_id": sample_id, "candidate": candidate, "layer_kind": kind,
                    "prompt_type": PROMPT_TYPES[index % 3], "gt_kind": "rgba",
                    "category": "cup" if index % 2 else "", "occlusion_rate": occlusion,
                    "lpips_vis": float(np.clip(0.25 - 0.2 * quality + noise, 0.0, 1.0)),
                    "dir": float(np.clip(0.5 + 0.45 * quality + noise, -1.0, 1.0)),
                    "lpips_comp": float(np.clip(0.4 - 0.3 * quality + noise, 0.0, 1.0)),
                    "iou": float(np.clip(0.5 + 0.4 * quality + noise, 0.0, 1.0)),
                    "iou_occ": float("nan") if occlusion == 0.0 else float(np.clip(0.3 + 0.5 * quality + noise, 0, 1)),
                })
    return pd.DataFrame(rows)


def fid_values(table: pd.DataFrame, quality: float) -> dict[str, float]:
    """An FID for every breakdown group of the table, falling with quality."""
    first = table[table["candidate"] == 0]
    names = set()
    for row in first.itertuples():
        kind = row.layer_kind
        for group in (("all", kind, "all"), ("prompt_type", kind, row.prompt_type),
                      ("occlusion", kind, occlusion_bucket(row.occlusion_rate)),
                      ("category", kind, row.category or "none")):
            names.add(group_name(group))
    return {name: 40.0 * (1.0 - quality) + 2.0 for name in sorted(names)}


@functools.lru_cache(maxsize=32)
def make_report(config_name: str, quality: float, seed: int) -> tuple[dict, pd.DataFrame]:
    """The report and per-sample table; cached, because the bootstrap takes a second or two."""
    config = load_config(config_name)
    table = samples_table(quality, seed)
    return aggregate_samples(table, fid_values(table, quality), config), table


def finish_entry(*, user, split, zip_path: Path, method_name: str, quality: float, tmp_path: Path,
                 is_public: bool = True, weights_verified: bool = False, is_baseline: bool = False):
    """Upload `zip_path` and drive its evaluation to finished with a made-up report."""
    with open(zip_path, "rb") as handle:
        submission = services.submission_create(
            user=user, split=split, uploaded_file=File(handle, name=zip_path.name),
            method_name=method_name, is_public=is_public, is_baseline=is_baseline,
        )
    evaluation = submission.evaluations.get()
    config_name = split.benchmark.config_name
    report, table = make_report(config_name, quality, seed=len(method_name))
    report = copy.deepcopy(report)

    services.evaluation_begin_validation(evaluation_id=evaluation.pk)
    services.evaluation_queue(
        evaluation_id=evaluation.pk, chunks_total=1, candidate_count=CANDIDATES, metadata={},
        versions={"evaluator_version": "test", "ground_truth_version": split.ground_truth_version,
                  "config_hash": split.benchmark.config_hash,
                  "calibration_version": split.benchmark.calibration_version},
    )
    services.evaluation_begin_chunk(evaluation_id=evaluation.pk)
    services.evaluation_begin_aggregation(evaluation_id=evaluation.pk)
    samples_path = tmp_path / f"samples-{evaluation.pk}.parquet"
    table.to_parquet(samples_path, index=False)
    services.evaluation_finish(
        evaluation_id=evaluation.pk, metrics=report, samples_path=samples_path,
        weights_fingerprint="0" * 64, weights_verified=weights_verified,
    )
    submission.refresh_from_db()
    return submission

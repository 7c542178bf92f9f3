"""Write a submission zip of RefLayer's predictions for every sample of a split."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch

from evaluator.split import Split, open_split
from evaluator.submission import validate_submission, write_submission
from reference_model.checkpoint import load_model, read_checkpoint_info
from reference_model.data import inputs_from_arrays
from reference_model.networks import RefLayer
from reference_model.sampling import background_visibility, generate
from reference_model.visible import DEFAULT_SETTINGS, VisibleSettings, preserve_visible

logger = logging.getLogger(__name__)


def default_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def iter_predictions(
    model: RefLayer, split: Split, candidates: int, steps: int, guidance_scale: float, seed: int,
    visible: VisibleSettings | None = None, visibility_decoder: bool = True,
) -> Iterator[tuple[str, list[np.ndarray]]]:
    """Yield (sample_id, candidates) in manifest order; candidate k uses seed + k.

    With `visible` settings, each layer keeps the input image's pixels where it is
    estimated visible and completes the rest as the settings say (see
    `reference_model.visible`). A background layer's visible pixels come from the
    visibility decoder unless `visibility_decoder` is False, a foreground layer's
    from the colours.
    """
    seeds = [seed + k for k in range(candidates)]
    started = time.perf_counter()
    for index, sample in enumerate(split.samples, start=1):
        pixels, mask = split.read_image(sample), split.read_mask_prompt(sample)
        image, canvas, text = inputs_from_arrays(pixels, mask, sample, model.config.resolution)
        layers = generate(model, image, canvas, text, seeds, steps, guidance_scale, sample.width, sample.height)
        if visible is not None:
            visibility = None
            if sample.layer_kind == "background" and visibility_decoder:
                visibility = background_visibility(model, image, sample.width, sample.height)
            layers = [preserve_visible(layer, pixels, sample.layer_kind, mask, visible, visibility) for layer in layers]
        yield sample.sample_id, layers
        if index % 50 == 0 or index == len(split):
            elapsed = time.perf_counter() - started
            logger.info("predicted %d/%d samples, %.3f s per sample", index, len(split), elapsed / index)


def validated_write(zip_path: str | Path, split: Split, predictions, metadata: dict, max_candidates: int) -> Path:
    """Write the zip under a temporary name, validate it against the split, then rename it.

    On a failed validation the temporary zip is deleted and ValueError carries the report.
    """
    final = Path(zip_path)
    final.parent.mkdir(parents=True, exist_ok=True)
    temporary = final.with_name(final.name + ".unvalidated.zip")
    try:
        write_submission(temporary, predictions, metadata)
        report = validate_submission(temporary, split, max_candidates=max_candidates)
        if not report.valid:
            raise ValueError(f"the written submission {final} failed validation and was not kept:\n{report.format()}")
        temporary.replace(final)
    finally:
        temporary.unlink(missing_ok=True)
    logger.info("wrote validated submission %s", final)
    return final


def predict(
    checkpoint: str | Path,
    split: str | Path,
    out: str | Path,
    candidates: int = 1,
    steps: int | None = None,
    guidance_scale: float | None = None,
    seed: int = 0,
    max_candidates: int = 8,
    device: torch.device | None = None,
    metadata: dict | None = None,
    visible: VisibleSettings | None = DEFAULT_SETTINGS,
) -> Path:
    """Predict `candidates` layers per sample of `split` with the checkpoint; returns the zip path.

    `metadata` adds entries to the zip's metadata.json, beside the sampling settings.
    `visible` sets how the input's visible pixels are kept; None keeps the model's
    colours everywhere.
    """
    if not 1 <= candidates <= max_candidates:
        raise ValueError(f"--candidates must be between 1 and {max_candidates}, got {candidates}")
    device = device or default_device()
    model = load_model(checkpoint).to(device).eval()
    # A checkpoint without the count predates it and is taken as trained with background
    # samples, as the committed tiny checkpoint was.
    background_examples = read_checkpoint_info(checkpoint).get("background_examples")
    visibility_decoder = background_examples != 0
    if not visibility_decoder and visible is not None:
        logger.warning(
            "%s was trained without background samples, so its visibility decoder is untrained; "
            "background layers keep the image where the model's colour is within the visible tolerance",
            checkpoint,
        )
    steps = steps if steps is not None else model.config.sample.steps
    guidance_scale = guidance_scale if guidance_scale is not None else model.config.sample.guidance_scale
    opened = open_split(split)
    metadata = {
        **(metadata or {}),
        "method": "RefLayer",
        "preset": model.config.preset,
        "checkpoint": str(checkpoint),
        "candidates": candidates,
        "sampling_steps": steps,
        "guidance_scale": guidance_scale,
        "seed": seed,
        "preserve_visible": None if visible is None else {
            **visible.to_dict(), "background": "visibility decoder" if visibility_decoder else "colours",
        },
    }
    logger.info("predicting %d samples of %s with %s on %s", len(opened), opened.path, checkpoint, device)
    with torch.inference_mode():
        predictions = iter_predictions(model, opened, candidates, steps, guidance_scale, seed, visible, visibility_decoder)
        return validated_write(out, opened, predictions, metadata, max(max_candidates, candidates))

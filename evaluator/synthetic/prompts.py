"""Prompts from a layer's visible mask: what a user who sees the image could give.

Boxes are the bounding box of the visible region in pixel edges, [x0, y0, x1, y1]
with x1 = last visible column + 1, so the box contains every visible pixel. Points
are centres (x + 0.5, y + 0.5) of visible pixels. A mask prompt is the visible mask.
"""

from __future__ import annotations

import numpy as np

from evaluator.split import Prompt

PROMPT_TYPES = ("point", "box", "mask", "text", "text+box", "text+point")
MAX_POINTS = 3


def visible_box(visible: np.ndarray) -> tuple[float, float, float, float]:
    rows = np.flatnonzero(visible.any(axis=1))
    cols = np.flatnonzero(visible.any(axis=0))
    if rows.size == 0:
        raise ValueError("the visible mask is empty, so it has no bounding box")
    return (float(cols[0]), float(rows[0]), float(cols[-1] + 1), float(rows[-1] + 1))


def sample_points(
    visible: np.ndarray, count: int, rng: np.random.Generator
) -> tuple[tuple[float, float], ...]:
    """`count` distinct visible pixels (fewer when fewer are visible), as pixel centres."""
    ys, xs = np.nonzero(visible)
    if ys.size == 0:
        raise ValueError("the visible mask is empty, so no point can be drawn in it")
    chosen = rng.choice(ys.size, size=min(count, ys.size), replace=False)
    return tuple((float(xs[i]) + 0.5, float(ys[i]) + 0.5) for i in sorted(chosen))


def make_prompt(
    prompt_type: str,
    visible: np.ndarray,
    text: str,
    rng: np.random.Generator,
    mask_path: str,
    box: tuple[float, float, float, float] | None = None,
) -> tuple[Prompt, np.ndarray | None]:
    """Build a prompt of `prompt_type` (one of PROMPT_TYPES) and its mask prompt, if any.

    `mask_path` is where the split stores the mask prompt (`prompts/<sample_id>.png`).
    `box` replaces the visible region's bounding box, for the background, whose box
    is the whole image.
    """
    if prompt_type not in PROMPT_TYPES:
        raise ValueError(
            f"unknown prompt type {prompt_type!r}; expected one of {', '.join(PROMPT_TYPES)}"
        )
    parts = prompt_type.split("+")
    points = None
    if "point" in parts:
        count = int(rng.integers(1, MAX_POINTS + 1)) if parts == ["point"] else 1
        points = sample_points(visible, count, rng)
    prompt = Prompt(
        points=points,
        box=(box or visible_box(visible)) if "box" in parts else None,
        mask=mask_path if "mask" in parts else None,
        text=text if "text" in parts else None,
    )
    return prompt, (visible if "mask" in parts else None)

"""Per-candidate metrics of the scoring protocol.

Notation per sample: ground-truth layer g, visible mask v, prediction p, all at the
evaluation size (see `evaluator.metrics.images` for compositing, resizing and the
filters). x_rgb is the layer composited over i_bkgd and x ⊙ v keeps x_rgb inside v
and i_bkgd outside.

- `lpips_vis` = LPIPS(g_rgb ⊙ v, p_rgb ⊙ v), AlexNet LPIPS v0.1, inputs in [-1, 1].
- `dir` = cos(f(g_rgb) - f(g_rgb ⊙ v), f(p_rgb) - f(g_rgb ⊙ v)), f the L2-normalised
  CLIP image embedding. When nothing of g is hidden (A∖v is empty, the same rule
  that leaves `iou_occ` undefined) or the target direction is shorter than 1e-6,
  there is nothing to complete: `dir` is NaN, left out of means and counted. When
  the prediction's direction is shorter than 1e-6 (p_rgb adds nothing to
  g_rgb ⊙ v), `dir` is 0, the value cosine similarity conventionally gives a zero
  vector.
- `lpips_comp` = LPIPS(p̂, ĝ), the composites over i_bkgd.
- `iou` = |â ∩ A| / |â ∪ A| with â = p_a >= 0.5 and A = g_a >= 0.5, compared at the
  sample's own resolution; NaN when A is empty.
- `iou_occ` = the IoU of â∖v against A∖v; NaN when A∖v is empty.

For `gt_kind == "amodal_mask"` (no ground-truth RGB) only `iou` and `iou_occ` are
defined; the other three are NaN.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class MetricSpec:
    """A metric's name, direction and version; a changed definition gets a new version."""

    name: str
    higher_is_better: bool
    version: str
    summary: str


METRICS = {
    spec.name: spec
    for spec in (
        MetricSpec("lpips_vis", False, "1", "LPIPS of the visible part, g ⊙ v against p ⊙ v"),
        MetricSpec("dir", True, "1", "cosine of the CLIP completion directions of p and g"),
        MetricSpec("lpips_comp", False, "1", "LPIPS of the composites p̂ against ĝ"),
        MetricSpec("iou", True, "1", "IoU of the amodal masks"),
        MetricSpec("iou_occ", True, "1", "IoU of the amodal masks inside the hidden region"),
        MetricSpec("fid", False, "1", "FID between the Inception features of {p̂} and {ĝ}"),
    )
}
PER_CANDIDATE_METRICS = ("lpips_vis", "dir", "lpips_comp", "iou", "iou_occ")
RGB_METRICS = ("lpips_vis", "dir", "lpips_comp")
# The shortest CLIP direction (difference of unit vectors) treated as non-zero.
MIN_DIRECTION_NORM = 1e-6


def metrics_version() -> str:
    """One string naming the version of every metric, recorded with each result."""
    return ",".join(f"{spec.name}:{spec.version}" for spec in METRICS.values())

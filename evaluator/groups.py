"""Breakdown groups: the subsets of a split that every aggregate is reported for.

Each aggregate is reported for the whole of a layer kind and, within it, per prompt
type, occlusion bucket and category. A group is a tuple
`(dimension, layer_kind, value)` with dimension one of `all`, `prompt_type`,
`occlusion`, `category`; `("all", kind, "all")` is the whole layer kind.
FID statistics are summed per group, so HPA can be given for every group too.
"""

from __future__ import annotations

import math

from evaluator.split import Sample

DIMENSIONS = ("all", "prompt_type", "occlusion", "category")
# Upper edges (inclusive) of the occlusion buckets; rates above the last are "gt50".
OCCLUSION_BUCKETS = (("none", 0.0), ("le25", 0.25), ("le50", 0.5))
OCCLUSION_LABELS = {"none": "none", "le25": "up to 25%", "le50": "up to 50%", "gt50": "above 50%"}

Group = tuple[str, str, str]


def occlusion_bucket(rate: float | None) -> str:
    """`none` (rate 0), `le25` (0, 0.25], `le50` (0.25, 0.5], `gt50` above; `unknown` when absent."""
    if rate is None or (isinstance(rate, float) and math.isnan(rate)):
        return "unknown"
    for name, upper in OCCLUSION_BUCKETS:
        if rate <= upper:
            return name
    return "gt50"


def category_label(category: str | None) -> str:
    """Return the category as a group value: `none` when the sample has no category."""
    return category if isinstance(category, str) and category else "none"


def groups_for(
    layer_kind: str, prompt_type: str, occlusion_rate: float | None, category: str | None
) -> list[Group]:
    """List every group that a sample with these manifest values belongs to."""
    return [
        ("all", layer_kind, "all"),
        ("prompt_type", layer_kind, prompt_type),
        ("occlusion", layer_kind, occlusion_bucket(occlusion_rate)),
        ("category", layer_kind, category_label(category)),
    ]


def sample_groups(sample: Sample) -> list[Group]:
    """List every group the sample belongs to."""
    return groups_for(sample.layer_kind, sample.prompt_type, sample.occlusion_rate, sample.category)


def group_name(group: Group) -> str:
    """Return a stable string key such as `foreground/prompt_type/text+box`, for JSON."""
    dimension, kind, value = group
    return f"{kind}/{dimension}/{value}"

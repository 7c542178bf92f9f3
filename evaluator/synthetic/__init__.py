"""Synthetic data engine: photographs with procedurally drawn objects and exact ground truth.

`make_synthetic_split` and `make_synthetic_splits` write split packages; `make_scene`
draws one scene in memory, for training on the fly.
"""

from evaluator.synthetic.engine import (
    generate_scenes,
    make_synthetic_split,
    make_synthetic_splits,
    scene_rng,
)
from evaluator.synthetic.scene import Scene, SceneObject, composite, make_scene

__all__ = [
    "Scene",
    "SceneObject",
    "composite",
    "generate_scenes",
    "make_scene",
    "make_synthetic_split",
    "make_synthetic_splits",
    "scene_rng",
]

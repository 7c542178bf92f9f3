"""Synthetic data engine: photographs with procedurally drawn objects and exact ground truth.

`make_synthetic_split` and `make_synthetic_splits` write split packages. For training
on the fly, `generate_scenes` draws scenes in memory and `scene_layers` lists each
scene's layers with their visible masks and referring text.
"""

from evaluator.synthetic.engine import (
    LayerSample,
    generate_scenes,
    make_synthetic_split,
    make_synthetic_splits,
    scene_layers,
    scene_rng,
)
from evaluator.synthetic.scene import Scene, SceneObject, composite, make_scene

__all__ = [
    "LayerSample",
    "Scene",
    "SceneObject",
    "composite",
    "generate_scenes",
    "make_scene",
    "make_synthetic_split",
    "make_synthetic_splits",
    "scene_layers",
    "scene_rng",
]

"""Scenes: a photograph with 1 to 4 objects in a depth order, and their exact ground truth.

Definitions (all on the stored uint8 layers, so they can be checked from the files):

- The image is the background composited with the object layers back to front with
  the "over" operator on straight alpha, computed exactly in integers and rounded
  half up once at the end (`composite`). Compositing the stored layers this way
  reproduces the stored image bit for bit. A float64 implementation of the same
  operator agrees within 1 level per channel.
- The support of a layer is where its alpha is >= SUPPORT_ALPHA (128, alpha >= 0.5,
  the same threshold the amodal mask uses in scoring). The background's support is
  the whole image.
- A layer covers a pixel when its alpha there is >= COVER_ALPHA (230): less than 10%
  of what lies behind shows through. Semi-transparent objects have opacity at most
  MAX_SEMI_TRANSPARENT_OPACITY, so they never cover anything.
- The visible mask of a layer is its support minus every pixel covered by a layer
  in front of it. Its occlusion rate is |support - visible| / |support|.

Objects are kept fully inside the image (their blurred edge included), so no layer
is cut by the image border.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from evaluator.synthetic.shapes import SHAPES, blur_margin, make_outline, rasterize
from evaluator.synthetic.textures import (
    BACKGROUNDS,
    COLOURS,
    TEXTURES,
    background_crop,
    logo_layer,
    texture_rgb,
)

SUPPORT_ALPHA = 128
COVER_ALPHA = 230
MAX_SEMI_TRANSPARENT_OPACITY = 0.8
# Integer compositing multiplies denominators by 255 per layer; int64 holds 6 layers.
MAX_LAYERS = 6
MIN_SIZE = 32
MAX_OBJECTS = 4
OBJECT_COUNT_WEIGHTS = (0.15, 0.3, 0.3, 0.25)  # for 1, 2, 3, 4 objects
LOGO_PROBABILITY = 0.06
SEMI_TRANSPARENT_PROBABILITY = 0.2
# Share of objects placed next to an earlier one, so that objects overlap often.
OVERLAP_PROBABILITY = 0.85
# A drawn layout is kept when every object shows at least this share of its support
# and the background at least BACKGROUND_MIN_VISIBLE of the image.
OBJECT_MIN_VISIBLE = 0.25
OBJECT_MIN_PIXELS = 8
BACKGROUND_MIN_VISIBLE = 0.2
MAX_LAYOUT_ATTEMPTS = 60


@dataclass(frozen=True)
class ObjectSpec:
    """What to draw: the attributes and placement of one object, in pixels."""

    category: str  # a name from SHAPES, or "logo"
    colour: str | None  # a name from COLOURS; None for the logo
    texture: str | None  # a name from TEXTURES; None for the logo
    opacity: float
    centre: tuple[float, float]
    radius: float
    angle: float
    edge_sigma: float


@dataclass
class SceneObject:
    """One object of a scene with its ground truth."""

    spec: ObjectSpec
    layer: np.ndarray  # uint8 (H, W, 4), straight alpha, RGB 0 where alpha is 0
    support: np.ndarray  # bool (H, W)
    visible: np.ndarray  # bool (H, W)

    @property
    def occlusion_rate(self) -> float:
        return occlusion_rate(self.support, self.visible)


@dataclass
class Scene:
    """A composed image, its background layer and its objects from back to front."""

    background_name: str
    background: np.ndarray  # uint8 (H, W, 3)
    background_visible: np.ndarray  # bool (H, W)
    objects: list[SceneObject]  # back to front: objects[-1] is the front-most
    image: np.ndarray  # uint8 (H, W, 3)

    @property
    def background_layer(self) -> np.ndarray:
        """The complete background layer, uint8 (H, W, 4) with alpha 255 everywhere."""
        alpha = np.full(self.background.shape[:2] + (1,), 255, dtype=np.uint8)
        return np.concatenate([self.background, alpha], axis=2)


def composite(background: np.ndarray, layers: list[np.ndarray]) -> np.ndarray:
    """Composite RGBA layers (back to front) over an RGB background, exactly.

    background: uint8 (H, W, 3); layers: uint8 (H, W, 4) with straight alpha.
    The over operator out = (a * rgb + (255 - a) * out) / 255 runs on integer
    numerators with a common denominator 255^k, and the result is rounded half up
    once, so no floating-point order can change it. Returns uint8 (H, W, 3).
    """
    if len(layers) > MAX_LAYERS:
        raise ValueError(f"{len(layers)} layers to composite; at most {MAX_LAYERS} fit in int64")
    numerator = background.astype(np.int64)
    denominator = 1
    for layer in layers:
        alpha = layer[:, :, 3:4].astype(np.int64)
        rgb = layer[:, :, :3].astype(np.int64)
        numerator = alpha * rgb * denominator + (255 - alpha) * numerator
        denominator *= 255
    return ((2 * numerator + denominator) // (2 * denominator)).astype(np.uint8)


def support_mask(layer: np.ndarray) -> np.ndarray:
    return layer[:, :, 3] >= SUPPORT_ALPHA


def visible_masks(layers: list[np.ndarray]) -> tuple[list[np.ndarray], np.ndarray]:
    """The visible masks of layers given back to front, and that of the background behind them."""
    covered = np.zeros(layers[0].shape[:2] if layers else (0, 0), dtype=bool)
    visible: list[np.ndarray] = []
    for layer in reversed(layers):
        visible.append(support_mask(layer) & ~covered)
        covered |= layer[:, :, 3] >= COVER_ALPHA
    visible.reverse()
    return visible, ~covered


def occlusion_rate(support: np.ndarray, visible: np.ndarray) -> float:
    area = int(support.sum())
    if area == 0:
        return 0.0
    return float(area - int((support & visible).sum())) / area


def render_object(spec: ObjectSpec, size: int, rng: np.random.Generator) -> np.ndarray:
    """Draw one object's complete layer, uint8 (size, size, 4), RGB 0 where alpha is 0."""
    if spec.category == "logo":
        rgba = logo_layer(size, spec.centre, spec.radius)
        rgb, coverage = rgba[:, :, :3] * 255.0, rgba[:, :, 3]
    else:
        outline = make_outline(spec.category, rng)
        coverage = rasterize(outline, size, spec.centre, spec.radius, spec.angle, spec.edge_sigma)
        rgb = texture_rgb(spec.texture, COLOURS[spec.colour], size, spec.centre, spec.radius, rng)
    alpha = np.round(255.0 * spec.opacity * coverage).astype(np.uint8)
    layer = np.zeros((size, size, 4), dtype=np.uint8)
    layer[:, :, :3] = np.round(rgb).astype(np.uint8)
    layer[:, :, 3] = alpha
    layer[alpha == 0, :3] = 0
    return layer


def _draw_spec(
    size: int, rng: np.random.Generator, placed: list[ObjectSpec], logo_used: bool
) -> ObjectSpec:
    is_logo = not logo_used and rng.random() < LOGO_PROBABILITY
    category = "logo" if is_logo else str(rng.choice(SHAPES))
    edge_sigma = rng.uniform(0.5, 1.2) * max(1.0, size / 128)
    radius = rng.uniform(0.14, 0.28) * size
    lowest = radius + blur_margin(edge_sigma)
    highest = size - lowest
    if placed and rng.random() < OVERLAP_PROBABILITY:
        # Next to an earlier object, so that the two overlap by a fair share.
        anchor = placed[int(rng.integers(len(placed)))]
        direction = rng.uniform(0.0, 2.0 * np.pi)
        distance = rng.uniform(0.35, 0.9) * (anchor.radius + radius)
        centre = (
            anchor.centre[0] + distance * np.cos(direction),
            anchor.centre[1] + distance * np.sin(direction),
        )
    else:
        centre = (rng.uniform(lowest, highest), rng.uniform(lowest, highest))
    centre = (
        float(np.clip(centre[0], lowest, highest)),
        float(np.clip(centre[1], lowest, highest)),
    )
    semi_transparent = rng.random() < SEMI_TRANSPARENT_PROBABILITY
    return ObjectSpec(
        category=category,
        colour=None if is_logo else str(rng.choice(list(COLOURS))),
        texture=None if is_logo else str(rng.choice(list(TEXTURES))),
        opacity=rng.uniform(0.55, MAX_SEMI_TRANSPARENT_OPACITY) if semi_transparent else 1.0,
        centre=centre,
        radius=float(radius),
        angle=rng.uniform(0.0, 2.0 * np.pi),
        edge_sigma=float(edge_sigma),
    )


def _layout_acceptable(
    layers: list[np.ndarray], visible: list[np.ndarray], background_visible: np.ndarray
) -> bool:
    if background_visible.mean() < BACKGROUND_MIN_VISIBLE:
        return False
    for layer, mask in zip(layers, visible, strict=True):
        support = int(support_mask(layer).sum())
        shown = int(mask.sum())
        if (
            support < OBJECT_MIN_PIXELS
            or shown < OBJECT_MIN_PIXELS
            or shown < OBJECT_MIN_VISIBLE * support
        ):
            return False
    return True


def make_scene(size: int, rng: np.random.Generator) -> Scene:
    """Draw a random scene of `size` x `size` pixels: background, objects, ground truth.

    Layouts in which an object would be nearly hidden, or too thin to have a support,
    are drawn again. After every 10 failed attempts the scene gets one object fewer.
    """
    if size < MIN_SIZE:
        raise ValueError(f"scene size {size} px is too small; use at least {MIN_SIZE} px")
    background_name = str(rng.choice(list(BACKGROUNDS)))
    background = background_crop(background_name, size, rng)
    count = int(rng.choice(np.arange(1, MAX_OBJECTS + 1), p=OBJECT_COUNT_WEIGHTS))

    for attempt in range(MAX_LAYOUT_ATTEMPTS):
        specs: list[ObjectSpec] = []
        for _ in range(count):
            logo_used = any(spec.category == "logo" for spec in specs)
            specs.append(_draw_spec(size, rng, specs, logo_used))
        specs = [specs[i] for i in rng.permutation(count)]
        layers = [render_object(spec, size, rng) for spec in specs]
        visible, background_visible = visible_masks(layers)
        if _layout_acceptable(layers, visible, background_visible):
            break
        if attempt % 10 == 9:
            count = max(1, count - 1)
    else:
        raise RuntimeError(
            f"no acceptable layout for a {size} px scene in {MAX_LAYOUT_ATTEMPTS} attempts; "
            f"use a larger size than {size} px"
        )

    objects = [
        SceneObject(spec=spec, layer=layer, support=support_mask(layer), visible=mask)
        for spec, layer, mask in zip(specs, layers, visible, strict=True)
    ]
    return Scene(
        background_name=background_name,
        background=background,
        background_visible=background_visible,
        objects=objects,
        image=composite(background, layers),
    )

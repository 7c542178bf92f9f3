"""Named colours, textures and background photographs for synthetic scenes.

All photographs come from `skimage.data`, which ships them with scikit-image, so
generating data needs no download.
"""

from __future__ import annotations

from functools import cache

import numpy as np
import skimage.data
from PIL import Image
from scipy import ndimage

# Colour names used in referring text, with their sRGB values.
COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (215, 40, 40),
    "green": (40, 165, 60),
    "blue": (40, 80, 215),
    "yellow": (240, 210, 40),
    "orange": (245, 135, 30),
    "purple": (135, 60, 180),
    "cyan": (40, 200, 210),
    "pink": (250, 150, 190),
    "white": (245, 245, 245),
    "black": (25, 25, 25),
}

# Texture names and the adjective the referring text uses; solid objects get none.
TEXTURES: dict[str, str] = {
    "solid": "",
    "stripes": "striped",
    "checker": "checkered",
    "gradient": "shaded",
    "brick": "brick-patterned",
    "grass": "grass-textured",
}
PHOTO_TEXTURES = ("brick", "grass")

# Background photographs: skimage.data function name and the words for them in text.
BACKGROUNDS: dict[str, str] = {
    "astronaut": "astronaut portrait",
    "coffee": "coffee cup",
    "rocket": "rocket launch",
    "chelsea": "cat photo",
    "brick": "brick wall",
    "grass": "grass",
    "gravel": "gravel",
    "camera": "cameraman photo",
    "moon": "moon surface",
    "coins": "coins",
    "hubble_deep_field": "deep-space photo",
    "immunohistochemistry": "tissue sample",
}


@cache
def load_photo(name: str) -> np.ndarray:
    """Load a photograph from skimage.data as uint8 (H, W, 3), repeating grayscale ones over RGB."""
    photo = np.asarray(getattr(skimage.data, name)())
    if photo.ndim == 2:
        photo = np.repeat(photo[:, :, None], 3, axis=2)
    photo = photo[:, :, :3]
    photo.setflags(write=False)
    return photo


@cache
def load_logo() -> np.ndarray:
    """Cut the scikit-image logo out of its white surround, uint8 (H, W, 4) straight alpha.

    `skimage.data.logo()` is opaque everywhere (scikit-image 0.26), so the alpha is
    rebuilt: near-white pixels connected to the border are the surround, and a
    closing puts back the thin white curve that runs through the logo's disc.
    """
    logo = np.array(skimage.data.logo())
    near_white = logo[:, :, :3].min(axis=2) > 235
    labels, _ = ndimage.label(near_white)
    edge_labels = np.unique(np.concatenate([labels[0], labels[-1], labels[:, 0], labels[:, -1]]))
    surround = np.isin(labels, edge_labels[edge_labels > 0])
    disc = np.ones((17, 17), dtype=bool)
    logo[:, :, 3] = ndimage.binary_closing(~surround, structure=disc, border_value=0) * 255
    rows = np.flatnonzero(logo[:, :, 3].any(axis=1))
    cols = np.flatnonzero(logo[:, :, 3].any(axis=0))
    cropped = np.ascontiguousarray(logo[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1])
    cropped.setflags(write=False)
    return cropped


def background_crop(name: str, size: int, rng: np.random.Generator) -> np.ndarray:
    """Crop a random square of a photograph, resized to uint8 (size, size, 3) and maybe mirrored."""
    photo = load_photo(name)
    height, width = photo.shape[:2]
    side = int(rng.uniform(0.5, 1.0) * min(height, width))
    top = int(rng.integers(0, height - side + 1))
    left = int(rng.integers(0, width - side + 1))
    crop = Image.fromarray(photo[top : top + side, left : left + side])
    crop = crop.resize((size, size), Image.Resampling.BILINEAR)
    if rng.random() < 0.5:
        crop = crop.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    return np.asarray(crop)


def shade(colour: tuple[int, int, int]) -> np.ndarray:
    """Pick the second colour of a pattern: darker for light colours, lighter for dark ones."""
    rgb = np.asarray(colour, dtype=np.float64)
    if rgb.mean() < 60:
        return rgb + 0.5 * (255.0 - rgb)
    return rgb * 0.45


def _pattern_coordinate(size: int, centre: tuple[float, float], angle: float) -> np.ndarray:
    """Distance along direction `angle` from `centre`, per pixel centre, float64 (size, size)."""
    ys, xs = np.mgrid[0:size, 0:size].astype(np.float64) + 0.5
    return (xs - centre[0]) * np.cos(angle) + (ys - centre[1]) * np.sin(angle)


def texture_rgb(
    texture: str,
    colour: tuple[int, int, int],
    size: int,
    centre: tuple[float, float],
    radius: float,
    rng: np.random.Generator,
) -> np.ndarray:
    """Paint the whole canvas with a texture around an object, float64 (size, size, 3) in [0, 255]."""
    base = np.asarray(colour, dtype=np.float64)
    second = shade(colour)
    angle = rng.uniform(0.0, np.pi)

    if texture == "solid":
        return np.broadcast_to(base, (size, size, 3)).copy()
    if texture == "stripes":
        period = max(3.0, radius * rng.uniform(0.35, 0.6))
        phase = _pattern_coordinate(size, centre, angle) / period
        first = (np.floor(phase) % 2 == 0)[:, :, None]
        return np.where(first, base, second)
    if texture == "checker":
        cell = max(3.0, radius * rng.uniform(0.3, 0.5))
        along = np.floor(_pattern_coordinate(size, centre, angle) / cell)
        across = np.floor(_pattern_coordinate(size, centre, angle + 0.5 * np.pi) / cell)
        first = ((along + across) % 2 == 0)[:, :, None]
        return np.where(first, base, second)
    if texture == "gradient":
        ramp = np.clip(_pattern_coordinate(size, centre, angle) / (2.0 * radius) + 0.5, 0.0, 1.0)
        return base + (second - base) * ramp[:, :, None]
    if texture in PHOTO_TEXTURES:
        photo = load_photo(texture)[:, :, 0].astype(np.float64)
        top = int(rng.integers(0, photo.shape[0] - size + 1)) if photo.shape[0] > size else 0
        left = int(rng.integers(0, photo.shape[1] - size + 1)) if photo.shape[1] > size else 0
        patch = _fit(photo[top : top + size, left : left + size], size)
        # Tint: the photo's brightness, stretched to 0.55 .. 1.15, scales the colour.
        spread = max(float(patch.max() - patch.min()), 1.0)
        gain = 0.55 + 0.6 * (patch - patch.min()) / spread
        return np.clip(base * gain[:, :, None], 0.0, 255.0)
    raise ValueError(f"unknown texture {texture!r}; expected one of {', '.join(TEXTURES)}")


def _fit(patch: np.ndarray, size: int) -> np.ndarray:
    if patch.shape == (size, size):
        return patch
    image = Image.fromarray(patch.astype(np.float32), mode="F")
    return np.asarray(image.resize((size, size), Image.Resampling.BILINEAR), dtype=np.float64)


def logo_layer(size: int, centre: tuple[float, float], radius: float) -> np.ndarray:
    """Scale the logo into the disc of `radius` around `centre`, float64 (size, size, 4) in [0, 1]."""
    logo = load_logo()
    height, width = logo.shape[:2]
    scale = 2.0 * radius / np.hypot(height, width)
    new_width, new_height = max(1, round(width * scale)), max(1, round(height * scale))
    resized = (
        np.asarray(
            Image.fromarray(logo).resize((new_width, new_height), Image.Resampling.BILINEAR),
            dtype=np.float64,
        )
        / 255.0
    )
    layer = np.zeros((size, size, 4))
    left = int(round(centre[0] - new_width / 2))
    top = int(round(centre[1] - new_height / 2))
    layer[top : top + new_height, left : left + new_width] = resized
    return layer

"""Procedural object shapes rasterised to anti-aliased, soft-edged coverage maps.

Every shape is an outline inside the unit disc (all vertices at distance <= 1 from
the origin), so an object of radius `r` pixels placed at centre (cx, cy) covers at
most the disc of radius `r` around it, plus its blurred edge.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw
from scipy.ndimage import gaussian_filter

SHAPES = ("disc", "ellipse", "rectangle", "rounded rectangle", "triangle", "star", "ring", "blob")
# Outlines are drawn this many times larger and averaged down, for anti-aliasing.
SUPERSAMPLING = 4
# The blurred edge is cut where the Gaussian falls below 1/255, about 3 sigma out.
BLUR_REACH_SIGMAS = 3.0
CIRCLE_VERTICES = 96


@dataclass(frozen=True)
class Outline:
    """A shape in unit coordinates: filled polygons minus hole polygons, (K, 2) arrays of x, y."""

    fills: tuple[np.ndarray, ...]
    holes: tuple[np.ndarray, ...] = ()


def _circle(radius_x: float, radius_y: float, vertices: int = CIRCLE_VERTICES) -> np.ndarray:
    angles = np.linspace(0.0, 2.0 * np.pi, vertices, endpoint=False)
    return np.stack([radius_x * np.cos(angles), radius_y * np.sin(angles)], axis=1)


def _rounded_rectangle(half_width: float, half_height: float, corner: float) -> np.ndarray:
    corners = [
        (half_width - corner, half_height - corner, 0.0),
        (-half_width + corner, half_height - corner, 0.5 * np.pi),
        (-half_width + corner, -half_height + corner, np.pi),
        (half_width - corner, -half_height + corner, 1.5 * np.pi),
    ]
    points = []
    for centre_x, centre_y, start in corners:
        arc = np.linspace(start, start + 0.5 * np.pi, 12)
        points.append(
            np.stack([centre_x + corner * np.cos(arc), centre_y + corner * np.sin(arc)], axis=1)
        )
    return np.concatenate(points)


def _star(points: int, inner: float) -> np.ndarray:
    angles = np.linspace(0.0, 2.0 * np.pi, 2 * points, endpoint=False) - 0.5 * np.pi
    radii = np.where(np.arange(2 * points) % 2 == 0, 1.0, inner)
    return np.stack([radii * np.cos(angles), radii * np.sin(angles)], axis=1)


def _blob(rng: np.random.Generator) -> np.ndarray:
    """Draw a smooth random outline: radius(angle) as a low-frequency Fourier series, max 1."""
    angles = np.linspace(0.0, 2.0 * np.pi, CIRCLE_VERTICES, endpoint=False)
    radius = np.ones_like(angles)
    for frequency in range(2, 6):
        amplitude = rng.uniform(0.0, 0.28 / frequency**0.7)
        radius += amplitude * np.cos(frequency * angles + rng.uniform(0.0, 2.0 * np.pi))
    radius /= radius.max()
    return np.stack([radius * np.cos(angles), radius * np.sin(angles)], axis=1)


def make_outline(shape: str, rng: np.random.Generator) -> Outline:
    """Draw the random proportions of one `shape` (a name from SHAPES) in the unit disc."""
    if shape == "disc":
        return Outline((_circle(1.0, 1.0),))
    if shape == "ellipse":
        return Outline((_circle(1.0, rng.uniform(0.45, 0.75)),))
    if shape in ("rectangle", "rounded rectangle"):
        # A diagonal of length 2 keeps all four corners on the unit circle.
        angle = rng.uniform(0.45, 1.1)
        half_width, half_height = np.cos(angle), np.sin(angle)
        if shape == "rectangle":
            corners = [
                (half_width, half_height),
                (-half_width, half_height),
                (-half_width, -half_height),
                (half_width, -half_height),
            ]
            return Outline((np.array(corners),))
        corner = rng.uniform(0.25, 0.45) * min(half_width, half_height)
        return Outline((_rounded_rectangle(half_width, half_height, corner),))
    if shape == "triangle":
        angles = np.deg2rad(np.array([90.0, 210.0, 330.0]) + rng.uniform(-12.0, 12.0, size=3))
        return Outline((np.stack([np.cos(angles), -np.sin(angles)], axis=1),))
    if shape == "star":
        return Outline((_star(int(rng.integers(5, 7)), rng.uniform(0.4, 0.55)),))
    if shape == "ring":
        inner = rng.uniform(0.45, 0.6)
        return Outline((_circle(1.0, 1.0),), (_circle(inner, inner),))
    if shape == "blob":
        return Outline((_blob(rng),))
    raise ValueError(f"unknown shape {shape!r}; expected one of {', '.join(SHAPES)}")


def _place(polygon: np.ndarray, centre: tuple[float, float], radius: float, angle: float) -> list:
    """Rotate by `angle` (radians), scale to `radius` pixels and move to `centre`, in supersampled pixels."""
    cos, sin = np.cos(angle), np.sin(angle)
    rotated = polygon @ np.array([[cos, sin], [-sin, cos]])
    pixels = (rotated * radius + np.asarray(centre)) * SUPERSAMPLING
    return [tuple(point) for point in pixels.tolist()]


def blur_margin(edge_sigma: float) -> int:
    """Pixels the blurred edge reaches beyond the outline, so objects stay inside the image."""
    return int(np.ceil(BLUR_REACH_SIGMAS * edge_sigma)) + 2


def rasterize(
    outline: Outline,
    size: int,
    centre: tuple[float, float],
    radius: float,
    angle: float,
    edge_sigma: float,
) -> np.ndarray:
    """Render an outline into a soft coverage map, float64 (size, size) in [0, 1].

    The outline is drawn at SUPERSAMPLING times the resolution and averaged down,
    then blurred with a Gaussian of `edge_sigma` pixels for a soft edge. Pixel (x, y)
    covers [x, x + 1) x [y, y + 1), so `centre` is in the same pixel coordinates as
    prompts.
    """
    canvas = Image.new("L", (size * SUPERSAMPLING, size * SUPERSAMPLING), 0)
    draw = ImageDraw.Draw(canvas)
    for polygon in outline.fills:
        draw.polygon(_place(polygon, centre, radius, angle), fill=255)
    for polygon in outline.holes:
        draw.polygon(_place(polygon, centre, radius, angle), fill=0)
    coverage = np.asarray(canvas.reduce(SUPERSAMPLING), dtype=np.float64) / 255.0
    if edge_sigma > 0:
        coverage = gaussian_filter(
            coverage, edge_sigma, mode="constant", truncate=BLUR_REACH_SIGMAS
        )
    return np.clip(coverage, 0.0, 1.0)

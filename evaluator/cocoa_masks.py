"""COCO mask encodings: run-length encoding (RLE) in both forms, and polygons.

A COCO RLE is {"size": [height, width], "counts": ...}. The counts are run lengths
over the mask read in column-major order (down the first column, then the next),
starting with a run of zeros, which may be empty. "counts" is either a list of
integers (uncompressed RLE) or a string (compressed RLE). In the string, each count
is written in 5-bit groups, least significant first, each group as the character
chr(48 + bits), where bit 0x20 marks that another group follows and bit 0x10 of the
last group is the sign. From the fourth count on, the string stores the difference
to the count two places earlier. This is the format of the COCO API (pycocotools,
`maskApi.c`: rleToString and rleFrString).
"""

from __future__ import annotations

import numpy as np


def decompress_counts(text: str) -> list[int]:
    """Decode the counts of a compressed RLE string; raises ValueError naming a bad character."""
    counts: list[int] = []
    position = 0
    while position < len(text):
        value = 0
        shift = 0
        while True:
            if position >= len(text):
                raise ValueError(f"compressed RLE ends inside a count, after {len(counts)} counts")
            bits = ord(text[position]) - 48
            if not 0 <= bits < 64:
                raise ValueError(
                    f"compressed RLE has the invalid character {text[position]!r} at position {position}"
                )
            value |= (bits & 0x1F) << shift
            position += 1
            shift += 5
            if not bits & 0x20:
                if bits & 0x10:
                    value |= -1 << shift
                break
        if len(counts) > 2:
            value += counts[-2]
        counts.append(value)
    return counts


def compress_counts(counts: list[int]) -> str:
    """Encode run lengths as a compressed RLE string, the inverse of `decompress_counts`."""
    characters = []
    for index, count in enumerate(counts):
        value = count - counts[index - 2] if index > 2 else count
        while True:
            bits = value & 0x1F
            value >>= 5
            more = value != -1 if bits & 0x10 else value != 0
            if more:
                bits |= 0x20
            characters.append(chr(bits + 48))
            if not more:
                break
    return "".join(characters)


def mask_to_counts(mask: np.ndarray) -> list[int]:
    """Count the runs of a bool (H, W) mask in column-major order, zeros first."""
    flat = np.asarray(mask, dtype=bool).T.reshape(-1)
    changes = np.flatnonzero(flat[1:] != flat[:-1]) + 1
    bounds = np.concatenate([[0], changes, [flat.size]])
    counts = np.diff(bounds).tolist()
    if flat.size and flat[0]:
        counts.insert(0, 0)
    return counts


def encode_rle(mask: np.ndarray, compressed: bool = True) -> dict:
    """Encode a bool (H, W) mask as a COCO RLE, with string counts unless `compressed` is False."""
    counts = mask_to_counts(mask)
    return {"size": list(mask.shape), "counts": compress_counts(counts) if compressed else counts}


def decode_rle(rle: object, height: int, width: int) -> np.ndarray:
    """Decode a COCO RLE of an image of `height` x `width` to a bool (H, W) mask.

    Raises ValueError, naming the value, when the object is not an RLE, its size
    differs from the image or its counts do not add up to height * width.
    """
    if not isinstance(rle, dict) or "counts" not in rle or "size" not in rle:
        raise ValueError(
            f"expected an RLE object {{'size': [h, w], 'counts': ...}}, found {_short(rle)}"
        )
    size = rle["size"]
    if not isinstance(size, list) or [int(v) for v in size if isinstance(v, int)] != [
        height,
        width,
    ]:
        raise ValueError(f"RLE size {_short(size)} differs from the image size [{height}, {width}]")
    counts = rle["counts"]
    if isinstance(counts, str):
        counts = decompress_counts(counts)
    elif not (
        isinstance(counts, list)
        and all(isinstance(c, int) and not isinstance(c, bool) for c in counts)
    ):
        raise ValueError(
            f"RLE counts must be a string or a list of integers, found {_short(counts)}"
        )
    if any(count < 0 for count in counts):
        raise ValueError("RLE counts contain a negative run length")
    if sum(counts) != height * width:
        raise ValueError(
            f"RLE counts add up to {sum(counts)} pixels, expected height * width = {height * width}"
        )
    values = np.arange(len(counts)) % 2 == 1
    flat = np.repeat(values, counts)
    # Column-major: the flat index is x * height + y.
    return flat.reshape(width, height).T.copy()


def _polygon_list(segmentation: object) -> list[list[float]]:
    """Check a segmentation and return its polygons: one flat [x0, y0, ...] list, or a list of them."""
    if isinstance(segmentation, list) and segmentation and all(_is_number(v) for v in segmentation):
        polygons = [segmentation]
    elif (
        isinstance(segmentation, list)
        and segmentation
        and all(isinstance(p, list) for p in segmentation)
    ):
        polygons = segmentation
    else:
        raise ValueError(
            f"segmentation must be a polygon [x0, y0, x1, y1, ...] or a list of them, found {_short(segmentation)}"
        )
    for polygon in polygons:
        if not all(_is_number(v) for v in polygon) or len(polygon) < 6 or len(polygon) % 2:
            raise ValueError(
                "each polygon must be an even number (at least 6) of x, y coordinates, "
                f"found {_short(polygon)}"
            )
    return polygons


def _fill_polygon(polygon: np.ndarray, height: int, width: int) -> np.ndarray:
    """Pixels whose centre (x + 0.5, y + 0.5) lies inside a (K, 2) polygon, by the even-odd rule."""
    mask = np.zeros((height, width), dtype=bool)
    left = max(0, int(np.floor(polygon[:, 0].min())))
    right = min(width, int(np.ceil(polygon[:, 0].max())) + 1)
    top = max(0, int(np.floor(polygon[:, 1].min())))
    bottom = min(height, int(np.ceil(polygon[:, 1].max())) + 1)
    if left >= right or top >= bottom:
        return mask
    ys = np.arange(top, bottom, dtype=np.float64)[:, None] + 0.5  # (rows, 1)
    xs = np.arange(left, right, dtype=np.float64)[None, :] + 0.5  # (1, cols)
    inside = np.zeros((bottom - top, right - left), dtype=bool)
    for (x0, y0), (x1, y1) in zip(polygon, np.roll(polygon, -1, axis=0), strict=True):
        if y0 == y1:
            continue
        # The edge crosses the row at x_cross; pixels left of it flip inside/outside.
        crosses = (y0 > ys) != (y1 > ys)
        x_cross = x0 + (x1 - x0) * (ys - y0) / (y1 - y0)
        inside ^= crosses & (xs < x_cross)
    mask[top:bottom, left:right] = inside
    return mask


def rasterize_polygons(segmentation: object, height: int, width: int) -> np.ndarray:
    """Fill the polygons of a segmentation into a bool (H, W) mask, their union.

    Coordinates are pixels with the origin at the top-left corner of the image, so
    pixel (x, y) is inside when its centre (x + 0.5, y + 0.5) is.
    NOTE: the COCO API rasterises differently (it upsamples the outline), so masks
    can differ along the outline: on random hexagons about 1% of the area.
    """
    mask = np.zeros((height, width), dtype=bool)
    for polygon in _polygon_list(segmentation):
        mask |= _fill_polygon(np.asarray(polygon, dtype=np.float64).reshape(-1, 2), height, width)
    return mask


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and np.isfinite(value)


def _short(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."

"""Import COCO-amodal (COCOA) annotations as a split with mask-only ground truth.

COCOA is a COCO-style JSON: `images` (id, file_name, width, height) and
`annotations`, each one annotator's pass over one image: `image_id` and `regions`.
A region is one object or stuff area with
  `segmentation`    its amodal outline as a polygon [x0, y0, x1, y1, ...] (or a list of them),
  `name`            the category,
  `order`           its depth rank, 1 = front-most,
  `visible_mask`    optional COCO RLE of its visible part,
  `invisible_mask`  optional COCO RLE of its hidden part,
  `isStuff`         optional, read for the tags "stuff" or "thing",
  plus `area` and `occlude_rate`, which the import recomputes from the masks.

Each region becomes one foreground sample with `gt_kind: amodal_mask`:
  - gt/layers: RGBA, RGB 0 and alpha 255 on the amodal mask (the polygon joined
    with the visible mask, so the visible part always lies inside it);
  - gt/visible: `visible_mask`; without it, the amodal mask minus `invisible_mask`;
    without both, the amodal mask minus the amodal masks of the regions in front
    (smaller `order`). NOTE: the released COCOA files omit `visible_mask` for regions
    that no other region hides, so there the fallback only trims pixels where the
    polygons of regions in front overlap the outline;
  - occlusion_rate = |amodal - visible| / |amodal|;
  - prompt: the k-th imported region (in file order) gets PROMPT_CYCLE[k % 3], a box
    around the visible mask, the visible mask, or the point deepest inside it.
Regions with an empty visible part are skipped with a warning. JPEG and PNG images
are copied unchanged into `images/<image id>.jpg|.png`; other formats are stored as PNG.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError
from scipy.ndimage import distance_transform_edt

from evaluator.cocoa_masks import decode_rle, rasterize_polygons
from evaluator.split import IMAGE_ID_PATTERN, Prompt, Sample, SplitWriter

logger = logging.getLogger(__name__)

PROMPT_CYCLE = ("box", "mask", "point")
COPIED_FORMATS = {"JPEG": ".jpg", "PNG": ".png"}


class CocoaError(ValueError):
    """Annotations or images that cannot be imported; the message names the value and the fix."""


@dataclass(frozen=True)
class ImageEntry:
    image_id: str
    file_name: str
    width: int
    height: int


@dataclass
class ImportSummary:
    """Counts of what an import wrote and skipped."""

    split: Path
    samples: int
    images: int
    skipped_regions: int


@dataclass
class RegionMasks:
    """One region's decoded masks, bool (H, W), and what the sample needs of it."""

    region_index: int
    category: str
    order: object  # as annotated, checked only when the depth-order fallback needs it
    amodal: np.ndarray
    visible: np.ndarray | None  # None until the depth-order fallback fills it in
    tags: tuple[str, ...]


def load_annotations(path: str | Path) -> dict:
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise CocoaError(f"annotation file {path} not found; check --annotations") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise CocoaError(f"annotation file {path} is not valid JSON: {error}") from None
    if not isinstance(data, dict):
        raise CocoaError(
            f"annotation file {path} contains a {type(data).__name__}, expected a JSON object"
        )
    for key in ("images", "annotations"):
        if not isinstance(data.get(key), list):
            raise CocoaError(
                f"annotation file {path} has no list {key!r} (found {_short(data.get(key))}); "
                "a COCOA file has 'images' and 'annotations' lists"
            )
    return data


def _positive_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value > 0


def parse_images(entries: list) -> dict[object, ImageEntry]:
    """Parse the `images` list into entries by COCO id; raises CocoaError for a malformed entry."""
    images: dict[object, ImageEntry] = {}
    for index, entry in enumerate(entries):
        where = f"images[{index}]"
        if not isinstance(entry, dict):
            raise CocoaError(
                f"{where} is {_short(entry)}, expected an object with id, file_name, width, height"
            )
        coco_id = entry.get("id")
        image_id = str(coco_id)
        if (
            not isinstance(coco_id, int | str)
            or isinstance(coco_id, bool)
            or not IMAGE_ID_PATTERN.match(image_id)
        ):
            raise CocoaError(
                f"{where} has the id {_short(coco_id)}; expected an integer or a name of A-Z, a-z, 0-9, _ and -"
            )
        if not isinstance(entry.get("file_name"), str) or not entry["file_name"]:
            raise CocoaError(
                f"{where} (id {image_id}) has the file_name {_short(entry.get('file_name'))}; expected a file name"
            )
        if not (_positive_int(entry.get("width")) and _positive_int(entry.get("height"))):
            raise CocoaError(
                f"{where} (id {image_id}) has width {_short(entry.get('width'))} and height "
                f"{_short(entry.get('height'))}; expected positive integers"
            )
        if coco_id in images:
            raise CocoaError(f"{where} repeats the image id {image_id}; image ids must be unique")
        images[coco_id] = ImageEntry(image_id, entry["file_name"], entry["width"], entry["height"])
    return images


def _region_masks(
    region: object, where: str, height: int, width: int
) -> tuple[np.ndarray, np.ndarray | None]:
    """Decode the amodal mask and, when annotated, the visible mask of one region."""
    if not isinstance(region, dict):
        raise CocoaError(f"{where} is {_short(region)}, expected an object")
    if "segmentation" not in region:
        raise CocoaError(
            f"{where} has no segmentation; expected the amodal polygon [x0, y0, x1, y1, ...]"
        )
    try:
        segmentation = region["segmentation"]
        if isinstance(segmentation, dict):
            amodal = decode_rle(segmentation, height, width)
        else:
            amodal = rasterize_polygons(segmentation, height, width)
        visible = None
        if region.get("visible_mask") is not None:
            visible = decode_rle(region["visible_mask"], height, width)
        elif region.get("invisible_mask") is not None:
            visible = ~decode_rle(region["invisible_mask"], height, width)
    except ValueError as error:
        raise CocoaError(f"{where}: {error}") from None
    if visible is not None:
        if region.get("visible_mask") is not None:
            amodal = amodal | visible
        visible = visible & amodal
    return amodal, visible


def _order(region: RegionMasks, where: str) -> int:
    if not isinstance(region.order, int) or isinstance(region.order, bool):
        raise CocoaError(
            f"{where} region {region.region_index} has the order {_short(region.order)}; "
            "expected an integer depth rank, 1 = front-most"
        )
    return region.order


def _parse_region(region: object, where: str, index: int, image: ImageEntry) -> RegionMasks:
    amodal, visible = _region_masks(region, where, image.height, image.width)
    name = region.get("name")
    if not isinstance(name, str) or not name.strip():
        raise CocoaError(f"{where} has the name {_short(name)}; expected the category as a string")
    tags = ["cocoa"]
    if isinstance(region.get("isStuff"), bool):
        tags.append("stuff" if region["isStuff"] else "thing")
    return RegionMasks(index, name.strip(), region.get("order"), amodal, visible, tuple(tags))


def annotation_regions(
    annotation: object, where: str, image: ImageEntry
) -> tuple[list[RegionMasks], int]:
    """Decode the regions of one annotation; returns those with a visible part and the count skipped."""
    if not isinstance(annotation, dict) or not isinstance(annotation.get("regions"), list):
        raise CocoaError(f"{where} has no list 'regions' (found {_short(annotation)})")
    regions = [
        _parse_region(region, f"{where} region {index}", index, image)
        for index, region in enumerate(annotation["regions"])
    ]

    with_visible_part: list[RegionMasks] = []
    for region in regions:
        if region.visible is None:
            # Without a visible or invisible mask, a region is hidden where a region in
            # front of it (smaller order) covers it.
            order = _order(region, where)
            covered = np.zeros_like(region.amodal)
            for other in regions:
                if other is not region and _order(other, where) < order:
                    covered |= other.amodal
            region.visible = region.amodal & ~covered
        if not region.visible.any():
            logger.warning(
                "skipping %s region %d (%s): its visible part is empty",
                where,
                region.region_index,
                region.category,
            )
            continue
        with_visible_part.append(region)
    return with_visible_part, len(regions) - len(with_visible_part)


def deepest_point(visible: np.ndarray) -> tuple[float, float]:
    """Find the centre of the visible pixel farthest from the mask's border (first in row order on ties)."""
    distance = distance_transform_edt(np.pad(visible, 1))[1:-1, 1:-1]
    y, x = np.unravel_index(int(np.argmax(distance)), distance.shape)
    return (float(x) + 0.5, float(y) + 0.5)


def _region_prompt(kind: str, visible: np.ndarray, sample_id: str) -> Prompt:
    if kind == "box":
        rows = np.flatnonzero(visible.any(axis=1))
        cols = np.flatnonzero(visible.any(axis=0))
        return Prompt(
            box=(float(cols[0]), float(rows[0]), float(cols[-1] + 1), float(rows[-1] + 1))
        )
    if kind == "mask":
        return Prompt(mask=f"prompts/{sample_id}.png")
    return Prompt(points=(deepest_point(visible),))


def _copy_image(writer: SplitWriter, image: ImageEntry, images_dir: Path) -> None:
    path = images_dir / image.file_name
    try:
        with Image.open(path) as opened:
            size, image_format = opened.size, opened.format
            rgb = None if image_format in COPIED_FORMATS else np.asarray(opened.convert("RGB"))
    except (UnidentifiedImageError, OSError) as error:
        raise CocoaError(
            f"image file {path} (image id {image.image_id}) cannot be read: {error}"
        ) from None
    if size != (image.width, image.height):
        raise CocoaError(
            f"image file {path} is {size[0]}x{size[1]} but images lists {image.width}x{image.height} "
            f"for id {image.image_id}; fix width and height or the file"
        )
    if rgb is None:
        target = writer.root / f"images/{image.image_id}{COPIED_FORMATS[image_format]}"
        target.write_bytes(path.read_bytes())
    else:
        writer.add_image(image.image_id, rgb)


def import_cocoa(
    annotations: str | Path, images_dir: str | Path, out: str | Path, overwrite: bool = False
) -> ImportSummary:
    """Convert a COCOA annotation file and its images into a split folder at `out`.

    Raises CocoaError naming the value for malformed annotations, a missing or
    unreadable image, or an image whose size differs from its entry.
    """
    data = load_annotations(annotations)
    images = parse_images(data["images"])
    images_dir = Path(images_dir)
    if not images_dir.is_dir():
        raise CocoaError(f"image folder {images_dir} not found; check --images")

    by_image: dict[object, list[tuple[int, object]]] = {}
    for index, annotation in enumerate(data["annotations"]):
        coco_id = annotation.get("image_id") if isinstance(annotation, dict) else None
        if coco_id not in images:
            raise CocoaError(
                f"annotations[{index}] refers to image_id {_short(coco_id)}, which is not in images"
            )
        by_image.setdefault(coco_id, []).append((index, annotation))

    for coco_id in by_image:
        path = images_dir / images[coco_id].file_name
        if not path.is_file():
            raise CocoaError(
                f"image file {path} (image id {images[coco_id].image_id}) not found; "
                "check --images and the file_name in images"
            )

    written = skipped = images_written = 0
    with SplitWriter(out, overwrite=overwrite) as writer:
        for coco_id, entries in by_image.items():
            image = images[coco_id]
            image_samples = 0
            for number, (index, annotation) in enumerate(entries):
                where = f"annotations[{index}] (image_id {image.image_id})"
                regions, region_skips = annotation_regions(annotation, where, image)
                skipped += region_skips
                for region in regions:
                    sample_id = f"{image.image_id}_a{number}_r{region.region_index}"
                    kind = PROMPT_CYCLE[written % len(PROMPT_CYCLE)]
                    amodal_area = int(region.amodal.sum())
                    sample = Sample(
                        sample_id=sample_id,
                        image_id=image.image_id,
                        width=image.width,
                        height=image.height,
                        layer_kind="foreground",
                        prompt=_region_prompt(kind, region.visible, sample_id),
                        gt_kind="amodal_mask",
                        category=region.category,
                        occlusion_rate=round(
                            (amodal_area - int(region.visible.sum())) / amodal_area, 6
                        ),
                        tags=region.tags,
                    )
                    layer = np.zeros((image.height, image.width, 4), dtype=np.uint8)
                    layer[:, :, 3] = region.amodal * 255
                    writer.add_sample(
                        sample, layer, region.visible, region.visible if kind == "mask" else None
                    )
                    written += 1
                    image_samples += 1
            if image_samples:
                _copy_image(writer, image, images_dir)
                images_written += 1
    if written == 0:
        raise CocoaError(
            f"no region of {annotations} has a visible part, so {out} has no samples; "
            "check the annotations' visible_mask and order"
        )
    logger.info(
        "imported %d regions of %d images into %s, skipped %d",
        written,
        images_written,
        out,
        skipped,
    )
    return ImportSummary(Path(out), written, images_written, skipped)


def _short(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."

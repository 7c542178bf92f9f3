"""Split packages: the typed manifest, validation, reading, writing and public export.

A split is a folder, or a .tar of one, laid out as:

    manifest.jsonl              one JSON object per sample, in a fixed order
    images/<image_id>.png|.jpg  the input RGB images, shared by the samples of a scene
    prompts/<sample_id>.png     mask prompts (8-bit L, 0 or 255), only where used
    gt/layers/<sample_id>.png   ground-truth complete layer, RGBA, straight alpha
    gt/visible/<sample_id>.png  ground-truth visible mask of that layer (8-bit L)

`gt/` is the hidden part. For `gt_kind: amodal_mask` samples (mask-only ground
truth, as in COCOA) the alpha channel of `gt/layers/<sample_id>.png` is the amodal
mask and its RGB carries no ground truth. The public inputs package is the same tree
without `gt/` and without the ground-truth-only manifest fields.

Coordinates are pixels with the origin at the top-left corner of the image: x grows
to the right, y downwards; a point lies in [0, width] x [0, height] and a box is
[x0, y0, x1, y1] with x0 < x1 and y0 < y1.
"""

from __future__ import annotations

import io
import json
import re
import shutil
import tarfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path, PurePosixPath
from typing import BinaryIO

import numpy as np
from PIL import Image

from evaluator.problems import Problem, format_problems

SAMPLE_ID_PATTERN = re.compile(r"^[A-Za-z0-9_-]{1,128}$")
IMAGE_ID_PATTERN = SAMPLE_ID_PATTERN
LAYER_KINDS = ("foreground", "background")
GT_KINDS = ("rgba", "amodal_mask")
PROMPT_KEYS = ("points", "box", "mask", "text")
IMAGE_EXTENSIONS = (".png", ".jpg")
REQUIRED_FIELDS = ("sample_id", "image_id", "width", "height", "layer_kind", "prompt")
OPTIONAL_FIELDS = ("prompt_type", "gt_kind", "category", "occlusion_rate", "tags")
# Manifest fields that reveal the ground truth; the public package drops them.
GROUND_TRUTH_ONLY_FIELDS = ("occlusion_rate",)
# Largest accepted image side, so a manifest cannot ask for absurd allocations.
MAX_IMAGE_SIDE = 16384


class SplitError(ValueError):
    """A split package that cannot be used; `problems` lists every defect found."""

    def __init__(self, path: str, problems: list[Problem]):
        self.path = path
        self.problems = problems
        super().__init__(f"invalid split {path}\n{format_problems(problems)}")


@dataclass(frozen=True)
class Prompt:
    """The user's reference to a layer: any combination of points, a box, a mask and text.

    `points` and `box` are in pixels of the input image; `mask` is the path of an
    8-bit mask inside the split (`prompts/<sample_id>.png`).
    """

    points: tuple[tuple[float, float], ...] | None = None
    box: tuple[float, float, float, float] | None = None
    mask: str | None = None
    text: str | None = None

    @property
    def prompt_type(self) -> str:
        """The derived label, parts in the order text, point, box, mask: `text+box`."""
        parts = []
        if self.text is not None:
            parts.append("text")
        if self.points is not None:
            parts.append("point")
        if self.box is not None:
            parts.append("box")
        if self.mask is not None:
            parts.append("mask")
        return "+".join(parts)

    def to_json(self) -> dict:
        obj: dict = {}
        if self.points is not None:
            obj["points"] = [[x, y] for x, y in self.points]
        if self.box is not None:
            obj["box"] = list(self.box)
        if self.mask is not None:
            obj["mask"] = self.mask
        if self.text is not None:
            obj["text"] = self.text
        return obj


@dataclass(frozen=True)
class Sample:
    """One manifest row: an image, a prompt and the layer it refers to."""

    sample_id: str
    image_id: str
    width: int
    height: int
    layer_kind: str
    prompt: Prompt
    gt_kind: str = "rgba"
    category: str | None = None
    occlusion_rate: float | None = None
    tags: tuple[str, ...] = ()

    @property
    def prompt_type(self) -> str:
        return self.prompt.prompt_type

    def to_json(self, public: bool = False) -> dict:
        """Return the manifest object; `public=True` drops the ground-truth-only fields."""
        obj: dict = {
            "sample_id": self.sample_id,
            "image_id": self.image_id,
            "width": self.width,
            "height": self.height,
            "layer_kind": self.layer_kind,
            "prompt": self.prompt.to_json(),
            "prompt_type": self.prompt_type,
            "gt_kind": self.gt_kind,
        }
        if self.category is not None:
            obj["category"] = self.category
        if self.occlusion_rate is not None:
            obj["occlusion_rate"] = self.occlusion_rate
        if self.tags:
            obj["tags"] = list(self.tags)
        if public:
            for name in GROUND_TRUTH_ONLY_FIELDS:
                obj.pop(name, None)
        return obj


def _number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and np.isfinite(value)


def _parse_prompt(obj: object, where: str, width: int, height: int, problems: list[Problem]):
    if not isinstance(obj, dict) or not obj:
        problems.append(Problem(
            "prompt_invalid", where, "prompt is not a non-empty object",
            "an object with any of points, box, mask, text", repr(obj)[:80],
            "Give at least one prompt key.",
        ))
        return None
    unknown = sorted(set(obj) - set(PROMPT_KEYS))
    if unknown:
        problems.append(Problem(
            "prompt_unknown_key", where, f"unknown prompt key {', '.join(unknown)}",
            ", ".join(PROMPT_KEYS), ", ".join(unknown), "Remove or rename the key.",
        ))
    count = len(problems)

    points = obj.get("points")
    if points is not None:
        if (
            not isinstance(points, list)
            or not points
            or not all(isinstance(p, list) and len(p) == 2 and all(map(_number, p)) for p in points)
        ):
            problems.append(Problem(
                "prompt_points_invalid", where, "points are not a list of [x, y] pairs",
                "[[x, y], ...] in pixels", repr(points)[:80], "Write each point as [x, y].",
            ))
        else:
            for x, y in points:
                if not (0 <= x <= width and 0 <= y <= height):
                    problems.append(Problem(
                        "prompt_point_outside", where, "point lies outside the image",
                        f"0 <= x <= {width}, 0 <= y <= {height}", f"[{x}, {y}]",
                        "Points are pixel coordinates of the input image.",
                    ))
            points = tuple((float(x), float(y)) for x, y in points)

    box = obj.get("box")
    if box is not None:
        if not isinstance(box, list) or len(box) != 4 or not all(map(_number, box)):
            problems.append(Problem(
                "prompt_box_invalid", where, "box is not four numbers",
                "[x0, y0, x1, y1] in pixels", repr(box)[:80], "Write the box as [x0, y0, x1, y1].",
            ))
        else:
            x0, y0, x1, y1 = box
            if not (0 <= x0 < x1 <= width and 0 <= y0 < y1 <= height):
                problems.append(Problem(
                    "prompt_box_outside", where, "box is empty or outside the image",
                    f"0 <= x0 < x1 <= {width}, 0 <= y0 < y1 <= {height}", f"{box}",
                    "Boxes are [x0, y0, x1, y1] in pixels of the input image.",
                ))
            box = tuple(float(v) for v in box)

    mask = obj.get("mask")
    if mask is not None and (not isinstance(mask, str) or not _safe_relative(mask)):
        problems.append(Problem(
            "prompt_mask_invalid", where, "mask is not a relative path inside the split",
            "prompts/<sample_id>.png", repr(mask)[:80], "Store mask prompts under prompts/.",
        ))

    text = obj.get("text")
    if text is not None and (not isinstance(text, str) or not text.strip()):
        problems.append(Problem(
            "prompt_text_invalid", where, "text is not a non-empty string",
            "a description of the layer", repr(text)[:80], "Give the text as a string.",
        ))

    if len(problems) > count:
        return None
    return Prompt(points=points, box=box, mask=mask, text=text)


def _safe_relative(path: str) -> bool:
    pure = PurePosixPath(path)
    return bool(path) and not pure.is_absolute() and ".." not in pure.parts and "\\" not in path


def parse_sample(obj: object, where: str) -> tuple[Sample | None, list[Problem]]:
    """Parse one manifest object; returns the sample, or None and the problems found."""
    problems: list[Problem] = []
    if not isinstance(obj, dict):
        problems.append(Problem(
            "manifest_not_object", where, "manifest line is not a JSON object",
            "an object", type(obj).__name__, "Write one JSON object per line.",
        ))
        return None, problems

    missing = [name for name in REQUIRED_FIELDS if name not in obj]
    if missing:
        problems.append(Problem(
            "manifest_missing_field", where, f"missing field {', '.join(missing)}",
            ", ".join(REQUIRED_FIELDS), ", ".join(sorted(obj)), "Add the field.",
        ))
    unknown = sorted(set(obj) - set(REQUIRED_FIELDS) - set(OPTIONAL_FIELDS))
    if unknown:
        problems.append(Problem(
            "manifest_unknown_field", where, f"unknown field {', '.join(unknown)}",
            ", ".join(REQUIRED_FIELDS + OPTIONAL_FIELDS), ", ".join(unknown),
            "Remove or rename the field.",
        ))
    if missing:
        return None, problems

    sample_id = obj["sample_id"]
    if not isinstance(sample_id, str) or not SAMPLE_ID_PATTERN.match(sample_id):
        problems.append(Problem(
            "sample_id_invalid", where, "malformed sample_id",
            "1 to 128 characters of A-Z, a-z, 0-9, _ and -", repr(sample_id)[:80],
            "Rename the sample.",
        ))
    else:
        where = f"{where} ({sample_id})"
    image_id = obj["image_id"]
    if not isinstance(image_id, str) or not IMAGE_ID_PATTERN.match(image_id):
        problems.append(Problem(
            "image_id_invalid", where, "malformed image_id",
            "1 to 128 characters of A-Z, a-z, 0-9, _ and -", repr(image_id)[:80],
            "Rename the image.",
        ))

    width, height = obj["width"], obj["height"]
    size_ok = all(
        isinstance(v, int) and not isinstance(v, bool) and 1 <= v <= MAX_IMAGE_SIDE
        for v in (width, height)
    )
    if not size_ok:
        problems.append(Problem(
            "size_invalid", where, "width and height are not positive integers",
            f"integers in 1..{MAX_IMAGE_SIDE}", f"{width!r} x {height!r}", "Fix the size.",
        ))
        width = height = MAX_IMAGE_SIDE

    layer_kind = obj["layer_kind"]
    if layer_kind not in LAYER_KINDS:
        problems.append(Problem(
            "layer_kind_unknown", where, "unknown layer_kind", " or ".join(LAYER_KINDS),
            repr(layer_kind)[:80], "Use foreground or background.",
        ))
    gt_kind = obj.get("gt_kind", "rgba")
    if gt_kind not in GT_KINDS:
        problems.append(Problem(
            "gt_kind_unknown", where, "unknown gt_kind", " or ".join(GT_KINDS),
            repr(gt_kind)[:80], "Use rgba or amodal_mask.",
        ))

    prompt = _parse_prompt(obj["prompt"], where, width, height, problems)
    declared_type = obj.get("prompt_type")
    if prompt is not None and declared_type is not None and declared_type != prompt.prompt_type:
        problems.append(Problem(
            "prompt_type_mismatch", where, "prompt_type does not match the prompt's keys",
            prompt.prompt_type, repr(declared_type)[:80],
            "Drop prompt_type or set it to the derived label.",
        ))

    category = obj.get("category")
    if category is not None and not isinstance(category, str):
        problems.append(Problem(
            "category_invalid", where, "category is not a string", "a string",
            repr(category)[:80], "Give the category as a string.",
        ))
    occlusion_rate = obj.get("occlusion_rate")
    if occlusion_rate is not None and not (_number(occlusion_rate) and 0 <= occlusion_rate <= 1):
        problems.append(Problem(
            "occlusion_rate_invalid", where, "occlusion_rate is not a number in [0, 1]",
            "a number in [0, 1]", repr(occlusion_rate)[:80],
            "Give the hidden share of the layer's alpha area.",
        ))
    tags = obj.get("tags", [])
    if not isinstance(tags, list) or not all(isinstance(tag, str) for tag in tags):
        problems.append(Problem(
            "tags_invalid", where, "tags are not a list of strings", "a list of strings",
            repr(tags)[:80], "Give tags as a list of strings.",
        ))

    if problems:
        return None, problems
    sample = Sample(
        sample_id=sample_id,
        image_id=image_id,
        width=width,
        height=height,
        layer_kind=layer_kind,
        prompt=prompt,
        gt_kind=gt_kind,
        category=category,
        occlusion_rate=None if occlusion_rate is None else float(occlusion_rate),
        tags=tuple(tags),
    )
    return sample, problems


class _FolderSource:
    def __init__(self, root: Path):
        self.root = root

    def exists(self, name: str) -> bool:
        return (self.root / name).is_file()

    def read(self, name: str) -> bytes:
        return (self.root / name).read_bytes()

    def open(self, name: str) -> BinaryIO:
        return (self.root / name).open("rb")

    def has_prefix(self, prefix: str) -> bool:
        return (self.root / prefix).is_dir()

    def close(self) -> None:
        pass


class _TarSource:
    """Reads members of a tar by name, never extracting to disk.

    A single wrapping folder (`val/manifest.jsonl`) is accepted. Only regular file
    members are visible, so links and devices inside the archive are ignored.
    """

    def __init__(self, path: Path):
        self.path = path
        self._tar = tarfile.open(path, "r:*")
        # `tar -C folder .` writes names like ./manifest.jsonl; PurePosixPath drops the "./".
        members = {
            PurePosixPath(m.name).as_posix(): m for m in self._tar.getmembers() if m.isfile()
        }
        manifests = [name for name in members if PurePosixPath(name).name == "manifest.jsonl"]
        shortest = min(manifests, key=len) if manifests else "manifest.jsonl"
        self.prefix = str(PurePosixPath(shortest).parent)
        self.prefix = "" if self.prefix == "." else self.prefix + "/"
        self.members = {
            name[len(self.prefix):]: m for name, m in members.items() if name.startswith(self.prefix)
        }

    def exists(self, name: str) -> bool:
        return name in self.members

    def read(self, name: str) -> bytes:
        with self.open(name) as handle:
            return handle.read()

    def open(self, name: str) -> BinaryIO:
        handle = self._tar.extractfile(self.members[name])
        assert handle is not None  # regular files always have a stream
        return handle

    def has_prefix(self, prefix: str) -> bool:
        return any(name.startswith(prefix + "/") for name in self.members)

    def close(self) -> None:
        self._tar.close()


class Split:
    """A validated split package, read lazily from a folder or a .tar.

    Opening reads and validates the manifest and checks that each referenced file
    exists with the right size; images are decoded only when asked for. Raises
    `SplitError` listing every problem when the package is invalid.
    """

    def __init__(self, path: str | Path, check_files: bool = True):
        self.path = Path(path)
        if self.path.is_dir():
            self._source: _FolderSource | _TarSource = _FolderSource(self.path)
        elif self.path.is_file() and tarfile.is_tarfile(self.path):
            self._source = _TarSource(self.path)
        else:
            raise SplitError(str(path), [Problem(
                "split_not_found", str(path), "split is neither a folder nor a .tar file",
                "a folder or a .tar with manifest.jsonl", "nothing readable",
                "Check the path.",
            )])
        try:
            self.has_ground_truth = self._source.has_prefix("gt")
            self.samples = self._read_manifest()
            self._by_id = {sample.sample_id: index for index, sample in enumerate(self.samples)}
            self._image_names: dict[str, str] = {}
            problems = self._check_files(check_files)
            if problems:
                raise SplitError(str(path), problems)
        except SplitError:
            # An invalid package is never returned, so its tar handle is closed here.
            self._source.close()
            raise

    def __len__(self) -> int:
        return len(self.samples)

    def __iter__(self) -> Iterator[Sample]:
        return iter(self.samples)

    def __contains__(self, sample_id: object) -> bool:
        return sample_id in self._by_id

    def index(self, sample_id: str) -> int:
        return self._by_id[sample_id]

    def sample(self, sample_id: str) -> Sample:
        return self.samples[self._by_id[sample_id]]

    def close(self) -> None:
        self._source.close()

    def __enter__(self) -> Split:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __getstate__(self) -> dict:
        # Loader processes reopen the package instead of sharing a tar handle.
        return {"path": str(self.path)}

    def __setstate__(self, state: dict) -> None:
        self.__init__(state["path"], check_files=False)

    def _read_manifest(self) -> list[Sample]:
        if not self._source.exists("manifest.jsonl"):
            raise SplitError(str(self.path), [Problem(
                "manifest_missing", "manifest.jsonl", "manifest is missing",
                "manifest.jsonl at the top of the split", "no such file",
                "Write one JSON object per sample to manifest.jsonl.",
            )])
        problems: list[Problem] = []
        samples: list[Sample] = []
        seen: dict[str, tuple[str, int]] = {}
        text = self._source.read("manifest.jsonl").decode("utf-8", errors="replace")
        for line_no, line in enumerate(text.splitlines(), start=1):
            if not line.strip():
                continue
            where = f"manifest.jsonl line {line_no}"
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as error:
                problems.append(Problem(
                    "manifest_json_invalid", where, f"invalid JSON: {error.msg}",
                    "one JSON object per line", line[:80], "Fix the line.",
                ))
                continue
            sample, found = parse_sample(obj, where)
            problems += found
            if sample is None:
                continue
            # Ids are compared without case: submission file names are, on many systems.
            key = sample.sample_id.lower()
            if key in seen:
                first_id, first_line = seen[key]
                if first_id == sample.sample_id:
                    problems.append(Problem(
                        "sample_id_duplicate", where, f"duplicate sample_id {sample.sample_id}",
                        "unique sample ids", f"also on line {first_line}",
                        "Give every sample its own id.",
                    ))
                else:
                    problems.append(Problem(
                        "sample_id_case_duplicate", where,
                        f"sample_id {sample.sample_id} differs from {first_id} only by case",
                        "sample ids unique without regard to case", f"{first_id} on line {first_line}",
                        "Rename one of the samples.",
                    ))
                continue
            seen[key] = (sample.sample_id, line_no)
            samples.append(sample)
        if not samples and not problems:
            problems.append(Problem(
                "manifest_empty", "manifest.jsonl", "manifest has no samples",
                "at least one sample", "0", "Add samples.",
            ))
        if problems:
            raise SplitError(str(self.path), problems)
        return samples

    def _check_files(self, check_sizes: bool) -> list[Problem]:
        problems: list[Problem] = []
        image_sizes: dict[str, tuple[int, int]] = {}
        # Samples of one scene share an image; a wrong size is reported once per image and size.
        reported_sizes: set[tuple[str, tuple[int, int]]] = set()
        for sample in self.samples:
            expected = (sample.width, sample.height)
            image_name = self._find_image(sample.image_id)
            if image_name is None:
                problems.append(Problem(
                    "image_missing", f"images/{sample.image_id}.png", "input image is missing",
                    f"images/{sample.image_id}.png or .jpg", "no such file",
                    f"Add the image of sample {sample.sample_id}.",
                ))
            elif check_sizes:
                if image_name not in image_sizes:
                    image_sizes[image_name] = self._image_size(image_name)
                if image_sizes[image_name] != expected and (image_name, expected) not in reported_sizes:
                    reported_sizes.add((image_name, expected))
                    problems.append(self._size_problem(image_name, expected, image_sizes[image_name]))

            files = []
            if sample.prompt.mask is not None:
                files.append(("mask_prompt_missing", sample.prompt.mask, "mask prompt"))
            if self.has_ground_truth:
                files.append(("gt_layer_missing", f"gt/layers/{sample.sample_id}.png", "ground-truth layer"))
                files.append(("gt_visible_missing", f"gt/visible/{sample.sample_id}.png", "ground-truth visible mask"))
            for code, name, what in files:
                if not self._source.exists(name):
                    problems.append(Problem(
                        code, name, f"{what} is missing", name, "no such file",
                        f"Add the {what} of sample {sample.sample_id}.",
                    ))
                elif check_sizes:
                    found = self._image_size(name)
                    if found != expected:
                        problems.append(self._size_problem(name, expected, found))
        return problems

    @staticmethod
    def _size_problem(name: str, expected: tuple[int, int], found: tuple[int, int]) -> Problem:
        return Problem(
            "file_size_mismatch", name, "image size differs from the manifest",
            f"{expected[0]}x{expected[1]}", f"{found[0]}x{found[1]}",
            "Make the file match the sample's width and height.",
        )

    def _find_image(self, image_id: str) -> str | None:
        if image_id not in self._image_names:
            for extension in IMAGE_EXTENSIONS:
                name = f"images/{image_id}{extension}"
                if self._source.exists(name):
                    self._image_names[image_id] = name
                    break
        return self._image_names.get(image_id)

    def _image_size(self, name: str) -> tuple[int, int]:
        # Image.open reads the header only, so checking a split's sizes reads little of each file.
        try:
            with self._source.open(name) as handle, Image.open(handle) as image:
                return image.size
        except (OSError, Image.DecompressionBombError):
            return (0, 0)

    def _decode(self, name: str, mode: str) -> np.ndarray:
        with Image.open(io.BytesIO(self._source.read(name))) as image:
            return np.asarray(image.convert(mode))

    def read_bytes(self, name: str) -> bytes:
        """Return the raw bytes of a file of the package, by its path inside the split."""
        return self._source.read(name)

    def image_path(self, sample: Sample) -> str:
        name = self._find_image(sample.image_id)
        if name is None:
            raise FileNotFoundError(f"images/{sample.image_id}.png is missing from {self.path}")
        return name

    def read_image(self, sample: Sample) -> np.ndarray:
        """Decode the input image, uint8 (H, W, 3)."""
        return self._decode(self.image_path(sample), "RGB")

    def read_mask_prompt(self, sample: Sample) -> np.ndarray | None:
        """Decode the mask prompt as bool (H, W), or return None when the prompt has no mask."""
        if sample.prompt.mask is None:
            return None
        return self._decode(sample.prompt.mask, "L") >= 128

    def _require_ground_truth(self) -> None:
        if not self.has_ground_truth:
            raise SplitError(str(self.path), [Problem(
                "gt_missing", "gt/", "this is a public package without ground truth",
                "a split with gt/layers and gt/visible", "no gt/ folder",
                "Score against the full split, not its public inputs package.",
            )])

    def read_gt_layer(self, sample: Sample) -> np.ndarray:
        """Decode the ground-truth complete layer, uint8 (H, W, 4), straight alpha."""
        self._require_ground_truth()
        return self._decode(f"gt/layers/{sample.sample_id}.png", "RGBA")

    def read_gt_visible(self, sample: Sample) -> np.ndarray:
        """Decode the ground-truth visible mask as bool (H, W)."""
        self._require_ground_truth()
        return self._decode(f"gt/visible/{sample.sample_id}.png", "L") >= 128


def open_split(path: str | Path, check_files: bool = True) -> Split:
    return Split(path, check_files=check_files)


def _png_bytes(array: np.ndarray, mode: str) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(array), mode=mode).save(buffer, format="PNG")
    return buffer.getvalue()


def _as_mask(mask: np.ndarray) -> np.ndarray:
    if mask.dtype == bool:
        return mask.astype(np.uint8) * 255
    return mask.astype(np.uint8)


class SplitWriter:
    """Writes a split folder: images, samples with their files, then the manifest.

    Use as a context manager; the manifest is written on a clean exit, in the order
    the samples were added.
    """

    def __init__(self, root: str | Path, overwrite: bool = False):
        self.root = Path(root)
        if self.root.exists() and any(self.root.iterdir()):
            if not overwrite:
                raise FileExistsError(
                    f"{self.root} already exists and is not empty; choose another folder "
                    "or pass overwrite=True"
                )
            shutil.rmtree(self.root)
        for folder in ("images", "prompts", "gt/layers", "gt/visible"):
            (self.root / folder).mkdir(parents=True, exist_ok=True)
        self.samples: list[Sample] = []

    def add_image(self, image_id: str, image: np.ndarray, jpeg: bool = False) -> None:
        """Store an input image, uint8 (H, W, 3)."""
        if jpeg:
            Image.fromarray(image, "RGB").save(self.root / f"images/{image_id}.jpg", quality=95)
        else:
            (self.root / f"images/{image_id}.png").write_bytes(_png_bytes(image, "RGB"))

    def add_sample(
        self,
        sample: Sample,
        gt_layer: np.ndarray | None = None,
        gt_visible: np.ndarray | None = None,
        mask_prompt: np.ndarray | None = None,
    ) -> Sample:
        """Store a sample: the layer uint8 (H, W, 4); masks bool or uint8 0/255 (H, W).

        When `mask_prompt` is given, the prompt's mask path is set to
        `prompts/<sample_id>.png`. Returns the sample as stored.
        """
        if mask_prompt is not None:
            name = f"prompts/{sample.sample_id}.png"
            (self.root / name).write_bytes(_png_bytes(_as_mask(mask_prompt), "L"))
            sample = replace(sample, prompt=replace(sample.prompt, mask=name))
        if gt_layer is not None:
            path = self.root / f"gt/layers/{sample.sample_id}.png"
            path.write_bytes(_png_bytes(gt_layer, "RGBA"))
        if gt_visible is not None:
            path = self.root / f"gt/visible/{sample.sample_id}.png"
            path.write_bytes(_png_bytes(_as_mask(gt_visible), "L"))
        self.samples.append(sample)
        return sample

    def close(self) -> None:
        write_manifest(self.root / "manifest.jsonl", self.samples)

    def __enter__(self) -> SplitWriter:
        return self

    def __exit__(self, exc_type, *rest: object) -> None:
        if exc_type is None:
            self.close()


def write_manifest(path: Path, samples: Iterable[Sample], public: bool = False) -> None:
    with open(path, "w", encoding="utf-8") as handle:
        for sample in samples:
            handle.write(json.dumps(sample.to_json(public=public), sort_keys=False) + "\n")


def _public_files(split: Split) -> Iterator[str]:
    seen: set[str] = set()
    for sample in split.samples:
        for name in (split.image_path(sample), sample.prompt.mask):
            if name is not None and name not in seen:
                seen.add(name)
                yield name


def export_public(split: Split | str | Path, out: str | Path) -> Path:
    """Write the public inputs package: no `gt/`, no ground-truth-only fields.

    `out` ending in `.tar` gives a tar with one top folder named after the file;
    any other path gives a folder.
    """
    if not isinstance(split, Split):
        split = Split(split)
    out = Path(out)
    manifest = "".join(
        json.dumps(sample.to_json(public=True)) + "\n" for sample in split.samples
    ).encode("utf-8")

    if out.suffix == ".tar":
        top = out.stem
        with tarfile.open(out, "w") as tar:
            for name, data in [("manifest.jsonl", manifest)] + [
                (name, split.read_bytes(name)) for name in _public_files(split)
            ]:
                info = tarfile.TarInfo(f"{top}/{name}")
                info.size = len(data)
                info.mode = 0o644
                tar.addfile(info, io.BytesIO(data))
        return out

    if out.exists() and any(out.iterdir()):
        raise FileExistsError(f"{out} already exists and is not empty; choose another folder")
    (out / "images").mkdir(parents=True, exist_ok=True)
    (out / "manifest.jsonl").write_bytes(manifest)
    for name in _public_files(split):
        target = out / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(split.read_bytes(name))
    return out


@dataclass
class SplitSummary:
    """Counts of a split, for listings and the CLI."""

    samples: int
    images: int
    by_layer_kind: dict[str, int] = field(default_factory=dict)
    by_prompt_type: dict[str, int] = field(default_factory=dict)


def summarize(split: Split) -> SplitSummary:
    summary = SplitSummary(samples=len(split), images=len({s.image_id for s in split}))
    for sample in split:
        summary.by_layer_kind[sample.layer_kind] = summary.by_layer_kind.get(sample.layer_kind, 0) + 1
        summary.by_prompt_type[sample.prompt_type] = summary.by_prompt_type.get(sample.prompt_type, 0) + 1
    return summary

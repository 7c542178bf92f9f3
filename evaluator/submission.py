"""Submission zips: validation against a split, reading candidates, and writing.

A submission is a zip with one PNG per sample and candidate:

    <sample_id>.png         the only candidate of a sample (n = 1), or
    <sample_id>/<k>.png     candidates k = 0 .. n-1, for Pass-rate@K
    metadata.json           optional: a JSON object of at most 64 KiB, such as
                            {"method": "...", "links": [...], "inference": {...}}

Each PNG is RGBA with straight alpha and exactly the sample's width and height.
The reader also accepts what common tools write. One wrapping folder around
everything is stripped (`preds/<sample_id>.png`, unless `preds` is a sample id),
but a second folder level is rejected (`file_nested_too_deep`).
`__MACOSX/` and dot-files are ignored. 16-bit RGBA, grey + alpha (LA), and palette,
grey or RGB PNGs whose tRNS chunk carries transparency are converted to 8-bit RGBA
when read. Every sample has the same n, at most the benchmark's
`max_candidates`.

Problem codes, in addition to the `zip_*` codes of `evaluator.archive`:

    submission_empty         the archive contains no files, only folders or ignored
                             entries, or nothing at all
    sample_missing           a sample of the split has no PNG
    sample_unknown           a PNG named after an id that is not in the split
    file_nested_too_deep     a PNG more than one folder deep, not counting the
                             <sample_id>/ folder of candidates: a/b/<sample_id>.png
    file_unexpected          a file that is neither a candidate PNG nor metadata.json
    candidate_layout_mixed   a sample with both <id>.png and <id>/<k>.png
    candidate_index_invalid  a name other than <k>.png with k = 0, 1, 2, ..., or
                             indices that are not 0 .. n-1
    candidates_unequal       a sample whose n differs from most other samples
    candidates_too_many      n above the benchmark's max_candidates
    image_not_png            a .png file whose content is another format
    image_unreadable         a PNG that cannot be decoded (truncated, corrupt)
    image_too_many_pixels    width times height above the limit, from the header
    image_size_mismatch      width and height differ from the sample's
    image_no_alpha           a PNG without an alpha channel or tRNS transparency
    metadata_invalid         metadata.json is too large, not UTF-8 JSON, or not
                             an object, or its "method" is not a string

A sample whose file the archive rejected (a `zip_*` problem such as a symbolic
link or a member over the size limit), or whose file is nested too deep, gets only
that problem: no `sample_missing`, and no candidate index or count problem.
"""

from __future__ import annotations

import io
import json
import logging
import os
import re
import sys
import warnings
import zipfile
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import BinaryIO

import numpy as np
from PIL import Image, UnidentifiedImageError

from evaluator.archive import DEFAULT_LIMITS, KIB, ArchiveError, ArchiveLimits, SafeZip
from evaluator.problems import Problem, Report, format_count
from evaluator.split import SAMPLE_ID_PATTERN, Sample, Split

logger = logging.getLogger(__name__)

METADATA_NAME = "metadata.json"
METADATA_MAX_BYTES = 64 * KIB
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# Modes that carry transparency only through a tRNS chunk (info["transparency"]).
TRANSPARENCY_KEY_MODES = ("1", "L", "P", "RGB")
ALPHA_MODES = ("RGBA", "LA", "PA")
_CANDIDATE_INDEX = re.compile(r"^(0|[1-9][0-9]{0,5})$")

# Leading bytes of formats that people save as .png by mistake.
_SIGNATURES = (
    (b"\xff\xd8\xff", "JPEG data"),
    (b"GIF8", "GIF data"),
    (b"BM", "BMP data"),
    (b"II*\x00", "TIFF data"),
    (b"MM\x00*", "TIFF data"),
    (b"PK\x03\x04", "a zip archive"),
    (b"\x00\x00\x00\x0cjP  ", "JPEG 2000 data"),
)


class SubmissionError(ValueError):
    """An invalid submission; `report` lists every problem found."""

    def __init__(self, report: Report):
        self.report = report
        super().__init__(f"invalid submission\n{report.format()}")


# Images ----------------------------------------------------------------------------


def _describe_content(data: bytes) -> str:
    if not data:
        return "an empty file"
    if data[8:12] == b"WEBP" and data[:4] == b"RIFF":
        return "WebP data"
    for signature, description in _SIGNATURES:
        if data.startswith(signature):
            return description
    return f"data starting with {data[:8].hex()}"


def _png_header_size(data: bytes) -> tuple[int, int] | None:
    # The IHDR chunk comes first: length 13, type, width, height (big-endian).
    if len(data) < 24 or data[12:16] != b"IHDR":
        return None
    return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")


def _is_rgb16(data: bytes) -> bool:
    # IHDR bytes 24 and 25 are the bit depth and the colour type (2 is RGB).
    return len(data) > 25 and data[24] == 16 and data[25] == 2


def _has_alpha(image: Image.Image) -> bool:
    if image.mode in ALPHA_MODES:
        return True
    return image.mode in (*TRANSPARENCY_KEY_MODES, "I;16") and "transparency" in image.info


def _to_rgba(image: Image.Image) -> np.ndarray:
    if image.mode != "I;16":
        return np.array(image.convert("RGBA"), dtype=np.uint8)
    # Pillow clips 16-bit grey to 255 when converting, so scale it down here.
    grey16 = np.array(image, dtype=np.uint16)
    grey = (grey16 >> 8).astype(np.uint8)
    alpha = np.where(grey16 == image.info["transparency"], 0, 255).astype(np.uint8)
    return np.dstack([grey, grey, grey, alpha])


def _mode_description(image: Image.Image) -> str:
    if image.mode in ("I", "I;16", "I;16B"):
        return f"mode {image.mode} (16-bit grey without alpha)"
    if image.mode in TRANSPARENCY_KEY_MODES:
        return f"mode {image.mode} without transparency"
    return f"mode {image.mode}"


def decode_candidate(
    data: bytes, name: str, sample: Sample, max_pixels: int, convert: bool = True
) -> tuple[np.ndarray | None, Problem | None]:
    """Check one candidate PNG and decode its pixels once.

    The signature, the IHDR size and the mode are checked before any pixel is
    decoded, and `load()` then decodes all pixel data. Returns the layer as uint8
    (H, W, 4) with straight alpha (None with `convert=False`) and the problem found
    (None when the PNG is valid).
    """
    expected_size = f"{sample.width}x{sample.height}"
    if not data.startswith(PNG_SIGNATURE):
        return None, Problem(
            "image_not_png", name, "file is not a PNG image", "PNG data",
            _describe_content(data), "Save the layer as PNG; renaming another format is not enough.")

    header_size = _png_header_size(data)
    if header_size is None:
        return None, Problem(
            "image_unreadable", name, "PNG header is missing or corrupt", "an IHDR chunk first",
            data[8:24].hex(), "Write the PNG again with an image library.")
    width, height = header_size
    if width * height > max_pixels:
        return None, Problem(
            "image_too_many_pixels", name, "image has too many pixels",
            f"at most {max_pixels} pixels ({expected_size} for this sample)",
            f"{width}x{height} = {width * height} pixels", f"Resize the layer to {expected_size}.")
    if (width, height) != (sample.width, sample.height):
        return None, Problem(
            "image_size_mismatch", name, "image size differs from the sample's",
            expected_size, f"{width}x{height}", "Predict the layer at the input image's size.")

    try:
        with warnings.catch_warnings():
            # The pixel count was checked above against our own limit.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data), formats=["PNG"]) as image:
                if not _has_alpha(image):
                    return None, Problem(
                        "image_no_alpha", name, "image has no alpha channel",
                        "RGBA (or LA, or a palette with transparency)", _mode_description(image),
                        "Save the layer with its alpha matte as an RGBA PNG.")
                if _is_rgb16(data) and "transparency" in image.info:
                    # Pillow reduces 16-bit RGB to 8 bits but keeps the 16-bit key
                    # colour, so no pixel would match it and the layer would turn opaque.
                    return None, Problem(
                        "image_transparency_unsupported", name, "16-bit RGB transparency key is not supported",
                        "RGBA, LA, or 8-bit RGB, grey or palette with a tRNS chunk",
                        "16-bit RGB with a tRNS key colour", "Save the layer with its alpha matte as an RGBA PNG.")
                image.load()
                layer = _to_rgba(image) if convert else None
    except Image.DecompressionBombError as error:
        # Only reachable when max_pixels is set above Pillow's own guard.
        return None, Problem(
            "image_too_many_pixels", name, "image has too many pixels for Pillow's guard",
            f"at most {Image.MAX_IMAGE_PIXELS} pixels", str(error),
            f"Resize the layer to {expected_size}.")
    except UnidentifiedImageError:
        return None, Problem(
            "image_unreadable", name, "PNG cannot be decoded", "a complete, valid PNG",
            "cannot identify image file", "Write the PNG again; it may be truncated.")
    except (OSError, SyntaxError, ValueError, EOFError) as error:
        return None, Problem(
            "image_unreadable", name, "PNG cannot be decoded", "a complete, valid PNG",
            str(error) or type(error).__name__, "Write the PNG again; it may be truncated.")
    return layer, None


# Names -----------------------------------------------------------------------------


@dataclass
class _Layout:
    """The member names of each sample's candidates, and of metadata.json."""

    flat: dict[str, str] = field(default_factory=dict)  # sample_id -> "<id>.png"
    folders: dict[str, dict[int, str]] = field(default_factory=dict)  # sample_id -> k -> name
    metadata_name: str | None = None
    prefix: str = ""  # the wrapping folder, such as "preds/", or ""
    nested_samples: set[str] = field(default_factory=set)  # samples with a file nested too deep


def _wrapping_folder(names: Iterable[str], split: Split) -> str:
    """Return the prefix of a single folder around everything, or "" when there is none.

    A top folder named like a sample is that sample's candidates, not a wrapper. A
    metadata.json beside the wrapping folder is allowed.
    """
    names = [name for name in names if name != METADATA_NAME]
    tops = {PurePosixPath(name).parts[0] for name in names}
    if len(tops) != 1:
        return ""
    top = tops.pop()
    if top in split or any("/" not in name for name in names):
        return ""
    return top + "/"


def _candidate_tail(parts: Sequence[str], split: Split) -> tuple[str, int] | None:
    """Return (sample_id, parts in the tail) for a path that ends like a candidate.

    The tail is `<sample_id>/<k>.png` (two parts) or `<sample_id>.png` (one part).
    Returns None for a path that ends in neither.
    """
    stem, suffix = os.path.splitext(parts[-1])
    if suffix.lower() != ".png":
        return None
    if len(parts) >= 2 and parts[-2] in split and _CANDIDATE_INDEX.match(stem):
        return parts[-2], 2
    if stem in split:
        return stem, 1
    return None


def _nested_tail(parts: Sequence[str], prefix: str, split: Split) -> tuple[str | None, int] | None:
    """Return (sample_id or None, parts in the tail) for a PNG nested too deep, else None.

    `parts` is the path below the wrapping folder `prefix`. A candidate tail with
    more than one folder above it, the wrapping folder included, is too deep. So is
    any PNG in a folder inside the wrapping folder that is not a sample id, unless
    it reads as `<unknown id>/<k>.png`.
    """
    tail = _candidate_tail(parts, split)
    if tail is not None:
        folders_above = len(parts) - tail[1] + (1 if prefix else 0)
        return tail if folders_above > 1 else None
    stem = os.path.splitext(parts[-1])[0]
    if prefix and len(parts) == 2 and parts[0] not in split and not _CANDIDATE_INDEX.match(stem):
        return None, 1
    return None


def _classify(names: Sequence[str], split: Split, report: Report) -> _Layout:
    prefix = _wrapping_folder(names, split)
    layout = _Layout(prefix=prefix)
    for name in sorted(names):
        relative = name[len(prefix):] if name.startswith(prefix) else name
        parts = PurePosixPath(relative).parts
        stem, suffix = os.path.splitext(parts[-1])
        is_png = suffix.lower() == ".png"
        nested = _nested_tail(parts, prefix, split) if is_png and len(parts) > 1 else None
        if len(parts) == 1 and parts[0] == METADATA_NAME:
            layout.metadata_name = name
        elif nested is not None:
            sample_id, tail_parts = nested
            report.add(_nested_too_deep(name, tail_parts))
            if sample_id is not None:
                layout.nested_samples.add(sample_id)
        elif len(parts) == 1 and is_png:
            if stem in split:
                layout.flat[stem] = name
            else:
                report.add(_unknown_sample(name, stem))
        elif len(parts) == 2 and is_png:
            sample_id = parts[0]
            if sample_id not in split:
                report.add(_unknown_sample(name, sample_id))
            elif not _CANDIDATE_INDEX.match(stem):
                report.add(Problem(
                    "candidate_index_invalid", name, "candidate file is not named <k>.png",
                    "0.png, 1.png, ... without leading zeros", parts[-1],
                    f"Rename it to {sample_id}/<k>.png, k counting from 0."))
            else:
                layout.folders.setdefault(sample_id, {})[int(stem)] = name
        else:
            report.add(Problem(
                "file_unexpected", name, "file is neither a candidate PNG nor metadata.json",
                "<sample_id>.png, <sample_id>/<k>.png or metadata.json", name,
                "Remove the file or rename it."))
    return layout


def _nested_too_deep(name: str, tail_parts: int) -> Problem:
    folders = "/".join(PurePosixPath(name).parts[:-tail_parts]) + "/"
    return Problem(
        "file_nested_too_deep", name, "file is nested too deep",
        "<sample_id>.png or <sample_id>/<k>.png at the top level or inside one folder",
        f"inside {folders}",
        "Put the PNGs at the top level of the zip or inside one folder. For example, run "
        "`zip -r ../preds.zip .` inside the folder that contains the PNGs or the <sample_id> folders.")


def _rejected_samples(names: Iterable[str], split: Split) -> set[str]:
    """Return the samples that files rejected by the archive checks were meant for.

    A stored name may contain backslashes or `..`, so it is split on both separators.
    """
    samples = set()
    for name in names:
        parts = [part for part in re.split(r"[/\\]", name) if part]
        tail = _candidate_tail(parts, split) if parts else None
        if tail is not None:
            samples.add(tail[0])
    return samples


def _empty_archive(archive: SafeZip) -> Problem:
    counts = []
    if archive.folders:
        counts.append(format_count(len(archive.folders), "folder"))
    if archive.ignored:
        counts.append(format_count(len(archive.ignored), "ignored file"))
    found = "only " + " and ".join(counts) if counts else "no entries"
    hint = ("Create the zip again from the folder of PNGs, for example with `zip -r ../preds.zip .` "
            "run inside that folder.")
    if archive.ignored:
        hint += " Files under __MACOSX/ and names that start with a dot are ignored."
    return Problem("submission_empty", archive.display_name, "archive contains no files",
                   "a PNG for every sample of the split", found, hint)


def _unknown_sample(name: str, sample_id: str) -> Problem:
    return Problem(
        "sample_unknown", name, "no sample of the split has this id",
        "an id from the split's manifest.jsonl", repr(sample_id)[:80],
        "Name each PNG after a sample_id of the split; check that you validate "
        "against the right split.")


# Candidates ------------------------------------------------------------------------


def _format_indices(indices: Iterable[int]) -> str:
    ordered = sorted(indices)
    text = ", ".join(str(k) for k in ordered[:10])
    return text + (", ..." if len(ordered) > 10 else "")


def _candidate_names(split: Split, layout: _Layout, report: Report,
                     explained: set[str]) -> dict[str, list[str]]:
    """Map each sample to its candidate names by k, reporting missing and mixed layouts.

    A sample in `explained` already has a problem for a file of its own, so a missing
    file or a gap in its indices is not reported again. Its candidates are kept
    for the image checks, sorted by k.
    """
    candidates: dict[str, list[str]] = {}
    for sample in split:
        sample_id = sample.sample_id
        flat = layout.flat.get(sample_id)
        folder = layout.folders.get(sample_id)
        if flat is not None and folder is not None:
            report.add(Problem(
                "candidate_layout_mixed", f"{flat} and {PurePosixPath(flat).with_name(sample_id)}/",
                "sample has both a single PNG and a folder of candidates",
                f"either {sample_id}.png or {sample_id}/<k>.png", "both",
                "Use <sample_id>.png for one candidate, <sample_id>/<k>.png for several."))
        elif flat is not None:
            candidates[sample_id] = [flat]
        elif folder is not None and sample_id in explained:
            candidates[sample_id] = [folder[k] for k in sorted(folder)]
        elif folder is not None:
            if sorted(folder) != list(range(len(folder))):
                first = folder[min(folder)]
                report.add(Problem(
                    "candidate_index_invalid", str(PurePosixPath(first).parent) + "/",
                    "candidate indices are not 0 .. n-1", f"0 .. {len(folder) - 1}",
                    _format_indices(folder), "Number the candidates 0, 1, 2, ... without gaps."))
            else:
                candidates[sample_id] = [folder[k] for k in range(len(folder))]
        elif sample_id not in explained:
            report.add(Problem(
                "sample_missing", f"{layout.prefix}{sample_id}.png", "sample has no prediction",
                f"{layout.prefix}{sample_id}.png or {layout.prefix}{sample_id}/0.png", "no such file",
                "Add a PNG for every sample of the split."))
    return candidates


def _check_counts(candidates: dict[str, list[str]], max_candidates: int, display_name: str,
                  report: Report, explained: set[str]) -> int:
    """Return the common n, reporting samples that differ from it and an n above the maximum.

    Samples in `explained` may lack a rejected candidate, so they neither set n nor
    get a `candidates_unequal` problem, unless no other sample has candidates.
    """
    counted = {sample_id: names for sample_id, names in candidates.items() if sample_id not in explained}
    counted = counted or candidates
    if not counted:
        return 0
    counts = Counter(len(names) for names in counted.values())
    n, how_many = max(counts.items(), key=lambda item: (item[1], -item[0]))
    for sample_id, names in counted.items():
        if len(names) != n:
            where = str(PurePosixPath(names[0]).parent) + "/" if len(names) > 1 else names[0]
            report.add(Problem(
                "candidates_unequal", where, f"sample {sample_id} has a different number of candidates",
                f"{n}, as {how_many} other sample{'s have' if how_many != 1 else ' has'}", str(len(names)),
                "Give every sample the same number of candidates."))
    if n > max_candidates:
        report.add(Problem(
            "candidates_too_many", display_name, "too many candidates per sample",
            f"at most {max_candidates}", str(n),
            f"Submit at most {max_candidates} candidates per sample."))
    return n


def _read_metadata(archive: SafeZip, name: str, report: Report) -> dict:
    def invalid(message: str, expected: str, found: str, hint: str) -> dict:
        report.add(Problem("metadata_invalid", name, message, expected, found, hint))
        return {}

    if archive.members[name].size > METADATA_MAX_BYTES:
        return invalid("metadata.json is too large", f"at most {METADATA_MAX_BYTES} bytes",
                       f"{archive.members[name].size} bytes", "Keep only the method's description.")
    try:
        data = archive.read(name)
    except ArchiveError as error:
        report.add(error.problem)
        return {}
    try:
        metadata = json.loads(data.decode("utf-8"))
    except UnicodeDecodeError as error:
        return invalid("metadata.json is not UTF-8", "UTF-8 text", str(error), "Save it as UTF-8.")
    except json.JSONDecodeError as error:
        return invalid("metadata.json is not valid JSON", "a JSON object",
                       f"{error.msg} at line {error.lineno} column {error.colno}", "Fix the JSON.")
    except RecursionError:
        return invalid("metadata.json is not valid JSON", "a JSON object",
                       "arrays or objects nested too deeply", "Fix the JSON.")
    except ValueError:
        # Python refuses to parse integers longer than sys.get_int_max_str_digits().
        return invalid("metadata.json is not valid JSON", "a JSON object",
                       f"an integer of more than {sys.get_int_max_str_digits()} digits", "Fix the JSON.")
    if not isinstance(metadata, dict):
        return invalid("metadata.json is not a JSON object", "a JSON object",
                       type(metadata).__name__, 'Write an object such as {"method": "..."}.')
    method = metadata.get("method")
    if method is not None and (not isinstance(method, str) or not method.strip()):
        return invalid('"method" in metadata.json is not a non-empty string', "a string",
                       repr(method)[:80], "Give the method's name as a string.")
    return metadata


# Validation ------------------------------------------------------------------------


@dataclass
class _Validated:
    report: Report
    candidates: dict[str, list[str]]
    n_candidates: int
    metadata: dict


def _validate(archive: SafeZip, split: Split, max_candidates: int,
              check_images: bool = True) -> _Validated:
    if max_candidates < 1:
        raise ValueError(f"max_candidates must be at least 1, got {max_candidates}")
    report = Report(problems=list(archive.problems))
    if not archive.readable:
        return _Validated(report, {}, 0, {})
    if not archive.members and not archive.rejected:
        report.add(_empty_archive(archive))
        return _Validated(report, {}, 0, {})

    layout = _classify(list(archive.members), split, report)
    explained = layout.nested_samples | _rejected_samples(archive.rejected, split)
    candidates = _candidate_names(split, layout, report, explained)
    n = _check_counts(candidates, max_candidates, archive.display_name, report, explained)
    for sample_id, names in candidates.items() if check_images else ():
        sample = split.sample(sample_id)
        for name in names:
            try:
                data = archive.read(name)
            except ArchiveError as error:
                report.add(error.problem)
                continue
            _, problem = decode_candidate(data, name, sample, archive.limits.max_pixels, convert=False)
            if problem is not None:
                report.add(problem)

    metadata = {} if layout.metadata_name is None else _read_metadata(archive, layout.metadata_name, report)
    report.summary = {"samples": len(candidates), "candidates": n}
    if isinstance(metadata.get("method"), str):
        report.summary["method"] = metadata["method"]
    logger.info("validated %s against %s: %s", archive.display_name, split.path,
                format_count(len(report.problems), "problem"))
    return _Validated(report, candidates, n, metadata)


def validate_submission(
    zip_path: str | Path | BinaryIO,
    split: Split,
    max_candidates: int = 8,
    limits: ArchiveLimits = DEFAULT_LIMITS,
    display_name: str | None = None,
) -> Report:
    """Validate a submission zip against a split and return the report of every problem.

    `report.summary` contains `samples` (samples with predictions), `candidates` (n) and,
    when metadata.json names one, `method`. Problems name the archive `display_name`,
    by default the file's own name.
    """
    with SafeZip(zip_path, limits, display_name) as archive:
        return _validate(archive, split, max_candidates).report


class SubmissionArchive:
    """A validated submission; raises SubmissionError with the full report when invalid.

    `check_images=False` checks the archive, the names, the candidate counts and
    metadata.json but decodes no image. Use it only for a zip that passed a full
    validation before, such as in each scoring chunk. `read_candidate` still checks
    every image that it reads.

    Pickling keeps the validated index and reopens the zip by path, without
    validating again, so DataLoader workers can read candidates. A process that
    inherits an open archive through fork reopens it too, because processes must
    not share one file offset.
    """

    def __init__(
        self,
        zip_path: str | Path | BinaryIO,
        split: Split,
        max_candidates: int = 8,
        limits: ArchiveLimits = DEFAULT_LIMITS,
        *,
        check_images: bool = True,
        display_name: str | None = None,
    ):
        archive = SafeZip(zip_path, limits, display_name)
        try:
            validated = _validate(archive, split, max_candidates, check_images)
        except BaseException:
            archive.close()
            raise
        if not validated.report.valid:
            archive.close()
            raise SubmissionError(validated.report)

        self.path = Path(zip_path) if isinstance(zip_path, str | Path) else None
        self.limits = limits
        self.display_name = archive.display_name
        self.report = validated.report
        self.n_candidates = validated.n_candidates
        self.metadata = validated.metadata
        self._candidates = validated.candidates
        self._samples = {sample.sample_id: sample for sample in split}
        self._archive: SafeZip | None = archive
        self._pid = os.getpid()

    @property
    def sample_ids(self) -> list[str]:
        return list(self._candidates)

    def _open_archive(self) -> SafeZip:
        if self._archive is not None and self._pid == os.getpid():
            return self._archive
        if self.path is None:
            raise ValueError("a SubmissionArchive opened from a file object cannot be reopened")
        self._archive = SafeZip(self.path, self.limits, self.display_name)
        self._pid = os.getpid()
        if not self._archive.readable:
            raise SubmissionError(Report(problems=list(self._archive.problems)))
        return self._archive

    def read_candidate(self, sample_id: str, k: int) -> np.ndarray:
        """Read candidate k of a sample as uint8 (H, W, 4), straight alpha."""
        if sample_id not in self._candidates:
            raise KeyError(f"sample {sample_id!r} is not in this submission's split")
        if not 0 <= k < self.n_candidates:
            raise IndexError(f"candidate {k} is out of range 0 .. {self.n_candidates - 1}")
        name = self._candidates[sample_id][k]
        try:
            data = self._open_archive().read(name)
        except ArchiveError as error:
            raise SubmissionError(Report(problems=[error.problem])) from error
        layer, problem = decode_candidate(data, name, self._samples[sample_id], self.limits.max_pixels)
        if problem is not None:
            raise SubmissionError(Report(problems=[problem]))
        return layer  # type: ignore[return-value]

    def close(self) -> None:
        if self._archive is not None and self._pid == os.getpid():
            self._archive.close()
        self._archive = None

    def __enter__(self) -> SubmissionArchive:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __getstate__(self) -> dict:
        if self.path is None:
            raise TypeError("a SubmissionArchive opened from a file object cannot be pickled; "
                            "open it from a path")
        state = dict(self.__dict__)
        state["_archive"] = None
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)


# Writing ---------------------------------------------------------------------------


def _check_layer(sample_id: str, k: int, layer: np.ndarray) -> None:
    if not isinstance(layer, np.ndarray) or layer.dtype != np.uint8 or layer.ndim != 3 or layer.shape[2] != 4:
        found = f"{layer.dtype} {layer.shape}" if isinstance(layer, np.ndarray) else type(layer).__name__
        raise ValueError(
            f"candidate {k} of sample {sample_id!r} must be a uint8 array of shape (H, W, 4), "
            f"got {found}; convert it with np.clip(x * 255, 0, 255).astype(np.uint8)")


def _metadata_text(metadata: dict) -> str:
    if not isinstance(metadata, dict):
        raise ValueError(f"metadata must be a dict, got {type(metadata).__name__}")
    text = json.dumps(metadata, indent=2)
    if len(text.encode("utf-8")) > METADATA_MAX_BYTES:
        raise ValueError(f"metadata takes {len(text.encode('utf-8'))} bytes as JSON, more than "
                         f"the {METADATA_MAX_BYTES} allowed; keep only the method's description")
    return text


def write_submission(
    zip_path: str | Path,
    predictions: Iterable[tuple[str, Sequence[np.ndarray]]],
    metadata: dict | None = None,
) -> Path:
    """Write a submission zip from (sample_id, candidates) pairs; return its path.

    Each candidate is uint8 (H, W, 4) with straight alpha. One candidate per sample
    gives `<sample_id>.png`, several give `<sample_id>/<k>.png`. Every sample must
    have the same number of candidates. The zip is written under a temporary name
    and renamed when complete, so a failed run leaves no partial submission.
    """
    path = Path(zip_path)
    partial = path.with_name(path.name + ".partial")
    n: int | None = None
    seen: set[str] = set()
    try:
        with zipfile.ZipFile(partial, "w") as archive:
            for sample_id, layers in predictions:
                if not isinstance(sample_id, str) or not SAMPLE_ID_PATTERN.match(sample_id):
                    raise ValueError(f"sample id {sample_id!r} is not 1 to 128 characters of "
                                     "A-Z, a-z, 0-9, _ and -")
                if sample_id in seen:
                    raise ValueError(f"sample {sample_id!r} appears twice; give each sample once")
                seen.add(sample_id)
                if n is None:
                    n = len(layers)
                if len(layers) == 0 or len(layers) != n:
                    raise ValueError(f"sample {sample_id!r} has {len(layers)} candidates, expected "
                                     f"{n or 'at least 1'} as for the first sample")
                for k, layer in enumerate(layers):
                    _check_layer(sample_id, k, layer)
                    buffer = io.BytesIO()
                    Image.fromarray(layer, "RGBA").save(buffer, format="PNG")
                    name = f"{sample_id}.png" if n == 1 else f"{sample_id}/{k}.png"
                    # PNG data is already deflated, so zip stores it as is.
                    archive.writestr(name, buffer.getvalue(), compress_type=zipfile.ZIP_STORED)
            if metadata is not None:
                text = _metadata_text(metadata)
                archive.writestr(METADATA_NAME, text, compress_type=zipfile.ZIP_DEFLATED)
        os.replace(partial, path)
    finally:
        partial.unlink(missing_ok=True)
    logger.info("wrote submission %s: %d samples, %s candidates each", path, len(seen), n)
    return path

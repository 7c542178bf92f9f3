"""What a case builder returns, and the entries and messages that many cases share."""

from __future__ import annotations

import io
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from evaluator.archive import DEFAULT_LIMITS, ArchiveLimits
from evaluator.split import Split
from tests.evaluator.zips import Entry, ground_truth_entries, random_layer, rgba_png, zip_bytes

SAMPLE_IDS = ("s0", "s1", "s2")
WIDTH, HEIGHT = 16, 12

# Hints that many problems share, as the evaluator words them.
HINT_RELATIVE = "Create the archive from inside the folder of PNGs."
HINT_SEPARATORS = "Create the archive with a tool that writes / separators, such as zip or Python's zipfile."
HINT_NOT_PNG = "Save the layer as PNG; renaming another format is not enough."
HINT_NO_ALPHA = "Save the layer with its alpha matte as an RGBA PNG."
HINT_UNKNOWN = ("Name each PNG after a sample_id of the split; check that you validate "
                "against the right split.")
HINT_CORRUPT_ZIP = "Upload the complete .zip file; re-create it if the upload was cut off."
HINT_CORRUPT_MEMBER = "Create the archive again; the upload may have been damaged."
NO_ALPHA_EXPECTED = "RGBA (or LA, or a palette with transparency)"


@dataclass
class Draft:
    """A case before it is written: the zip's bytes and the report that it must give."""

    content: bytes
    # Problem codes in report order; empty for a valid submission.
    codes: tuple[str, ...] = ()
    # `str()` of the first problem; empty for a valid submission.
    message: str = ""
    limits: ArchiveLimits = DEFAULT_LIMITS
    max_candidates: int = 8
    summary: dict = field(default_factory=dict)
    outside_names: tuple[str, ...] = ()
    bug: str = ""


@dataclass(frozen=True)
class Context:
    """What a case builder gets: the corpus split and the file name of the zip it fills."""

    split: Split
    zip_name: str


Builder = Callable[[Context], Draft]


def registrar(builders: list[Builder]) -> Callable[[Builder], Builder]:
    """Return a decorator that appends a case builder to `builders`; its name is the case's."""
    def register(builder: Builder) -> Builder:
        builders.append(builder)
        return builder
    return register


# Shared pieces -------------------------------------------------------------------


def gt(context: Context, skip: tuple[str, ...] = ()) -> list[Entry]:
    """Valid `<sample_id>.png` entries for every sample not in `skip`."""
    return [entry for entry in ground_truth_entries(context.split)
            if entry.name.removesuffix(".png") not in skip]


def candidates(count: int, sample_ids: tuple[str, ...] = SAMPLE_IDS, seed: int = 0) -> list[Entry]:
    """Valid `<sample_id>/<k>.png` entries, k = 0 .. count-1, with random layers."""
    return [Entry(f"{sample_id}/{k}.png", rgba_png(random_layer(seed + 10 * i + k, WIDTH, HEIGHT)))
            for i, sample_id in enumerate(sample_ids) for k in range(count)]


def layer(seed: int = 7) -> np.ndarray:
    return random_layer(seed, WIDTH, HEIGHT)


def valid_summary(candidates: int = 1, **extra: object) -> dict:
    return {"samples": len(SAMPLE_IDS), "candidates": candidates, **extra}


def missing_message(sample_id: str) -> str:
    return (f"{sample_id}.png: sample has no prediction (expected {sample_id}.png or "
            f"{sample_id}/0.png, found no such file). Add a PNG for every sample of the split.")


def unsafe_message(name: str, reason: str, hint: str = HINT_RELATIVE) -> str:
    return (f"{name}: member name contains {reason} (expected a relative path with / "
            f"separators, found {name!r}). {hint}")


def not_png_message(name: str, found: str) -> str:
    return f"{name}: file is not a PNG image (expected PNG data, found {found}). {HINT_NOT_PNG}"


def no_alpha_message(name: str, found: str) -> str:
    return f"{name}: image has no alpha channel (expected {NO_ALPHA_EXPECTED}, found {found}). {HINT_NO_ALPHA}"


def corrupt_member_message(name: str, found: str) -> str:
    return f"{name}: member is corrupt (expected intact compressed data, found {found}). {HINT_CORRUPT_MEMBER}"


def unknown_message(name: str, sample_id: str) -> str:
    return (f"{name}: no sample of the split has this id (expected an id from the split's "
            f"manifest.jsonl, found {sample_id!r}). {HINT_UNKNOWN}")


def with_png(name: str, data: bytes, context: Context) -> bytes:
    """A zip of the valid entries, with sample `name`'s PNG replaced by `data`."""
    sample_id = name.removesuffix(".png")
    return zip_bytes(gt(context, skip=(sample_id,)) + [Entry(name, data)])



def member_sizes(content: bytes, name: str) -> tuple[int, int]:
    """Return (uncompressed, compressed) sizes of a member as the zip declares them."""
    with zipfile.ZipFile(io.BytesIO(content)) as archive:
        info = archive.getinfo(name)
        return info.file_size, info.compress_size


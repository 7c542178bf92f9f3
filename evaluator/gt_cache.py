"""The ground-truth cache: per-sample work that does not depend on the submission.

For every sample it stores the prepared ground truth at the evaluation size (the
composite g_rgb, the amodal mask A, the visible mask v), the CLIP embeddings f(g_rgb)
and f(g_rgb ⊙ v), the Inception features of ĝ and, when they fit the config's
`lpips_cache_mib`, the LPIPS feature maps of g_rgb and g_rgb ⊙ v. A second
submission on the same split reads these instead of decoding the ground truth and
running 2 of the 3 CLIP passes, 1 of the 2 Inception passes and 2 of the 4 AlexNet
passes again.

Layout: `<cache_dir>/gt/<key>/<sample_id>.gt` (format: `pack_arrays`). The key is the SHA-256 (first 32
hex digits) of the ground-truth version, the evaluator version, the config hash and
the weights fingerprint, so a change of any of them gives a fresh folder. The cache folder is
`cache_dir`, else `REFLADE_CACHE`, else `~/.cache/reflade`. Each entry is written to a
temporary file and renamed into place, so concurrent workers that compute the same
sample never leave a torn file; the last identical write wins.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import logging
import os
import tarfile
import tempfile
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import numpy as np

from evaluator import __version__
from evaluator.split import Split

logger = logging.getLogger(__name__)

CACHE_ENV = "REFLADE_CACHE"


def resolve_cache_dir(cache_dir: str | Path | None = None) -> Path:
    if cache_dir is not None:
        return Path(cache_dir)
    return Path(os.environ.get(CACHE_ENV, Path.home() / ".cache" / "reflade"))


def ground_truth_version(split: Split) -> str:
    """Hash the manifest bytes and the sorted `gt/` file names with their sizes (SHA-256)."""
    digest = hashlib.sha256(split.read_bytes("manifest.jsonl"))
    if split.path.is_dir():
        gt_root = split.path / "gt"
        entries = sorted(
            (path.relative_to(split.path).as_posix(), path.stat().st_size)
            for path in gt_root.rglob("*") if path.is_file()
        )
    else:
        status = split.path.stat()
        entries = _tar_gt_entries(str(split.path.resolve()), status.st_size, status.st_mtime_ns)
    for name, size in entries:
        digest.update(f"\n{name}:{size}".encode())
    return digest.hexdigest()


@functools.lru_cache(maxsize=8)
def _tar_gt_entries(path: str, size: int, mtime_ns: int) -> list[tuple[str, int]]:
    # Listing a large tar reads every header, so the list is kept per file version.
    with tarfile.open(path, "r:*") as tar:
        names = [(member.name, member.size) for member in tar.getmembers() if member.isfile()]
    # Names are taken from the `gt` component on, so a folder and its .tar agree.
    return sorted(
        ("/".join(parts[parts.index("gt"):]), member_size)
        for parts, member_size in ((PurePosixPath(name).parts, member_size) for name, member_size in names)
        if "gt" in parts
    )


@dataclass
class GtEntry:
    """The prepared ground truth of one sample; RGB fields are None for amodal_mask samples."""

    mask: np.ndarray  # bool (H, W), A = g_a >= 0.5 at the sample's resolution
    visible: np.ndarray  # bool (H, W), v at the sample's resolution
    visible_eval: np.ndarray  # bool (S, S), v resized to the evaluation size
    rgb: np.ndarray | None = None  # uint8 (S, S, 3), g_rgb = ĝ
    restricted: np.ndarray | None = None  # uint8 (S, S, 3), g_rgb ⊙ v
    clip_full: np.ndarray | None = None  # float32 (D,), f(g_rgb)
    clip_visible: np.ndarray | None = None  # float32 (D,), f(g_rgb ⊙ v)
    inception: np.ndarray | None = None  # float32 (dims,), Inception features of ĝ
    nothing_hidden: bool = False  # A∖v is empty
    # Per AlexNet layer, float32 (C, h, w): the LPIPS feature maps of g_rgb and of g_rgb ⊙ v.
    lpips_full: list[np.ndarray] | None = None
    lpips_visible: list[np.ndarray] | None = None

    def to_bytes(self) -> bytes:
        arrays = {
            "shape": np.array(self.mask.shape),
            "size": np.array(self.visible_eval.shape[0]),
            "mask": np.packbits(self.mask),
            "visible": np.packbits(self.visible),
            "visible_eval": np.packbits(self.visible_eval),
            "nothing_hidden": np.array(self.nothing_hidden),
        }
        for name in ("rgb", "clip_full", "clip_visible", "inception"):
            value = getattr(self, name)
            if value is not None:
                arrays[name] = value
        if self.lpips_full is not None:
            for name in ("lpips_full", "lpips_visible"):
                for layer, value in enumerate(getattr(self, name)):
                    arrays[f"{name}_{layer}"] = value
        return pack_arrays(arrays)

    @classmethod
    def from_bytes(cls, data: bytes, background: np.ndarray) -> GtEntry:
        """Read an entry written by `to_bytes`; ValueError names what is wrong with `data`."""
        arrays = unpack_arrays(data)
        missing = sorted({"shape", "size", "mask", "visible", "visible_eval", "nothing_hidden"} - set(arrays))
        if missing:
            raise ValueError(f"the entry is missing the array {missing[0]!r}")
        height, width = _integers(arrays["shape"], 2, "shape")
        (size,) = _integers(arrays["size"], 1, "size")
        entry = cls(
            mask=_unpack(arrays["mask"], (height, width), "mask"),
            visible=_unpack(arrays["visible"], (height, width), "visible"),
            visible_eval=_unpack(arrays["visible_eval"], (size, size), "visible_eval"),
            nothing_hidden=bool(_integers(arrays["nothing_hidden"], 1, "nothing_hidden")[0]),
        )
        entry.rgb = _optional(arrays, "rgb", np.uint8, (size, size, 3))
        entry.clip_full = _optional(arrays, "clip_full", np.float32, (None,))
        entry.clip_visible = _optional(arrays, "clip_visible", np.float32, entry.clip_full.shape
                                       if entry.clip_full is not None else (None,))
        entry.inception = _optional(arrays, "inception", np.float32, (None,))
        maps = {name: value for name, value in arrays.items() if name.startswith("lpips_")}
        layers = len(maps) // 2
        expected = {f"{name}_{layer}" for name in ("lpips_full", "lpips_visible") for layer in range(layers)}
        if set(maps) != expected:
            raise ValueError(f"the entry's LPIPS arrays {sorted(maps)} are not lpips_full_k and lpips_visible_k "
                             f"for k = 0 .. {layers - 1}")
        if layers:
            entry.lpips_full = [_optional(maps, f"lpips_full_{k}", np.float32, (None,) * 3) for k in range(layers)]
            entry.lpips_visible = [
                _optional(maps, f"lpips_visible_{k}", np.float32, entry.lpips_full[k].shape) for k in range(layers)
            ]
        if entry.rgb is not None:
            entry.restricted = np.where(entry.visible_eval[..., None], entry.rgb, background[None, None, :])
        return entry

    def mismatch(self, height: int, width: int, size: int, rgba: bool) -> str | None:
        """Describe how the entry differs from a sample of that size and ground-truth kind, or None."""
        if self.mask.shape != (height, width):
            return f"its masks are {self.mask.shape[1]}x{self.mask.shape[0]} px, the sample {width}x{height} px"
        if self.visible_eval.shape != (size, size):
            return f"its evaluation-size mask is {self.visible_eval.shape[0]} px, not {size} px"
        if rgba and (self.rgb is None or self.clip_full is None or self.clip_visible is None or self.inception is None):
            return "it lacks the RGB arrays of an rgba sample"
        if not rgba and self.rgb is not None:
            return "it has RGB arrays, but the sample's ground truth is a mask"
        return None


def _integers(value: np.ndarray, count: int, name: str) -> list[int]:
    if value.dtype.kind not in "biu" or value.size != count:
        raise ValueError(f"the entry's {name} array must hold {count} integer(s), found {value.dtype} {value.shape}")
    return [int(item) for item in value.ravel()]


def _optional(arrays: dict, name: str, dtype, shape: tuple) -> np.ndarray | None:
    """Return arrays[name] (None when absent) after checking its dtype and shape (None matches any side)."""
    value = arrays.get(name)
    if value is None:
        return None
    if value.dtype != dtype or len(value.shape) != len(shape) or any(
        expected is not None and side != expected for side, expected in zip(value.shape, shape, strict=True)
    ):
        expected_shape = "x".join("any" if side is None else str(side) for side in shape)
        raise ValueError(f"the entry's {name} array is {value.dtype} {value.shape}, "
                         f"expected {np.dtype(dtype)} of shape {expected_shape}")
    return value


ENTRY_MAGIC = b"REFLADE-GT-1\n"
_PREFIX = len(ENTRY_MAGIC) + 8  # the magic, the CRC-32 and the header's length
_ALIGN = 64


def pack_arrays(arrays: dict[str, np.ndarray]) -> bytes:
    """Serialise named arrays in the entry format.

    An entry is ENTRY_MAGIC, then the CRC-32 of everything after it and the
    header's length (both uint32, little-endian). The header follows: JSON that
    gives each array's dtype, shape and offset into the data. Then come the arrays'
    bytes, each starting at a multiple of 64 bytes from the entry's start. A read
    parses one JSON header, where an .npz parses one per array (1 ms for an entry
    of 20 arrays).
    """
    header, offset = {}, 0
    for name, value in arrays.items():
        header[name] = [value.dtype.str, list(value.shape), offset]
        offset += -(-value.nbytes // _ALIGN) * _ALIGN
    header_bytes = json.dumps(header, separators=(",", ":")).encode()
    # Spaces after the JSON make the arrays' offsets multiples of 64 from the entry's start.
    header_bytes += b" " * (-(_PREFIX + len(header_bytes)) % _ALIGN)
    data = bytearray(ENTRY_MAGIC + bytes(4) + len(header_bytes).to_bytes(4, "little") + header_bytes)
    start = len(data)
    data.extend(bytes(offset))
    for name, value in arrays.items():
        position = start + header[name][2]
        data[position:position + value.nbytes] = np.ascontiguousarray(value).tobytes()
    checked = len(ENTRY_MAGIC) + 4
    data[len(ENTRY_MAGIC):checked] = zlib.crc32(memoryview(data)[checked:]).to_bytes(4, "little")
    return bytes(data)


def unpack_arrays(data: bytes) -> dict[str, np.ndarray]:
    """Read arrays written by `pack_arrays`; ValueError names what is wrong with `data`."""
    if not data.startswith(ENTRY_MAGIC):
        raise ValueError(f"the entry does not start with {ENTRY_MAGIC!r}")
    checked = len(ENTRY_MAGIC) + 4
    if len(data) < _PREFIX or zlib.crc32(memoryview(data)[checked:]) != int.from_bytes(
        data[len(ENTRY_MAGIC):checked], "little"
    ):
        raise ValueError("the entry's CRC-32 does not match its contents")
    start = _PREFIX
    length = int.from_bytes(data[checked:start], "little")
    try:
        header = json.loads(data[start:start + length])
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as error:
        raise ValueError(f"the entry header is not JSON: {type(error).__name__}: {error}") from None
    arrays = {}
    try:
        for name, (dtype, shape, offset) in header.items():
            dtype = np.dtype(dtype)
            count = int(np.prod(shape))
            position = start + length + int(offset)
            if position + count * dtype.itemsize > len(data):
                raise ValueError(f"the entry is truncated: array {name} ends past its {len(data)} bytes")
            arrays[name] = np.frombuffer(data, dtype=dtype, count=count, offset=position).reshape(shape)
    except (TypeError, AttributeError, OverflowError) as error:
        raise ValueError(f"the entry header is invalid: {error}") from None
    return arrays


def _unpack(bits: np.ndarray, shape: tuple[int, int], name: str = "mask") -> np.ndarray:
    pixels = shape[0] * shape[1]
    # The size check comes first, so a damaged shape cannot ask unpackbits for terabytes.
    if bits.dtype != np.uint8 or bits.ndim != 1 or min(shape) < 0 or bits.size != -(-pixels // 8):
        raise ValueError(f"the entry's {name} array ({bits.dtype}, {bits.size} values) does not hold "
                         f"{shape[1]}x{shape[0]} packed bits")
    return np.unpackbits(bits, count=pixels).reshape(shape).astype(bool)


class GtCache:
    """The cache folder of one (ground truth, evaluator, config, weights) combination."""

    def __init__(self, cache_dir: Path, gt_version: str, config_hash: str, weights_fingerprint: str):
        key_text = f"{gt_version}|{__version__}|{config_hash}|{weights_fingerprint}"
        self.key = hashlib.sha256(key_text.encode()).hexdigest()[:32]
        self.folder = cache_dir / "gt" / self.key

    def path(self, sample_id: str) -> Path:
        return self.folder / f"{sample_id}.gt"

    def read(self, sample_id: str, background: np.ndarray,
             check: Callable[[GtEntry], str | None] | None = None) -> GtEntry | None:
        """Return the sample's entry, or None when it is missing or cannot be read.

        An unreadable entry (a disk error, or a file damaged outside this code) is
        logged and deleted, so the caller recomputes it and writes it again. So is
        an entry for which `check(entry)` describes a mismatch.
        """
        path = self.path(sample_id)
        if not path.is_file():
            return None
        try:
            entry = GtEntry.from_bytes(path.read_bytes(), background)
            problem = check(entry) if check is not None else None
            if problem is not None:
                raise ValueError(f"the entry does not fit the sample: {problem}")
            return entry
        except (OSError, ValueError) as error:
            logger.warning("ground-truth cache entry %s is unreadable (%s: %s); recomputing it",
                           path, type(error).__name__, error)
            with contextlib.suppress(OSError):
                path.unlink()
            return None

    def write(self, sample_id: str, entry: GtEntry) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        handle, temporary = tempfile.mkstemp(dir=self.folder, prefix=f".{sample_id}.", suffix=".tmp")
        try:
            with os.fdopen(handle, "wb") as file:
                file.write(entry.to_bytes())
                # Flushed to disk before the rename, so a crash cannot leave an empty or cut-short entry.
                file.flush()
                os.fsync(file.fileno())
            os.replace(temporary, self.path(sample_id))
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise

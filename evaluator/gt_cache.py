"""The ground-truth cache: per-sample work that does not depend on the submission.

For every sample it stores the prepared ground truth at the evaluation size (the
composite g_rgb, the amodal mask A, the visible mask v), the CLIP embeddings f(g_rgb)
and f(g_rgb ⊙ v) and the Inception features of ĝ. A second submission on the same
split reads these instead of decoding the ground truth and running 2 of the 3 CLIP
passes and 1 of the 2 Inception passes again.

Layout: `<cache_dir>/gt/<key>/<sample_id>.npz`. The key is the SHA-256 (first 32
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
import io
import logging
import os
import tarfile
import tempfile
import zipfile
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
        buffer = io.BytesIO()
        np.savez(buffer, **arrays)
        return buffer.getvalue()

    @classmethod
    def from_bytes(cls, data: bytes, background: np.ndarray) -> GtEntry:
        with np.load(io.BytesIO(data)) as arrays:
            height, width = (int(value) for value in arrays["shape"])
            size = int(arrays["size"])
            entry = cls(
                mask=_unpack(arrays["mask"], (height, width)),
                visible=_unpack(arrays["visible"], (height, width)),
                visible_eval=_unpack(arrays["visible_eval"], (size, size)),
                nothing_hidden=bool(arrays["nothing_hidden"]),
            )
            for name in ("rgb", "clip_full", "clip_visible", "inception"):
                if name in arrays:
                    setattr(entry, name, arrays[name])
        if entry.rgb is not None:
            entry.restricted = np.where(entry.visible_eval[..., None], entry.rgb, background[None, None, :])
        return entry


def _unpack(bits: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    return np.unpackbits(bits, count=shape[0] * shape[1]).reshape(shape).astype(bool)


class GtCache:
    """The cache folder of one (ground truth, evaluator, config, weights) combination."""

    def __init__(self, cache_dir: Path, gt_version: str, config_hash: str, weights_fingerprint: str):
        key_text = f"{gt_version}|{__version__}|{config_hash}|{weights_fingerprint}"
        self.key = hashlib.sha256(key_text.encode()).hexdigest()[:32]
        self.folder = cache_dir / "gt" / self.key

    def path(self, sample_id: str) -> Path:
        return self.folder / f"{sample_id}.npz"

    def read(self, sample_id: str, background: np.ndarray) -> GtEntry | None:
        """Return the sample's entry, or None when it is missing or cannot be read.

        An unreadable entry (a disk error, or a file damaged outside this code) is
        logged and deleted, so the caller recomputes it and writes it again.
        """
        path = self.path(sample_id)
        if not path.is_file():
            return None
        try:
            return GtEntry.from_bytes(path.read_bytes(), background)
        except (OSError, EOFError, ValueError, KeyError, zipfile.BadZipFile) as error:
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

"""Builders for test splits, PNG files of every flavour, and valid or malformed zips.

Other tests import these to make submissions without touching the evaluator's
own writer, so a bug in `write_submission` cannot hide a bug in the reader.
"""

from __future__ import annotations

import io
import stat
import struct
import warnings
import zipfile
import zlib
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from evaluator.split import Prompt, Sample, Split, SplitWriter

WIDTH, HEIGHT = 16, 12


def make_split(root: Path, sample_ids: Iterable[str] = ("s0", "s1", "s2"),
               width: int = WIDTH, height: int = HEIGHT) -> Split:
    """Write a split with one image per sample and random ground truth; return it opened."""
    rng = np.random.default_rng(0)
    with SplitWriter(root) as writer:
        for sample_id in sample_ids:
            image_id = f"img_{sample_id}"
            writer.add_image(image_id, rng.integers(0, 256, (height, width, 3), dtype=np.uint8))
            layer = rng.integers(0, 256, (height, width, 4), dtype=np.uint8)
            writer.add_sample(
                Sample(sample_id, image_id, width, height, "foreground",
                       Prompt(box=(1.0, 1.0, width - 1.0, height - 1.0))),
                gt_layer=layer,
                gt_visible=layer[..., 3] >= 128,
            )
    return Split(root)


def random_layer(seed: int, width: int = WIDTH, height: int = HEIGHT) -> np.ndarray:
    """A uint8 (H, W, 4) layer of random colours and alpha."""
    return np.random.default_rng(seed).integers(0, 256, (height, width, 4), dtype=np.uint8)


# PNG files ---------------------------------------------------------------------


def png_bytes(array: np.ndarray, mode: str | None = None, **save_options: object) -> bytes:
    """Encode an array with Pillow (mode as in `Image.fromarray`)."""
    buffer = io.BytesIO()
    image = Image.fromarray(array) if mode is None else Image.fromarray(array).convert(mode)
    image.save(buffer, format="PNG", **save_options)
    return buffer.getvalue()


def rgba_png(array: np.ndarray) -> bytes:
    return png_bytes(array, "RGBA")


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def raw_png(width: int, height: int, bit_depth: int, color_type: int, rows: bytes,
            extra_chunks: Iterable[tuple[bytes, bytes]] = ()) -> bytes:
    """Assemble a PNG by hand from filter-0 scanlines, for formats Pillow cannot write.

    `rows` contains the pixel bytes of all scanlines, big-endian for 16-bit samples.
    """
    header = struct.pack(">IIBBBBB", width, height, bit_depth, color_type, 0, 0, 0)
    line = len(rows) // height
    raw = b"".join(b"\x00" + rows[y * line:(y + 1) * line] for y in range(height))
    chunks = [_chunk(b"IHDR", header)]
    chunks += [_chunk(kind, data) for kind, data in extra_chunks]
    chunks += [_chunk(b"IDAT", zlib.compress(raw)), _chunk(b"IEND", b"")]
    return b"\x89PNG\r\n\x1a\n" + b"".join(chunks)


def rgba16_png(layer: np.ndarray) -> bytes:
    """A 16-bit RGBA PNG whose high bytes are `layer` (uint8 (H, W, 4))."""
    wide = layer.astype(">u2") * 257
    return raw_png(layer.shape[1], layer.shape[0], 16, 6, wide.tobytes())


def la16_png(grey_alpha: np.ndarray) -> bytes:
    """A 16-bit grey + alpha PNG whose high bytes are `grey_alpha` (uint8 (H, W, 2))."""
    wide = grey_alpha.astype(">u2") * 257
    return raw_png(grey_alpha.shape[1], grey_alpha.shape[0], 16, 4, wide.tobytes())


def grey16_png(grey: np.ndarray) -> bytes:
    """A 16-bit greyscale PNG without alpha (Pillow mode I;16)."""
    return raw_png(grey.shape[1], grey.shape[0], 16, 0, grey.astype(">u2").tobytes())


def palette_png(indices: np.ndarray, palette: np.ndarray, alphas: bytes | None) -> bytes:
    """A palette PNG (uint8 (H, W) indices, uint8 (N, 3) colours) with an optional tRNS."""
    extra = [(b"PLTE", palette.astype(np.uint8).tobytes())]
    if alphas is not None:
        extra.append((b"tRNS", alphas))
    return raw_png(indices.shape[1], indices.shape[0], 8, 3, indices.astype(np.uint8).tobytes(), extra)


def huge_header_png(width: int, height: int) -> bytes:
    """A PNG header that declares a huge RGBA image, followed by no pixel data."""
    header = struct.pack(">IIBBBBB", width, height, 8, 6, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", header) + _chunk(b"IEND", b"")


# Zips --------------------------------------------------------------------------


@dataclass
class Entry:
    """One member to write: its name, bytes and how it is stored."""

    name: str
    data: bytes = b""
    compress_type: int = zipfile.ZIP_STORED
    mode: int | None = None  # Unix mode bits, such as stat.S_IFLNK | 0o777


def symlink(name: str, target: str) -> Entry:
    return Entry(name, target.encode(), mode=stat.S_IFLNK | 0o777)


def zip_bytes(entries: Iterable[Entry | tuple[str, bytes]]) -> bytes:
    """Write entries into an in-memory zip, duplicates and unsafe names included."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for entry in entries:
            if isinstance(entry, tuple):
                entry = Entry(*entry)
            info = zipfile.ZipInfo(entry.name, date_time=(2024, 1, 1, 0, 0, 0))
            info.compress_type = entry.compress_type
            if entry.mode is not None:
                info.create_system = 3
                info.external_attr = entry.mode << 16
            with warnings.catch_warnings():
                # Duplicate names are written on purpose.
                warnings.simplefilter("ignore", UserWarning)
                archive.writestr(info, entry.data)
    return buffer.getvalue()


def write_zip(path: Path, entries: Iterable[Entry | tuple[str, bytes]]) -> Path:
    path.write_bytes(zip_bytes(entries))
    return path


def mark_encrypted(data: bytes) -> bytes:
    """Set the encryption flag of every member, in local and central headers."""
    patched = bytearray(data)
    for signature, flag_offset in ((b"PK\x03\x04", 6), (b"PK\x01\x02", 8)):
        start = 0
        while (position := patched.find(signature, start)) >= 0:
            patched[position + flag_offset] |= 0x1
            start = position + 4
    return bytes(patched)


def corrupt_member_data(data: bytes, member_data: bytes) -> bytes:
    """Flip one byte in the middle of a stored member's data, so its CRC no longer matches."""
    position = data.index(member_data) + len(member_data) // 2
    patched = bytearray(data)
    patched[position] ^= 0xFF
    return bytes(patched)


def ground_truth_entries(split: Split, prefix: str = "") -> list[Entry]:
    """One `<sample_id>.png` per sample, re-encoded from the split's ground-truth layer."""
    return [Entry(f"{prefix}{sample.sample_id}.png", rgba_png(split.read_gt_layer(sample)))
            for sample in split]

"""Byte-level builders for zips and images that `zipfile` and Pillow will not write.

`raw_zip` writes every header field by hand. A test can so set the flag bits,
declare sizes that differ from the data, and store names as raw bytes (cp437 without
the UTF-8 flag). It can also give the local header another name than the central
directory.
`zipcrypto_encrypt` implements the traditional PKWARE encryption ("ZipCrypto",
APPNOTE.TXT section 6.1), which `zipfile` can read but not write.
"""

from __future__ import annotations

import io
import struct
import zlib
from dataclasses import dataclass

import numpy as np
from PIL import Image

# APPNOTE.TXT general purpose bit flags.
FLAG_ENCRYPTED = 0x1
FLAG_UTF8 = 0x800

_LOCAL_HEADER = struct.Struct("<4s5H3L2H")  # 30 bytes before the name
_CENTRAL_HEADER = struct.Struct("<4s6H3L5H2L")  # 46 bytes before the name
_END_RECORD = struct.Struct("<4s4H2LH")  # 22 bytes
_DOS_DATE_1980 = 0x21  # 1980-01-01, the earliest DOS date


@dataclass
class RawMember:
    """One member exactly as stored: `payload` is already compressed or encrypted."""

    name: bytes
    payload: bytes
    crc: int
    size: int  # declared uncompressed size
    method: int = 0  # 0 stored, 8 deflate
    flags: int = 0
    local_name: bytes | None = None  # name in the local header, when it differs


def stored(name: bytes, data: bytes, flags: int = 0) -> RawMember:
    return RawMember(name, data, zlib.crc32(data), len(data), flags=flags)


def deflate(data: bytes) -> bytes:
    """Raw deflate data, as zip stores it (no zlib header or trailer)."""
    compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
    return compressor.compress(data) + compressor.flush()


def raw_zip(members: list[RawMember], prefix: bytes = b"") -> bytes:
    """Write local headers, data, the central directory and the end record.

    `prefix` goes before the first local header, as in a self-extracting archive.
    Offsets count from the start of the file.
    """
    body = bytearray(prefix)
    directory = bytearray()
    for member in members:
        offset = len(body)
        local_name = member.name if member.local_name is None else member.local_name
        body += _LOCAL_HEADER.pack(
            b"PK\x03\x04", 20, member.flags, member.method, 0, _DOS_DATE_1980,
            member.crc, len(member.payload), member.size, len(local_name), 0,
        ) + local_name + member.payload
        directory += _CENTRAL_HEADER.pack(
            b"PK\x01\x02", 20, 20, member.flags, member.method, 0, _DOS_DATE_1980,
            member.crc, len(member.payload), member.size, len(member.name), 0, 0, 0, 0, 0, offset,
        ) + member.name
    end = _END_RECORD.pack(b"PK\x05\x06", 0, 0, len(members), len(members), len(directory), len(body), 0)
    return bytes(body + directory + end)


# ZipCrypto ---------------------------------------------------------------------


def _crc_byte(crc: int, byte: int) -> int:
    # One step of the CRC-32 register without zlib's pre- and post-inversion.
    return zlib.crc32(bytes([byte]), crc ^ 0xFFFFFFFF) ^ 0xFFFFFFFF


class _ZipCryptoKeys:
    def __init__(self, password: bytes):
        self.keys = [0x12345678, 0x23456789, 0x34567890]
        for byte in password:
            self.update(byte)

    def update(self, byte: int) -> None:
        key0, key1, key2 = self.keys
        key0 = _crc_byte(key0, byte)
        key1 = ((key1 + (key0 & 0xFF)) * 134775813 + 1) & 0xFFFFFFFF
        key2 = _crc_byte(key2, key1 >> 24)
        self.keys = [key0, key1, key2]

    def stream_byte(self) -> int:
        temp = (self.keys[2] | 2) & 0xFFFF
        return ((temp * (temp ^ 1)) >> 8) & 0xFF


def zipcrypto_encrypt(plain: bytes, password: bytes, crc: int) -> bytes:
    """Encrypt stored member data: a 12-byte header whose last byte is the CRC's high byte."""
    header = bytes(range(11)) + bytes([crc >> 24])
    keys = _ZipCryptoKeys(password)
    cipher = bytearray()
    for byte in header + plain:
        cipher.append(byte ^ keys.stream_byte())
        keys.update(byte)
    return bytes(cipher)


def zipcrypto_member(name: bytes, data: bytes, password: bytes) -> RawMember:
    crc = zlib.crc32(data)
    return RawMember(name, zipcrypto_encrypt(data, password, crc), crc, len(data), flags=FLAG_ENCRYPTED)


class UnseekableBuffer(io.RawIOBase):
    """A write-only stream without seek, so `zipfile` writes data descriptors as streaming tools do."""

    def __init__(self):
        self.data = bytearray()

    def writable(self) -> bool:
        return True

    def write(self, chunk) -> int:
        self.data += chunk
        return len(chunk)


# Byte patches ------------------------------------------------------------------


def break_central_directory(data: bytes) -> bytes:
    """Overwrite the signature of the first central directory header."""
    position = data.index(b"PK\x01\x02")
    return data[:position] + b"XX\x01\x02" + data[position + 4:]


# Images ------------------------------------------------------------------------


def encoded_image(array: np.ndarray, mode: str, image_format: str) -> bytes:
    """Encode an array in `mode` with Pillow in another format than PNG (JPEG, TIFF, ...)."""
    buffer = io.BytesIO()
    Image.fromarray(array).convert(mode).save(buffer, format=image_format)
    return buffer.getvalue()

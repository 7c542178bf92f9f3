"""Safe reading of untrusted zip archives, member by member, within limits.

An uploaded archive is never extracted to disk by name. `SafeZip` opens it, checks
every entry of the central directory before anything is decompressed, and reads a
member into memory only on request, through a bounded stream. Every defect found
while opening becomes a `Problem` in `SafeZip.problems`; a defect found while
reading a member raises `ArchiveError` carrying its `Problem`.

Problem codes, stable for machines and tests:

    zip_unreadable         not a zip, truncated, corrupt, a CRC error, or a member
                           with an unsupported compression method
    zip_too_large          the zip file, or the sum of its uncompressed members,
                           exceeds the limit
    zip_too_many_members   the central directory lists more entries than allowed
    zip_path_unsafe        an absolute path, a drive letter, a backslash, a `..`
                           component or a control character in a member name
    zip_symlink            a member whose Unix mode marks it as a symbolic link
    zip_duplicate_name     two members with the same name, or names that differ
                           only by case (they collide on macOS and Windows)
    zip_encrypted          a member that needs a password
    zip_nested_archive     an archive inside the archive (.zip, .tar, .gz, ...)
    zip_member_too_large   one member's uncompressed size exceeds the limit
    zip_ratio_too_high     one member expands more than the ratio limit allows

Entries that archivers add on their own are ignored and never read: anything under
a `__MACOSX/` folder and dot-files such as `.DS_Store` or `._x.png`. Their names are
still checked for safety.

The PNG limit `max_pixels` lives here with the other limits, but the archive reader
never decodes images; the submission reader applies it.
"""

from __future__ import annotations

import io
import logging
import os
import re
import stat
import struct
import zipfile
import zlib
from dataclasses import dataclass, fields
from pathlib import Path, PurePosixPath
from typing import BinaryIO

from evaluator.problems import Problem

logger = logging.getLogger(__name__)

KIB = 1024
MIB = 1024 * KIB
GIB = 1024 * MIB

# Suffixes of archives that are rejected inside an archive.
NESTED_ARCHIVE_SUFFIXES = (".zip", ".tar", ".gz", ".tgz", ".bz2", ".xz", ".zst", ".7z", ".rar")
SUPPORTED_COMPRESSION = (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED, zipfile.ZIP_BZIP2, zipfile.ZIP_LZMA)
READ_CHUNK_BYTES = 1 * MIB

_DRIVE_LETTER = re.compile(r"^[A-Za-z]:")
_CONTROL_CHARACTER = re.compile(r"[\x00-\x1f\x7f]")


@dataclass(frozen=True)
class ArchiveLimits:
    """Limits that an uploaded archive must respect; every value is configurable.

    With PNGs of 256x256 photographs (about 120 KiB each), the 2 GiB default admits
    about 17,000 candidates; larger splits or images need larger sizes here.
    """

    # Size of the zip file itself, in bytes.
    max_compressed_bytes: int = 2 * GIB
    # Sum of the uncompressed sizes of all members, in bytes.
    max_uncompressed_bytes: int = 8 * GIB
    # Entries in the central directory, folders and ignored files included.
    max_members: int = 200_000
    # Uncompressed size of one member, in bytes.
    max_member_bytes: int = 64 * MIB
    # Uncompressed size over compressed size of one member.
    max_ratio: float = 200.0
    # Members up to this uncompressed size are exempt from `max_ratio`, because a
    # small file such as a metadata.json of spaces compresses far better than 200:1
    # yet cannot expand into much memory.
    ratio_exempt_bytes: int = 1 * MIB
    # Width times height of one image, checked from the PNG header before decoding.
    max_pixels: int = 50_000_000

    def __post_init__(self) -> None:
        for field in fields(self):
            value = getattr(self, field.name)
            if not isinstance(value, int | float) or isinstance(value, bool) or value <= 0:
                raise ValueError(
                    f"ArchiveLimits.{field.name} must be a positive number, got {value!r}"
                )


DEFAULT_LIMITS = ArchiveLimits()


class ArchiveError(Exception):
    """A member that cannot be read safely; `problem` names it and the reason."""

    def __init__(self, problem: Problem):
        self.problem = problem
        super().__init__(str(problem))


@dataclass(frozen=True)
class ZipMember:
    """A regular file of the archive that passed every check of the central directory."""

    name: str
    size: int
    compressed_size: int


def is_ignored_name(name: str) -> bool:
    """Return whether archivers add such an entry on their own (`__MACOSX/`, dot-files)."""
    return any(part == "__MACOSX" or part.startswith(".") for part in PurePosixPath(name).parts)


def _format_bytes(count: int) -> str:
    return f"{count / MIB:.1f} MiB" if count >= MIB else f"{count} bytes"


def _unsafe_reason(name: str) -> str | None:
    if "\\" in name:
        return "a backslash"
    if name.startswith("/") or _DRIVE_LETTER.match(name):
        return "an absolute path"
    if ".." in name.split("/"):
        return "a '..' component"
    if _CONTROL_CHARACTER.search(name):
        return "a control character"
    if not name.endswith("/") and not PurePosixPath(name).parts:
        return "an empty path"
    return None


class SafeZip:
    """An untrusted zip archive, opened from a path or a binary file object.

    Opening checks the file size, counts the central directory's entries before
    `zipfile` parses them, and checks each entry's name, type, flags and sizes.
    `problems` lists every defect. `members` maps the normalised name (`./a.png`
    becomes `a.png`) of each regular file that passed the checks to its sizes.
    `rejected` lists the stored names of the files that a check rejected, each with
    its problem in `problems`. `folders` lists the folder entries and `ignored` the
    names skipped on purpose. `readable` is False when the archive as a whole cannot
    be used, and `members`, `rejected` and `folders` are then empty. Messages name
    the archive `display_name`, by default the file's own name.
    """

    def __init__(self, source: str | Path | BinaryIO, limits: ArchiveLimits = DEFAULT_LIMITS,
                 display_name: str | None = None):
        self.limits = limits
        self.problems: list[Problem] = []
        self.members: dict[str, ZipMember] = {}
        self.rejected: list[str] = []
        self.folders: list[str] = []
        self.ignored: list[str] = []
        self.readable = False
        self._infos: dict[str, zipfile.ZipInfo] = {}
        self._counted: set[str] = set()
        self._bytes_read = 0
        self._zip: zipfile.ZipFile | None = None
        self._handle: BinaryIO | None = None
        self._owns_handle = False

        # The name that messages give the archive: the caller's (such as the file name
        # a user uploaded, when the file is stored under another), else its own.
        if display_name:
            self.display_name = display_name
        elif isinstance(source, str | Path):
            self.display_name = Path(source).name
        else:
            self.display_name = Path(str(getattr(source, "name", None) or "submission.zip")).name
        if isinstance(source, str | Path):
            try:
                self._handle = open(source, "rb")
            except OSError as error:
                self._fail("zip_unreadable", "cannot open the file", "a readable zip file",
                           error.strerror or str(error), "Check the path.")
                return
            self._owns_handle = True
        else:
            self._handle = source

        try:
            self._open()
        except Exception:
            self.close()
            raise
        if self.readable:
            self._check_entries()

    # Opening ------------------------------------------------------------------

    def _fail(self, code: str, message: str, expected: str, found: str, hint: str) -> None:
        self.problems.append(Problem(code, self.display_name, message, expected, found, hint))
        logger.info("rejected archive %s: %s (%s)", self.display_name, message, found)

    def _open(self) -> None:
        assert self._handle is not None
        size = self._handle.seek(0, io.SEEK_END)
        if size > self.limits.max_compressed_bytes:
            self._fail("zip_too_large", "zip file is too large",
                       f"at most {_format_bytes(self.limits.max_compressed_bytes)}", _format_bytes(size),
                       "Compress the PNGs harder or ask the maintainers for a higher limit.")
            return

        try:
            entries = _count_central_directory(self._handle, size, self.limits.max_members)
        except zipfile.BadZipFile as error:
            self._fail("zip_unreadable", "zip file is corrupt", "a valid zip file", str(error),
                       "Create the archive again, for example with `zip -r`.")
            return
        if entries is not None and entries > self.limits.max_members:
            self._fail("zip_too_many_members", "zip file has too many entries",
                       f"at most {self.limits.max_members}", f"more than {self.limits.max_members}",
                       "Put only one PNG per sample and candidate in the archive.")
            return

        self._handle.seek(0)
        try:
            self._zip = zipfile.ZipFile(self._handle)
        except (zipfile.BadZipFile, EOFError, ValueError, OSError) as error:
            self._fail("zip_unreadable", "file is not a zip archive or is truncated",
                       "a valid zip file", str(error) or type(error).__name__,
                       "Upload the complete .zip file; re-create it if the upload was cut off.")
            return
        if len(self._zip.infolist()) > self.limits.max_members:
            self._fail("zip_too_many_members", "zip file has too many entries",
                       f"at most {self.limits.max_members}", str(len(self._zip.infolist())),
                       "Put only one PNG per sample and candidate in the archive.")
            return
        self.readable = True

    def _check_entries(self) -> None:
        assert self._zip is not None
        by_folded_name: dict[str, str] = {}
        declared_total = 0
        for info in self._zip.infolist():
            declared_total += info.file_size
            name = self._check_name(info)
            if name is None:
                # ZipInfo.is_dir() fails on an empty name, so the rejected name is tested here.
                if not info.filename.endswith("/"):
                    self.rejected.append(info.orig_filename)
                continue
            if info.is_dir():
                self.folders.append(name)
                continue
            if is_ignored_name(name):
                self.ignored.append(info.filename)
                continue

            earlier = by_folded_name.get(name.casefold())
            if earlier is not None:
                how = "the same name" if earlier == name else "a name that differs only by case"
                self._member_problem("zip_duplicate_name", info.filename,
                                     f"another member has {how}", "unique names, ignoring case",
                                     f"{earlier} and {info.filename}",
                                     "Keep one file per name.")
                self.rejected.append(info.orig_filename)
                continue
            by_folded_name[name.casefold()] = name

            if self._check_member(info):
                self.members[name] = ZipMember(name, info.file_size, info.compress_size)
                self._infos[name] = info
            else:
                self.rejected.append(info.orig_filename)

        if declared_total > self.limits.max_uncompressed_bytes:
            self._fail("zip_too_large", "members are too large in total when uncompressed",
                       f"at most {_format_bytes(self.limits.max_uncompressed_bytes)}",
                       _format_bytes(declared_total), "Submit fewer or smaller files.")
            self.members.clear()
            self.rejected.clear()
            self.folders.clear()
            self._infos.clear()
            self.readable = False

    def _member_problem(self, code: str, file: str, message: str, expected: str, found: str,
                        hint: str) -> None:
        self.problems.append(Problem(code, file, message, expected, found, hint))
        logger.info("rejected member %s of %s: %s", file, self.display_name, message)

    def _check_name(self, info: zipfile.ZipInfo) -> str | None:
        """Return the normalised name of a safe entry, or None after adding a problem."""
        # zipfile cuts `filename` at the first NUL byte; `orig_filename` is the stored name.
        reason = _unsafe_reason(info.orig_filename)
        if reason is not None:
            hint = ("Create the archive with a tool that writes / separators, such as zip or "
                    "Python's zipfile." if reason == "a backslash"
                    else "Create the archive from inside the folder of PNGs.")
            shown = (repr(info.orig_filename)[1:-1] if _CONTROL_CHARACTER.search(info.orig_filename)
                     else info.orig_filename)
            self._member_problem("zip_path_unsafe", shown, f"member name contains {reason}",
                                 "a relative path with / separators", repr(info.orig_filename), hint)
            return None
        if stat.S_ISLNK(info.external_attr >> 16):
            self._member_problem("zip_symlink", info.filename, "member is a symbolic link",
                                 "a regular file", "a symbolic link",
                                 "Store the PNG itself, for example with `zip` without -y.")
            return None
        return str(PurePosixPath(info.filename)) + ("/" if info.is_dir() else "")

    def _check_member(self, info: zipfile.ZipInfo) -> bool:
        """Check a regular file's flags and declared sizes; add a problem and return False when bad."""
        limits = self.limits
        name = info.filename
        if info.flag_bits & 0x1:
            self._member_problem("zip_encrypted", name, "member is encrypted", "no password",
                                 "an encrypted member", "Create the archive without a password.")
            return False
        if name.lower().endswith(NESTED_ARCHIVE_SUFFIXES):
            self._member_problem("zip_nested_archive", name, "archive inside the archive",
                                 "PNG files and metadata.json", PurePosixPath(name).suffix,
                                 "Put the PNGs themselves into one zip.")
            return False
        if info.compress_type not in SUPPORTED_COMPRESSION:
            self._member_problem("zip_unreadable", name, "member uses an unsupported compression method",
                                 "stored, deflate, bzip2 or lzma", f"method {info.compress_type}",
                                 "Create the archive with deflate compression.")
            return False
        if info.file_size > limits.max_member_bytes:
            self._member_problem("zip_member_too_large", name, "member is too large when uncompressed",
                                 f"at most {_format_bytes(limits.max_member_bytes)}",
                                 _format_bytes(info.file_size), "Submit images of the sample's size.")
            return False
        if info.file_size > limits.ratio_exempt_bytes and (
            info.file_size > limits.max_ratio * max(info.compress_size, 1)
        ):
            self._ratio_problem(name, info.file_size, info.compress_size)
            return False
        return True

    def _ratio_problem(self, name: str, size: int, compressed_size: int) -> None:
        self._member_problem("zip_ratio_too_high", name, "member expands too much when uncompressed",
                             f"a compression ratio of at most {self.limits.max_ratio:g}",
                             f"{size / max(compressed_size, 1):.0f} ({_format_bytes(size)} from "
                             f"{_format_bytes(compressed_size)})",
                             "Submit ordinary PNG files.")

    # Reading ------------------------------------------------------------------

    def read(self, name: str) -> bytes:
        """Read one member into memory, stopping at the first 1 MiB chunk past a limit.

        Raises KeyError for a name not in `members` and `ArchiveError` when the
        member is corrupt or exceeds a limit.
        """
        if self._zip is None:
            raise ValueError(f"archive {self.display_name} is closed or unreadable")
        info = self._infos[name]
        data = self._read_bounded(info)

        # Reading a member twice counts it once towards the total.
        if name not in self._counted:
            self._counted.add(name)
            self._bytes_read += len(data)
            if self._bytes_read > self.limits.max_uncompressed_bytes:
                raise ArchiveError(Problem(
                    "zip_too_large", self.display_name,
                    "members are too large in total when uncompressed",
                    f"at most {_format_bytes(self.limits.max_uncompressed_bytes)}",
                    f"more than {_format_bytes(self._bytes_read)}", "Submit fewer or smaller files.",
                ))
        return data

    def _read_bounded(self, info: zipfile.ZipInfo) -> bytes:
        # CPython's zipfile stops at the declared size (checked when opening), so
        # these checks on the bytes actually produced are a second line of defence.
        limits = self.limits
        ratio_bound = max(limits.ratio_exempt_bytes, limits.max_ratio * max(info.compress_size, 1))
        chunks = []
        total = 0
        try:
            with self._zip.open(info) as stream:  # type: ignore[union-attr]
                while chunk := stream.read(READ_CHUNK_BYTES):
                    total += len(chunk)
                    if total > limits.max_member_bytes:
                        raise ArchiveError(Problem(
                            "zip_member_too_large", info.filename,
                            "member is too large when uncompressed",
                            f"at most {_format_bytes(limits.max_member_bytes)}",
                            f"more than {_format_bytes(total - len(chunk))}",
                            "Submit images of the sample's size.",
                        ))
                    if total > ratio_bound:
                        raise ArchiveError(Problem(
                            "zip_ratio_too_high", info.filename,
                            "member expands too much when uncompressed",
                            f"a compression ratio of at most {limits.max_ratio:g}",
                            f"more than {total / max(info.compress_size, 1):.0f}",
                            "Submit ordinary PNG files.",
                        ))
                    chunks.append(chunk)
        except (zipfile.BadZipFile, zlib.error, EOFError, OSError, NotImplementedError) as error:
            logger.info("member %s of %s is corrupt: %s", info.filename, self.display_name, error)
            raise ArchiveError(Problem(
                "zip_unreadable", info.filename, "member is corrupt", "intact compressed data",
                str(error) or type(error).__name__,
                "Create the archive again; the upload may have been damaged.",
            )) from error
        return b"".join(chunks)

    def close(self) -> None:
        if self._zip is not None:
            self._zip.close()
            self._zip = None
        if self._owns_handle and self._handle is not None:
            self._handle.close()
        self._handle = None

    def __enter__(self) -> SafeZip:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


# Central directory pre-count -------------------------------------------------------

_EOCD = struct.Struct("<4s4H2LH")  # end of central directory record, 22 bytes
_ZIP64_LOCATOR = struct.Struct("<4sLQL")  # 20 bytes
_ZIP64_EOCD = struct.Struct("<4sQ2H2L4Q")  # 56 bytes
_CENTRAL_HEADER = struct.Struct("<4s6H3L5H2L")  # 46 bytes before the name
_MAX_COMMENT = 0xFFFF


def _count_central_directory(handle: BinaryIO, size: int, limit: int) -> int | None:
    """Count central directory entries, stopping once the count passes `limit`.

    `zipfile` keeps one object per entry in memory, so a crafted archive of tiny
    entries could exhaust memory before a count on `infolist()` runs. This walks
    the same bytes that `zipfile` would parse, reading one header at a time.
    Returns None when no end record is found (`zipfile` then reports the error).
    """
    tail_size = min(size, _EOCD.size + _MAX_COMMENT)
    handle.seek(size - tail_size)
    tail = handle.read(tail_size)
    # Like zipfile: an end record without a comment first, then the last signature.
    position = tail_size - _EOCD.size
    if tail[position:position + 4] != b"PK\x05\x06" or tail[-2:] != b"\x00\x00":
        position = tail.rfind(b"PK\x05\x06")
    if position < 0 or len(tail) - position < _EOCD.size:
        return None
    record = _EOCD.unpack(tail[position:position + _EOCD.size])
    directory_size, end_offset = record[5], size - tail_size + position

    locator_offset = end_offset - _ZIP64_LOCATOR.size
    if locator_offset >= 0:
        handle.seek(locator_offset)
        locator = handle.read(_ZIP64_LOCATOR.size)
        if locator[:4] == b"PK\x06\x07":
            end_offset = locator_offset - _ZIP64_EOCD.size
            handle.seek(max(end_offset, 0))
            zip64 = handle.read(_ZIP64_EOCD.size)
            if end_offset < 0 or len(zip64) < _ZIP64_EOCD.size or zip64[:4] != b"PK\x06\x06":
                raise zipfile.BadZipFile("zip64 end of central directory record is missing")
            directory_size = _ZIP64_EOCD.unpack(zip64)[8]

    start = end_offset - directory_size
    if start < 0:
        raise zipfile.BadZipFile("central directory starts before the file")
    handle.seek(start)
    count = 0
    consumed = 0
    while consumed < directory_size and count <= limit:
        header = handle.read(_CENTRAL_HEADER.size)
        if len(header) < _CENTRAL_HEADER.size or header[:4] != b"PK\x01\x02":
            raise zipfile.BadZipFile("central directory entry is truncated or corrupt")
        fields_ = _CENTRAL_HEADER.unpack(header)
        variable = fields_[10] + fields_[11] + fields_[12]  # name, extra, comment lengths
        handle.seek(variable, os.SEEK_CUR)
        consumed += _CENTRAL_HEADER.size + variable
        count += 1
    return count

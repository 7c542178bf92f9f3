"""Cases about the zip as a whole: damaged, encrypted or lying files, and size limits."""

from __future__ import annotations

import zipfile
import zlib

import numpy as np

from evaluator.archive import MIB, ArchiveLimits
from tests.evaluator.zips import (
    Entry,
    corrupt_member_data,
    mark_encrypted,
    raw_png,
    rgba_png,
    zip_bytes,
)
from tests.hostile import crafting
from tests.hostile.drafts import (
    HEIGHT,
    HINT_CORRUPT_ZIP,
    WIDTH,
    Builder,
    Context,
    Draft,
    candidates,
    corrupt_member_message,
    gt,
    layer,
    member_sizes,
    registrar,
    valid_summary,
    with_png,
)

BUILDERS: list[Builder] = []
case = registrar(BUILDERS)


def _stored_gt(context: Context) -> list[crafting.RawMember]:
    """The valid entries as raw members, stored uncompressed, for `crafting.raw_zip`."""
    return [crafting.stored(entry.name.encode(), entry.data) for entry in gt(context)]


# Whole archive -------------------------------------------------------------------


def _not_a_zip(context: Context, content: bytes) -> Draft:
    return Draft(content, ("zip_unreadable",),
                 f"{context.zip_name}: file is not a zip archive or is truncated (expected a valid "
                 f"zip file, found File is not a zip file). {HINT_CORRUPT_ZIP}")


@case
def truncated_half(context: Context) -> Draft:
    whole = zip_bytes(gt(context))
    return _not_a_zip(context, whole[:len(whole) // 2])


@case
def truncated_end_record(context: Context) -> Draft:
    return _not_a_zip(context, zip_bytes(gt(context))[:-10])


@case
def random_bytes(context: Context) -> Draft:
    return _not_a_zip(context, np.random.default_rng(1).bytes(4096))


@case
def empty_zip_file(context: Context) -> Draft:
    return _not_a_zip(context, b"")


@case
def corrupt_central_directory(context: Context) -> Draft:
    return Draft(
        crafting.break_central_directory(zip_bytes(gt(context))), ("zip_unreadable",),
        f"{context.zip_name}: zip file is corrupt (expected a valid zip file, found central "
        "directory entry is truncated or corrupt). Create the archive again, for example with `zip -r`.")


@case
def crc_error(context: Context) -> Draft:
    entries = gt(context)
    return Draft(corrupt_member_data(zip_bytes(entries), entries[0].data), ("zip_unreadable",),
                 corrupt_member_message("s0.png", "Bad CRC-32 for file 's0.png'"))


@case
def corrupt_deflate_stream(context: Context) -> Draft:
    png = rgba_png(layer())
    compressed = bytearray(crafting.deflate(png))
    compressed[len(compressed) // 2] ^= 0xFF
    member = crafting.RawMember(b"s0.png", bytes(compressed), zlib.crc32(png), len(png), method=8)
    rest = [crafting.stored(entry.name.encode(), entry.data) for entry in gt(context, skip=("s0",))]
    return Draft(crafting.raw_zip([member, *rest]), ("zip_unreadable",),
                 corrupt_member_message("s0.png", "Bad CRC-32 for file 's0.png'"))


@case
def encrypted_flag(context: Context) -> Draft:
    return Draft(
        mark_encrypted(zip_bytes(gt(context))),
        ("zip_encrypted",) * 3,
        "s0.png: member is encrypted (expected no password, found an encrypted member). "
        "Create the archive without a password.")


@case
def encrypted_zipcrypto(context: Context) -> Draft:
    members = _stored_gt(context)
    members[0] = crafting.zipcrypto_member(b"s0.png", gt(context)[0].data, b"secret")
    return Draft(
        crafting.raw_zip(members), ("zip_encrypted",),
        "s0.png: member is encrypted (expected no password, found an encrypted member). "
        "Create the archive without a password.")


@case
def unsupported_compression(context: Context) -> Draft:
    # Method 93 is Zstandard, which 7-Zip and WinZip can write and zipfile cannot read.
    members = _stored_gt(context)
    members[0].method = 93
    return Draft(
        crafting.raw_zip(members), ("zip_unreadable",),
        "s0.png: member uses an unsupported compression method (expected stored, deflate, bzip2 "
        "or lzma, found method 93). Create the archive with deflate compression.")


@case
def declared_size_too_small(context: Context) -> Draft:
    # The central directory declares 100 bytes, but the data is the whole PNG.
    members = _stored_gt(context)
    members[0].size = 100
    return Draft(crafting.raw_zip(members), ("zip_unreadable",),
                 corrupt_member_message("s0.png", "Bad CRC-32 for file 's0.png'"))


@case
def declared_size_huge(context: Context) -> Draft:
    members = _stored_gt(context)
    members[0].size = 0xFFFFFFFE
    return Draft(
        crafting.raw_zip(members), ("zip_member_too_large",),
        "s0.png: member is too large when uncompressed (expected at most 64.0 MiB, found "
        "4096.0 MiB). Submit images of the sample's size.")


@case
def local_header_name_differs(context: Context) -> Draft:
    # Extractors that trust the local header would write outside the target folder.
    local_name = "../reflade-hostile-local-header.png"
    members = _stored_gt(context)
    members[0].local_name = local_name.encode()
    return Draft(
        crafting.raw_zip(members), ("zip_unreadable",),
        corrupt_member_message("s0.png", f"File name in directory 's0.png' and header {local_name.encode()!r} differ."),
        outside_names=(local_name,))


@case
def self_extracting_prefix(context: Context) -> Draft:
    # A stub before the first local header, as in self-extracting archives, is valid zip.
    members = _stored_gt(context)
    return Draft(crafting.raw_zip(members, prefix=b"MZ" + bytes(510)), summary=valid_summary())


@case
def zip64_locator_without_record(context: Context) -> Draft:
    # A zip64 locator just before the end record that points at no zip64 end record.
    content = zip_bytes(gt(context))
    end = content.rindex(b"PK\x05\x06")
    locator = b"PK\x06\x07" + (0).to_bytes(4, "little") + (0).to_bytes(8, "little") + (1).to_bytes(4, "little")
    return Draft(content[:end] + locator + content[end:], ("zip_unreadable",),
                 f"{context.zip_name}: zip file is corrupt (expected a valid zip file, found zip64 end of "
                 "central directory record is missing). Create the archive again, for example with `zip -r`.")


@case
def directory_size_past_start(context: Context) -> Draft:
    # The end record declares a central directory larger than the whole file.
    content = bytearray(zip_bytes(gt(context)))
    end = content.rindex(b"PK\x05\x06")
    content[end + 12:end + 16] = (0x7FFFFFFF).to_bytes(4, "little")
    return Draft(bytes(content), ("zip_unreadable",),
                 f"{context.zip_name}: zip file is corrupt (expected a valid zip file, found central "
                 "directory starts before the file). Create the archive again, for example with `zip -r`.")


@case
def fake_end_record_in_comment(context: Context) -> Draft:
    # The archive comment ends with a second end record that lists no entries. SafeZip and
    # zipfile both take the last one, so the submission reads as an empty archive, not as s0..s2.
    fake_end = b"PK\x05\x06" + bytes(18)
    content = zip_bytes(gt(context))
    content = content[:-2] + len(fake_end).to_bytes(2, "little") + fake_end
    return Draft(content, ("submission_empty",),
                 "fake_end_record_in_comment.zip: archive contains no files (expected a PNG for every sample of the split, found no "
                 "entries). Create the zip again from the folder of PNGs, for example with "
                 "`zip -r ../preds.zip .` run inside that folder.")


@case
def data_descriptors_accepted(context: Context) -> Draft:
    # Streaming writers put sizes and CRC in a data descriptor after each member (flag bit 3).
    stream = crafting.UnseekableBuffer()
    with zipfile.ZipFile(stream, "w") as archive:
        for entry in gt(context):
            archive.writestr(entry.name, entry.data, compress_type=zipfile.ZIP_DEFLATED)
    return Draft(bytes(stream.data), summary=valid_summary())


@case
def lzma_and_bzip2_accepted(context: Context) -> Draft:
    methods = (zipfile.ZIP_LZMA, zipfile.ZIP_BZIP2, zipfile.ZIP_DEFLATED)
    entries = [Entry(entry.name, entry.data, method) for entry, method in zip(gt(context), methods, strict=True)]
    return Draft(zip_bytes(entries), summary=valid_summary())


# Limits --------------------------------------------------------------------------


@case
def ratio_bomb(context: Context) -> Draft:
    entries = gt(context, skip=("s0",)) + [Entry("s0.png", bytes(8 * MIB), zipfile.ZIP_DEFLATED)]
    content = zip_bytes(entries)
    size, compressed = member_sizes(content, "s0.png")
    return Draft(content, ("zip_ratio_too_high",),
                 f"s0.png: member expands too much when uncompressed (expected a compression ratio "
                 f"of at most 200, found {size / compressed:.0f} (8.0 MiB from {compressed} bytes)). "
                 "Submit ordinary PNG files.")


@case
def total_size_bomb(context: Context) -> Draft:
    entries = candidates(8)
    total = sum(len(entry.data) for entry in entries)
    return Draft(zip_bytes(entries), ("zip_too_large",),
                 f"{context.zip_name}: members are too large in total when uncompressed (expected at "
                 f"most 16384 bytes, found {total} bytes). Submit fewer or smaller files.",
                 limits=ArchiveLimits(max_uncompressed_bytes=16 * 1024))


@case
def zip_file_too_large(context: Context) -> Draft:
    content = zip_bytes(gt(context))
    return Draft(content, ("zip_too_large",),
                 f"{context.zip_name}: zip file is too large (expected at most 1024 bytes, found "
                 f"{len(content)} bytes). Compress the PNGs harder or ask the maintainers for a "
                 "higher limit.",
                 limits=ArchiveLimits(max_compressed_bytes=1024))


@case
def too_many_members(context: Context) -> Draft:
    entries = gt(context) + [Entry("metadata.json", b"{}"), Entry("notes.txt", b"x")]
    return Draft(zip_bytes(entries), ("zip_too_many_members",),
                 f"{context.zip_name}: zip file has too many entries (expected at most 4, found more "
                 "than 4). Put only one PNG per sample and candidate in the archive.",
                 limits=ArchiveLimits(max_members=4))


@case
def member_too_large(context: Context) -> Draft:
    # A valid 16x12 PNG that carries a 3000-byte text chunk.
    pixels = layer()
    png = raw_png(WIDTH, HEIGHT, 8, 6, pixels.tobytes(), [(b"tEXt", b"Comment\x00" + b"x" * 3000)])
    return Draft(with_png("s0.png", png, context), ("zip_member_too_large",),
                 f"s0.png: member is too large when uncompressed (expected at most 2048 bytes, found "
                 f"{len(png)} bytes). Submit images of the sample's size.",
                 limits=ArchiveLimits(max_member_bytes=2048))


@case
def nested_zip(context: Context) -> Draft:
    entries = gt(context) + [Entry("more.zip", zip_bytes(gt(context)))]
    return Draft(zip_bytes(entries), ("zip_nested_archive",),
                 "more.zip: archive inside the archive (expected PNG files and metadata.json, found "
                 ".zip). Put the PNGs themselves into one zip.")


@case
def nested_tar_gz(context: Context) -> Draft:
    entries = gt(context) + [Entry("extra/layers.tar.gz", b"\x1f\x8b\x08\x00" + bytes(16))]
    return Draft(zip_bytes(entries), ("zip_nested_archive",),
                 "extra/layers.tar.gz: archive inside the archive (expected PNG files and "
                 "metadata.json, found .gz). Put the PNGs themselves into one zip.")

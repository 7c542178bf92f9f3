"""SafeZip: names, entry types, limits and corrupt data, without any split."""

from __future__ import annotations

import io
import zipfile

import pytest

from evaluator.archive import MIB, ArchiveError, ArchiveLimits, SafeZip, _count_central_directory
from tests.evaluator.zips import (
    Entry,
    corrupt_member_data,
    mark_encrypted,
    symlink,
    write_zip,
    zip_bytes,
)


def problem_fields(archive: SafeZip) -> list[tuple[str, str, str, str]]:
    return [(p.code, p.file, p.expected, p.found) for p in archive.problems]


def test_valid_zip_lists_and_reads_members(tmp_path):
    path = write_zip(tmp_path / "ok.zip", [("a.png", b"alpha"), ("dir/b.png", b"beta")])
    with SafeZip(path) as archive:
        assert archive.problems == []
        assert archive.readable
        assert sorted(archive.members) == ["a.png", "dir/b.png"]
        assert archive.members["a.png"].size == 5
        assert archive.read("a.png") == b"alpha"
        assert archive.read("dir/b.png") == b"beta"


def test_file_object_source():
    data = zip_bytes([("a.png", b"alpha")])
    with SafeZip(io.BytesIO(data)) as archive:
        assert archive.display_name == "submission.zip"
        assert archive.read("a.png") == b"alpha"


def test_ignored_entries_are_not_members(tmp_path):
    path = write_zip(tmp_path / "mac.zip", [
        ("a.png", b"x"),
        ("__MACOSX/._a.png", b"resource fork"),
        (".DS_Store", b"finder"),
        ("preds/._b.png", b"apple double"),
        ("folder/", b""),
    ])
    with SafeZip(path) as archive:
        assert archive.problems == []
        assert list(archive.members) == ["a.png"]
        assert archive.ignored == ["__MACOSX/._a.png", ".DS_Store", "preds/._b.png"]


def test_rejected_files_and_folders_listed(tmp_path):
    path = write_zip(tmp_path / "mixed.zip", [
        ("a.png", b"x"),
        symlink("b.png", "/etc/passwd"),
        ("../c.png", b"x"),
        ("a.png", b"again"),
        ("folder/", b""),
    ])
    with SafeZip(path) as archive:
        assert list(archive.members) == ["a.png"]
        assert archive.rejected == ["b.png", "../c.png", "a.png"]
        assert archive.folders == ["folder/"]


def test_empty_member_name_rejected(tmp_path):
    path = write_zip(tmp_path / "empty-name.zip", [("", b"x"), ("../dir/", b"")])
    with SafeZip(path) as archive:
        assert [(p.code, p.message) for p in archive.problems] == [
            ("zip_path_unsafe", "member name contains an empty path"),
            ("zip_path_unsafe", "member name contains a '..' component"),
        ]
        assert archive.rejected == [""]
        assert archive.folders == []


def test_dot_slash_prefix_is_normalised(tmp_path):
    path = write_zip(tmp_path / "dot.zip", [("./a.png", b"x")])
    with SafeZip(path) as archive:
        assert list(archive.members) == ["a.png"]
        assert archive.read("a.png") == b"x"


@pytest.mark.parametrize("name, reason", [
    ("/etc/a.png", "an absolute path"),
    ("C:/a.png", "an absolute path"),
    ("../a.png", "a '..' component"),
    ("preds/../../a.png", "a '..' component"),
    ("preds\\a.png", "a backslash"),
    ("a\x07.png", "a control character"),
])
def test_unsafe_names_rejected(tmp_path, name, reason):
    path = write_zip(tmp_path / "unsafe.zip", [(name, b"x"), ("ok.png", b"y")])
    with SafeZip(path) as archive:
        # A name with a control character is escaped, so it cannot split a report line.
        shown = repr(name)[1:-1] if reason == "a control character" else name
        assert problem_fields(archive) == [
            ("zip_path_unsafe", shown, "a relative path with / separators", repr(name)),
        ]
        assert archive.problems[0].message == f"member name contains {reason}"
        assert archive.problems[0].hint.startswith(
            "Create the archive with a tool that writes / separators" if reason == "a backslash"
            else "Create the archive from inside the folder of PNGs.")
        assert list(archive.members) == ["ok.png"]


def test_unsafe_ignored_name_still_rejected(tmp_path):
    path = write_zip(tmp_path / "unsafe.zip", [("__MACOSX/../../a.png", b"x")])
    with SafeZip(path) as archive:
        assert [p.code for p in archive.problems] == ["zip_path_unsafe"]
        assert archive.ignored == []


def test_symlink_rejected(tmp_path):
    path = write_zip(tmp_path / "link.zip", [symlink("a.png", "/etc/passwd")])
    with SafeZip(path) as archive:
        assert str(archive.problems[0]) == (
            "a.png: member is a symbolic link (expected a regular file, found a symbolic link). "
            "Store the PNG itself, for example with `zip` without -y."
        )
        assert archive.members == {}


def test_duplicate_names_rejected(tmp_path):
    path = write_zip(tmp_path / "dup.zip", [("a.png", b"1"), ("a.png", b"2"), ("A.PNG", b"3")])
    with SafeZip(path) as archive:
        assert problem_fields(archive) == [
            ("zip_duplicate_name", "a.png", "unique names, ignoring case", "a.png and a.png"),
            ("zip_duplicate_name", "A.PNG", "unique names, ignoring case", "a.png and A.PNG"),
        ]
        assert archive.problems[0].message == "another member has the same name"
        assert archive.problems[1].message == "another member has a name that differs only by case"
        assert archive.read("a.png") == b"1"


def test_encrypted_member_rejected(tmp_path):
    path = tmp_path / "secret.zip"
    path.write_bytes(mark_encrypted(zip_bytes([("a.png", b"x")])))
    with SafeZip(path) as archive:
        assert problem_fields(archive) == [
            ("zip_encrypted", "a.png", "no password", "an encrypted member"),
        ]


@pytest.mark.parametrize("name", ["inner.zip", "preds/inner.tar.gz", "x.7z"])
def test_nested_archive_rejected(tmp_path, name):
    path = write_zip(tmp_path / "outer.zip", [(name, zip_bytes([("a.png", b"x")]))])
    with SafeZip(path) as archive:
        assert [(p.code, p.file, p.message) for p in archive.problems] == [
            ("zip_nested_archive", name, "archive inside the archive"),
        ]


def test_compressed_size_limit(tmp_path):
    path = write_zip(tmp_path / "big.zip", [("a.png", b"x" * 200)])
    size = path.stat().st_size
    with SafeZip(path, ArchiveLimits(max_compressed_bytes=100)) as archive:
        assert not archive.readable
        assert str(archive.problems[0]) == (
            f"big.zip: zip file is too large (expected at most 100 bytes, found {size} bytes). "
            "Compress the PNGs harder or ask the maintainers for a higher limit."
        )


def test_total_uncompressed_limit(tmp_path):
    path = write_zip(tmp_path / "sum.zip", [("a.png", b"x" * 600), ("b.png", b"y" * 600)])
    with SafeZip(path, ArchiveLimits(max_uncompressed_bytes=1000)) as archive:
        assert problem_fields(archive) == [
            ("zip_too_large", "sum.zip", "at most 1000 bytes", "1200 bytes"),
        ]
        assert not archive.readable
        assert archive.members == {}


def test_member_count_limit(tmp_path):
    path = write_zip(tmp_path / "many.zip", [(f"{i}.png", b"x") for i in range(4)])
    with SafeZip(path, ArchiveLimits(max_members=3)) as archive:
        assert problem_fields(archive) == [
            ("zip_too_many_members", "many.zip", "at most 3", "more than 3"),
        ]
        assert not archive.readable


def test_central_directory_count_stops_past_limit():
    data = zip_bytes([(f"{i}.png", b"x") for i in range(10)])
    assert _count_central_directory(io.BytesIO(data), len(data), limit=3) == 4
    assert _count_central_directory(io.BytesIO(data), len(data), limit=100) == 10
    assert _count_central_directory(io.BytesIO(b"no zip"), 6, limit=100) is None


def test_central_directory_count_with_prepended_data():
    data = b"#!/bin/sh stub\n" * 10 + zip_bytes([("a.png", b"x"), ("b.png", b"y")])
    assert _count_central_directory(io.BytesIO(data), len(data), limit=100) == 2
    with SafeZip(io.BytesIO(data)) as archive:
        assert archive.read("b.png") == b"y"


def test_member_count_limit_zip64(tmp_path):
    # More than 65535 entries makes zipfile write a zip64 end record.
    path = tmp_path / "zip64.zip"
    with zipfile.ZipFile(path, "w") as archive:
        for index in range(65_600):
            archive.writestr(f"d{index}/", b"")
    with SafeZip(path, ArchiveLimits(max_members=65_599)) as archive:
        assert [p.code for p in archive.problems] == ["zip_too_many_members"]
    with SafeZip(path, ArchiveLimits(max_members=65_600)) as archive:
        assert archive.problems == []
        assert archive.readable


def test_member_size_limit(tmp_path):
    path = write_zip(tmp_path / "one.zip", [("a.png", b"x" * 101), ("b.png", b"y" * 100)])
    with SafeZip(path, ArchiveLimits(max_member_bytes=100)) as archive:
        assert problem_fields(archive) == [
            ("zip_member_too_large", "a.png", "at most 100 bytes", "101 bytes"),
        ]
        assert list(archive.members) == ["b.png"]


def test_compression_ratio_limit(tmp_path):
    zeros = bytes(2 * MIB)
    path = write_zip(tmp_path / "bomb.zip", [Entry("a.png", zeros, zipfile.ZIP_DEFLATED)])
    compressed = zipfile.ZipFile(path).getinfo("a.png").compress_size
    with SafeZip(path) as archive:
        assert problem_fields(archive) == [(
            "zip_ratio_too_high", "a.png", "a compression ratio of at most 200",
            f"{2 * MIB / compressed:.0f} (2.0 MiB from {compressed} bytes)",
        )]
        assert archive.members == {}


def test_small_members_exempt_from_ratio(tmp_path):
    path = write_zip(tmp_path / "json.zip", [Entry("metadata.json", b" " * 60_000, zipfile.ZIP_DEFLATED)])
    with SafeZip(path) as archive:
        assert archive.problems == []
        assert archive.read("metadata.json") == b" " * 60_000


@pytest.mark.parametrize("data, found", [
    (b"not a zip at all", "File is not a zip file"),
    (b"", "File is not a zip file"),
])
def test_not_a_zip(tmp_path, data, found):
    path = tmp_path / "bad.zip"
    path.write_bytes(data)
    with SafeZip(path) as archive:
        assert problem_fields(archive) == [("zip_unreadable", "bad.zip", "a valid zip file", found)]
        assert not archive.readable


def test_display_name_replaces_the_stored_name_in_messages(tmp_path):
    path = tmp_path / "5f0c2a9e.zip"
    path.write_bytes(b"not a zip at all")
    with SafeZip(path, display_name="my predictions.zip") as archive:
        assert archive.display_name == "my predictions.zip"
        assert problem_fields(archive) == [
            ("zip_unreadable", "my predictions.zip", "a valid zip file", "File is not a zip file"),
        ]


def test_truncated_zip(tmp_path):
    data = zip_bytes([("a.png", b"x" * 1000), ("b.png", b"y" * 1000)])
    path = tmp_path / "cut.zip"
    path.write_bytes(data[: len(data) // 2])
    with SafeZip(path) as archive:
        assert [(p.code, p.message) for p in archive.problems] == [
            ("zip_unreadable", "file is not a zip archive or is truncated"),
        ]


def test_missing_file(tmp_path):
    with SafeZip(tmp_path / "absent.zip") as archive:
        assert problem_fields(archive) == [
            ("zip_unreadable", "absent.zip", "a readable zip file", "No such file or directory"),
        ]


def test_crc_error_raised_on_read(tmp_path):
    payload = bytes(range(256)) * 4
    path = tmp_path / "crc.zip"
    path.write_bytes(corrupt_member_data(zip_bytes([("a.png", payload)]), payload))
    with SafeZip(path) as archive:
        assert archive.problems == []
        with pytest.raises(ArchiveError) as caught:
            archive.read("a.png")
    assert str(caught.value.problem) == (
        "a.png: member is corrupt (expected intact compressed data, found Bad CRC-32 for file "
        "'a.png'). Create the archive again; the upload may have been damaged."
    )


def test_total_counts_each_member_once(tmp_path):
    path = write_zip(tmp_path / "twice.zip", [("a.png", b"x" * 600), ("b.png", b"y" * 500)])
    with SafeZip(path, ArchiveLimits(max_uncompressed_bytes=1100)) as archive:
        for _ in range(3):
            assert archive.read("a.png") == b"x" * 600
        assert archive.read("b.png") == b"y" * 500


def test_limits_must_be_positive():
    with pytest.raises(ValueError, match=r"ArchiveLimits.max_members must be a positive number, got 0"):
        ArchiveLimits(max_members=0)

"""Submission validation against a split, tolerant reading, and write_submission."""

from __future__ import annotations

import io
import json
import multiprocessing
import pickle
import zipfile
import zlib
from concurrent.futures import ProcessPoolExecutor

import numpy as np
import pytest

from evaluator.archive import MIB, ArchiveLimits
from evaluator.submission import (
    SubmissionArchive,
    SubmissionError,
    validate_submission,
    write_submission,
)
from tests.evaluator.zips import (
    HEIGHT,
    WIDTH,
    Entry,
    grey16_png,
    ground_truth_entries,
    huge_header_png,
    la16_png,
    make_split,
    mark_encrypted,
    palette_png,
    png_bytes,
    random_layer,
    rgba16_png,
    rgba_png,
    symlink,
    write_zip,
    zip_bytes,
)


@pytest.fixture
def split(tmp_path):
    return make_split(tmp_path / "split")


def layers_entries(names=("s0.png", "s1.png", "s2.png"), seed=0):
    return [Entry(name, rgba_png(random_layer(seed + index))) for index, name in enumerate(names)]


def check(tmp_path, split, entries, **options):
    return validate_submission(write_zip(tmp_path / "sub.zip", entries), split, **options)


def fields_of(report):
    return [(p.code, p.file, p.expected, p.found) for p in report.problems]


# Accepted submissions -----------------------------------------------------------


def test_ground_truth_validates(tmp_path, split):
    report = check(tmp_path, split, ground_truth_entries(split))
    assert report.problems == []
    assert report.valid
    assert report.summary == {"samples": 3, "candidates": 1}


def test_wrapping_folder_and_mac_files_accepted(tmp_path, split):
    entries = layers_entries(["preds/s0.png", "preds/s1.png", "preds/s2.png"])
    entries += [Entry("preds/metadata.json", b'{"method": "copy"}'), Entry("__MACOSX/preds/._s0.png", b"x"),
                Entry("preds/.DS_Store", b"x"), Entry("preds/._s1.png", b"x")]
    report = check(tmp_path, split, entries)
    assert report.problems == []
    assert report.summary == {"samples": 3, "candidates": 1, "method": "copy"}


def test_metadata_beside_wrapping_folder(tmp_path, split):
    entries = layers_entries(["preds/s0.png", "preds/s1.png", "preds/s2.png"])
    entries.append(Entry("metadata.json", b'{"method": "outside"}'))
    report = check(tmp_path, split, entries)
    assert report.problems == []
    assert report.summary["method"] == "outside"


def test_two_top_folders_not_stripped(tmp_path, split):
    entries = layers_entries(["preds/s0.png", "preds/s1.png", "other/s2.png"])
    report = check(tmp_path, split, entries)
    assert [(p.code, p.file, p.found) for p in report.problems] == [
        ("sample_unknown", "other/s2.png", "'other'"),
        ("sample_unknown", "preds/s0.png", "'preds'"),
        ("sample_unknown", "preds/s1.png", "'preds'"),
        ("sample_missing", "s0.png", "no such file"),
        ("sample_missing", "s1.png", "no such file"),
        ("sample_missing", "s2.png", "no such file"),
    ]


def test_max_candidates_must_be_positive(tmp_path, split):
    path = write_zip(tmp_path / "sub.zip", layers_entries())
    with pytest.raises(ValueError, match="max_candidates must be at least 1, got 0"):
        validate_submission(path, split, max_candidates=0)


def test_folder_named_like_sample_is_not_a_wrapper(tmp_path):
    split = make_split(tmp_path / "one", sample_ids=["s0"])
    report = check(tmp_path, split, layers_entries(["s0/0.png", "s0/1.png"]))
    assert report.problems == []
    assert report.summary == {"samples": 1, "candidates": 2}


def tolerant_files(layer):
    grey_alpha = np.stack([layer[..., 0], layer[..., 3]], axis=-1)
    indices = (np.arange(HEIGHT * WIDTH).reshape(HEIGHT, WIDTH) % 4).astype(np.uint8)
    palette = np.array([[255, 0, 0], [0, 255, 0], [0, 0, 255], [9, 9, 9]], np.uint8)
    grey = layer[..., 0].copy()
    grey[0, 0] = 7
    return {
        "rgba16": (rgba16_png(layer), layer),
        "la8": (png_bytes(grey_alpha, "LA"),
                np.concatenate([np.repeat(grey_alpha[..., :1], 3, -1), grey_alpha[..., 1:]], -1)),
        "la16": (la16_png(grey_alpha),
                 np.concatenate([np.repeat(grey_alpha[..., :1], 3, -1), grey_alpha[..., 1:]], -1)),
        "palette_trns": (palette_png(indices, palette, bytes([0, 128, 255])),
                         np.concatenate([palette[indices], np.array([0, 128, 255, 255], np.uint8)[indices][..., None]], -1)),
        "grey_trns": (png_bytes(grey, "L", transparency=7),
                      np.concatenate([np.repeat(grey[..., None], 3, -1), np.where(grey == 7, 0, 255).astype(np.uint8)[..., None]], -1)),
    }


@pytest.mark.parametrize("kind", ["rgba16", "la8", "la16", "palette_trns", "grey_trns"])
def test_tolerant_formats_converted(tmp_path, split, kind):
    data, expected = tolerant_files(random_layer(7))[kind]
    entries = [Entry("s0.png", data)] + layers_entries(["s1.png", "s2.png"])
    path = write_zip(tmp_path / "sub.zip", entries)
    assert validate_submission(path, split).problems == []
    with SubmissionArchive(path, split) as archive:
        layer = archive.read_candidate("s0", 0)
    assert layer.dtype == np.uint8
    assert layer.shape == (HEIGHT, WIDTH, 4)
    np.testing.assert_array_equal(layer, expected)


def test_file_object_accepted(tmp_path, split):
    data = write_zip(tmp_path / "sub.zip", layers_entries()).read_bytes()
    assert validate_submission(io.BytesIO(data), split).valid


# Rejected samples and files -------------------------------------------------


def test_missing_samples_one_problem_each(tmp_path, split):
    report = check(tmp_path, split, layers_entries(["s1.png"]))
    assert [str(p) for p in report.problems] == [
        f"{sample_id}.png: sample has no prediction (expected {sample_id}.png or {sample_id}/0.png, "
        "found no such file). Add a PNG for every sample of the split."
        for sample_id in ("s0", "s2")
    ]


def test_many_missing_samples_format_capped(tmp_path):
    split = make_split(tmp_path / "wide", sample_ids=[f"s{i:02d}" for i in range(30)], width=4, height=4)
    report = check(tmp_path, split, [Entry("metadata.json", b"{}")])
    assert [p.code for p in report.problems] == ["sample_missing"] * 30
    text = report.format()
    assert text.splitlines()[0] == "30 problems:"
    assert text.splitlines()[-1] == "... and 10 more"
    assert len(text.splitlines()) == 22


def test_missing_sample_inside_wrapping_folder(tmp_path, split):
    report = check(tmp_path, split, layers_entries(["preds/s0.png", "preds/s1.png"]))
    assert fields_of(report) == [
        ("sample_missing", "preds/s2.png", "preds/s2.png or preds/s2/0.png", "no such file"),
    ]


def test_unknown_sample(tmp_path, split):
    report = check(tmp_path, split, layers_entries(["s0.png", "s1.png", "s2.png", "s9.png"]))
    assert [str(p) for p in report.problems] == [
        "s9.png: no sample of the split has this id (expected an id from the split's "
        "manifest.jsonl, found 's9'). Name each PNG after a sample_id of the split; check that "
        "you validate against the right split."
    ]


def test_unexpected_files(tmp_path, split):
    entries = layers_entries() + [Entry("notes.txt", b"hi"), Entry("s0/0/x.png", b"x")]
    report = check(tmp_path, split, entries)
    assert fields_of(report) == [
        ("file_unexpected", "notes.txt", "<sample_id>.png, <sample_id>/<k>.png or metadata.json", "notes.txt"),
        ("file_unexpected", "s0/0/x.png", "<sample_id>.png, <sample_id>/<k>.png or metadata.json", "s0/0/x.png"),
    ]


def test_wrong_size(tmp_path, split):
    entries = [Entry("s0.png", rgba_png(random_layer(0, width=20)))] + layers_entries(["s1.png", "s2.png"])
    report = check(tmp_path, split, entries)
    assert [str(p) for p in report.problems] == [
        "s0.png: image size differs from the sample's (expected 16x12, found 20x12). "
        "Predict the layer at the input image's size."
    ]


@pytest.mark.parametrize("kind, found", [
    ("RGB", "mode RGB without transparency"),
    ("L", "mode L without transparency"),
    ("P", "mode P without transparency"),
    ("I;16", "mode I;16 (16-bit grey without alpha)"),
])
def test_no_alpha(tmp_path, split, kind, found):
    layer = random_layer(3)
    data = {
        "RGB": png_bytes(layer, "RGB"),
        "L": png_bytes(layer, "L"),
        "P": png_bytes(layer[..., :3], "P"),
        "I;16": grey16_png(layer[..., 0].astype(np.uint16) * 257),
    }[kind]
    report = check(tmp_path, split, [Entry("s0.png", data)] + layers_entries(["s1.png", "s2.png"]))
    assert fields_of(report) == [
        ("image_no_alpha", "s0.png", "RGBA (or LA, or a palette with transparency)", found),
    ]


def rgb16_png_with_key(width: int, height: int, key: int) -> bytes:
    """Build a 16-bit RGB PNG whose pixels all equal its tRNS key colour (R = G = B = key)."""
    def chunk(kind: bytes, body: bytes) -> bytes:
        return len(body).to_bytes(4, "big") + kind + body + zlib.crc32(kind + body).to_bytes(4, "big")

    sample = key.to_bytes(2, "big") * 3
    rows = b"".join(b"\x00" + sample * width for _ in range(height))
    header = width.to_bytes(4, "big") + height.to_bytes(4, "big") + bytes([16, 2, 0, 0, 0])
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"tRNS", sample)
            + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b""))


def test_rgb16_transparency_key_rejected(tmp_path, split):
    sample = split.samples[0]
    data = rgb16_png_with_key(sample.width, sample.height, 0x1234)
    report = check(tmp_path, split, [Entry("s0.png", data)] + layers_entries(["s1.png", "s2.png"]))
    assert fields_of(report) == [
        ("image_transparency_unsupported", "s0.png", "RGBA, LA, or 8-bit RGB, grey or palette with a tRNS chunk",
         "16-bit RGB with a tRNS key colour"),
    ]
    assert report.problems[0].message == "16-bit RGB transparency key is not supported"


def test_truncated_png(tmp_path, split):
    data = rgba_png(random_layer(0))
    report = check(tmp_path, split, [Entry("s0.png", data[:-40])] + layers_entries(["s1.png", "s2.png"]))
    assert [(p.code, p.file, p.message) for p in report.problems] == [
        ("image_unreadable", "s0.png", "PNG cannot be decoded"),
    ]


def test_png_header_corrupt(tmp_path, split):
    data = b"\x89PNG\r\n\x1a\n" + b"\x00" * 30
    report = check(tmp_path, split, [Entry("s0.png", data)] + layers_entries(["s1.png", "s2.png"]))
    assert fields_of(report) == [
        ("image_unreadable", "s0.png", "an IHDR chunk first", "00" * 16),
    ]


def test_jpeg_named_png(tmp_path, split):
    buffer = io.BytesIO()
    from PIL import Image

    Image.fromarray(random_layer(0)[..., :3]).save(buffer, format="JPEG")
    report = check(tmp_path, split, [Entry("s0.png", buffer.getvalue())] + layers_entries(["s1.png", "s2.png"]))
    assert [str(p) for p in report.problems] == [
        "s0.png: file is not a PNG image (expected PNG data, found JPEG data). "
        "Save the layer as PNG; renaming another format is not enough."
    ]


def test_too_many_pixels_from_header(tmp_path, split):
    entries = [Entry("s0.png", huge_header_png(100_000, 100_000))] + layers_entries(["s1.png", "s2.png"])
    report = check(tmp_path, split, entries)
    assert fields_of(report) == [(
        "image_too_many_pixels", "s0.png", "at most 50000000 pixels (16x12 for this sample)",
        "100000x100000 = 10000000000 pixels",
    )]


def test_pixel_limit_configurable(tmp_path, split):
    report = check(tmp_path, split, layers_entries(), limits=ArchiveLimits(max_pixels=100))
    assert [p.code for p in report.problems] == ["image_too_many_pixels"] * 3


def deflated_zeros(name):
    """A member of 2 MiB of zeros, which deflate shrinks far beyond the ratio limit."""
    return Entry(name, bytes(2 * MIB), zipfile.ZIP_DEFLATED)


# A member of each kind that the archive rejects for its own reason, standing in for s0.
REJECTED_MEMBERS = {
    "symlink": ([symlink("s0.png", "/etc/passwd")], {}, "zip_symlink", "member is a symbolic link"),
    "parent": ([Entry("../s0.png", rgba_png(random_layer(0)))], {}, "zip_path_unsafe",
               "member name contains a '..' component"),
    "absolute": ([Entry("/s0.png", rgba_png(random_layer(0)))], {}, "zip_path_unsafe",
                 "member name contains an absolute path"),
    "backslash": ([Entry("preds\\s0.png", rgba_png(random_layer(0)))], {}, "zip_path_unsafe",
                  "member name contains a backslash"),
    "too_large": ([Entry("s0.png", rgba_png(random_layer(0)) + bytes(4096))],
                  {"limits": ArchiveLimits(max_member_bytes=4096)}, "zip_member_too_large",
                  "member is too large when uncompressed"),
    "ratio": ([deflated_zeros("s0.png")], {}, "zip_ratio_too_high", "member expands too much when uncompressed"),
    "duplicate": ([Entry("s0.png", rgba_png(random_layer(0))), Entry("S0.png", rgba_png(random_layer(0)))], {},
                  "zip_duplicate_name", "another member has a name that differs only by case"),
}


@pytest.mark.parametrize("kind", sorted(REJECTED_MEMBERS))
def test_rejected_member_only_real_reason(tmp_path, split, kind):
    members, options, code, message = REJECTED_MEMBERS[kind]
    report = check(tmp_path, split, members + layers_entries(["s1.png", "s2.png"]), **options)
    assert [(p.code, p.message) for p in report.problems] == [(code, message)]


def test_rejected_member_no_missing_sample(tmp_path, split):
    entries = [symlink("s0.png", "/etc/passwd")] + layers_entries(["s1.png", "s2.png"])
    report = check(tmp_path, split, entries)
    assert "sample_missing" not in [p.code for p in report.problems]


def test_encrypted_members_only_real_reason(tmp_path, split):
    path = tmp_path / "sub.zip"
    path.write_bytes(mark_encrypted(zip_bytes(layers_entries())))
    report = validate_submission(path, split)
    assert [str(p) for p in report.problems] == [
        f"s{i}.png: member is encrypted (expected no password, found an encrypted member). "
        "Create the archive without a password."
        for i in range(3)
    ]


def test_rejected_candidate_no_index_problem(tmp_path, split):
    entries = layers_entries(["s0/0.png", "s0/2.png", "s1/0.png", "s1/1.png", "s1/2.png",
                              "s2/0.png", "s2/1.png", "s2/2.png"])
    entries.append(symlink("s0/1.png", "/etc/passwd"))
    report = check(tmp_path, split, entries)
    assert [(p.code, p.file) for p in report.problems] == [("zip_symlink", "s0/1.png")]


def test_rejected_candidate_images_still_checked(tmp_path, split):
    entries = [Entry("s0/0.png", b"\xff\xd8\xff not a png"), symlink("s0/1.png", "/etc/passwd")]
    entries += layers_entries(["s1/0.png", "s1/1.png", "s2/0.png", "s2/1.png"])
    report = check(tmp_path, split, entries)
    assert [(p.code, p.file) for p in report.problems] == [
        ("zip_symlink", "s0/1.png"), ("image_not_png", "s0/0.png"),
    ]


def test_rejected_unrelated_member_keeps_missing(tmp_path, split):
    entries = [symlink("escape.png", "/etc/passwd")] + layers_entries(["s1.png", "s2.png"])
    report = check(tmp_path, split, entries)
    assert [(p.code, p.file) for p in report.problems] == [
        ("zip_symlink", "escape.png"), ("sample_missing", "s0.png"),
    ]


# Layout problems ----------------------------------------------------------------

NESTED_HINT = ("Put the PNGs at the top level of the zip or inside one folder. For example, run "
               "`zip -r ../preds.zip .` inside the folder that contains the PNGs or the <sample_id> folders.")


def test_two_folders_deep_message(tmp_path, split):
    report = check(tmp_path, split, ground_truth_entries(split, "a/b/"))
    assert [str(p) for p in report.problems] == [
        f"a/b/s{i}.png: file is nested too deep (expected <sample_id>.png or <sample_id>/<k>.png at "
        f"the top level or inside one folder, found inside a/b/). {NESTED_HINT}"
        for i in range(3)
    ]


def test_two_folders_deep_only_nesting(tmp_path, split):
    report = check(tmp_path, split, ground_truth_entries(split, "a/b/"))
    assert [p.code for p in report.problems] == ["file_nested_too_deep"] * 3


def test_candidate_folders_nested_too_deep(tmp_path, split):
    names = [f"a/b/s{i}/{k}.png" for i in range(3) for k in range(2)]
    report = check(tmp_path, split, layers_entries(names))
    assert fields_of(report) == [
        ("file_nested_too_deep", name,
         "<sample_id>.png or <sample_id>/<k>.png at the top level or inside one folder", "inside a/b/")
        for name in names
    ]


def test_nested_file_beside_top_level(tmp_path, split):
    report = check(tmp_path, split, layers_entries(["a/b/s0.png", "s1.png", "s2.png"]))
    assert fields_of(report) == [
        ("file_nested_too_deep", "a/b/s0.png",
         "<sample_id>.png or <sample_id>/<k>.png at the top level or inside one folder", "inside a/b/"),
    ]


def test_nested_unknown_name_and_missing(tmp_path, split):
    report = check(tmp_path, split, layers_entries(["a/b/x.png"]))
    assert [(p.code, p.file) for p in report.problems] == [
        ("file_nested_too_deep", "a/b/x.png"),
        ("sample_missing", "a/s0.png"),
        ("sample_missing", "a/s1.png"),
        ("sample_missing", "a/s2.png"),
    ]


def test_unknown_folder_inside_wrapper(tmp_path, split):
    names = ["preds/s0.png", "preds/s1.png", "preds/s2.png", "preds/s9/0.png"]
    report = check(tmp_path, split, layers_entries(names))
    assert [(p.code, p.file, p.found) for p in report.problems] == [("sample_unknown", "preds/s9/0.png", "'s9'")]


EMPTY_HINT = ("Create the zip again from the folder of PNGs, for example with `zip -r ../preds.zip .` run "
              "inside that folder.")


def test_empty_zip_one_problem(tmp_path, split):
    report = check(tmp_path, split, [])
    assert [str(p) for p in report.problems] == [
        "sub.zip: archive contains no files (expected a PNG for every sample of the split, found no "
        f"entries). {EMPTY_HINT}"
    ]


def test_empty_zip_wide_split(tmp_path):
    split = make_split(tmp_path / "wide", sample_ids=[f"s{i:02d}" for i in range(48)], width=4, height=4)
    report = check(tmp_path, split, [])
    assert [p.code for p in report.problems] == ["submission_empty"]


def test_folders_and_ignored_only(tmp_path, split):
    entries = [Entry("preds/"), Entry("__MACOSX/._s0.png", b"x"), Entry(".DS_Store", b"x")]
    report = check(tmp_path, split, entries)
    assert [(p.code, p.found, p.hint) for p in report.problems] == [(
        "submission_empty", "only 1 folder and 2 ignored files",
        f"{EMPTY_HINT} Files under __MACOSX/ and names that start with a dot are ignored.",
    )]


def test_unreadable_zip_reports_only_that(tmp_path, split):
    path = tmp_path / "sub.zip"
    path.write_bytes(b"garbage")
    report = validate_submission(path, split)
    assert [(p.code, p.file) for p in report.problems] == [("zip_unreadable", "sub.zip")]


# Candidates -------------------------------------------------------------------


def test_unequal_candidate_counts(tmp_path, split):
    names = ["s0/0.png", "s0/1.png", "s1/0.png", "s1/1.png", "s2.png"]
    report = check(tmp_path, split, layers_entries(names))
    assert [str(p) for p in report.problems] == [
        "s2.png: sample s2 has a different number of candidates (expected 2, as 2 other samples "
        "have, found 1). Give every sample the same number of candidates."
    ]


def test_too_many_candidates(tmp_path, split):
    names = [f"s{i}/{k}.png" for i in range(3) for k in range(3)]
    report = check(tmp_path, split, layers_entries(names), max_candidates=2)
    assert fields_of(report) == [("candidates_too_many", "sub.zip", "at most 2", "3")]
    assert report.summary == {"samples": 3, "candidates": 3}


def test_candidate_indices_with_gap(tmp_path, split):
    names = ["s0/0.png", "s0/2.png", "s1/0.png", "s1/1.png", "s2/0.png", "s2/1.png"]
    report = check(tmp_path, split, layers_entries(names))
    assert [str(p) for p in report.problems] == [
        "s0/: candidate indices are not 0 .. n-1 (expected 0 .. 1, found 0, 2). "
        "Number the candidates 0, 1, 2, ... without gaps."
    ]


def test_candidate_name_not_an_index(tmp_path, split):
    names = ["s0/0.png", "s0/01.png", "s1.png", "s2.png"]
    report = check(tmp_path, split, layers_entries(names))
    assert fields_of(report) == [
        ("candidate_index_invalid", "s0/01.png", "0.png, 1.png, ... without leading zeros", "01.png"),
    ]


def test_mixed_layout(tmp_path, split):
    names = ["s0.png", "s0/0.png", "s1.png", "s2.png"]
    report = check(tmp_path, split, layers_entries(names))
    assert [str(p) for p in report.problems] == [
        "s0.png and s0/: sample has both a single PNG and a folder of candidates "
        "(expected either s0.png or s0/<k>.png, found both). Use <sample_id>.png for one "
        "candidate, <sample_id>/<k>.png for several."
    ]


# Metadata ---------------------------------------------------------------------


@pytest.mark.parametrize("data, message, found", [
    (b"{not json", "metadata.json is not valid JSON",
     "Expecting property name enclosed in double quotes at line 1 column 2"),
    (b"[1, 2]", "metadata.json is not a JSON object", "list"),
    (b'{"method": 3}', '"method" in metadata.json is not a non-empty string', "3"),
    (b"\xff\xfe{}", "metadata.json is not UTF-8",
     "'utf-8' codec can't decode byte 0xff in position 0: invalid start byte"),
    (b" " * (64 * 1024 + 1), "metadata.json is too large", "65537 bytes"),
])
def test_metadata_invalid(tmp_path, split, data, message, found):
    report = check(tmp_path, split, layers_entries() + [Entry("metadata.json", data)])
    assert [(p.code, p.file, p.message, p.found) for p in report.problems] == [
        ("metadata_invalid", "metadata.json", message, found),
    ]


# Reading and writing ----------------------------------------------------------


def test_round_trip_single_candidate(tmp_path, split):
    layers = {sample.sample_id: random_layer(index) for index, sample in enumerate(split)}
    path = write_submission(tmp_path / "out.zip", ((sid, [layer]) for sid, layer in layers.items()),
                            metadata={"method": "random"})
    with SubmissionArchive(path, split) as archive:
        assert archive.n_candidates == 1
        assert archive.metadata == {"method": "random"}
        for sample_id, layer in layers.items():
            np.testing.assert_array_equal(archive.read_candidate(sample_id, 0), layer)
    assert not (tmp_path / "out.zip.partial").exists()


def test_round_trip_multiple_candidates(tmp_path, split):
    layers = {sample.sample_id: [random_layer(10 * index + k) for k in range(3)]
              for index, sample in enumerate(split)}
    path = write_submission(tmp_path / "out.zip", layers.items())
    with SubmissionArchive(path, split, max_candidates=3) as archive:
        assert archive.n_candidates == 3
        assert archive.metadata == {}
        assert archive.sample_ids == ["s0", "s1", "s2"]
        for sample_id, candidates in layers.items():
            for k, layer in enumerate(candidates):
                np.testing.assert_array_equal(archive.read_candidate(sample_id, k), layer)
        with pytest.raises(IndexError, match=r"candidate 3 is out of range 0 \.\. 2"):
            archive.read_candidate("s0", 3)
        with pytest.raises(KeyError, match="sample 'nope' is not in this submission's split"):
            archive.read_candidate("nope", 0)


def test_invalid_submission_raises_with_report(tmp_path, split):
    path = write_zip(tmp_path / "sub.zip", layers_entries(["s0.png"]))
    with pytest.raises(SubmissionError) as caught:
        SubmissionArchive(path, split)
    assert [p.code for p in caught.value.report.problems] == ["sample_missing", "sample_missing"]
    assert str(caught.value).startswith("invalid submission\n2 problems:\n- s1.png: sample has no prediction")


def test_skipping_image_checks_defers_to_read(tmp_path, split):
    entries = [Entry("s0.png", rgba_png(random_layer(0))[:-40])] + layers_entries(["s1.png", "s2.png"])
    path = write_zip(tmp_path / "sub.zip", entries)
    with pytest.raises(SubmissionError):
        SubmissionArchive(path, split)
    with SubmissionArchive(path, split, check_images=False) as archive:
        np.testing.assert_array_equal(archive.read_candidate("s1", 0), random_layer(0))
        with pytest.raises(SubmissionError) as caught:
            archive.read_candidate("s0", 0)
    assert [(p.code, p.file) for p in caught.value.report.problems] == [("image_unreadable", "s0.png")]


def test_skipping_image_checks_keeps_name_checks(tmp_path, split):
    path = write_zip(tmp_path / "sub.zip", layers_entries(["s0.png", "s1.png"]))
    with pytest.raises(SubmissionError) as caught:
        SubmissionArchive(path, split, check_images=False)
    assert [p.code for p in caught.value.report.problems] == ["sample_missing"]


def _read_all(archive):
    return {sample_id: archive.read_candidate(sample_id, 0) for sample_id in archive.sample_ids}


def test_pickled_archive_reads_same_layers(tmp_path, split):
    path = write_zip(tmp_path / "sub.zip", ground_truth_entries(split))
    with SubmissionArchive(path, split) as archive:
        copy = pickle.loads(pickle.dumps(archive))
        expected = _read_all(archive)
    for sample in split:
        np.testing.assert_array_equal(copy.read_candidate(sample.sample_id, 0), split.read_gt_layer(sample))
    copy.close()

    context = multiprocessing.get_context("spawn")
    with SubmissionArchive(path, split) as archive, ProcessPoolExecutor(1, mp_context=context) as pool:
        from_worker = pool.submit(_read_all, archive).result(timeout=60)
    for sample_id, layer in expected.items():
        np.testing.assert_array_equal(from_worker[sample_id], layer)


def test_pickled_archive_keeps_display_name(tmp_path, split):
    path = write_zip(tmp_path / "sub.zip", ground_truth_entries(split))
    with SubmissionArchive(path, split, display_name="upload.zip") as archive:
        copy = pickle.loads(pickle.dumps(archive))
    try:
        assert copy._open_archive().display_name == "upload.zip"
    finally:
        copy.close()


def test_archive_from_file_object_not_picklable(tmp_path, split):
    data = write_zip(tmp_path / "sub.zip", layers_entries()).read_bytes()
    with SubmissionArchive(io.BytesIO(data), split) as archive:
        with pytest.raises(TypeError, match="opened from a file object cannot be pickled"):
            pickle.dumps(archive)


@pytest.mark.parametrize("predictions, message", [
    ([("s0", [np.zeros((12, 16, 3), np.uint8)])],
     r"candidate 0 of sample 's0' must be a uint8 array of shape \(H, W, 4\), got uint8 \(12, 16, 3\)"),
    ([("s0", [np.zeros((12, 16, 4), np.float32)])],
     r"candidate 0 of sample 's0' must be a uint8 array of shape \(H, W, 4\), got float32"),
    ([("s0", [random_layer(0)]), ("s1", [random_layer(1)] * 2)],
     r"sample 's1' has 2 candidates, expected 1 as for the first sample"),
    ([("s0", [random_layer(0)]), ("s0", [random_layer(1)])], r"sample 's0' appears twice"),
    ([("s 0", [random_layer(0)])], r"sample id 's 0' is not 1 to 128 characters"),
    ([("s0", [])], r"sample 's0' has 0 candidates"),
])
def test_write_submission_rejects_bad_input(tmp_path, predictions, message):
    with pytest.raises(ValueError, match=message):
        write_submission(tmp_path / "out.zip", predictions)
    assert not (tmp_path / "out.zip").exists()
    assert not (tmp_path / "out.zip.partial").exists()


def test_write_submission_rejects_large_metadata(tmp_path):
    with pytest.raises(ValueError, match="metadata takes 70017 bytes as JSON, more than the 65536 allowed"):
        write_submission(tmp_path / "out.zip", [("s0", [random_layer(0)])], metadata={"notes": "x" * 70_000})


def test_written_metadata_is_json(tmp_path, split):
    path = write_submission(tmp_path / "out.zip", [(s.sample_id, [random_layer(0)]) for s in split],
                            metadata={"method": "m", "links": ["https://example.org"]})
    report = validate_submission(path, split)
    assert report.summary == {"samples": 3, "candidates": 1, "method": "m"}
    with SubmissionArchive(path, split) as archive:
        assert json.dumps(archive.metadata) == '{"method": "m", "links": ["https://example.org"]}'

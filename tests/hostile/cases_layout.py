"""Cases about which files a submission contains, its candidates, and metadata.json."""

from __future__ import annotations

import json
import zipfile

from evaluator.archive import MIB
from tests.evaluator.zips import (
    Entry,
    ground_truth_entries,
    rgba_png,
    zip_bytes,
)
from tests.hostile.drafts import (
    SAMPLE_IDS,
    Builder,
    Context,
    Draft,
    candidates,
    gt,
    layer,
    member_sizes,
    missing_message,
    registrar,
    unknown_message,
    valid_summary,
)

BUILDERS: list[Builder] = []
case = registrar(BUILDERS)


# Names and candidates ------------------------------------------------------------


@case
def sample_missing(context: Context) -> Draft:
    return Draft(zip_bytes(gt(context, skip=("s2",))), ("sample_missing",), missing_message("s2"))


@case
def empty_archive(context: Context) -> Draft:
    return Draft(zip_bytes([]), ("submission_empty",),
                 "empty_archive.zip: archive contains no files (expected a PNG for every sample of the split, found no "
                 "entries). Create the zip again from the folder of PNGs, for example with "
                 "`zip -r ../preds.zip .` run inside that folder.")


@case
def sample_unknown(context: Context) -> Draft:
    entries = gt(context) + [Entry("s9.png", rgba_png(layer()))]
    return Draft(zip_bytes(entries), ("sample_unknown",), unknown_message("s9.png", "s9"))


@case
def sample_unknown_folder(context: Context) -> Draft:
    entries = gt(context) + [Entry("s9/0.png", rgba_png(layer()))]
    return Draft(zip_bytes(entries), ("sample_unknown",), unknown_message("s9/0.png", "s9"))


def _unexpected(name: str) -> str:
    return (f"{name}: file is neither a candidate PNG nor metadata.json (expected <sample_id>.png, "
            f"<sample_id>/<k>.png or metadata.json, found {name}). Remove the file or rename it.")


@case
def extra_text_file(context: Context) -> Draft:
    entries = gt(context) + [Entry("readme.txt", b"our method\n")]
    return Draft(zip_bytes(entries), ("file_unexpected",), _unexpected("readme.txt"))


@case
def extra_deep_file(context: Context) -> Draft:
    entries = gt(context) + [Entry("s0/masks/0.png", rgba_png(layer()))]
    return Draft(zip_bytes(entries), ("file_unexpected",), _unexpected("s0/masks/0.png"))


@case
def candidates_unequal(context: Context) -> Draft:
    entries = candidates(2, ("s0",)) + candidates(3, ("s1", "s2"), seed=100)
    return Draft(zip_bytes(entries), ("candidates_unequal",),
                 "s0/: sample s0 has a different number of candidates (expected 3, as 2 other "
                 "samples have, found 2). Give every sample the same number of candidates.")


@case
def candidates_unequal_three_ways(context: Context) -> Draft:
    entries = candidates(1, ("s0",)) + candidates(2, ("s1",), seed=50) + candidates(3, ("s2",), seed=90)
    return Draft(zip_bytes(entries), ("candidates_unequal", "candidates_unequal"),
                 "s1/: sample s1 has a different number of candidates (expected 1, as 1 other "
                 "sample has, found 2). Give every sample the same number of candidates.")


@case
def candidates_too_many(context: Context) -> Draft:
    return Draft(zip_bytes(candidates(9)), ("candidates_too_many",),
                 f"{context.zip_name}: too many candidates per sample (expected at most 8, found 9). "
                 "Submit at most 8 candidates per sample.")


@case
def candidates_above_lower_maximum(context: Context) -> Draft:
    return Draft(zip_bytes(candidates(3)), ("candidates_too_many",),
                 f"{context.zip_name}: too many candidates per sample (expected at most 2, found 3). "
                 "Submit at most 2 candidates per sample.",
                 max_candidates=2)


@case
def candidate_index_gap(context: Context) -> Draft:
    entries = [entry for entry in candidates(3, ("s0",)) if entry.name != "s0/1.png"]
    entries += candidates(2, ("s1", "s2"), seed=100)
    return Draft(zip_bytes(entries), ("candidate_index_invalid",),
                 "s0/: candidate indices are not 0 .. n-1 (expected 0 .. 1, found 0, 2). "
                 "Number the candidates 0, 1, 2, ... without gaps.")


@case
def candidate_index_leading_zero(context: Context) -> Draft:
    entries = [Entry("s0/00.png", rgba_png(layer())), Entry("s0/1.png", rgba_png(layer(8)))]
    entries += candidates(2, ("s1", "s2"), seed=100)
    return Draft(zip_bytes(entries), ("candidate_index_invalid", "candidate_index_invalid"),
                 "s0/00.png: candidate file is not named <k>.png (expected 0.png, 1.png, ... without "
                 "leading zeros, found 00.png). Rename it to s0/<k>.png, k counting from 0.")


@case
def candidate_layout_mixed(context: Context) -> Draft:
    entries = gt(context) + [Entry("s0/0.png", rgba_png(layer()))]
    return Draft(zip_bytes(entries), ("candidate_layout_mixed",),
                 "s0.png and s0/: sample has both a single PNG and a folder of candidates (expected "
                 "either s0.png or s0/<k>.png, found both). Use <sample_id>.png for one candidate, "
                 "<sample_id>/<k>.png for several.")


# metadata.json -------------------------------------------------------------------


def _metadata(context: Context, data: bytes, message: str, found: str, hint: str) -> Draft:
    entries = gt(context) + [Entry("metadata.json", data, zipfile.ZIP_DEFLATED)]
    return Draft(zip_bytes(entries), ("metadata_invalid",),
                 f"metadata.json: {message} (expected {found}). {hint}")


@case
def metadata_bad_json(context: Context) -> Draft:
    return _metadata(context, b'{"method": }', "metadata.json is not valid JSON",
                     "a JSON object, found Expecting value at line 1 column 12", "Fix the JSON.")


@case
def metadata_array(context: Context) -> Draft:
    return _metadata(context, b'["ours"]', "metadata.json is not a JSON object",
                     "a JSON object, found list", 'Write an object such as {"method": "..."}.')


@case
def metadata_method_number(context: Context) -> Draft:
    return _metadata(context, b'{"method": 5}', '"method" in metadata.json is not a non-empty string',
                     "a string, found 5", "Give the method's name as a string.")


@case
def metadata_not_utf8(context: Context) -> Draft:
    return _metadata(context, '{"method": "café"}'.encode("latin-1"), "metadata.json is not UTF-8",
                     "UTF-8 text, found 'utf-8' codec can't decode byte 0xe9 in position 15: "
                     "invalid continuation byte", "Save it as UTF-8.")


@case
def metadata_huge(context: Context) -> Draft:
    data = b"{" + b" " * 70_000 + b"}"
    return _metadata(context, data, "metadata.json is too large",
                     f"at most 65536 bytes, found {len(data)} bytes", "Keep only the method's description.")


@case
def metadata_bomb(context: Context) -> Draft:
    entries = gt(context) + [Entry("metadata.json", b"{" + b" " * (2 * MIB) + b"}", zipfile.ZIP_DEFLATED)]
    content = zip_bytes(entries)
    size, compressed = member_sizes(content, "metadata.json")
    return Draft(content, ("zip_ratio_too_high",),
                 f"metadata.json: member expands too much when uncompressed (expected a compression "
                 f"ratio of at most 200, found {size / compressed:.0f} (2.0 MiB from {compressed} "
                 "bytes)). Submit ordinary PNG files.")


@case
def metadata_utf8_bom(context: Context) -> Draft:
    return _metadata(context, b'\xef\xbb\xbf{"method": "ours"}', "metadata.json is not valid JSON",
                     "a JSON object, found Unexpected UTF-8 BOM (decode using utf-8-sig) at line 1 "
                     "column 1", "Fix the JSON.")


@case
def metadata_deep_nesting(context: Context) -> Draft:
    draft = _metadata(context, b"[" * 30_000 + b"]" * 30_000, "metadata.json is not valid JSON",
                      "a JSON object, found arrays or objects nested too deeply", "Fix the JSON.")
    return draft


@case
def metadata_huge_integer(context: Context) -> Draft:
    draft = _metadata(context, b'{"seed": ' + b"9" * 5000 + b"}", "metadata.json is not valid JSON",
                      "a JSON object, found an integer of more than 4300 digits", "Fix the JSON.")
    return draft


# Accepted layouts ----------------------------------------------------------------


def _accepted(entries: list[Entry], **summary: object) -> Draft:
    return Draft(zip_bytes(entries), summary=valid_summary(**summary))


@case
def archiver_debris_accepted(context: Context) -> Draft:
    debris = [Entry("__MACOSX/._s0.png", b"\x00\x05\x16\x07"), Entry("__MACOSX/.DS_Store", b"\x00"),
              Entry(".DS_Store", b"\x00\x00\x00\x01Bud1"), Entry("._s1.png", b"\x00\x05\x16\x07")]
    return _accepted(gt(context) + debris)


@case
def wrapping_folder_accepted(context: Context) -> Draft:
    metadata = Entry("preds/metadata.json", json.dumps({"method": "copy"}).encode())
    return _accepted([Entry("preds/", b"")] + ground_truth_entries(context.split, "preds/") + [metadata],
                     method="copy")


@case
def wrapping_folder_metadata_beside_accepted(context: Context) -> Draft:
    metadata = Entry("metadata.json", json.dumps({"method": "copy"}).encode())
    return _accepted(ground_truth_entries(context.split, "preds/") + [metadata], method="copy")


@case
def wrapping_folder_twice(context: Context) -> Draft:
    # Only one wrapping folder is stripped, so a second one is reported as too deep.
    entries = ground_truth_entries(context.split, "a/b/")
    return Draft(zip_bytes(entries), ("file_nested_too_deep",) * 3,
                 "a/b/s0.png: file is nested too deep (expected <sample_id>.png or <sample_id>/<k>.png "
                 "at the top level or inside one folder, found inside a/b/). Put the PNGs at the top "
                 "level of the zip or inside one folder. For example, run `zip -r ../preds.zip .` inside "
                 "the folder that contains the PNGs or the <sample_id> folders.")


@case
def dot_slash_names_accepted(context: Context) -> Draft:
    return _accepted([Entry(f"./{entry.name}", entry.data) for entry in gt(context)])


@case
def uppercase_suffix_accepted(context: Context) -> Draft:
    return _accepted([Entry(entry.name.replace(".png", ".PNG"), entry.data) for entry in gt(context)])


@case
def folders_one_candidate_accepted(context: Context) -> Draft:
    folders = [Entry(f"{sample_id}/", b"") for sample_id in SAMPLE_IDS]
    return _accepted(folders + candidates(1))


@case
def candidates_at_maximum_accepted(context: Context) -> Draft:
    return _accepted(candidates(8), candidates=8)


@case
def metadata_with_unicode_accepted(context: Context) -> Draft:
    metadata = Entry("metadata.json", json.dumps({"method": "Schichtzerlegung – café"}).encode())
    return _accepted(gt(context) + [metadata], method="Schichtzerlegung – café")

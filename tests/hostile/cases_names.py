"""Cases about member names: zip slip, absolute paths, links, encodings and duplicates."""

from __future__ import annotations

from tests.evaluator.zips import (
    Entry,
    rgba_png,
    symlink,
    zip_bytes,
)
from tests.hostile import crafting
from tests.hostile.drafts import (
    HINT_RELATIVE,
    HINT_SEPARATORS,
    Builder,
    Context,
    Draft,
    gt,
    layer,
    registrar,
    unknown_message,
    unsafe_message,
)

BUILDERS: list[Builder] = []
case = registrar(BUILDERS)


def _extra_member(context: Context, name: str, reason: str, hint: str = HINT_RELATIVE,
                  outside: bool = True) -> Draft:
    """Valid entries plus one PNG under an unsafe name."""
    entries = gt(context) + [Entry(name, rgba_png(layer()))]
    return Draft(zip_bytes(entries), ("zip_path_unsafe",), unsafe_message(name, reason, hint),
                 outside_names=(name,) if outside else ())


@case
def zip_slip_parent(context: Context) -> Draft:
    return _extra_member(context, "../reflade-hostile-slip.png", "a '..' component")


@case
def zip_slip_inner(context: Context) -> Draft:
    return _extra_member(context, "a/../../reflade-hostile-slip-inner.png", "a '..' component")


@case
def zip_slip_as_sample(context: Context) -> Draft:
    entries = gt(context, skip=("s0",)) + [Entry("../s0.png", rgba_png(layer()))]
    return Draft(zip_bytes(entries), ("zip_path_unsafe",),
                 unsafe_message("../s0.png", "a '..' component"), outside_names=("../s0.png",))


@case
def absolute_unix_path(context: Context) -> Draft:
    return _extra_member(context, "/tmp/reflade-hostile-absolute.png", "an absolute path")


@case
def absolute_drive_path(context: Context) -> Draft:
    return _extra_member(context, "C:/reflade-hostile-drive.png", "an absolute path")


@case
def absolute_drive_backslash(context: Context) -> Draft:
    return _extra_member(context, "C:\\reflade-hostile-drive.png", "a backslash", HINT_SEPARATORS)


@case
def unc_path(context: Context) -> Draft:
    return _extra_member(context, "\\\\server\\share\\s0.png", "a backslash", HINT_SEPARATORS)


@case
def backslash_separators(context: Context) -> Draft:
    # What some Windows tools write for a folder `preds` of PNGs.
    entries = [Entry(f"preds\\{entry.name}", entry.data) for entry in gt(context)]
    return Draft(zip_bytes(entries), ("zip_path_unsafe",) * 3,
                 unsafe_message("preds\\s0.png", "a backslash", HINT_SEPARATORS))


@case
def control_character_name(context: Context) -> Draft:
    draft = _extra_member(context, "s0\n.png", "a control character", outside=False)
    draft.message = (r"s0\n.png: member name contains a control character (expected a relative path "
                     rf"with / separators, found 's0\n.png'). {HINT_RELATIVE}")
    return draft


@case
def null_byte_name(context: Context) -> Draft:
    # zipfile cuts a name at its first NUL byte, so this member reads as s0.png.
    members = [crafting.stored(entry.name.encode(), entry.data) for entry in gt(context, skip=("s0",))]
    members.append(crafting.stored(b"s0.png\x00.txt", gt(context)[0].data))
    return Draft(
        crafting.raw_zip(members), ("zip_path_unsafe", "sample_missing"),
        r"s0.png\x00.txt: member name contains a control character (expected a relative path "
        rf"with / separators, found 's0.png\x00.txt'). {HINT_RELATIVE}")


def _raw_extra_member(context: Context, raw_name: bytes, message: str) -> Draft:
    members = [crafting.stored(entry.name.encode(), entry.data) for entry in gt(context)]
    members.append(crafting.stored(raw_name, rgba_png(layer())))
    return Draft(crafting.raw_zip(members), ("zip_path_unsafe",), message)


@case
def empty_member_name(context: Context) -> Draft:
    return _raw_extra_member(
        context, b"",
        ": member name contains an empty path (expected a relative path with / separators, "
        f"found ''). {HINT_RELATIVE}")


@case
def nul_first_member_name(context: Context) -> Draft:
    return _raw_extra_member(
        context, b"\x00.png",
        r"\x00.png: member name contains a control character (expected a relative path with / "
        rf"separators, found '\x00.png'). {HINT_RELATIVE}")


@case
def dot_member_name(context: Context) -> Draft:
    return _raw_extra_member(
        context, b".",
        ".: member name contains an empty path (expected a relative path with / separators, "
        f"found '.'). {HINT_RELATIVE}")


@case
def symlink_as_sample(context: Context) -> Draft:
    entries = gt(context, skip=("s0",)) + [symlink("s0.png", "/etc/passwd")]
    return Draft(zip_bytes(entries), ("zip_symlink",),
                 "s0.png: member is a symbolic link (expected a regular file, found a symbolic "
                 "link). Store the PNG itself, for example with `zip` without -y.")


@case
def symlink_extra(context: Context) -> Draft:
    entries = gt(context) + [symlink("escape.png", "../../../etc/passwd")]
    return Draft(zip_bytes(entries), ("zip_symlink",),
                 "escape.png: member is a symbolic link (expected a regular file, found a symbolic "
                 "link). Store the PNG itself, for example with `zip` without -y.")


def _raw_name_case(context: Context, raw_name: bytes, decoded: str) -> Draft:
    members = [crafting.stored(entry.name.encode(), entry.data) for entry in gt(context)]
    members.append(crafting.stored(raw_name, rgba_png(layer())))
    return Draft(crafting.raw_zip(members), ("sample_unknown",),
                 unknown_message(decoded, decoded.removesuffix(".png")))


@case
def name_cp437(context: Context) -> Draft:
    # Without flag bit 11 the name is cp437, where byte 0x82 is "é".
    return _raw_name_case(context, b"s\x82.png", "sé.png")


@case
def name_utf8_without_flag(context: Context) -> Draft:
    # UTF-8 bytes of "é" without flag bit 11 decode as cp437, as every unzip tool reads them.
    return _raw_name_case(context, "sé.png".encode(), "s├⌐.png")


@case
def duplicate_name(context: Context) -> Draft:
    entries = gt(context) + [Entry("s0.png", rgba_png(layer()))]
    return Draft(zip_bytes(entries), ("zip_duplicate_name",),
                 "s0.png: another member has the same name (expected unique names, ignoring case, "
                 "found s0.png and s0.png). Keep one file per name.")


@case
def duplicate_after_dot_slash(context: Context) -> Draft:
    entries = gt(context) + [Entry("./s0.png", rgba_png(layer()))]
    return Draft(zip_bytes(entries), ("zip_duplicate_name",),
                 "./s0.png: another member has the same name (expected unique names, ignoring case, "
                 "found s0.png and ./s0.png). Keep one file per name.")


@case
def duplicate_by_case(context: Context) -> Draft:
    entries = gt(context) + [Entry("S0.png", rgba_png(layer()))]
    return Draft(zip_bytes(entries), ("zip_duplicate_name",),
                 "S0.png: another member has a name that differs only by case (expected unique "
                 "names, ignoring case, found s0.png and S0.png). Keep one file per name.")

"""The ground-truth cache's entry format."""

import zlib

import numpy as np
import pytest

from evaluator.gt_cache import ENTRY_MAGIC, GtEntry, pack_arrays, unpack_arrays

BACKGROUND = np.array([128, 128, 128], dtype=np.uint8)


def test_pack_round_trip():
    arrays = {
        "scalar": np.array(True),
        "bytes": np.arange(7, dtype=np.uint8),
        "image": np.arange(2 * 3 * 3, dtype=np.uint8).reshape(2, 3, 3),
        "features": np.linspace(-1, 1, 30, dtype=np.float32).reshape(3, 10),
        "counts": np.array([5, -6], dtype=np.int64),
        "empty": np.zeros((0, 4), dtype=np.float64),
    }
    data = pack_arrays(arrays)
    assert data.startswith(ENTRY_MAGIC)
    read = unpack_arrays(data)
    assert list(read) == list(arrays)
    for name, value in arrays.items():
        assert read[name].dtype == value.dtype
        assert read[name].shape == value.shape
        np.testing.assert_array_equal(read[name], value)
        # Every array starts at a multiple of 64 bytes from the start of the data.
        if value.nbytes:
            assert (read[name].ctypes.data - np.frombuffer(data, np.uint8).ctypes.data) % 64 == 0


def test_entry_round_trip_with_lpips_maps():
    rng = np.random.default_rng(0)
    visible = rng.random((20, 30)) < 0.5
    entry = GtEntry(
        mask=rng.random((20, 30)) < 0.5,
        visible=visible,
        visible_eval=rng.random((8, 8)) < 0.5,
        rgb=rng.integers(0, 256, (8, 8, 3), dtype=np.uint8),
        clip_full=rng.random(4, dtype=np.float32),
        clip_visible=rng.random(4, dtype=np.float32),
        inception=rng.random(6, dtype=np.float32),
        nothing_hidden=True,
        lpips_full=[rng.random((2, 3, 3), dtype=np.float32), rng.random((4, 1, 1), dtype=np.float32)],
        lpips_visible=[rng.random((2, 3, 3), dtype=np.float32), rng.random((4, 1, 1), dtype=np.float32)],
    )
    copy = GtEntry.from_bytes(entry.to_bytes(), BACKGROUND)
    for name in ("mask", "visible", "visible_eval", "rgb", "clip_full", "clip_visible", "inception"):
        np.testing.assert_array_equal(getattr(copy, name), getattr(entry, name))
    assert copy.nothing_hidden is True
    for name in ("lpips_full", "lpips_visible"):
        assert len(getattr(copy, name)) == 2
        for ours, theirs in zip(getattr(copy, name), getattr(entry, name), strict=True):
            np.testing.assert_array_equal(ours, theirs)
    expected = np.where(entry.visible_eval[..., None], entry.rgb, BACKGROUND)
    np.testing.assert_array_equal(copy.restricted, expected)


def test_entry_without_rgb():
    entry = GtEntry(mask=np.ones((3, 3), bool), visible=np.zeros((3, 3), bool), visible_eval=np.zeros((2, 2), bool))
    copy = GtEntry.from_bytes(entry.to_bytes(), BACKGROUND)
    assert copy.rgb is None
    assert copy.restricted is None
    assert copy.clip_full is None
    assert copy.lpips_full is None
    assert copy.lpips_visible is None
    np.testing.assert_array_equal(copy.mask, entry.mask)


def header_of(arrays_header: bytes, body: bytes = b"") -> bytes:
    """Build an entry with a correct CRC-32 around a hand-written header and body."""
    rest = len(arrays_header).to_bytes(4, "little") + arrays_header + body
    return ENTRY_MAGIC + zlib.crc32(rest).to_bytes(4, "little") + rest


@pytest.mark.parametrize(("data", "message"), [
    (b"PK\x03\x04 an old .npz entry", "the entry does not start with b'REFLADE-GT-1\\n'"),
    (header_of(b"{not json"), "the entry header is not JSON: "),
    (ENTRY_MAGIC + b"\x00", "the entry's CRC-32 does not match its contents"),
    (header_of(b'{"a": ["<f4", [4], 0]}', bytes(8)), "the entry is truncated: array a ends past its "),
    (header_of(b'{"a": ["no such dtype", [1], 0]}', bytes(64)), "the entry header is invalid: "),
    (header_of(b'{"a": 5}'), "the entry header is invalid: "),
    (header_of(b'["a"]'), "the entry header is invalid: "),
    (header_of(b'{"a": ["<f4", [1], Infinity]}', bytes(64)), "the entry header is invalid: "),
    (header_of(b"[" * 100_000), "the entry header is not JSON: RecursionError: "),
])
def test_unpack_rejects_damaged_data(data, message):
    with pytest.raises(ValueError) as error:
        unpack_arrays(data)
    assert str(error.value).startswith(message)


def test_flipped_byte_fails_crc():
    data = bytearray(pack_arrays({"features": np.linspace(0, 1, 100, dtype=np.float32)}))
    data[-10] ^= 0x01
    with pytest.raises(ValueError, match="^the entry's CRC-32 does not match its contents$"):
        unpack_arrays(bytes(data))


def minimal_arrays(**extra) -> dict:
    return {
        "shape": np.array([2, 2]),
        "size": np.array(2),
        "mask": np.packbits(np.ones(4, bool)),
        "visible": np.packbits(np.ones(4, bool)),
        "visible_eval": np.packbits(np.ones(4, bool)),
        "nothing_hidden": np.array(False),
        **extra,
    }


def test_entry_missing_array():
    arrays = minimal_arrays()
    del arrays["size"]
    with pytest.raises(ValueError, match="^the entry is missing the array 'size'$"):
        GtEntry.from_bytes(pack_arrays(arrays), BACKGROUND)


@pytest.mark.parametrize(("changes", "message"), [
    ({"rgb": np.zeros((3, 3, 3), np.uint8)},
     "the entry's rgb array is uint8 (3, 3, 3), expected uint8 of shape 2x2x3"),
    ({"lpips_full_0": np.zeros((2, 1, 1), np.float32)},
     "the entry's LPIPS arrays ['lpips_full_0'] are not lpips_full_k and lpips_visible_k for k = 0 .. -1"),
    ({"lpips_full_0": np.zeros((2, 1, 1), np.float32), "lpips_visible_x": np.zeros((2, 1, 1), np.float32)},
     "the entry's LPIPS arrays ['lpips_full_0', 'lpips_visible_x'] are not lpips_full_k and lpips_visible_k "
     "for k = 0 .. 0"),
    ({"lpips_full_0": np.zeros((2, 1, 1), np.float32), "lpips_visible_0": np.zeros((3, 1, 1), np.float32)},
     "the entry's lpips_visible_0 array is float32 (3, 1, 1), expected float32 of shape 2x1x1"),
    ({"lpips_full_0": np.zeros((2, 1, 1), np.float64), "lpips_visible_0": np.zeros((2, 1, 1), np.float64)},
     "the entry's lpips_full_0 array is float64 (2, 1, 1), expected float32 of shape anyxanyxany"),
    ({"clip_full": np.zeros(4, np.float32), "clip_visible": np.zeros(5, np.float32)},
     "the entry's clip_visible array is float32 (5,), expected float32 of shape 4"),
    ({"size": np.array([2, 2])}, "the entry's size array must hold 1 integer(s), found int64 (2,)"),
    ({"shape": np.array([2**20, 2**20])},
     "the entry's mask array (uint8, 1 values) does not hold 1048576x1048576 packed bits"),
    ({"size": np.array(60000)},
     "the entry's visible_eval array (uint8, 1 values) does not hold 60000x60000 packed bits"),
])
def test_inconsistent_entry_rejected(changes, message):
    data = pack_arrays(minimal_arrays(**changes))
    with pytest.raises(ValueError) as error:
        GtEntry.from_bytes(data, BACKGROUND)
    assert str(error.value) == message


def test_entry_mismatch_with_sample():
    entry = GtEntry.from_bytes(pack_arrays(minimal_arrays()), BACKGROUND)
    assert entry.mismatch(2, 2, 2, rgba=False) is None
    assert entry.mismatch(2, 3, 2, rgba=False) == "its masks are 2x2 px, the sample 3x2 px"
    assert entry.mismatch(2, 2, 4, rgba=False) == "its evaluation-size mask is 2 px, not 4 px"
    assert entry.mismatch(2, 2, 2, rgba=True) == "it lacks the RGB arrays of an rgba sample"

"""Cases about the candidate PNGs: bombs, sizes, modes, other formats and damage."""

from __future__ import annotations

import zlib

import numpy as np

from evaluator.archive import MIB
from tests.evaluator.zips import (
    grey16_png,
    huge_header_png,
    la16_png,
    palette_png,
    png_bytes,
    random_layer,
    raw_png,
    rgba16_png,
    rgba_png,
    zip_bytes,
)
from tests.hostile import crafting
from tests.hostile.drafts import (
    HEIGHT,
    WIDTH,
    Builder,
    Context,
    Draft,
    gt,
    layer,
    no_alpha_message,
    not_png_message,
    registrar,
    valid_summary,
    with_png,
)

BUILDERS: list[Builder] = []
case = registrar(BUILDERS)


def s0_image(context: Context, data: bytes, codes: tuple[str, ...], message: str, **extra) -> Draft:
    return Draft(with_png("s0.png", data, context), codes, message, **extra)


@case
def png_bomb_header(context: Context) -> Draft:
    return s0_image(context, huge_header_png(100_000, 100_000), ("image_too_many_pixels",),
                    "s0.png: image has too many pixels (expected at most 50000000 pixels (16x12 for "
                    "this sample), found 100000x100000 = 10000000000 pixels). Resize the layer to 16x12.")


@case
def png_large_header_below_limit(context: Context) -> Draft:
    return s0_image(context, huge_header_png(7000, 7000), ("image_size_mismatch",),
                    "s0.png: image size differs from the sample's (expected 16x12, found 7000x7000). "
                    "Predict the layer at the input image's size.")


@case
def size_wider(context: Context) -> Draft:
    return s0_image(context, rgba_png(random_layer(3, WIDTH + 1, HEIGHT)), ("image_size_mismatch",),
                    "s0.png: image size differs from the sample's (expected 16x12, found 17x12). "
                    "Predict the layer at the input image's size.")


@case
def size_transposed(context: Context) -> Draft:
    return s0_image(context, rgba_png(random_layer(3, HEIGHT, WIDTH)), ("image_size_mismatch",),
                    "s0.png: image size differs from the sample's (expected 16x12, found 12x16). "
                    "Predict the layer at the input image's size.")


@case
def mode_rgb(context: Context) -> Draft:
    return s0_image(context, png_bytes(layer()[..., :3]), ("image_no_alpha",),
                    no_alpha_message("s0.png", "mode RGB without transparency"))


@case
def mode_rgb16(context: Context) -> Draft:
    wide = layer()[..., :3].astype(">u2") * 257
    return s0_image(context, raw_png(WIDTH, HEIGHT, 16, 2, wide.tobytes()), ("image_no_alpha",),
                    no_alpha_message("s0.png", "mode RGB without transparency"))


@case
def mode_grey(context: Context) -> Draft:
    return s0_image(context, png_bytes(layer()[..., 0]), ("image_no_alpha",),
                    no_alpha_message("s0.png", "mode L without transparency"))


@case
def mode_grey16(context: Context) -> Draft:
    grey = layer()[..., 0].astype(np.uint16) * 257
    return s0_image(context, grey16_png(grey), ("image_no_alpha",),
                    no_alpha_message("s0.png", "mode I;16 (16-bit grey without alpha)"))


@case
def mode_bilevel(context: Context) -> Draft:
    return s0_image(context, png_bytes(layer()[..., 0] >= 128), ("image_no_alpha",),
                    no_alpha_message("s0.png", "mode 1 without transparency"))


def _palette() -> tuple[np.ndarray, np.ndarray]:
    indices = np.arange(WIDTH * HEIGHT, dtype=np.uint8).reshape(HEIGHT, WIDTH) % 4
    colours = np.array([[0, 0, 0], [255, 0, 0], [0, 255, 0], [0, 0, 255]], dtype=np.uint8)
    return indices, colours


@case
def mode_palette_without_trns(context: Context) -> Draft:
    return s0_image(context, palette_png(*_palette(), alphas=None), ("image_no_alpha",),
                    no_alpha_message("s0.png", "mode P without transparency"))


@case
def jpeg_named_png(context: Context) -> Draft:
    return s0_image(context, crafting.encoded_image(layer()[..., :3], "RGB", "JPEG"),
                    ("image_not_png",), not_png_message("s0.png", "JPEG data"))


@case
def cmyk_jpeg_named_png(context: Context) -> Draft:
    return s0_image(context, crafting.encoded_image(layer(), "CMYK", "JPEG"),
                    ("image_not_png",), not_png_message("s0.png", "JPEG data"))


@case
def cmyk_tiff_named_png(context: Context) -> Draft:
    return s0_image(context, crafting.encoded_image(layer(), "CMYK", "TIFF"),
                    ("image_not_png",), not_png_message("s0.png", "TIFF data"))


@case
def webp_named_png(context: Context) -> Draft:
    return s0_image(context, crafting.encoded_image(layer(), "RGBA", "WEBP"),
                    ("image_not_png",), not_png_message("s0.png", "WebP data"))


@case
def zip_named_png(context: Context) -> Draft:
    return s0_image(context, zip_bytes(gt(context)), ("image_not_png",),
                    not_png_message("s0.png", "a zip archive"))


@case
def empty_png_file(context: Context) -> Draft:
    return s0_image(context, b"", ("image_not_png",), not_png_message("s0.png", "an empty file"))


@case
def text_named_png(context: Context) -> Draft:
    text = b"predicted layer for s0\n"
    return s0_image(context, text, ("image_not_png",),
                    not_png_message("s0.png", f"data starting with {text[:8].hex()}"))


@case
def png_without_ihdr(context: Context) -> Draft:
    data = rgba_png(layer())
    without_header = data[:8] + data[8 + 25:]  # the IHDR chunk takes 25 bytes
    return s0_image(context, without_header, ("image_unreadable",),
                    f"s0.png: PNG header is missing or corrupt (expected an IHDR chunk first, found "
                    f"{without_header[8:24].hex()}). Write the PNG again with an image library.")


@case
def png_truncated(context: Context) -> Draft:
    data = rgba_png(layer())
    return s0_image(context, data[:len(data) // 2], ("image_unreadable",),
                    "s0.png: PNG cannot be decoded (expected a complete, valid PNG, found image file "
                    "is truncated). Write the PNG again; it may be truncated.")


@case
def png_corrupt_pixel_data(context: Context) -> Draft:
    # The IDAT chunk's CRC is correct, but its zlib stream is damaged.
    pixels = layer()
    raw = b"".join(b"\x00" + pixels[y].tobytes() for y in range(HEIGHT))
    stream = bytearray(zlib.compress(raw))
    stream[len(stream) // 2] ^= 0xFF
    header = WIDTH.to_bytes(4, "big") + HEIGHT.to_bytes(4, "big") + bytes([8, 6, 0, 0, 0])
    png = b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", header) + _png_chunk(b"IDAT", bytes(stream))
    png += _png_chunk(b"IEND", b"")
    return s0_image(context, png, ("image_unreadable",),
                    "s0.png: PNG cannot be decoded (expected a complete, valid PNG, found broken "
                    "data stream when reading image file). Write the PNG again; it may be truncated.")


@case
def png_text_chunk_bomb(context: Context) -> Draft:
    # A zTXt chunk that inflates to 20 MiB, more than Pillow's MAX_TEXT_CHUNK.
    chunk = (b"zTXt", b"Comment\x00\x00" + zlib.compress(bytes(20 * MIB), 9))
    png = raw_png(WIDTH, HEIGHT, 8, 6, layer().tobytes(), [chunk])
    return s0_image(context, png, ("image_unreadable",),
                    "s0.png: PNG cannot be decoded (expected a complete, valid PNG, found "
                    "Decompressed data too large for PngImagePlugin.MAX_TEXT_CHUNK). Write the PNG "
                    "again; it may be truncated.")


@case
def png_unknown_colour_type(context: Context) -> Draft:
    # Colour type 7 does not exist, so Pillow cannot identify the file.
    png = raw_png(WIDTH, HEIGHT, 8, 7, layer().tobytes())
    return s0_image(context, png, ("image_unreadable",),
                    "s0.png: PNG cannot be decoded (expected a complete, valid PNG, found "
                    "cannot identify image file). Write the PNG again; it may be truncated.")


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return len(data).to_bytes(4, "big") + kind + data + zlib.crc32(kind + data).to_bytes(4, "big")


@case
def rgba16_accepted(context: Context) -> Draft:
    return s0_image(context, rgba16_png(layer()), (), "", summary=valid_summary())


@case
def palette_trns_accepted(context: Context) -> Draft:
    return s0_image(context, palette_png(*_palette(), alphas=bytes([0, 128, 255, 255])), (), "",
                    summary=valid_summary())


@case
def grey16_trns_accepted(context: Context) -> Draft:
    # A 16-bit grey PNG whose tRNS chunk makes grey 0 transparent.
    grey = (np.arange(WIDTH * HEIGHT).reshape(HEIGHT, WIDTH) * 300).astype(">u2")
    png = raw_png(WIDTH, HEIGHT, 16, 0, grey.tobytes(), [(b"tRNS", b"\x00\x00")])
    return s0_image(context, png, (), "", summary=valid_summary())


@case
def grey_alpha_accepted(context: Context) -> Draft:
    return s0_image(context, png_bytes(layer()[..., :2]), (), "", summary=valid_summary())


@case
def grey_alpha16_accepted(context: Context) -> Draft:
    return s0_image(context, la16_png(layer()[..., :2]), (), "", summary=valid_summary())


@case
def rgb_trns_accepted(context: Context) -> Draft:
    # An RGB PNG whose tRNS chunk makes pure black transparent.
    png = raw_png(WIDTH, HEIGHT, 8, 2, layer()[..., :3].tobytes(), [(b"tRNS", bytes(6))])
    return s0_image(context, png, (), "", summary=valid_summary())

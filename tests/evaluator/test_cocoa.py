"""COCOA import: RLE codecs, polygons, depth-order fallback, prompts and errors."""

from __future__ import annotations

import argparse
import copy
import json
import logging

import numpy as np
import pytest
import skimage.data
from PIL import Image

from evaluator.cocoa import CocoaError, deepest_point, import_cocoa
from evaluator.cocoa_masks import (
    compress_counts,
    decode_rle,
    decompress_counts,
    encode_rle,
    mask_to_counts,
    rasterize_polygons,
)
from evaluator.commands import import_cocoa as command
from evaluator.split import Split

ASTRO_SIZE = (64, 48)  # width, height
COFFEE_SIZE = (80, 60)


def run_command(argv: list[str]) -> int:
    """Run the command module as `python -m evaluator` does, without importing every command."""
    parser = argparse.ArgumentParser()
    command.add_arguments(parser)
    return command.run(parser.parse_args(argv))


def _rect(width: int, height: int, x0: int, y0: int, x1: int, y1: int) -> np.ndarray:
    mask = np.zeros((height, width), dtype=bool)
    mask[y0:y1, x0:x1] = True
    return mask


def _box_polygon(x0, y0, x1, y1) -> list[int]:
    return [x0, y0, x1, y0, x1, y1, x0, y1]


# Image 1 (astronaut): a person behind a ball; a cup hidden entirely behind the ball.
PERSON = _rect(*ASTRO_SIZE, 8, 8, 40, 40)
BALL = _rect(*ASTRO_SIZE, 30, 20, 56, 44)
# The annotated visible part of the person differs from "person minus ball" on purpose,
# so the test checks that visible_mask wins over the depth-order fallback.
PERSON_VISIBLE = PERSON & ~_rect(*ASTRO_SIZE, 30, 16, 64, 48)
# Image 2 (coffee): a table of two squares in front, a mug with an invisible_mask,
# and a plate whose visible part comes from the order alone.
TABLE = _rect(*COFFEE_SIZE, 0, 0, 20, 20) | _rect(*COFFEE_SIZE, 60, 40, 80, 60)
MUG = _rect(*COFFEE_SIZE, 10, 10, 40, 30)
MUG_HIDDEN = _rect(*COFFEE_SIZE, 10, 10, 20, 20)
PLATE = _rect(*COFFEE_SIZE, 50, 30, 70, 50)


@pytest.fixture()
def cocoa_files(tmp_path):
    images = tmp_path / "photos"
    images.mkdir()
    astro = Image.fromarray(skimage.data.astronaut()).resize(ASTRO_SIZE)
    astro.save(images / "astro.png")
    coffee = Image.fromarray(skimage.data.coffee()).resize(COFFEE_SIZE)
    coffee.save(images / "coffee.jpg", quality=90)

    height, width = COFFEE_SIZE[1], COFFEE_SIZE[0]
    data = {
        "images": [
            {"id": 1, "file_name": "astro.png", "width": ASTRO_SIZE[0], "height": ASTRO_SIZE[1]},
            {"id": 7, "file_name": "coffee.jpg", "width": width, "height": height},
        ],
        "annotations": [
            {
                "image_id": 1,
                "size": 3,
                "regions": [
                    {
                        "segmentation": _box_polygon(8, 8, 40, 40),
                        "name": "person",
                        "order": 2,
                        "area": 1024.0,
                        "occlude_rate": 0.3,
                        "isStuff": False,
                        "visible_mask": encode_rle(PERSON_VISIBLE, compressed=False),
                    },
                    {
                        "segmentation": _box_polygon(30, 20, 56, 44),
                        "name": "ball",
                        "order": 1,
                        "area": 624.0,
                        "occlude_rate": 0.0,
                        "isStuff": False,
                    },
                    {
                        "segmentation": _box_polygon(34, 24, 50, 40),
                        "name": "cup",
                        "order": 3,
                        "area": 256.0,
                        "occlude_rate": 1.0,
                    },
                ],
            },
            {
                "image_id": 7,
                "size": 3,
                "regions": [
                    {
                        "segmentation": [_box_polygon(0, 0, 20, 20), _box_polygon(60, 40, 80, 60)],
                        "name": "table",
                        "order": 1,
                        "isStuff": True,
                        "visible_mask": encode_rle(TABLE),
                    },
                    {
                        "segmentation": _box_polygon(10, 10, 40, 30),
                        "name": "mug",
                        "order": 2,
                        "invisible_mask": encode_rle(MUG_HIDDEN),
                    },
                    {"segmentation": _box_polygon(50, 30, 70, 50), "name": "plate", "order": 2},
                ],
            },
        ],
    }
    annotations = tmp_path / "cocoa.json"
    annotations.write_text(json.dumps(data))
    return annotations, images, data


def _write(tmp_path, data) -> str:
    path = tmp_path / "edited.json"
    path.write_text(json.dumps(data))
    return str(path)


def test_counts_string_known_values():
    assert compress_counts([3, 2, 4]) == "324"
    assert compress_counts([100]) == "T3"
    # From the fourth count on, the string stores differences, here 2 - 5 = -3.
    assert compress_counts([0, 5, 1, 2]) == "051M"
    assert decompress_counts("051M") == [0, 5, 1, 2]
    assert decompress_counts("T3") == [100]


def test_counts_string_round_trip():
    rng = np.random.default_rng(0)
    for _ in range(50):
        counts = rng.integers(0, 5000, size=int(rng.integers(1, 30))).tolist()
        assert decompress_counts(compress_counts(counts)) == counts


def test_rle_is_column_major():
    mask = np.array([[1, 0, 0], [1, 1, 0]], dtype=bool)
    assert mask_to_counts(mask) == [0, 2, 1, 1, 2]
    assert np.array_equal(decode_rle({"size": [2, 3], "counts": [0, 2, 1, 1, 2]}, 2, 3), mask)
    assert np.array_equal(decode_rle(encode_rle(mask), 2, 3), mask)


def test_rle_errors_name_value():
    with pytest.raises(ValueError, match=r"RLE size \[3, 3\] differs from the image size \[2, 3\]"):
        decode_rle({"size": [3, 3], "counts": [9]}, 2, 3)
    with pytest.raises(
        ValueError, match="RLE counts add up to 5 pixels, expected height \\* width = 6"
    ):
        decode_rle({"size": [2, 3], "counts": [5]}, 2, 3)
    with pytest.raises(ValueError, match="invalid character ' ' at position 1"):
        decode_rle({"size": [2, 3], "counts": "6 "}, 2, 3)


def test_polygon_fills_pixel_centres():
    mask = rasterize_polygons(_box_polygon(8, 8, 40, 40), 48, 64)
    assert np.array_equal(mask, PERSON)
    both = rasterize_polygons([_box_polygon(0, 0, 20, 20), _box_polygon(60, 40, 80, 60)], 60, 80)
    assert np.array_equal(both, TABLE)
    # Right triangle: pixel centres on or above the diagonal y = x.
    triangle = rasterize_polygons([0, 0, 10, 0, 10, 10], 10, 10)
    ys, xs = np.mgrid[0:10, 0:10] + 0.5
    assert np.array_equal(triangle, ys <= xs)


def test_import_writes_masks_and_prompts(cocoa_files, tmp_path, caplog):
    annotations, images, _ = cocoa_files
    with caplog.at_level(logging.WARNING, logger="evaluator.cocoa"):
        summary = import_cocoa(annotations, images, tmp_path / "split")
    assert (summary.samples, summary.images, summary.skipped_regions) == (5, 2, 1)
    assert caplog.messages == [
        "skipping annotations[0] (image_id 1) region 2 (cup): its visible part is empty"
    ]

    split = Split(tmp_path / "split")
    expected = {
        "1_a0_r0": ("person", PERSON, PERSON_VISIBLE, "box", ("cocoa", "thing")),
        "1_a0_r1": ("ball", BALL, BALL, "mask", ("cocoa", "thing")),
        "7_a0_r0": ("table", TABLE, TABLE, "point", ("cocoa", "stuff")),
        "7_a0_r1": ("mug", MUG, MUG & ~MUG_HIDDEN, "box", ("cocoa",)),
        "7_a0_r2": ("plate", PLATE, PLATE & ~TABLE, "mask", ("cocoa",)),
    }
    assert [sample.sample_id for sample in split] == list(expected)
    for sample in split:
        category, amodal, visible, prompt_type, tags = expected[sample.sample_id]
        layer = split.read_gt_layer(sample)
        assert sample.gt_kind == "amodal_mask"
        assert sample.category == category
        assert sample.tags == tags
        assert np.array_equal(layer[:, :, 3] == 255, amodal)
        assert np.array_equal(layer[:, :, 3] == 0, ~amodal)
        assert (layer[:, :, :3] == 0).all()
        assert np.array_equal(split.read_gt_visible(sample), visible)
        assert sample.occlusion_rate == pytest.approx(1 - visible.sum() / amodal.sum(), abs=1e-6)
        assert sample.prompt_type == prompt_type


def test_import_prompts_follow_visible_part(cocoa_files, tmp_path):
    annotations, images, _ = cocoa_files
    import_cocoa(annotations, images, tmp_path / "split")
    split = Split(tmp_path / "split")
    person = split.sample("1_a0_r0")
    assert person.prompt.box == (8.0, 8.0, 40.0, 40.0)
    assert split.sample("7_a0_r1").prompt.box == (10.0, 10.0, 40.0, 30.0)
    ball = split.sample("1_a0_r1")
    assert np.array_equal(split.read_mask_prompt(ball), BALL)
    table = split.sample("7_a0_r0")
    assert table.prompt.points == (deepest_point(TABLE),)
    x, y = table.prompt.points[0]
    assert TABLE[int(y), int(x)]


def test_deepest_point_is_centre_of_square():
    assert deepest_point(_rect(9, 9, 2, 2, 7, 7)) == (4.5, 4.5)


def test_import_copies_images_unchanged(cocoa_files, tmp_path):
    annotations, images, _ = cocoa_files
    import_cocoa(annotations, images, tmp_path / "split")
    assert (tmp_path / "split/images/1.png").read_bytes() == (images / "astro.png").read_bytes()
    assert (tmp_path / "split/images/7.jpg").read_bytes() == (images / "coffee.jpg").read_bytes()


def test_missing_image_file_is_named(cocoa_files, tmp_path):
    annotations, images, _ = cocoa_files
    (images / "coffee.jpg").unlink()
    with pytest.raises(CocoaError) as error:
        import_cocoa(annotations, images, tmp_path / "split")
    assert str(error.value) == (
        f"image file {images / 'coffee.jpg'} (image id 7) not found; "
        "check --images and the file_name in images"
    )


def test_image_size_mismatch_is_named(cocoa_files, tmp_path):
    annotations, images, data = cocoa_files
    edited = copy.deepcopy(data)
    edited["images"][0]["width"] = 65
    edited["annotations"][0]["regions"] = edited["annotations"][0]["regions"][1:2]
    with pytest.raises(CocoaError) as error:
        import_cocoa(_write(tmp_path, edited), images, tmp_path / "split")
    assert str(error.value) == (
        f"image file {images / 'astro.png'} is 64x48 but images lists 65x48 for id 1; "
        "fix width and height or the file"
    )


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (
            lambda d: d["annotations"][0]["regions"][0].update(segmentation="abc"),
            "annotations[0] (image_id 1) region 0: segmentation must be a polygon "
            "[x0, y0, x1, y1, ...] or a list of them, found 'abc'",
        ),
        (
            lambda d: d["annotations"][0]["regions"][1].update(segmentation=[1, 2, 3, 4]),
            "annotations[0] (image_id 1) region 1: each polygon must be an even number (at least 6) "
            "of x, y coordinates, found [1, 2, 3, 4]",
        ),
        (
            lambda d: d["annotations"][1]["regions"][0].update(
                visible_mask={"size": [60, 81], "counts": "0"}
            ),
            "annotations[1] (image_id 7) region 0: RLE size [60, 81] differs from the image size [60, 80]",
        ),
        (
            lambda d: d["annotations"][1]["regions"][2].pop("order"),
            "annotations[1] (image_id 7) region 2 has the order None; "
            "expected an integer depth rank, 1 = front-most",
        ),
        (
            lambda d: d["annotations"][1]["regions"][1].update(name=3),
            "annotations[1] (image_id 7) region 1 has the name 3; expected the category as a string",
        ),
        (
            lambda d: d["annotations"][1].update(image_id=99),
            "annotations[1] refers to image_id 99, which is not in images",
        ),
        (
            lambda d: d["images"][1].update(height=0),
            "images[1] (id 7) has width 80 and height 0; expected positive integers",
        ),
        (
            lambda d: d.pop("annotations"),
            "has no list 'annotations' (found None); a COCOA file has 'images' and 'annotations' lists",
        ),
    ],
)
def test_malformed_annotations_are_named(cocoa_files, tmp_path, edit, message):
    _, images, data = cocoa_files
    edited = copy.deepcopy(data)
    edit(edited)
    with pytest.raises(CocoaError) as error:
        import_cocoa(_write(tmp_path, edited), images, tmp_path / "split")
    assert str(error.value).endswith(message)


def test_cli_imports_and_reports(cocoa_files, tmp_path, capsys):
    annotations, images, _ = cocoa_files
    out = tmp_path / "split"
    status = run_command(f"--annotations {annotations} --images {images} --out {out}".split())
    assert status == 0
    assert capsys.readouterr().out == f"wrote {out}: 5 samples, 2 images, 1 region skipped\n"

    missing = tmp_path / "none.json"
    status = run_command(f"--annotations {missing} --images {images} --out {out}2".split())
    assert status == 1
    assert capsys.readouterr().out == (
        f"error: annotation file {missing} not found; check --annotations\n"
    )


def test_other_image_formats_become_png(cocoa_files, tmp_path):
    annotations, images, data = cocoa_files
    pixels = np.asarray(Image.open(images / "astro.png").convert("RGB"))
    Image.fromarray(pixels).save(images / "astro.bmp")
    edited = copy.deepcopy(data)
    edited["images"][0]["file_name"] = "astro.bmp"
    import_cocoa(_write(tmp_path, edited), images, tmp_path / "split")
    split = Split(tmp_path / "split")
    assert (tmp_path / "split/images/1.png").is_file()
    assert np.array_equal(split.read_image(split.sample("1_a0_r0")), pixels)

"""Split packages: round trips through folders and .tar files, every rejection, public export."""

from __future__ import annotations

import gc
import json
import tarfile
import warnings
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from evaluator.split import (
    Prompt,
    Sample,
    Split,
    SplitError,
    SplitWriter,
    export_public,
    summarize,
)

WIDTH, HEIGHT = 8, 6
VALID = {
    "sample_id": "s0",
    "image_id": "img0",
    "width": WIDTH,
    "height": HEIGHT,
    "layer_kind": "foreground",
    "prompt": {"box": [1, 1, 4, 4]},
}
WHERE = "manifest.jsonl line 1 (s0)"
ID_RULE = "1 to 128 characters of A-Z, a-z, 0-9, _ and -"


def _arrays(seed: int):
    rng = np.random.default_rng(seed)
    image = rng.integers(0, 256, (HEIGHT, WIDTH, 3), dtype=np.uint8)
    layer = rng.integers(0, 256, (HEIGHT, WIDTH, 4), dtype=np.uint8)
    visible = rng.random((HEIGHT, WIDTH)) < 0.5
    return image, layer, visible


SAMPLES = [
    Sample(
        "s0",
        "img0",
        WIDTH,
        HEIGHT,
        "foreground",
        Prompt(points=((1.5, 2.5), (3.0, 4.0))),
        category="disc",
        occlusion_rate=0.25,
        tags=("synthetic", "opaque"),
    ),
    Sample(
        "s1",
        "img0",
        WIDTH,
        HEIGHT,
        "background",
        Prompt(box=(0.0, 0.0, 8.0, 6.0), text="the wall"),
        category="background",
        occlusion_rate=0.5,
    ),
    Sample(
        "s2",
        "img1",
        WIDTH,
        HEIGHT,
        "foreground",
        Prompt(mask="prompts/s2.png"),
        gt_kind="amodal_mask",
        occlusion_rate=0.0,
    ),
]


@pytest.fixture()
def split_dir(tmp_path) -> Path:
    root = tmp_path / "split"
    with SplitWriter(root) as writer:
        writer.add_image("img0", _arrays(0)[0])
        writer.add_image("img1", _arrays(1)[0], jpeg=True)
        for index, sample in enumerate(SAMPLES):
            _, layer, visible = _arrays(10 + index)
            mask = visible if sample.prompt.mask is not None else None
            writer.add_sample(sample, layer, visible, mask)
    return root


def _tar(folder: Path, out: Path, top: str | None) -> Path:
    with tarfile.open(out, "w") as tar:
        for path in sorted(folder.rglob("*")):
            if path.is_file():
                name = path.relative_to(folder).as_posix()
                tar.add(path, arcname=f"{top}/{name}" if top else name)
    return out


def _check_contents(split: Split) -> None:
    assert split.samples == SAMPLES
    assert np.array_equal(split.read_image(split.sample("s0")), _arrays(0)[0])
    jpeg = split.read_image(split.sample("s2"))
    assert jpeg.shape == (HEIGHT, WIDTH, 3)
    for index, sample in enumerate(SAMPLES):
        _, layer, visible = _arrays(10 + index)
        assert np.array_equal(split.read_gt_layer(sample), layer)
        assert np.array_equal(split.read_gt_visible(sample), visible)
    assert np.array_equal(split.read_mask_prompt(split.sample("s2")), _arrays(12)[2])
    assert split.read_mask_prompt(split.sample("s0")) is None


def test_folder_round_trip(split_dir):
    with Split(split_dir) as split:
        assert split.has_ground_truth
        _check_contents(split)
        summary = summarize(split)
    assert (summary.samples, summary.images) == (3, 2)
    assert summary.by_layer_kind == {"foreground": 2, "background": 1}
    assert summary.by_prompt_type == {"point": 1, "text+box": 1, "mask": 1}


@pytest.mark.parametrize("top", [None, "val", "."])
def test_tar_round_trip(split_dir, tmp_path, top):
    with Split(_tar(split_dir, tmp_path / "split.tar", top)) as split:
        assert split.has_ground_truth
        _check_contents(split)


def test_manifest_lines_keep_order_and_fields(split_dir):
    lines = (split_dir / "manifest.jsonl").read_text().splitlines()
    first = json.loads(lines[0])
    assert [json.loads(line)["sample_id"] for line in lines] == ["s0", "s1", "s2"]
    assert first == {
        "sample_id": "s0",
        "image_id": "img0",
        "width": WIDTH,
        "height": HEIGHT,
        "layer_kind": "foreground",
        "prompt": {"points": [[1.5, 2.5], [3.0, 4.0]]},
        "prompt_type": "point",
        "gt_kind": "rgba",
        "category": "disc",
        "occlusion_rate": 0.25,
        "tags": ["synthetic", "opaque"],
    }


def _public_checks(public: Split) -> None:
    assert not public.has_ground_truth
    assert [sample.occlusion_rate for sample in public] == [None, None, None]
    assert [sample.category for sample in public] == ["disc", "background", None]
    assert np.array_equal(public.read_image(public.sample("s0")), _arrays(0)[0])
    assert np.array_equal(public.read_mask_prompt(public.sample("s2")), _arrays(12)[2])
    with pytest.raises(SplitError) as error:
        public.read_gt_layer(public.sample("s0"))
    assert [str(problem) for problem in error.value.problems] == [
        "gt/: this is a public package without ground truth (expected a split with gt/layers "
        "and gt/visible, found no gt/ folder). Score against the full split, not its public "
        "inputs package."
    ]


def test_public_export_folder(split_dir, tmp_path):
    out = export_public(split_dir, tmp_path / "public")
    assert not (out / "gt").exists()
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()) == [
        "images/img0.png",
        "images/img1.jpg",
        "manifest.jsonl",
        "prompts/s2.png",
    ]
    assert "occlusion_rate" not in (out / "manifest.jsonl").read_text()
    with Split(out) as public:
        _public_checks(public)


def test_public_export_tar(split_dir, tmp_path):
    out = export_public(split_dir, tmp_path / "public.tar")
    with tarfile.open(out) as tar:
        names = sorted(tar.getnames())
    assert names == [
        "public/images/img0.png",
        "public/images/img1.jpg",
        "public/manifest.jsonl",
        "public/prompts/s2.png",
    ]
    with Split(out) as public:
        _public_checks(public)


def test_public_export_refuses_nonempty_folder(split_dir, tmp_path):
    (tmp_path / "public").mkdir()
    (tmp_path / "public/x").write_text("x")
    with pytest.raises(
        FileExistsError, match="already exists and is not empty; choose another folder"
    ):
        export_public(split_dir, tmp_path / "public")


def test_writer_refuses_nonempty_folder(split_dir):
    with pytest.raises(FileExistsError) as error:
        SplitWriter(split_dir)
    assert str(error.value) == (
        f"{split_dir} already exists and is not empty; choose another folder or pass overwrite=True"
    )
    SplitWriter(split_dir, overwrite=True)
    assert not (split_dir / "manifest.jsonl").exists()


def _problems(root: Path) -> list[str]:
    with pytest.raises(SplitError) as error:
        Split(root)
    return [str(problem) for problem in error.value.problems]


def _write_manifest(split_dir: Path, *objects: object) -> None:
    lines = [obj if isinstance(obj, str) else json.dumps(obj) for obj in objects]
    (split_dir / "manifest.jsonl").write_text("\n".join(lines) + "\n")


def _with(**changes) -> dict:
    obj = dict(VALID)
    for key, value in changes.items():
        if value is None:
            obj.pop(key)
        else:
            obj[key] = value
    return obj


def _prompt(**prompt) -> dict:
    return _with(prompt=prompt)


# (manifest object or raw line, the one expected problem as printed)
REJECTIONS = [
    (
        "{not json",
        "manifest.jsonl line 1: invalid JSON: Expecting property name enclosed in double "
        "quotes (expected one JSON object per line, found {not json). Fix the line.",
    ),
    (
        [1, 2],
        "manifest.jsonl line 1: manifest line is not a JSON object (expected an object, "
        "found list). Write one JSON object per line.",
    ),
    (
        _with(layer_kind=None),
        "manifest.jsonl line 1: missing field layer_kind (expected sample_id, "
        "image_id, width, height, layer_kind, prompt, found height, image_id, "
        "prompt, sample_id, width). Add the field.",
    ),
    (
        _with(colour="red"),
        "manifest.jsonl line 1: unknown field colour (expected sample_id, image_id, "
        "width, height, layer_kind, prompt, prompt_type, gt_kind, category, "
        "occlusion_rate, tags, found colour). Remove or rename the field.",
    ),
    (
        _with(sample_id="s 0"),
        f"manifest.jsonl line 1: malformed sample_id (expected {ID_RULE}, "
        "found 's 0'). Rename the sample.",
    ),
    (
        _with(image_id="../x"),
        f"{WHERE}: malformed image_id (expected {ID_RULE}, found '../x'). Rename the image.",
    ),
    (
        _with(width=0),
        f"{WHERE}: width and height are not positive integers (expected integers in "
        "1..16384, found 0 x 6). Fix the size.",
    ),
    (
        _with(height=True),
        f"{WHERE}: width and height are not positive integers (expected integers "
        "in 1..16384, found 8 x True). Fix the size.",
    ),
    (
        _with(layer_kind="fg"),
        f"{WHERE}: unknown layer_kind (expected foreground or background, "
        "found 'fg'). Use foreground or background.",
    ),
    (
        _with(gt_kind="rgb"),
        f"{WHERE}: unknown gt_kind (expected rgba or amodal_mask, found 'rgb'). "
        "Use rgba or amodal_mask.",
    ),
    (
        _with(prompt={}),
        f"{WHERE}: prompt is not a non-empty object (expected an object with any of "
        "points, box, mask, text, found {}). Give at least one prompt key.",
    ),
    (
        _prompt(box=[1, 1, 4, 4], scribble=1),
        f"{WHERE}: unknown prompt key scribble (expected points, "
        "box, mask, text, found scribble). Remove or rename the key.",
    ),
    (
        _prompt(points=[[1]]),
        f"{WHERE}: points are not a list of [x, y] pairs (expected [[x, y], ...] "
        "in pixels, found [[1]]). Write each point as [x, y].",
    ),
    (
        _prompt(points=[[9, 1]]),
        f"{WHERE}: point lies outside the image (expected 0 <= x <= 8, "
        "0 <= y <= 6, found [9, 1]). Points are pixel coordinates of the "
        "input image.",
    ),
    (
        _prompt(box=[1, 2, 3]),
        f"{WHERE}: box is not four numbers (expected [x0, y0, x1, y1] in "
        "pixels, found [1, 2, 3]). Write the box as [x0, y0, x1, y1].",
    ),
    (
        _prompt(box=[4, 1, 2, 3]),
        f"{WHERE}: box is empty or outside the image (expected 0 <= x0 < x1 "
        "<= 8, 0 <= y0 < y1 <= 6, found [4, 1, 2, 3]). Boxes are [x0, y0, "
        "x1, y1] in pixels of the input image.",
    ),
    (
        _prompt(mask="../m.png"),
        f"{WHERE}: mask is not a relative path inside the split (expected "
        "prompts/<sample_id>.png, found '../m.png'). Store mask prompts "
        "under prompts/.",
    ),
    (
        _prompt(text="  "),
        f"{WHERE}: text is not a non-empty string (expected a description of the "
        "layer, found '  '). Give the text as a string.",
    ),
    (
        _with(prompt_type="point"),
        f"{WHERE}: prompt_type does not match the prompt's keys (expected "
        "box, found 'point'). Drop prompt_type or set it to the derived label.",
    ),
    (
        _with(category=3),
        f"{WHERE}: category is not a string (expected a string, found 3). Give the "
        "category as a string.",
    ),
    (
        _with(occlusion_rate=1.5),
        f"{WHERE}: occlusion_rate is not a number in [0, 1] (expected a "
        "number in [0, 1], found 1.5). Give the hidden share of the layer's "
        "alpha area.",
    ),
    (
        _with(tags="a"),
        f"{WHERE}: tags are not a list of strings (expected a list of strings, found "
        "'a'). Give tags as a list of strings.",
    ),
]


@pytest.mark.parametrize(("line", "expected"), REJECTIONS)
def test_manifest_rejection_message(split_dir, line, expected):
    _write_manifest(split_dir, line)
    assert _problems(split_dir) == [expected]


def test_duplicate_sample_id(split_dir):
    _write_manifest(split_dir, VALID, VALID)
    assert _problems(split_dir) == [
        "manifest.jsonl line 2: duplicate sample_id s0 (expected unique sample ids, found "
        "also on line 1). Give every sample its own id."
    ]


def test_empty_manifest(split_dir):
    _write_manifest(split_dir, "")
    assert _problems(split_dir) == [
        "manifest.jsonl: manifest has no samples (expected at least one sample, found 0). Add samples."
    ]


def test_missing_manifest(split_dir):
    (split_dir / "manifest.jsonl").unlink()
    assert _problems(split_dir) == [
        "manifest.jsonl: manifest is missing (expected manifest.jsonl at the top of the split, found "
        "no such file). Write one JSON object per sample to manifest.jsonl."
    ]


def test_missing_split_path(tmp_path):
    path = tmp_path / "nowhere"
    assert _problems(path) == [
        f"{path}: split is neither a folder nor a .tar file (expected a folder or a .tar with "
        "manifest.jsonl, found nothing readable). Check the path."
    ]


def test_all_problems_listed_at_once(split_dir):
    _write_manifest(split_dir, _with(layer_kind="fg", gt_kind="rgb"), "{not json")
    with pytest.raises(SplitError) as error:
        Split(split_dir)
    assert [problem.code for problem in error.value.problems] == [
        "layer_kind_unknown",
        "gt_kind_unknown",
        "manifest_json_invalid",
    ]
    assert str(error.value).startswith(
        f"invalid split {split_dir}\n3 problems:\n- {WHERE}: unknown layer_kind"
    )


def test_missing_files(split_dir):
    (split_dir / "images/img1.jpg").unlink()
    (split_dir / "prompts/s2.png").unlink()
    (split_dir / "gt/layers/s0.png").unlink()
    (split_dir / "gt/visible/s1.png").unlink()
    assert _problems(split_dir) == [
        "gt/layers/s0.png: ground-truth layer is missing (expected gt/layers/s0.png, found no such "
        "file). Add the ground-truth layer of sample s0.",
        "gt/visible/s1.png: ground-truth visible mask is missing (expected gt/visible/s1.png, found "
        "no such file). Add the ground-truth visible mask of sample s1.",
        "images/img1.png: input image is missing (expected images/img1.png or .jpg, found no such "
        "file). Add the image of sample s2.",
        "prompts/s2.png: mask prompt is missing (expected prompts/s2.png, found no such file). Add "
        "the mask prompt of sample s2.",
    ]


def test_file_size_mismatch(split_dir):
    Image.new("RGB", (WIDTH + 1, HEIGHT)).save(split_dir / "images/img0.png")
    Image.new("L", (WIDTH, HEIGHT + 2)).save(split_dir / "gt/visible/s2.png")
    assert _problems(split_dir) == [
        "images/img0.png: image size differs from the manifest (expected 8x6, found 9x6). Make the "
        "file match the sample's width and height.",
        "gt/visible/s2.png: image size differs from the manifest (expected 8x6, found 8x8). Make the "
        "file match the sample's width and height.",
    ]
    with Split(split_dir, check_files=False) as split:
        assert len(split) == 3


def test_invalid_tar_is_closed(split_dir, tmp_path):
    _write_manifest(split_dir, "{not json")
    archive = _tar(split_dir, tmp_path / "bad.tar", "val")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with pytest.raises(SplitError):
            Split(archive)
        gc.collect()
    assert [str(w.message) for w in caught if issubclass(w.category, ResourceWarning)] == []


def test_split_rejects_case_only_duplicate_ids(tmp_path):
    root = tmp_path / "split"
    with SplitWriter(root) as writer:
        writer.add_image("img", np.zeros((8, 8, 3), np.uint8))
        for sample_id in ("cat", "Cat"):
            writer.add_sample(Sample(sample_id, "img", 8, 8, "foreground", Prompt(text="a cat")))
    with pytest.raises(SplitError) as caught:
        Split(root)
    assert [str(problem) for problem in caught.value.problems] == [
        "manifest.jsonl line 2: sample_id Cat differs from cat only by case "
        "(expected sample ids unique without regard to case, found cat on line 1). "
        "Rename one of the samples."
    ]

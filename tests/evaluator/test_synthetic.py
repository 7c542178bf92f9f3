"""Synthetic data engine: exact ground truth, prompts, text, determinism and the CLI."""

from __future__ import annotations

import argparse
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np
import pytest

from evaluator.commands import make_synthetic as command
from evaluator.split import Split
from evaluator.synthetic import generate_scenes, make_synthetic_split, make_synthetic_splits
from evaluator.synthetic.prompts import PROMPT_TYPES
from evaluator.synthetic.scene import composite
from evaluator.synthetic.text import (
    ObjectFacts,
    describe,
    describe_scene,
    matching_objects,
    render,
    scene_facts,
)

SIZE = 64
SAMPLES = 12
SEED = 7


def run_command(argv: list[str]) -> int:
    """Run the command module as `python -m evaluator` does, without importing every command."""
    parser = argparse.ArgumentParser()
    command.add_arguments(parser)
    return command.run(parser.parse_args(argv))


@pytest.fixture(scope="module")
def split_dir(tmp_path_factory) -> Path:
    return make_synthetic_split(
        tmp_path_factory.mktemp("synthetic"), SAMPLES, SIZE, SEED, name="val"
    )


@pytest.fixture(scope="module")
def split(split_dir) -> Split:
    return Split(split_dir)


def _scenes(split: Split) -> dict[str, dict[str, object]]:
    """The samples of each image, by image id, keyed by the sample id suffix (bg, o0, o1, ...)."""
    scenes: dict[str, dict[str, object]] = defaultdict(dict)
    for sample in split:
        scenes[sample.image_id][sample.sample_id.rsplit("_", 1)[1]] = sample
    return scenes


def _complete_scenes(split: Split):
    """Yield (image id, background sample, object samples back to front) for scenes with every layer."""
    object_counts = {}
    for index, scene, _ in generate_scenes(SIZE, SEED, "val"):
        object_counts[f"val_{index:05d}"] = len(scene.objects)
        if len(object_counts) == len(_scenes(split)):
            break
    for image_id, layers in _scenes(split).items():
        objects = [layers.get(f"o{k}") for k in range(object_counts[image_id])]
        if "bg" in layers and all(objects):
            yield image_id, layers["bg"], objects


def test_split_is_valid_and_sized(split):
    assert len(split) == SAMPLES
    assert split.has_ground_truth
    for sample in split:
        assert (sample.width, sample.height) == (SIZE, SIZE)
        assert sample.gt_kind == "rgba"


def test_all_six_prompt_types_occur(split):
    counts = Counter(sample.prompt_type for sample in split)
    assert set(counts) == set(PROMPT_TYPES)
    assert set(counts.values()) == {SAMPLES // len(PROMPT_TYPES)}


def test_composite_of_stored_layers_is_image(split):
    checked = 0
    for _, background, objects in _complete_scenes(split):
        image = split.read_image(background)
        background_rgb = split.read_gt_layer(background)[:, :, :3]
        layers = [split.read_gt_layer(sample) for sample in objects]
        assert np.array_equal(composite(background_rgb, layers), image)

        # An independent float64 over operator agrees within one level.
        out = background_rgb.astype(np.float64)
        for layer in layers:
            alpha = layer[:, :, 3:4] / 255.0
            out = out + alpha * (layer[:, :, :3] - out)
        assert np.abs(np.round(out) - image.astype(np.float64)).max() <= 1
        checked += 1
    assert checked >= 2


def test_visible_masks_follow_definition(split):
    for _, background, objects in _complete_scenes(split):
        alphas = [split.read_gt_layer(sample)[:, :, 3].astype(int) for sample in objects]
        for index, sample in enumerate(objects):
            covered = np.zeros((SIZE, SIZE), dtype=bool)
            for alpha in alphas[index + 1 :]:
                covered |= alpha >= 230
            expected = (alphas[index] >= 128) & ~covered
            assert np.array_equal(split.read_gt_visible(sample), expected), sample.sample_id
        covered_by_any = np.any([alpha >= 230 for alpha in alphas], axis=0)
        assert np.array_equal(split.read_gt_visible(background), ~covered_by_any)


def test_occlusion_rate_matches_masks(split):
    for sample in split:
        alpha = split.read_gt_layer(sample)[:, :, 3]
        support = alpha >= 128
        visible = split.read_gt_visible(sample)
        assert not (visible & ~support).any()
        hidden_share = (support & ~visible).sum() / support.sum()
        assert sample.occlusion_rate == pytest.approx(hidden_share, abs=1e-6)


def test_background_layer_is_opaque_photo(split):
    for sample in split:
        if sample.layer_kind == "background":
            layer = split.read_gt_layer(sample)
            assert (layer[:, :, 3] == 255).all()
            assert sample.category == "background"


def test_objects_stay_inside_image(split):
    for sample in split:
        if sample.layer_kind == "foreground":
            alpha = split.read_gt_layer(sample)[:, :, 3]
            border = np.concatenate([alpha[0], alpha[-1], alpha[:, 0], alpha[:, -1]])
            assert (border == 0).all(), sample.sample_id


def test_transparent_pixels_have_zero_rgb(split):
    for sample in split:
        layer = split.read_gt_layer(sample)
        assert (layer[layer[:, :, 3] == 0, :3] == 0).all()


def test_prompts_lie_in_visible_region(split):
    for sample in split:
        visible = split.read_gt_visible(sample)
        prompt = sample.prompt
        if prompt.points is not None:
            for x, y in prompt.points:
                assert 0 <= x < SIZE
                assert 0 <= y < SIZE
                assert visible[int(y), int(x)], (sample.sample_id, x, y)
        if prompt.box is not None:
            if sample.layer_kind == "background":
                assert prompt.box == (0.0, 0.0, float(SIZE), float(SIZE))
            else:
                ys, xs = np.nonzero(visible)
                assert prompt.box == (xs.min(), ys.min(), xs.max() + 1.0, ys.max() + 1.0)
        if prompt.mask is not None:
            assert prompt.mask == f"prompts/{sample.sample_id}.png"
            assert np.array_equal(split.read_mask_prompt(sample), visible)


def test_text_is_unique_per_scene(split):
    for layers in _scenes(split).values():
        texts = [sample.prompt.text for sample in layers.values() if sample.prompt.text]
        assert len(texts) == len(set(texts))
    for index, scene, _ in generate_scenes(SIZE, SEED, "other"):
        if index == 30:
            break
        facts = scene_facts(scene)
        texts = describe_scene(scene)
        assert len(set(texts)) == len(texts)
        for position in range(len(facts)):
            assert matching_objects(describe(position, facts), facts) == [position]


def _facts(**changes) -> ObjectFacts:
    base = dict(
        category="disc",
        colour="red",
        texture="solid",
        transparent=False,
        size_class=None,
        position="in the centre",
        depth=0,
        hides=frozenset(),
    )
    base.update(changes)
    return ObjectFacts(**base)


def test_text_adds_position_for_twins():
    facts = [
        _facts(position="at the top left", depth=1),
        _facts(position="at the bottom right", depth=0),
    ]
    texts = [render(describe(index, facts)) for index in range(2)]
    assert texts == ["the red disc at the top left", "the red disc at the bottom right"]


def test_text_adds_depth_relation():
    facts = [
        _facts(category="ring", colour="green", depth=2),
        _facts(category="star", colour="blue", texture="stripes", depth=1, hides=frozenset({0})),
        _facts(category="star", colour="blue", texture="stripes", depth=0),
    ]
    assert render(describe(1, facts)) == "the blue striped star in front of the green ring"
    assert render(describe(2, facts)) == "the blue striped star that is the front-most object"

    rings = [
        _facts(category="ring", colour="green", depth=2),
        _facts(category="ring", colour="green", depth=1),
        _facts(depth=0, hides=frozenset({0})),
    ]
    assert render(describe(0, rings)) == "the green ring behind the red disc"
    assert render(describe(1, rings)) == "the green ring that is the second object from the front"


def test_text_falls_back_to_depth_rank():
    facts = [_facts(depth=1, hides=frozenset()), _facts(depth=0, hides=frozenset({0}))]
    assert render(describe(0, facts)) == "the red disc that is the second object from the front"
    assert render(describe(1, facts)) == "the red disc that is the front-most object"


def test_text_names_texture_transparency_size():
    textured = [_facts(texture="checker", depth=1), _facts(depth=0)]
    assert render(describe(0, textured)) == "the red checkered disc"
    assert render(describe(1, textured)) == "the red plain disc"

    transparent = [_facts(transparent=True, depth=1), _facts(depth=0)]
    assert render(describe(0, transparent)) == "the semi-transparent red disc"
    assert render(describe(1, transparent)) == "the opaque red disc"

    sized = [_facts(size_class="small", depth=1), _facts(size_class="large", depth=0)]
    assert render(describe(0, sized)) == "the small red disc"
    assert render(describe(1, sized)) == "the large red disc"


def test_same_seed_gives_identical_files(tmp_path):
    first = make_synthetic_split(tmp_path / "a", 8, SIZE, 3)
    second = make_synthetic_split(tmp_path / "b", 8, SIZE, 3)
    names = sorted(path.relative_to(first) for path in first.rglob("*") if path.is_file())
    assert names == sorted(path.relative_to(second) for path in second.rglob("*") if path.is_file())
    for name in names:
        assert (first / name).read_bytes() == (second / name).read_bytes(), name


def test_seeds_and_split_names_differ(tmp_path):
    folders = make_synthetic_splits(tmp_path / "a", 4, SIZE, 3)
    other_seed = make_synthetic_split(tmp_path / "b", 4, SIZE, 4)
    val = (folders["val"] / "images/val_00000.png").read_bytes()
    assert val != (other_seed / "images/val_00000.png").read_bytes()
    assert val != (folders["test"] / "images/test_00000.png").read_bytes()


def test_objects_are_often_occluded():
    rates = []
    transparent_max_alpha = []
    for index, scene, _ in generate_scenes(SIZE, 11, "val"):
        if index == 40:
            break
        rates += [obj.occlusion_rate for obj in scene.objects]
        transparent_max_alpha += [
            int(obj.layer[:, :, 3].max()) for obj in scene.objects if obj.spec.opacity < 1
        ]
    assert np.mean(np.array(rates) > 0) >= 0.3
    assert max(rates) <= 0.75
    assert transparent_max_alpha and max(transparent_max_alpha) < 230


def test_invalid_arguments_are_rejected(tmp_path):
    with pytest.raises(ValueError, match="size must be at least 32 px, got 16"):
        make_synthetic_split(tmp_path, 4, 16, 0)
    with pytest.raises(ValueError, match="samples must be at least 1, got 0"):
        make_synthetic_split(tmp_path, 0, SIZE, 0)
    with pytest.raises(ValueError, match="invalid split name 'a b'"):
        make_synthetic_splits(tmp_path, 4, SIZE, 0, names=("val", "a b"))
    assert not (tmp_path / "val").exists()


def test_cli_writes_splits(tmp_path, capsys):
    status = run_command(f"--out {tmp_path} --samples 6 --size 48 --seed 2 --splits dev".split())
    assert status == 0
    split = Split(tmp_path / "dev")
    assert len(split) == 6
    images = len({sample.image_id for sample in split})
    expected = f"wrote {tmp_path / 'dev'}: 6 samples, {images} images (dev)\n"
    assert capsys.readouterr().out == expected


def test_cli_refuses_existing_folder(tmp_path, capsys):
    argv = f"--out {tmp_path} --samples 2 --size 48 --splits dev".split()
    run_command(argv)
    capsys.readouterr()
    status = run_command(argv)
    assert status == 1
    assert capsys.readouterr().out == (
        f"error: {tmp_path / 'dev'} already exists and is not empty; choose another folder "
        "or pass overwrite=True (on the command line: --overwrite)\n"
    )

"""preserve_visible: which pixels take the input's colours, how the rest is completed, and the prompt's facts on alpha."""

import json
import logging
import zipfile

import numpy as np
import pytest

from evaluator.split import open_split
from evaluator.submission import SubmissionArchive
from reference_model.checkpoint import load_model, save_checkpoint
from reference_model.cli import main
from reference_model.data import inputs_from_arrays
from reference_model.predict import predict
from reference_model.sampling import background_visibility
from reference_model.visible import (
    DEFAULT_SETTINGS,
    VisibleSettings,
    nearby_colours,
    preserve_visible,
)
from tests.reference_model.test_predict import checkpoint  # noqa: F401  (fixture)

EXACT = VisibleSettings(tolerance=0.1, sigma=0.0, fill="model")


def image_and_layer():
    """Return a 4 x 4 image of value 100 and an opaque layer of the same colour.

    Three pixels of the layer differ: (0, 0) has alpha 0, (1, 1) colour 200 (far
    from the image) and (2, 2) colour 110 (near it).
    """
    image = np.full((4, 4, 3), 100, np.uint8)
    layer = np.concatenate([image, np.full((4, 4, 1), 255, np.uint8)], axis=-1)
    layer[0, 0, 3] = 0
    layer[0, 0, :3] = 7
    layer[1, 1, :3] = 200
    layer[2, 2, :3] = 110
    return image, layer


def test_near_opaque_pixels_take_image():
    image, layer = image_and_layer()
    out = preserve_visible(layer, image, "foreground", None, EXACT)
    assert out[2, 2, :3].tolist() == [100, 100, 100]  # 10/255 = 0.04 <= 0.1
    assert out[1, 1, :3].tolist() == [200, 200, 200]  # 100/255 = 0.39 > 0.1: repainted, kept
    assert out[0, 0].tolist() == [7, 7, 7, 0]  # transparent: kept
    np.testing.assert_array_equal(out[..., 3], layer[..., 3])
    assert layer[2, 2, 0] == 110  # the input layer is not modified


def test_tolerance_bounds_difference():
    image, layer = image_and_layer()
    out = preserve_visible(layer, image, "foreground", None, VisibleSettings(tolerance=0.5, sigma=0.0, fill="model"))
    assert out[1, 1, :3].tolist() == [100, 100, 100]
    out = preserve_visible(layer, image, "foreground", None, VisibleSettings(tolerance=0.0, sigma=0.0, fill="model"))
    assert out[2, 2, :3].tolist() == [110, 110, 110]


def test_background_layer_opaque():
    image, layer = image_and_layer()
    out = preserve_visible(layer, image, "background", None, EXACT)
    assert (out[..., 3] == 255).all()
    # Now opaque, (0, 0) differs from the image by 93/255 = 0.36 > 0.1 and keeps its colour.
    assert out[0, 0, :3].tolist() == [7, 7, 7]


def test_mask_prompt_visible_and_opaque():
    image, layer = image_and_layer()
    mask = np.zeros((4, 4), bool)
    mask[0, 0] = mask[1, 1] = True
    out = preserve_visible(layer, image, "foreground", mask, EXACT)
    assert out[0, 0].tolist() == [100, 100, 100, 255]
    assert out[1, 1].tolist() == [100, 100, 100, 255]
    # A background layer ignores the mask prompt, which marks a foreground object.
    out = preserve_visible(layer, image, "background", mask, EXACT)
    assert out[1, 1, :3].tolist() == [200, 200, 200]


def test_blur_smooths_reference_image():
    image = np.zeros((9, 9, 3), np.uint8)
    image[4, 4] = 255  # one bright pixel, which a blurred model reproduces as a faint spot
    layer = np.concatenate([np.full((9, 9, 3), 10, np.uint8), np.full((9, 9, 1), 255, np.uint8)], axis=-1)
    sharp = preserve_visible(layer, image, "foreground", None, VisibleSettings(tolerance=0.1, sigma=0.0, fill="model"))
    blurred = preserve_visible(layer, image, "foreground", None, VisibleSettings(tolerance=0.1, sigma=2.0, fill="model"))
    assert sharp[4, 4, :3].tolist() == [10, 10, 10]
    assert blurred[4, 4, :3].tolist() == [255, 255, 255]


@pytest.mark.parametrize("settings, message", [
    (dict(tolerance=1.5), "the visible tolerance must be in [0, 1], got 1.5"),
    (dict(sigma=-1.0), "the visible blur sigma must be a finite number of pixels >= 0, got -1.0"),
    (dict(sigma=float("nan")), "the visible blur sigma must be a finite number of pixels >= 0, got nan"),
    (dict(sigma=float("inf")), "the visible blur sigma must be a finite number of pixels >= 0, got inf"),
    (dict(threshold=-0.1), "the visibility threshold must be in [0, 1], got -0.1"),
    (dict(fill="mean"), "unknown hidden-part fill 'mean'; use one of model, nearby"),
    (dict(fill_sigma=0.0), "the fill sigma must be a finite number of pixels > 0, got 0.0"),
    (dict(fill_sigma=float("nan")), "the fill sigma must be a finite number of pixels > 0, got nan"),
])
def test_invalid_settings_rejected(settings, message):
    with pytest.raises(ValueError) as error:
        VisibleSettings(**settings)
    assert str(error.value) == message


def test_size_mismatch_rejected():
    image, layer = image_and_layer()
    with pytest.raises(ValueError) as error:
        preserve_visible(layer[:3], image, "foreground")
    assert str(error.value) == "the layer is 4x3 px but the image is 4x4 px; resize the layer to the image first"
    with pytest.raises(ValueError) as error:
        preserve_visible(layer, image, "background", visibility=np.ones((4, 5), np.float32))
    assert str(error.value) == (
        "the visibility map is 5x4 px but the image is 4x4 px; resize the visibility map to the image first"
    )


@pytest.mark.parametrize("value, shown", [(200.0, "200.0 to 200.0"), (float("nan"), "nan to nan"), (-0.5, "-0.5 to -0.5")])
def test_visibility_map_values_checked(value, shown):
    image, layer = image_and_layer()
    with pytest.raises(ValueError) as error:
        preserve_visible(layer, image, "background", visibility=np.full((4, 4), value, np.float32))
    assert str(error.value) == (
        f"the visibility map must hold probabilities in [0, 1], found values from {shown}; "
        "pass the decoder's sigmoid output, not logits or 0..255 values"
    )


def test_visibility_map_replaces_colour_estimate():
    image, layer = image_and_layer()
    visibility = np.ones((4, 4), np.float32)
    visibility[2, 2] = 0.49  # near the image's colour, but hidden on the map
    visibility[1, 1] = 0.5  # far from it, but visible on the map
    out = preserve_visible(layer, image, "background", None, EXACT, visibility)
    assert out[2, 2, :3].tolist() == [110, 110, 110]
    assert out[1, 1, :3].tolist() == [100, 100, 100]
    assert out[0, 0, :3].tolist() == [100, 100, 100]  # opaque as a background, and visible on the map
    strict = VisibleSettings(tolerance=0.1, sigma=0.0, fill="model", threshold=0.6)
    assert preserve_visible(layer, image, "background", None, strict, visibility)[1, 1, :3].tolist() == [200, 200, 200]


def test_nearby_fill_takes_uniform_visible_colour():
    image, layer = image_and_layer()
    out = preserve_visible(layer, image, "foreground", None, VisibleSettings(tolerance=0.1, sigma=0.0))
    assert out[1, 1].tolist() == [100, 100, 100, 255]  # hidden: the only colour nearby is 100
    assert out[0, 0].tolist() == [7, 7, 7, 0]  # transparent pixels keep the model's colour


def test_nearby_fill_follows_closer_colours():
    # Left column red, right column blue, all visible; the middle 5 columns are hidden.
    image = np.zeros((5, 7, 3), np.uint8)
    image[:, 0] = (255, 0, 0)
    image[:, 6] = (0, 0, 255)
    layer = np.concatenate([np.full((5, 7, 3), 128, np.uint8), np.full((5, 7, 1), 255, np.uint8)], axis=-1)
    visibility = np.zeros((5, 7), np.float32)
    visibility[:, [0, 6]] = 1.0
    out = preserve_visible(layer, image, "background", None, VisibleSettings(fill_sigma=2.0), visibility)
    row = out[2, :, :3].astype(int)
    assert row[1, 0] > row[1, 2]  # redder than blue next to the red column
    assert row[5, 2] > row[5, 0]  # bluer than red next to the blue column
    assert row[1, 0] > row[3, 0]
    assert row[3, 0] > row[5, 0]
    assert row[3, 0] == row[3, 2]  # the middle column is as far from both


def test_nearby_fill_far_pixels_take_mean_of_visible():
    image = np.zeros((1, 40, 3), np.uint8)
    image[0, 0] = (200, 100, 0)
    image[0, 1] = (100, 100, 0)
    known = np.zeros((1, 40), bool)
    known[0, :2] = True
    colours = nearby_colours(image, known, sigma=1.0)
    np.testing.assert_allclose(colours[0, 39], [150, 100, 0])  # beyond 4 sigma of both
    assert 100 < colours[0, 2, 0] < 150  # nearer the second pixel


def test_nearby_fill_without_visible_pixels_keeps_model_colours():
    image, layer = image_and_layer()
    visibility = np.zeros((4, 4), np.float32)
    out = preserve_visible(layer, image, "background", None, DEFAULT_SETTINGS, visibility)
    np.testing.assert_array_equal(out[..., :3], layer[..., :3])


def test_predict_applies_and_records(checkpoint, disc_split_path, tmp_path):  # noqa: F811
    preserved = predict(checkpoint, disc_split_path, tmp_path / "preserved.zip", steps=1)
    raw = predict(checkpoint, disc_split_path, tmp_path / "raw.zip", steps=1, visible=None)
    with zipfile.ZipFile(preserved) as archive:
        assert json.loads(archive.read("metadata.json"))["preserve_visible"] == {
            "tolerance": 0.35, "sigma": 1.0, "threshold": 0.5, "fill": "nearby", "fill_sigma": 4.0,
            "background": "visibility decoder",
        }
    with zipfile.ZipFile(raw) as archive:
        assert json.loads(archive.read("metadata.json"))["preserve_visible"] is None
    split = open_split(disc_split_path)
    model = load_model(checkpoint).eval()
    kinds = set()
    with SubmissionArchive(preserved, split) as preserved_zip, SubmissionArchive(raw, split) as raw_zip:
        for sample in split.samples:
            image, mask = split.read_image(sample), split.read_mask_prompt(sample)
            visibility = None
            if sample.layer_kind == "background":
                inputs = inputs_from_arrays(image, mask, sample, model.config.resolution)[0]
                visibility = background_visibility(model, inputs, sample.width, sample.height)
            expected = preserve_visible(raw_zip.read_candidate(sample.sample_id, 0), image, sample.layer_kind,
                                        mask, DEFAULT_SETTINGS, visibility)
            np.testing.assert_array_equal(preserved_zip.read_candidate(sample.sample_id, 0), expected)
            kinds.add(sample.layer_kind)
    assert kinds == {"background", "foreground"}


def test_cli_settings_reach_metadata(checkpoint, disc_split_path, tmp_path):  # noqa: F811
    out = tmp_path / "preds.zip"
    main(["predict", "--checkpoint", str(checkpoint), "--split", str(disc_split_path), "--out", str(out),
          "--steps", "1", "--visible-tolerance", "0.2", "--visibility-threshold", "0.3", "--fill", "model",
          "--fill-sigma", "2"])
    with zipfile.ZipFile(out) as archive:
        assert json.loads(archive.read("metadata.json"))["preserve_visible"] == {
            "tolerance": 0.2, "sigma": 1.0, "threshold": 0.3, "fill": "model", "fill_sigma": 2.0,
            "background": "visibility decoder",
        }


def test_untrained_visibility_decoder_not_used(checkpoint, disc_split_path, tmp_path, caplog):  # noqa: F811
    untrained = save_checkpoint(tmp_path / "untrained", load_model(checkpoint), step=1, stage="denoiser",
                                info={"background_examples": 0})
    with caplog.at_level(logging.WARNING, logger="reference_model.predict"):
        preserved = predict(untrained, disc_split_path, tmp_path / "preserved.zip", steps=1)
    assert (f"{untrained} was trained without background samples, so its visibility decoder is untrained; "
            "background layers keep the image where the model's colour is within the visible tolerance") in caplog.messages
    raw = predict(untrained, disc_split_path, tmp_path / "raw.zip", steps=1, visible=None)
    with zipfile.ZipFile(preserved) as archive:
        assert json.loads(archive.read("metadata.json"))["preserve_visible"]["background"] == "colours"
    split = open_split(disc_split_path)
    with SubmissionArchive(preserved, split) as preserved_zip, SubmissionArchive(raw, split) as raw_zip:
        for sample in split.samples:
            expected = preserve_visible(raw_zip.read_candidate(sample.sample_id, 0), split.read_image(sample),
                                        sample.layer_kind, split.read_mask_prompt(sample))
            np.testing.assert_array_equal(preserved_zip.read_candidate(sample.sample_id, 0), expected)

import dataclasses
import math
import warnings

import lpips
import numpy as np
import pytest
import torch
import torchvision
from skimage import data
from skimage.transform import resize

from evaluator.metrics import METRICS, PER_CANDIDATE_METRICS
from evaluator.metrics.images import (
    amodal_ious,
    amodal_mask,
    background_bytes,
    mask_iou,
    prepare_layer,
    prepare_mask,
    restrict,
)
from evaluator.metrics.scoring import completion_direction
from evaluator.weights import ALEXNET

BACKGROUND = background_bytes((0.5, 0.5, 0.5))


def photo_layer(image: np.ndarray, size: int = 64) -> np.ndarray:
    rgb = (resize(image, (size, size), anti_aliasing=True) * 255).round().astype(np.uint8)
    return np.dstack([rgb, np.full((size, size), 255, dtype=np.uint8)])


def reference_lpips(weights_dir) -> lpips.LPIPS:
    """The lpips package's own model with the trunk swapped for torchvision's AlexNet."""
    alexnet = torchvision.models.alexnet(weights=None)
    alexnet.load_state_dict(torch.load(weights_dir / ALEXNET.path, weights_only=True))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # lpips passes torchvision's deprecated `pretrained`
        model = lpips.LPIPS(pretrained=True, net="alex", version="0.1", pnet_rand=True, verbose=False)
    for part in (model.net.slice1, model.net.slice2, model.net.slice3, model.net.slice4, model.net.slice5):
        for name in list(part._modules):
            part._modules[name] = alexnet.features[int(name)]
    return model.eval()


def test_metric_declarations():
    assert set(PER_CANDIDATE_METRICS) <= set(METRICS)
    assert METRICS["lpips_vis"].higher_is_better is False
    assert METRICS["dir"].higher_is_better is True
    assert METRICS["fid"].higher_is_better is False


def test_lpips_vis_equals_lpips_package(scoring_context, stand_in_weights):
    truth = prepare_layer(photo_layer(data.astronaut()), 64, BACKGROUND)
    prediction = prepare_layer(photo_layer(data.coffee()), 64, BACKGROUND)
    visible = np.zeros((64, 64), dtype=bool)
    visible[8:40, 10:50] = True
    first, second = restrict(truth, visible, BACKGROUND), restrict(prediction, visible, BACKGROUND)
    ours = scoring_context.networks.lpips_distance(first[None], second[None])[0]

    def scaled(image):
        return torch.from_numpy(image).permute(2, 0, 1)[None].float() / 255 * 2 - 1

    with torch.no_grad():
        expected = reference_lpips(stand_in_weights)(scaled(first), scaled(second)).item()
    assert ours == pytest.approx(expected, rel=1e-5)
    assert ours > 0


def test_lpips_blur_increases(scoring_context):
    layer = photo_layer(data.astronaut())
    truth = prepare_layer(layer, 64, BACKGROUND)
    blurred = torchvision.transforms.functional.gaussian_blur(
        torch.from_numpy(layer).permute(2, 0, 1), kernel_size=9, sigma=3.0
    ).permute(1, 2, 0).numpy()
    slight = scoring_context.networks.lpips_distance(truth[None], prepare_layer(layer, 64, BACKGROUND)[None])
    strong = scoring_context.networks.lpips_distance(truth[None], prepare_layer(blurred, 64, BACKGROUND)[None])
    assert slight[0] == 0
    assert strong[0] > 0.01


def test_transparent_colour_does_not_leak():
    layer = np.zeros((40, 40, 4), dtype=np.uint8)
    layer[..., 0] = 255  # red RGB under alpha 0: undefined colour
    layer[10:30, 10:30] = (0, 0, 255, 255)
    composite = prepare_layer(layer, 16, BACKGROUND)
    assert composite.shape == (16, 16, 3)
    assert (composite[0, 0] == BACKGROUND).all()
    assert composite[..., 0].max() <= BACKGROUND[0]  # no red from the hidden colour


def test_background_rounds_to_bytes():
    assert background_bytes((0.5, 0.5, 0.5)).tolist() == [128, 128, 128]
    assert background_bytes((0.0, 1.0, 0.25)).tolist() == [0, 255, 64]


def test_prepare_mask_area_threshold():
    mask = np.zeros((8, 8), dtype=bool)
    mask[:, :4] = True  # left half
    assert prepare_mask(mask, 2).tolist() == [[True, False], [True, False]]


def test_amodal_mask_threshold():
    layer = np.zeros((1, 3, 4), dtype=np.uint8)
    layer[0, :, 3] = (127, 128, 255)
    assert amodal_mask(layer).tolist() == [[False, True, True]]


def masks(rows: list[str]) -> np.ndarray:
    return np.array([[char == "#" for char in row] for row in rows])


def test_iou_hand_made():
    prediction = masks(["##..", "##..", "....", "...."])
    truth = masks(["###.", "###.", "....", "...."])
    assert mask_iou(prediction, truth) == pytest.approx(4 / 6)


def test_iou_occ_hand_made():
    truth = masks(["####", "####", "....", "...."])
    visible = masks(["##..", "##..", "....", "...."])
    prediction = masks(["###.", "###.", "###.", "...."])
    iou, iou_occ = amodal_ious(prediction, truth, visible)
    assert iou == pytest.approx(6 / 11)  # |∩| = 6, |∪| = 8 + 3
    assert iou_occ == pytest.approx(2 / 7)  # hidden truth 4 px, hidden prediction 5 px, overlap 2


def test_iou_occ_visible_only_zero():
    truth = masks(["####", "####"])
    visible = masks(["##..", "##.."])
    assert amodal_ious(visible, truth, visible) == (pytest.approx(0.5), 0.0)


def test_iou_occ_nothing_hidden_nan():
    truth = masks(["##..", "##.."])
    visible = masks(["###.", "###."])
    iou, iou_occ = amodal_ious(truth, truth, visible)
    assert iou == 1.0
    assert math.isnan(iou_occ)


def test_iou_empty_truth_nan():
    empty = np.zeros((2, 2), dtype=bool)
    assert math.isnan(mask_iou(empty, empty))


def unit(vector):
    vector = np.asarray(vector, dtype=np.float64)
    return vector / np.linalg.norm(vector)


def test_direction_cases():
    f_g = np.stack([unit([1, 0, 0])] * 4)
    f_gv = np.stack([unit([0, 1, 0])] * 4)
    f_p = np.stack([unit([1, 0, 0]), unit([0, 1, 0]), unit([0, 0, 1]), unit([1, 0, 0])])
    nothing_hidden = np.array([False, False, False, True])
    result = completion_direction(f_g, f_gv, f_p, nothing_hidden)
    assert result[0] == pytest.approx(1.0)
    assert result[1] == 0.0  # the prediction adds nothing to g ⊙ v
    assert result[2] == pytest.approx(0.5)  # (1,-1,0)·(0,-1,1) / 2
    assert math.isnan(result[3])


def test_direction_zero_target_nan():
    same = np.stack([unit([1, 2, 3])])
    assert math.isnan(completion_direction(same, same, np.stack([unit([3, 2, 1])]), np.array([False]))[0])


def test_lpips_repeats_pair_with_sample(scoring_context):
    photos = [data.astronaut(), data.coffee(), data.chelsea()]
    truths = np.stack([prepare_layer(photo_layer(photo), 64, BACKGROUND) for photo in photos])
    # Three samples with two candidates each: the other photos, in turn.
    candidates = np.stack([truths[(i + k) % 3] for i in range(3) for k in (1, 2)])
    shared = scoring_context.networks.lpips_distance(truths, candidates, repeats=2)
    one_by_one = [
        scoring_context.networks.lpips_distance(truths[i // 2][None], candidates[i][None])[0] for i in range(6)
    ]
    assert shared == pytest.approx(one_by_one, rel=1e-5)
    # LPIPS is symmetric: astronaut against coffee (row 0) equals coffee against astronaut (row 3).
    assert shared[0] == pytest.approx(shared[3], rel=1e-5)
    assert len(set(np.round(shared, 6))) == 3
    with pytest.raises(ValueError, match="lpips_distance needs 3 x 2 second images, found 5"):
        scoring_context.networks.lpips_distance(truths, candidates[:5], repeats=2)


def test_lpips_distance_from_features(scoring_context):
    networks = scoring_context.networks
    photos = [data.astronaut(), data.coffee(), data.chelsea(), data.rocket()]
    truths = np.stack([prepare_layer(photo_layer(photo), 64, BACKGROUND) for photo in photos])
    candidates = np.stack([truths[(i + k) % 4] for i in range(4) for k in (1, 2, 3)])
    features = networks.lpips_features(truths)
    assert len(features) == 5  # AlexNet's five LPIPS layers
    assert all(layer.dtype == np.float32 and len(layer) == 4 for layer in features)
    from_features = networks.lpips_distance(None, candidates, 3, first_features=features)
    assert from_features == pytest.approx(networks.lpips_distance(truths, candidates, 3), rel=1e-5)
    assert networks.lpips_feature_bytes(64) == sum(layer[0].nbytes for layer in features)
    with pytest.raises(ValueError, match="lpips_distance needs 4 x 3 second images, found 11"):
        networks.lpips_distance(None, candidates[:11], 3, first_features=features)


@pytest.mark.parametrize("version", ["0.0", "0.1"])
def test_lpips_distance_matches_forward(tiny_config, stand_in_weights, version):
    from evaluator.metrics.scoring import MetricNetworks

    config = dataclasses.replace(tiny_config, lpips={**tiny_config.lpips, "version": version})
    networks = MetricNetworks(stand_in_weights, config, torch.device("cpu"))
    assert networks.lpips.version == version
    first = np.stack([prepare_layer(photo_layer(photo), 64, BACKGROUND) for photo in (data.astronaut(), data.rocket())])
    second = np.stack([prepare_layer(photo_layer(photo), 64, BACKGROUND) for photo in (data.coffee(), data.chelsea())])

    def scaled(images):
        return torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255 * 2 - 1

    with torch.no_grad():
        expected = networks.lpips(scaled(first), scaled(second)).flatten().double().numpy()
    assert networks.lpips_distance(first, second) == pytest.approx(expected, rel=1e-5)

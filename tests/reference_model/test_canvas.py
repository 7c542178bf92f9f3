import numpy as np
import pytest

from evaluator.split import Prompt
from reference_model.canvas import BOX_INTERIOR, BOX_OUTLINE, empty_canvas, render_canvas

BLUE = (0.0, 0.0, 1.0)


def test_empty_canvas_is_blue():
    canvas = empty_canvas(16)
    assert canvas.shape == (16, 16, 3)
    assert canvas.dtype == np.float32
    assert np.all(canvas == BLUE)


def test_text_prompt_draws_nothing():
    canvas = render_canvas(Prompt(text="the red disc"), 50, 40, 32)
    assert np.all(canvas == BLUE)


def test_mask_is_red():
    mask = np.zeros((40, 80), bool)
    mask[:20, :40] = True  # the top-left quarter of the image
    canvas = render_canvas(Prompt(mask="prompts/a.png"), 80, 40, 32, mask)
    assert tuple(canvas[4, 4]) == (1.0, 0.0, 0.0)
    assert tuple(canvas[28, 28]) == BLUE
    red = canvas[..., 0] == 1.0
    assert red.sum() == 16 * 16


def test_box_interior_and_outline_are_green():
    # The box covers x in [16, 48) and y in [8, 24) of a 64 x 32 image.
    # At 32 px that is columns 8..23 and rows 8..23.
    canvas = render_canvas(Prompt(box=(16.0, 8.0, 48.0, 24.0)), 64, 32, 32)
    assert tuple(canvas[8, 8]) == (0.0, BOX_OUTLINE, 0.0)
    assert tuple(canvas[23, 23]) == (0.0, BOX_OUTLINE, 0.0)
    assert tuple(canvas[15, 15]) == (0.0, BOX_INTERIOR, 0.0)
    assert tuple(canvas[7, 15]) == BLUE
    assert tuple(canvas[15, 24]) == BLUE


def test_point_is_white_peak():
    canvas = render_canvas(Prompt(points=((10.5, 20.5),)), 32, 32, 32)
    assert np.allclose(canvas[20, 10], 1.0)
    assert canvas[20, 10, 0] > canvas[20, 12, 0] > canvas[20, 14, 0]
    assert tuple(canvas[2, 30]) == BLUE


def test_point_over_mask_keeps_red():
    mask = np.ones((32, 32), bool)
    canvas = render_canvas(Prompt(points=((16.5, 16.5),), mask="prompts/a.png"), 32, 32, 32, mask)
    assert canvas[0, 0, 0] == 1.0
    assert canvas[16, 16, 1] > 0.9


def test_mask_prompt_without_array_raises():
    with pytest.raises(ValueError, match="no mask array was given"):
        render_canvas(Prompt(mask="prompts/a.png"), 32, 32, 32)


def test_mask_of_wrong_shape_raises():
    with pytest.raises(ValueError, match=r"shape \(10, 10\), expected \(32, 32\)"):
        render_canvas(Prompt(mask="prompts/a.png"), 32, 32, 32, np.zeros((10, 10), bool))

import numpy as np
import pytest
import torch

from reference_model.networks import RefLayer
from reference_model.sampling import generate, sample_latents


@pytest.fixture
def model(config):
    torch.manual_seed(2)
    return RefLayer(config).eval()


def test_fixed_seed_gives_identical_samples(model):
    image = torch.zeros(3, 32, 32)
    canvas = torch.zeros(3, 32, 32)
    first = sample_latents(model, image, canvas, "a disc", [7, 8], steps=3, guidance_scale=2.0)
    second = sample_latents(model, image, canvas, "a disc", [7, 8], steps=3, guidance_scale=2.0)
    assert torch.equal(first, second)
    assert not torch.equal(first[0], first[1])


def test_candidate_depends_only_on_its_seed(model):
    image = torch.zeros(3, 32, 32)
    canvas = torch.zeros(3, 32, 32)
    pair = sample_latents(model, image, canvas, "", [7, 8], steps=2, guidance_scale=1.0)
    single = sample_latents(model, image, canvas, "", [8], steps=2, guidance_scale=1.0)
    assert torch.allclose(pair[1], single[0], atol=1e-5)


def test_generate_returns_layers_at_sample_size(model):
    layers = generate(model, torch.zeros(3, 32, 32), torch.zeros(3, 32, 32), "", [0, 1, 2], 2, 2.0, width=50, height=30)
    assert len(layers) == 3
    for layer in layers:
        assert layer.shape == (30, 50, 4)
        assert layer.dtype == np.uint8


def test_zero_steps_raises(model):
    with pytest.raises(ValueError, match="steps must be at least 1, got 0"):
        sample_latents(model, torch.zeros(3, 32, 32), torch.zeros(3, 32, 32), "", [0], steps=0, guidance_scale=1.0)

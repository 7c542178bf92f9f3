"""The sd3-medium preset on a diffusers-format SD3 folder of tiny random networks."""

import pytest
import torch
from diffusers import AutoencoderKL
from safetensors.torch import load_file

from evaluator.split import open_split
from evaluator.submission import validate_submission
from reference_model.config import sd3_medium
from reference_model.networks import RefLayer
from reference_model.predict import predict
from reference_model.train import train


@pytest.fixture(scope="module")
def sd3_folder(tmp_path_factory):
    from sd3_folder import make_sd3_folder

    return make_sd3_folder(tmp_path_factory.mktemp("sd3") / "sd3")


def small_sd3_config(folder):
    """The sd3-medium preset at 32 px with a few fp32 steps, loading from `folder`."""
    config = sd3_medium(str(folder))
    config.resolution = 32
    config.text.context_length = 8
    config.train.mixed_precision = "no"
    config.train.steps = 3
    config.train.batch_size = 2
    config.train.warmup_steps = 1
    config.train.num_workers = 0
    config.train.checkpoint_every = 2
    config.train.log_every = 1
    config.sample.steps = 2
    return config


def test_folder_parts_load_frozen(sd3_folder):
    model = RefLayer(small_sd3_config(sd3_folder))
    assert sorted(model.trained_modules()) == ["alpha_decoder", "denoiser", "visibility_decoder"]
    reference = AutoencoderKL.from_pretrained(sd3_folder / "vae").state_dict()
    assert all(torch.equal(value, reference[name]) for name, value in model.vae.state_dict().items())
    assert not any(param.requires_grad for param in model.text_encoder.parameters())

    tokens = model.text_encoder.tokenize(["a red disc", ""])
    assert {name: tuple(ids.shape) for name, ids in tokens.items()} == {"clip_l": (2, 77), "clip_g": (2, 77), "t5": (2, 8)}
    hidden, pooled = model.text_encoder(tokens)
    # 77 CLIP states (16 + 24 channels, zero-padded to T5's 64) followed by 8 T5 states.
    assert hidden.shape == (2, 85, 64)
    assert torch.equal(hidden[:, :77, 40:], torch.zeros(2, 77, 24))
    assert pooled.shape == (2, 16)


def test_train_stores_trained_parts_and_predicts(sd3_folder, disc_split_path, tmp_path):
    final = train(small_sd3_config(sd3_folder), disc_split_path, tmp_path / "run")

    prefixes = {key.split(".")[0] for key in load_file(final / "model.safetensors")}
    assert prefixes == {"alpha_decoder", "denoiser", "visibility_decoder"}
    out = predict(final, disc_split_path, tmp_path / "preds.zip", device=torch.device("cpu"))
    report = validate_submission(out, open_split(disc_split_path))
    assert report.valid, report.format()

import pytest
import torch
from safetensors.torch import load_file, save_file

from reference_model.checkpoint import MODEL_NAME, load_model, save_checkpoint
from reference_model.networks import RefLayer
from reference_model.sampling import sample_latents


def test_save_and_load_give_identical_outputs(config, tmp_path):
    torch.manual_seed(1)
    model = RefLayer(config).eval()
    save_checkpoint(tmp_path / "ckpt", model, step=3, stage="denoiser")
    loaded = load_model(tmp_path / "ckpt").eval()

    image = torch.rand(3, 32, 32) * 2 - 1
    canvas = torch.rand(3, 32, 32) * 2 - 1
    first = sample_latents(model, image, canvas, "a disc", [5], steps=2, guidance_scale=2.0)
    second = sample_latents(loaded, image, canvas, "a disc", [5], steps=2, guidance_scale=2.0)
    assert torch.equal(first, second)
    assert torch.equal(model.decode_alpha_logits(first), loaded.decode_alpha_logits(second))
    image_latent = model.encode(image[None])
    assert torch.equal(model.decode_visibility_logits(image_latent), loaded.decode_visibility_logits(image_latent))


def drop_weights(folder, keep) -> None:
    path = folder / MODEL_NAME
    state = load_file(path)
    save_file({key: value for key, value in state.items() if keep(key)}, path)


def test_checkpoint_without_a_module_rejected(config, tmp_path):
    folder = save_checkpoint(tmp_path / "ckpt", RefLayer(config), step=1, stage="denoiser")
    drop_weights(folder, lambda key: not key.startswith("visibility_decoder."))
    with pytest.raises(ValueError) as error:
        load_model(folder)
    assert str(error.value) == (
        "the checkpoint has no weights for visibility_decoder; it was written by a RefLayer without that module, "
        "so retrain it with `python -m reference_model train`"
    )


def test_checkpoint_missing_some_weights_rejected(config, tmp_path):
    folder = save_checkpoint(tmp_path / "ckpt", RefLayer(config), step=1, stage="denoiser")
    drop_weights(folder, lambda key: key != "alpha_decoder.conv_out.bias")
    with pytest.raises(ValueError) as error:
        load_model(folder)
    assert str(error.value) == (
        "the checkpoint lacks 1 of the alpha_decoder weights, first 'conv_out.bias'; it was written with another config"
    )


def test_ema_weights_replace_raw_weights(config, tmp_path):
    model = RefLayer(config)
    name = "denoiser.compress.bias"
    ema = {name: torch.full_like(model.denoiser.compress.bias, 0.25)}
    save_checkpoint(tmp_path / "ckpt", model, step=1, stage="denoiser", ema=ema)
    assert torch.all(load_model(tmp_path / "ckpt").denoiser.compress.bias == 0.25)
    assert torch.all(load_model(tmp_path / "ckpt", use_ema=False).denoiser.compress.bias == 0.0)

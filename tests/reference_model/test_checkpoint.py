import torch

from reference_model.checkpoint import load_model, save_checkpoint
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


def test_ema_weights_replace_raw_weights(config, tmp_path):
    model = RefLayer(config)
    name = "denoiser.compress.bias"
    ema = {name: torch.full_like(model.denoiser.compress.bias, 0.25)}
    save_checkpoint(tmp_path / "ckpt", model, step=1, stage="denoiser", ema=ema)
    assert torch.all(load_model(tmp_path / "ckpt").denoiser.compress.bias == 0.25)
    assert torch.all(load_model(tmp_path / "ckpt", use_ema=False).denoiser.compress.bias == 0.0)

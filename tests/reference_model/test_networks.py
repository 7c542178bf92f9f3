import dataclasses

import pytest
import torch

from reference_model.config import ModelConfig, TextConfig, preset, sd3_medium
from reference_model.networks import RefLayer, build_map_decoder


def test_shapes_through_network(config):
    model = RefLayer(config)
    pixels = torch.rand(2, 3, 32, 32) * 2 - 1
    latent = model.encode(pixels)
    assert latent.shape == (2, 4, 16, 16)

    tokens = model.text_encoder.tokenize(["the red disc", ""])
    assert tokens["tokens"].shape == (2, 8)
    hidden, pooled = model.text_encoder(tokens)
    assert hidden.shape == (2, 8, 16)
    assert pooled.shape == (2, 16)

    velocity = model.denoiser(latent, latent, latent, torch.tensor([0.2, 0.9]), hidden, pooled)
    assert velocity.shape == latent.shape
    assert model.decode_rgb(latent).shape == (2, 3, 32, 32)
    assert model.decode_alpha_logits(latent).shape == (2, 1, 32, 32)
    assert model.decode_visibility_logits(latent).shape == (2, 1, 32, 32)


def test_compress_conv_starts_as_identity(config):
    model = RefLayer(config)
    x_t = torch.randn(1, 4, 16, 16)
    conditions = torch.randn(1, 4, 16, 16)
    compressed = model.denoiser.compress(torch.cat([x_t, conditions, conditions], dim=1))
    assert torch.equal(compressed, x_t)


def test_map_decoder_copies_vae_decoder_but_last_conv(config):
    model = RefLayer(config)
    decoder = build_map_decoder(model.vae)
    assert decoder.conv_out.out_channels == 1
    source = model.vae.decoder.state_dict()
    target = decoder.state_dict()
    reshaped = sorted(name for name in source if target[name].shape != source[name].shape)
    assert reshaped == ["conv_out.bias", "conv_out.weight"]
    assert all(torch.equal(source[name], target[name]) for name in source if name not in reshaped)


def test_trained_modules_of_tiny(config):
    assert sorted(RefLayer(config).trained_modules()) == [
        "alpha_decoder", "denoiser", "text_encoder", "vae", "visibility_decoder",
    ]


def test_sd3_medium_preset_values():
    config = sd3_medium("/models/sd3")
    assert config.pretrained == "/models/sd3"
    assert config.vae.latent_channels == 16
    assert config.vae.frozen
    assert config.text.kind == "sd3"
    assert (config.transformer.num_layers, config.transformer.num_attention_heads) == (24, 24)
    assert config.transformer.caption_projection_dim == 1536
    assert config.flow.shift == 3.0
    assert config.train.mixed_precision == "bf16"


def test_sd3_medium_small_width_builds():
    # The sd3-medium code path with random weights: 16 latent channels, a 48 -> 16
    # input conv and the preset's structure at a small width. The SD3 text encoders
    # need the pretrained folder, so an open_clip tower replaces them.
    config = sd3_medium()
    config.resolution = 32
    config.vae = dataclasses.replace(config.vae, block_out_channels=(8, 8, 16, 16), norm_num_groups=4, layers_per_block=1)
    config.text = TextConfig(context_length=8, width=16, heads=2, layers=1, embed_dim=16)
    config.transformer = dataclasses.replace(
        config.transformer, sample_size=4, num_layers=2, attention_head_dim=8, num_attention_heads=2,
        caption_projection_dim=16, pos_embed_max_size=8,
    )
    model = RefLayer(config)
    assert model.denoiser.compress.in_channels == 48
    assert model.denoiser.compress.out_channels == 16
    latent = model.encode(torch.zeros(1, 3, 32, 32))
    assert latent.shape == (1, 16, 4, 4)
    hidden, pooled = model.text_encoder(model.text_encoder.tokenize(["a box"]))
    velocity = model.denoiser(latent, latent, latent, torch.tensor([0.5]), hidden, pooled)
    assert velocity.shape == (1, 16, 4, 4)
    # No pretrained folder: the VAE is built from scratch, so a checkpoint stores it.
    assert "vae" in model.trained_modules()


def test_sd3_text_encoder_without_folder_raises():
    config = sd3_medium()
    with pytest.raises(ValueError, match="pass --pretrained DIR"):
        RefLayer(config)


def test_unknown_preset_raises():
    with pytest.raises(ValueError, match="unknown preset 'huge'; choose one of tiny, sd3-medium"):
        preset("huge")


def test_config_round_trip(config):
    assert ModelConfig.from_dict(config.to_dict()) == config


def test_config_unknown_key_raises(config):
    data = config.to_dict()
    data["train"]["stepz"] = 3
    with pytest.raises(ValueError, match="unknown key stepz in config section 'train'"):
        ModelConfig.from_dict(data)

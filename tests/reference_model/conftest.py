"""Shared fixtures: a small disc split and a configuration small enough for seconds-long tests."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
import torch

os.environ["HF_HUB_OFFLINE"] = "1"
sys.path.insert(0, str(Path(__file__).parent))

from disc_split import make_disc_split  # noqa: E402

from reference_model.config import ModelConfig, TextConfig, TransformerConfig, VAEConfig, tiny  # noqa: E402


@pytest.fixture(autouse=True)
def single_thread():
    # One thread is the fastest on a shared CPU for networks this small.
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


def small_config() -> ModelConfig:
    """The tiny preset scaled down to 32 px and one transformer layer."""
    config = tiny()
    config.resolution = 32
    config.vae = VAEConfig(block_out_channels=(8, 16), latent_channels=4, norm_num_groups=4)
    config.text = TextConfig(context_length=8, width=16, heads=2, layers=1, embed_dim=16)
    config.transformer = TransformerConfig(
        sample_size=16, patch_size=2, num_layers=1, attention_head_dim=16, num_attention_heads=2,
        caption_projection_dim=32, pos_embed_max_size=16,
    )
    config.train.batch_size = 4
    config.train.vae_batch_size = 2
    config.train.vae_steps = 2
    config.train.steps = 3
    config.train.warmup_steps = 1
    config.train.log_every = 1
    config.train.checkpoint_every = 2
    config.sample.steps = 3
    return config


@pytest.fixture
def config() -> ModelConfig:
    return small_config()


@pytest.fixture(scope="session")
def disc_split_path(tmp_path_factory) -> Path:
    return make_disc_split(tmp_path_factory.mktemp("split") / "discs", scenes=2, size=40, seed=3)

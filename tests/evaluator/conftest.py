"""Shared fixtures of the evaluator tests: stand-in weights, the tiny config, small splits."""

from __future__ import annotations

import os

import pytest
import torch

# Nothing in these tests may download weights; open_clip and huggingface_hub honour this.
os.environ["HF_HUB_OFFLINE"] = "1"
# Test processes share the cores with each other. One intra-op thread per process avoids
# oversubscription, which slowed the small forward passes here tenfold.
torch.set_num_threads(1)


@pytest.fixture(scope="session")
def tiny_config():
    from evaluator.config import load_config

    return load_config("test-tiny")


@pytest.fixture(scope="session")
def stand_in_weights(tmp_path_factory):
    """A weights folder of deterministic stand-ins for test-tiny, written by the CLI."""
    from evaluator.cli import main

    folder = tmp_path_factory.mktemp("weights")
    assert main(["weights", "make-test", "--dir", str(folder), "--config", "test-tiny"]) == 0
    return folder


@pytest.fixture(scope="session")
def scoring_context(tiny_config, stand_in_weights):
    """Loaded networks shared by the pipeline tests, on the CPU."""
    from evaluator.pipeline import ScoringContext

    return ScoringContext(tiny_config, stand_in_weights, "cpu")

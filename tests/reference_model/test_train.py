import json
import logging
import shutil

import pytest
import torch
from torch.utils.data import default_collate

from evaluator.split import open_split
from reference_model import flow
from reference_model.checkpoint import list_checkpoints, read_checkpoint_info
from reference_model.data import LayerDataset
from reference_model.networks import RefLayer
from reference_model.train import DenoiserStage, Trainer, train


def test_loss_falls_when_overfitting_one_batch(config, disc_split_path):
    torch.manual_seed(0)
    model = RefLayer(config)
    model.vae.requires_grad_(False)
    dataset = LayerDataset(open_split(disc_split_path), config.resolution)
    batch = default_collate([dataset[i] for i in range(4)])
    tokens = model.text_encoder.tokenize(batch["text"])
    generator = torch.Generator().manual_seed(0)
    t = flow.sample_timesteps(4, config.flow, generator)
    noise = torch.randn((4, 4, 16, 16), generator=generator)
    stage = DenoiserStage(model)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=2e-3)

    losses = []
    for _ in range(25):
        loss = stage(batch, tokens, t, noise)["loss"]
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(float(loss.detach()))
    assert losses[-1] < 0.5 * losses[0]


def test_train_writes_checkpoints_and_final(config, disc_split_path, tmp_path):
    final = train(config, disc_split_path, tmp_path / "run")

    assert (final / "model.safetensors").is_file()
    info = read_checkpoint_info(final)
    assert info["step"] == 5
    assert info["stage"] == "denoiser"
    # The VAE stage fitted the latent normalisation and the config records it.
    assert info["config"]["vae"]["scaling_factor"] != 1.0
    steps = [path.name for path in list_checkpoints(tmp_path / "run")]
    assert steps == ["step_0000004", "step_0000005"]
    records = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [record["step"] for record in records] == [1, 2, 3, 4, 5]
    assert {"loss", "flow", "alpha", "visibility", "lr", "steps_per_s"} <= set(records[-1])


def test_resume_continues_from_latest(config, disc_split_path, tmp_path):
    train(config, disc_split_path, tmp_path / "run")
    config.train.steps = 5
    trainer = Trainer(config, disc_split_path, tmp_path / "run", resume=True)
    assert trainer.step == 5
    final = trainer.run()
    assert read_checkpoint_info(final)["step"] == 7
    assert [record["step"] for record in map(json.loads, (tmp_path / "run" / "metrics.jsonl").read_text().splitlines())][-2:] == [6, 7]


def test_resume_without_checkpoint_raises(config, disc_split_path, tmp_path):
    with pytest.raises(FileNotFoundError, match="contains no checkpoint; drop --resume"):
        Trainer(config, disc_split_path, tmp_path / "empty", resume=True)


def test_training_without_latent_cache(config, disc_split_path, tmp_path):
    config.train.cache_latents = False
    config.train.alpha_batch_size = 0
    config.train.visibility_batch_size = 0
    final = train(config, disc_split_path, tmp_path / "run")
    assert read_checkpoint_info(final)["step"] == 5


def foreground_only_split(source, folder):
    """Copy a split and keep only its foreground samples in the manifest."""
    shutil.copytree(source, folder)
    manifest = folder / "manifest.jsonl"
    lines = [line for line in manifest.read_text().splitlines() if json.loads(line)["layer_kind"] == "foreground"]
    manifest.write_text("\n".join(lines) + "\n")
    return folder


def test_foreground_batch_reaches_visibility_decoder(config, disc_split_path):
    torch.manual_seed(0)
    model = RefLayer(config)
    model.vae.requires_grad_(False)
    dataset = LayerDataset(open_split(disc_split_path), config.resolution)
    foreground = [index for index, sample in enumerate(dataset.samples) if sample.layer_kind == "foreground"]
    batch = default_collate([dataset[index] for index in foreground[:2]])
    tokens = model.text_encoder.tokenize(batch["text"])
    losses = DenoiserStage(model)(batch, tokens, torch.tensor([0.3, 0.7]), torch.randn(2, 4, 16, 16))
    losses["loss"].backward()

    assert float(losses["visibility"].detach()) == 0.0
    gradients = [param.grad for param in model.visibility_decoder.parameters()]
    assert all(gradient is not None for gradient in gradients)
    assert all(not gradient.any() for gradient in gradients)


def test_checkpoint_records_background_examples(config, disc_split_path, tmp_path):
    final = train(config, disc_split_path, tmp_path / "run")
    expected = sum(sample.layer_kind == "background" for sample in open_split(disc_split_path).samples)
    assert expected > 0
    assert read_checkpoint_info(final)["background_examples"] == expected


def test_foreground_only_training_warns(config, disc_split_path, tmp_path, caplog):
    split = foreground_only_split(disc_split_path, tmp_path / "foreground")
    with caplog.at_level(logging.WARNING, logger="reference_model.train"):
        final = train(config, split, tmp_path / "run")
    assert read_checkpoint_info(final)["background_examples"] == 0
    assert f"{split} has no background sample, so the visibility decoder will not learn; predict will " \
        "estimate the visible pixels of background layers from the colours instead" in caplog.messages

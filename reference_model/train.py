"""The RefLayer training loop, run through accelerate on a CPU, one GPU or many.

Training has two stages, counted by one global step:

1. `vae` (steps 0 .. vae_steps - 1, only for a VAE built from scratch): the VAE
   learns to reconstruct images, canvases and layer RGBs. At its end the latent
   normalisation is fitted so that normalised latents have unit variance.
2. `denoiser` (the next `steps` steps): with the VAE frozen, the denoiser (and the
   text encoder when it is trainable) learns rectified flow matching, the alpha
   decoder learns layer latent -> alpha and the visibility decoder learns, on the
   background examples, image latent -> the background's visibility, with EMA
   weights kept for inference. With
   `cache_latents` every example is encoded once before the first step.

A checkpoint is written every `checkpoint_every` steps and at the end of each
stage; `resume=True` continues from the run's latest checkpoint.
"""

from __future__ import annotations

import json
import logging
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import torch
from accelerate import Accelerator
from safetensors.torch import load_file
from torch import nn
from torch.utils.data import DataLoader
from tqdm import tqdm

from evaluator.split import open_split
from reference_model import flow
from reference_model.canvas import empty_canvas
from reference_model.checkpoint import (
    export_inference,
    list_checkpoints,
    load_optimizer_state,
    load_weights,
    read_checkpoint_info,
    save_checkpoint,
)
from reference_model.config import ModelConfig
from reference_model.data import LayerDataset
from reference_model.networks import RefLayer

logger = logging.getLogger(__name__)


class VAEStage(nn.Module):
    """Reconstruction loss of the VAE on images, canvases and layer RGBs."""

    def __init__(self, model: RefLayer):
        super().__init__()
        self.vae = model.vae
        self.kl_weight = model.config.vae.kl_weight

    def forward(self, pixels: torch.Tensor) -> dict[str, torch.Tensor]:
        posterior = self.vae.encode(pixels).latent_dist
        reconstruction = self.vae.decode(posterior.sample()).sample
        mse = nn.functional.mse_loss(reconstruction.float(), pixels.float())
        kl = posterior.kl().mean()
        return {"loss": mse + self.kl_weight * kl, "mse": mse}


class DenoiserStage(nn.Module):
    """Flow matching loss of the denoiser plus the alpha and visibility decoders' losses, for one batch.

    The visibility loss covers the batch's background examples and is 0 in a batch
    without one.
    """

    def __init__(self, model: RefLayer):
        super().__init__()
        self.model = model

    def forward(self, batch: dict, tokens: dict, t: torch.Tensor, noise: torch.Tensor) -> dict[str, torch.Tensor]:
        """Return the losses; latents come from `batch["latents"]` when cached, else from the VAE."""
        model = self.model
        if "latents" in batch:
            layer_latent, image_latent, canvas_latent = batch["latents"]
        else:
            with torch.no_grad():
                layer_latent = model.encode(batch["layer_rgb"])
                image_latent, canvas_latent = model.encode(torch.cat([batch["image"], batch["canvas"]])).chunk(2)
        hidden, pooled = model.text_encoder(tokens)

        x_t = flow.interpolate(layer_latent, noise, t)
        velocity = model.denoiser(x_t, image_latent, canvas_latent, t, hidden, pooled)
        flow_loss = flow.flow_loss(velocity, layer_latent, noise)

        count = model.config.train.alpha_batch_size or layer_latent.shape[0]
        logits = model.decode_alpha_logits(layer_latent[:count])
        alpha_loss = nn.functional.binary_cross_entropy_with_logits(logits.float(), batch["alpha"][:count].float())

        background = batch["background"].to(image_latent.device)
        if bool(background.any()):
            logits = model.decode_visibility_logits(image_latent[background])
            visibility_loss = nn.functional.binary_cross_entropy_with_logits(
                logits.float(), batch["visibility"][background].float()
            )
        else:
            # A zero loss that still reaches every visibility decoder weight: distributed
            # data parallel training fails on a step that leaves trained weights without a gradient.
            visibility_loss = model.decode_visibility_logits(image_latent[:1]).float().sum() * 0.0
        train = model.config.train
        loss = flow_loss + train.alpha_loss_weight * alpha_loss + train.visibility_loss_weight * visibility_loss
        return {"loss": loss, "flow": flow_loss, "alpha": alpha_loss, "visibility": visibility_loss}


class EMA:
    """Exponential moving average of parameters, keyed by their names in RefLayer."""

    def __init__(self, named_parameters: list[tuple[str, nn.Parameter]], decay: float):
        self.decay = decay
        self.parameters = dict(named_parameters)
        self.shadow = {name: param.detach().clone().float() for name, param in named_parameters}

    @torch.no_grad()
    def update(self) -> None:
        for name, param in self.parameters.items():
            self.shadow[name].lerp_(param.detach().float(), 1 - self.decay)

    def load(self, state: dict[str, torch.Tensor]) -> None:
        missing = sorted(set(self.shadow) - set(state))
        if missing:
            raise KeyError(f"EMA state lacks {len(missing)} parameters, first {missing[0]!r}; the checkpoint is from another config")
        for name in self.shadow:
            self.shadow[name].copy_(state[name])


def _batches(loader: DataLoader) -> Iterator[dict]:
    while True:
        yield from loader


def _draw_dropout(size: int, config, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Draw classifier-free guidance dropout: bool (size,) masks for the text and the canvas."""
    drop_all = torch.rand(size, generator=generator) < config.drop_all_prob
    drop_text = drop_all | (torch.rand(size, generator=generator) < config.drop_text_prob)
    drop_canvas = drop_all | (torch.rand(size, generator=generator) < config.drop_canvas_prob)
    return drop_text, drop_canvas


class LatentCache:
    """Latents of every training example, encoded once by the frozen VAE."""

    @torch.no_grad()
    def __init__(self, model: RefLayer, dataset: LayerDataset, device: torch.device, chunk: int = 32):
        started = time.perf_counter()
        layers, images, canvases = [], [], []
        for start in range(0, len(dataset), chunk):
            items = [dataset[index] for index in range(start, min(start + chunk, len(dataset)))]
            for key, out in (("layer_rgb", layers), ("image", images), ("canvas", canvases)):
                out.append(model.encode(torch.stack([item[key] for item in items]).to(device)))
        self.layer = torch.cat(layers)
        self.image = torch.cat(images)
        self.canvas = torch.cat(canvases)
        empty = torch.from_numpy(_empty_canvas_tensor(model.config.resolution))[None].to(device)
        self.empty_canvas = model.encode(empty)[0]
        logger.info("cached the latents of %d examples in %.1f s", len(dataset), time.perf_counter() - started)

    def lookup(self, indices: torch.Tensor, drop_canvas: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """Return (layer, image, canvas) latents of a batch; dropped canvases are the empty canvas."""
        indices = indices.to(self.layer.device)
        canvas = self.canvas[indices].clone()
        canvas[drop_canvas.to(canvas.device)] = self.empty_canvas
        return self.layer[indices], self.image[indices], canvas


class Trainer:
    """One training run: the model, the data, the run folder and the step counter."""

    def __init__(self, config: ModelConfig, data: str | Path, out: str | Path, resume: bool = False):
        self.out = Path(out)
        self.accelerator = Accelerator(mixed_precision=config.train.mixed_precision)
        self.resume_from = None
        if resume:
            checkpoints = list_checkpoints(self.out)
            if not checkpoints:
                raise FileNotFoundError(f"--resume given but {self.out / 'checkpoints'} contains no checkpoint; drop --resume to start a new run")
            self.resume_from = checkpoints[-1]
            saved = ModelConfig.from_dict(read_checkpoint_info(self.resume_from)["config"])
            saved.train.steps = config.train.steps
            config = saved
        torch.manual_seed(config.train.seed)
        self.config = config
        self.model = RefLayer(config)
        self.step = 0
        if self.resume_from is not None:
            info = read_checkpoint_info(self.resume_from)
            load_weights(self.model, load_file(self.resume_from / "model.safetensors"))
            self.step = info["step"]
            logger.info("resuming from %s at step %d", self.resume_from, self.step)

        self.split = open_split(data)
        # Decoded examples stay in memory only for small splits, the same ones whose latents are cached.
        self.dataset = LayerDataset(self.split, config.resolution, cache=config.train.cache_latents)
        self.background_examples = sum(sample.layer_kind == "background" for sample in self.dataset.samples)
        if self.background_examples == 0:
            logger.warning(
                "%s has no background sample, so the visibility decoder will not learn; predict will "
                "estimate the visible pixels of background layers from the colours instead", self.split.path,
            )
        self.vae_steps = config.train.vae_steps if "vae" in self.model.trained_modules() else 0
        self.total_steps = self.vae_steps + config.train.steps
        self.out.mkdir(parents=True, exist_ok=True)
        self.metrics_path = self.out / "metrics.jsonl"

    def run(self) -> Path:
        """Train both stages to the end and export the inference checkpoint to <out>/final."""
        logger.info(
            "training %s on %s (%d examples) for %d VAE and %d denoiser steps on %s",
            self.config.preset, self.split.path, len(self.dataset), self.vae_steps,
            self.config.train.steps, self.accelerator.device,
        )
        if self.step < self.vae_steps:
            self._run_vae_stage()
        self._run_denoiser_stage()
        final = self.out / "final"
        if self.accelerator.is_main_process:
            export_inference(list_checkpoints(self.out)[-1], final)
            logger.info("exported the EMA weights to %s", final)
        self.accelerator.wait_for_everyone()
        return final

    def _loader(self, batch_size: int) -> DataLoader:
        generator = torch.Generator().manual_seed(self.config.train.seed + self.step)
        batch_size = min(batch_size, len(self.dataset))
        return DataLoader(
            self.dataset, batch_size=batch_size, shuffle=True, drop_last=True,
            num_workers=self.config.train.num_workers, generator=generator,
        )

    def _optimizer(self, parameters: list[nn.Parameter], learning_rate: float, resume_stage: str):
        optimizer = torch.optim.AdamW(parameters, lr=learning_rate, weight_decay=self.config.train.weight_decay)
        if self.resume_from is not None and read_checkpoint_info(self.resume_from)["stage"] == resume_stage:
            load_optimizer_state(self.resume_from, optimizer)
        return optimizer

    def _schedule(self, optimizer, stage_start: int) -> torch.optim.lr_scheduler.LambdaLR:
        warmup = max(1, self.config.train.warmup_steps)
        return torch.optim.lr_scheduler.LambdaLR(
            optimizer, lambda index: min(1.0, (self.step - stage_start + 1) / warmup)
        )

    def _run_vae_stage(self) -> None:
        model = self.model
        model.requires_grad_(False)
        model.vae.requires_grad_(True)
        optimizer = self._optimizer(list(model.vae.parameters()), self.config.train.vae_learning_rate, "vae")
        stage, optimizer, loader = self.accelerator.prepare(VAEStage(model), optimizer, self._loader(self.config.train.vae_batch_size))
        scheduler = self._schedule(optimizer, 0)
        batches = _batches(loader)

        def train_step() -> dict[str, torch.Tensor]:
            batch = next(batches)
            pixels = torch.cat([batch["image"], batch["canvas"], batch["layer_rgb"]])
            return stage(pixels)

        self._loop("vae", self.vae_steps, train_step, optimizer, scheduler, list(model.vae.parameters()), ema=None)
        self._fit_latent_scale()
        if self.accelerator.is_main_process:
            self._save("vae", optimizer=None, ema=None)

    @torch.no_grad()
    def _fit_latent_scale(self, examples: int = 128) -> None:
        """Set shift_factor and scaling_factor so that normalised latents have mean 0 and std 1.

        Every process reads the same first examples of the dataset, so all agree.
        """
        vae = self.model.vae
        latents = []
        for start in range(0, min(examples, len(self.dataset)), 32):
            items = [self.dataset[index] for index in range(start, min(start + 32, examples, len(self.dataset)))]
            pixels = torch.cat([torch.stack([item[key] for item in items]) for key in ("image", "canvas", "layer_rgb")])
            latents.append(vae.encode(pixels.to(self.accelerator.device)).latent_dist.mode().float().cpu())
        stacked = torch.cat(latents)
        shift = float(stacked.mean())
        scale = float(1.0 / stacked.std())
        vae.register_to_config(shift_factor=shift, scaling_factor=scale)
        self.config.vae.shift_factor = shift
        self.config.vae.scaling_factor = scale
        logger.info("fitted the latent normalisation: shift_factor %.4f, scaling_factor %.4f", shift, scale)

    def _run_denoiser_stage(self) -> None:
        model = self.model
        model.requires_grad_(False)
        trainable_modules = [model.denoiser, model.alpha_decoder, model.visibility_decoder]
        if self.config.text.kind == "open_clip" and self.config.text.trainable:
            trainable_modules.append(model.text_encoder)
        for module in trainable_modules:
            module.requires_grad_(True)
        if not self.config.vae.frozen:
            model.vae.requires_grad_(True)
        named = [(name, param) for name, param in model.named_parameters() if param.requires_grad]
        parameters = [param for _, param in named]

        frozen_dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(self.config.train.mixed_precision, torch.float32)
        if self.config.vae.frozen:
            model.vae.to(self.accelerator.device, dtype=frozen_dtype)
        if not any(param.requires_grad for param in model.text_encoder.parameters()):
            model.text_encoder.to(self.accelerator.device, dtype=frozen_dtype)

        ema = EMA(named, self.config.train.ema_decay)
        if self.resume_from is not None and (self.resume_from / "ema.safetensors").is_file():
            ema.load(load_file(self.resume_from / "ema.safetensors"))
        optimizer = self._optimizer(parameters, self.config.train.learning_rate, "denoiser")
        stage, optimizer, loader = self.accelerator.prepare(DenoiserStage(model), optimizer, self._loader(self.config.train.batch_size))
        scheduler = self._schedule(optimizer, self.vae_steps)
        batches = _batches(loader)
        text_encoder = model.text_encoder
        empty = torch.from_numpy(_empty_canvas_tensor(self.config.resolution))
        cache = None
        if self.config.train.cache_latents and self.config.vae.frozen:
            model.eval()
            cache = LatentCache(model, self.dataset, self.accelerator.device)
            model.train()

        def train_step() -> dict[str, torch.Tensor]:
            batch = next(batches)
            size = batch["image"].shape[0]
            generator = torch.Generator().manual_seed(self.config.train.seed * 1_000_003 + self.step)
            drop_text, drop_canvas = _draw_dropout(size, self.config.flow, generator)
            if cache is not None:
                batch["latents"] = cache.lookup(batch["index"], drop_canvas)
            else:
                batch["canvas"][drop_canvas.to(batch["canvas"].device)] = empty.to(batch["canvas"])
            texts = ["" if dropped else text for text, dropped in zip(batch["text"], drop_text.tolist(), strict=True)]
            tokens = {key: value.to(self.accelerator.device) for key, value in text_encoder.tokenize(texts).items()}
            t = flow.sample_timesteps(size, self.config.flow, generator, self.accelerator.device)
            noise = torch.randn(self._latent_shape(size), generator=generator).to(self.accelerator.device)
            return stage(batch, tokens, t, noise)

        self._loop("denoiser", self.total_steps, train_step, optimizer, scheduler, parameters, ema)

    def _latent_shape(self, size: int) -> tuple[int, ...]:
        factor = 2 ** (len(self.model.vae.config.block_out_channels) - 1)
        side = self.config.resolution // factor
        return (size, self.model.vae.config.latent_channels, side, side)

    def _loop(self, stage_name, end_step, train_step, optimizer, scheduler, parameters, ema) -> None:
        """Run steps until `end_step`: forward, backward, clip, step, EMA, log, checkpoint."""
        train = self.config.train
        accelerator = self.accelerator
        progress = tqdm(
            total=end_step, initial=self.step, desc=stage_name,
            disable=not accelerator.is_main_process, dynamic_ncols=True,
        )
        started, started_step = time.perf_counter(), self.step
        while self.step < end_step:
            losses = train_step()
            accelerator.backward(losses["loss"])
            if train.grad_clip > 0:
                accelerator.clip_grad_norm_(parameters, train.grad_clip)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            if ema is not None:
                ema.update()
            self.step += 1
            progress.update(1)

            if self.step % train.log_every == 0 or self.step == end_step:
                rate = (self.step - started_step) / (time.perf_counter() - started)
                values = {name: float(value.detach()) for name, value in losses.items()}
                learning_rate = scheduler.get_last_lr()[0]
                progress.set_postfix(loss=f"{values['loss']:.4f}", lr=f"{learning_rate:.2e}", it_s=f"{rate:.2f}")
                self._log_metrics(stage_name, values, learning_rate, rate)
            if self.step % train.checkpoint_every == 0 and self.step < end_step and accelerator.is_main_process:
                self._save(stage_name, optimizer, ema)
        progress.close()
        if stage_name == "denoiser" and accelerator.is_main_process:
            self._save(stage_name, optimizer, ema)
        accelerator.wait_for_everyone()

    def _log_metrics(self, stage_name: str, values: dict, learning_rate: float, rate: float) -> None:
        if not self.accelerator.is_main_process:
            return
        logger.info(
            "%s step %d: loss %.4f, lr %.2e, %.2f steps/s", stage_name, self.step, values["loss"], learning_rate, rate
        )
        record = {"stage": stage_name, "step": self.step, "lr": learning_rate, "steps_per_s": rate, **values}
        with open(self.metrics_path, "a", encoding="utf-8") as handle:
            handle.write(json.dumps(record) + "\n")

    def _save(self, stage_name: str, optimizer, ema: EMA | None) -> None:
        directory = self.out / "checkpoints" / f"step_{self.step:07d}"
        save_checkpoint(
            directory, self.model, self.step, stage_name, ema=ema.shadow if ema else None, optimizer=optimizer,
            info={"background_examples": self.background_examples},
        )
        for old in list_checkpoints(self.out)[: -self.config.train.keep_checkpoints]:
            shutil.rmtree(old)


def _empty_canvas_tensor(resolution: int):
    """Return the empty canvas as (3, R, R) in [-1, 1]."""
    return (empty_canvas(resolution).transpose(2, 0, 1) * 2 - 1).copy()


def train(config: ModelConfig, data: str | Path, out: str | Path, resume: bool = False) -> Path:
    """Train RefLayer on the split at `data` into the run folder `out`; returns <out>/final."""
    return Trainer(config, data, out, resume).run()

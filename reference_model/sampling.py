"""Inference: sample layer latents with FlowMatchEulerDiscreteScheduler, decode RGBA.

`background_visibility` decodes, from the image alone, where the image shows the
background; `predict` uses it for background layers.

Candidate k of a sample starts from the noise of `torch.Generator("cpu")` seeded
with seeds[k], so a fixed seed gives the same candidate on any device up to
floating-point differences. Classifier-free guidance mixes the velocity with the
text and canvas (conditional) and without both (empty text, empty canvas):
v = v_uncond + guidance_scale * (v_cond - v_uncond); a scale of 1 skips the
unconditional pass.
"""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image

from reference_model.canvas import empty_canvas
from reference_model.flow import make_scheduler
from reference_model.networks import RefLayer


def latent_shape(model: RefLayer) -> tuple[int, int, int]:
    """(C, h, w) of the model's latents."""
    factor = 2 ** (len(model.vae.config.block_out_channels) - 1)
    side = model.config.resolution // factor
    return (model.vae.config.latent_channels, side, side)


def initial_noise(model: RefLayer, seeds: list[int]) -> torch.Tensor:
    """Noise (n, C, h, w), one seeded CPU generator per candidate."""
    shape = latent_shape(model)
    return torch.cat([torch.randn((1, *shape), generator=torch.Generator().manual_seed(seed)) for seed in seeds])


@torch.no_grad()
def sample_latents(
    model: RefLayer,
    image: torch.Tensor,
    canvas: torch.Tensor,
    text: str,
    seeds: list[int],
    steps: int,
    guidance_scale: float,
) -> torch.Tensor:
    """Sample normalised layer latents (n, C, h, w) for one image (3, R, R) and canvas (3, R, R)."""
    if steps < 1:
        raise ValueError(f"steps must be at least 1, got {steps}")
    device = next(model.denoiser.parameters()).device
    count = len(seeds)
    guided = guidance_scale != 1.0

    # 1. Encode the conditions once; the unconditional half has an empty text and canvas.
    empty = torch.from_numpy(empty_canvas(model.config.resolution).transpose(2, 0, 1).copy()) * 2 - 1
    canvases = [canvas, empty] if guided else [canvas]
    conditions = model.encode(torch.stack([image, *canvases]).to(device))
    image_latent = conditions[:1].expand(count, -1, -1, -1)
    canvas_latent = conditions[1:].repeat_interleave(count, dim=0)
    texts = [text] * count + ([""] * count if guided else [])
    tokens = {key: value.to(device) for key, value in model.text_encoder.tokenize(texts).items()}
    hidden, pooled = model.text_encoder(tokens)
    if guided:
        image_latent = torch.cat([image_latent, image_latent])

    # 2. Integrate the flow from t = 1 (noise) to t = 0 (data).
    scheduler = make_scheduler(model.config.flow)
    scheduler.set_timesteps(steps, device=device)
    x = initial_noise(model, seeds).to(device)
    for timestep in scheduler.timesteps:
        model_input = torch.cat([x, x]) if guided else x
        t = (timestep / scheduler.config.num_train_timesteps).expand(model_input.shape[0]).to(x.dtype)
        velocity = model.denoiser(model_input, image_latent, canvas_latent, t, hidden, pooled)
        if guided:
            conditional, unconditional = velocity.chunk(2)
            velocity = unconditional + guidance_scale * (conditional - unconditional)
        x = scheduler.step(velocity, timestep, x).prev_sample
    return x


@torch.no_grad()
def decode_layers(model: RefLayer, latents: torch.Tensor) -> np.ndarray:
    """Decode latents to RGBA float32 (n, R, R, 4) in [0, 1], RGB as composited over mid-gray."""
    rgb = (model.decode_rgb(latents).float().clamp(-1, 1) + 1) / 2
    alpha = torch.sigmoid(model.decode_alpha_logits(latents).float())
    return torch.cat([rgb, alpha], dim=1).permute(0, 2, 3, 1).cpu().numpy()


def to_layer_image(rgba: np.ndarray, width: int, height: int) -> np.ndarray:
    """Stretch one decoded layer (R, R, 4) in [0, 1] to uint8 (height, width, 4), straight alpha.

    The RGB stays the mid-gray composite the model predicts. Where alpha is 1 that
    is the layer's colour, and where alpha is 0 the colour does not matter.
    """
    channels = [
        np.asarray(Image.fromarray(rgba[..., c].astype(np.float32), mode="F").resize((width, height), Image.BICUBIC))
        for c in range(4)
    ]
    stacked = np.clip(np.stack(channels, axis=-1), 0.0, 1.0)
    return np.round(stacked * 255).astype(np.uint8)


@torch.no_grad()
def background_visibility(model: RefLayer, image: torch.Tensor, width: int, height: int) -> np.ndarray:
    """Return the probability that the image (3, R, R) shows the background at each pixel: float32 (height, width).

    It depends on the image only, so every candidate of a sample shares it.
    """
    device = next(model.visibility_decoder.parameters()).device
    logits = model.decode_visibility_logits(model.encode(image[None].to(device)))
    probability = torch.sigmoid(logits.float())[0, 0].cpu().numpy()
    resized = Image.fromarray(probability.astype(np.float32), mode="F").resize((width, height), Image.BICUBIC)
    return np.clip(np.asarray(resized, dtype=np.float32), 0.0, 1.0)


def generate(
    model: RefLayer,
    image: torch.Tensor,
    canvas: torch.Tensor,
    text: str,
    seeds: list[int],
    steps: int,
    guidance_scale: float,
    width: int,
    height: int,
) -> list[np.ndarray]:
    """Candidates for one sample, one per seed: uint8 RGBA (height, width, 4) each."""
    latents = sample_latents(model, image, canvas, text, seeds, steps, guidance_scale)
    return [to_layer_image(layer, width, height) for layer in decode_layers(model, latents)]

"""Rectified flow matching.

Convention: t in [0, 1], t = 0 is data and t = 1 is noise,

    x_t = (1 - t) * x_0 + t * noise,    velocity v = dx_t/dt = noise - x_0.

This is the convention of diffusers' `FlowMatchEulerDiscreteScheduler`: its sigmas
run from 1 down to 0, its timesteps are sigma * 1000, and its Euler step
x <- x + (sigma_next - sigma) * v moves along the same straight line towards x_0
when v is the velocity above.
"""

from __future__ import annotations

import torch
from diffusers import FlowMatchEulerDiscreteScheduler

from reference_model.config import FlowConfig


def sample_timesteps(batch: int, config: FlowConfig, generator: torch.Generator | None = None, device=None) -> torch.Tensor:
    """Draw t (batch,) from the logit-normal distribution sigmoid(N(mean, std))."""
    normal = torch.randn(batch, generator=generator)
    t = torch.sigmoid(config.logit_normal_mean + config.logit_normal_std * normal)
    return t.to(device) if device is not None else t


def interpolate(x_0: torch.Tensor, noise: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """x_t = (1 - t) x_0 + t noise, with t (B,) broadcast over the other dimensions."""
    t = t.view(-1, *([1] * (x_0.dim() - 1))).to(x_0.dtype)
    return (1 - t) * x_0 + t * noise


def velocity_target(x_0: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
    return noise - x_0


def flow_loss(predicted: torch.Tensor, x_0: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
    """Mean squared error between the predicted and the true velocity."""
    target = velocity_target(x_0, noise)
    return torch.nn.functional.mse_loss(predicted.float(), target.float())


def make_scheduler(config: FlowConfig) -> FlowMatchEulerDiscreteScheduler:
    """The sampling scheduler, with the config's timestep shift."""
    return FlowMatchEulerDiscreteScheduler(num_train_timesteps=1000, shift=config.shift)

import torch

from reference_model.config import FlowConfig
from reference_model.flow import interpolate, make_scheduler, sample_timesteps, velocity_target


def test_interpolation_endpoints():
    x_0 = torch.randn(3, 4, 8, 8)
    noise = torch.randn(3, 4, 8, 8)
    assert torch.equal(interpolate(x_0, noise, torch.zeros(3)), x_0)
    assert torch.equal(interpolate(x_0, noise, torch.ones(3)), noise)


def test_velocity_is_time_derivative():
    x_0 = torch.randn(2, 4, 8, 8)
    noise = torch.randn(2, 4, 8, 8)
    t, dt = torch.full((2,), 0.3), 1e-3
    finite = (interpolate(x_0, noise, t + dt) - interpolate(x_0, noise, t)) / dt
    assert torch.allclose(finite, velocity_target(x_0, noise), atol=1e-2)


def test_logit_normal_timesteps_in_unit_interval():
    t = sample_timesteps(10000, FlowConfig(), torch.Generator().manual_seed(0))
    assert t.min() > 0
    assert t.max() < 1
    assert abs(float(t.median()) - 0.5) < 0.02


def test_schedule_runs_from_noise_to_data():
    scheduler = make_scheduler(FlowConfig(shift=3.0))
    scheduler.set_timesteps(10)
    sigmas = scheduler.sigmas
    assert float(sigmas[0]) == 1.0
    assert float(sigmas[-1]) == 0.0
    assert torch.all(sigmas[1:] < sigmas[:-1])
    assert torch.allclose(scheduler.timesteps, sigmas[:-1] * 1000)


def test_euler_steps_with_true_velocity_recover_data():
    # On a straight path the exact velocity is constant, so Euler integration is exact.
    x_0 = torch.randn(2, 4, 8, 8)
    noise = torch.randn(2, 4, 8, 8)
    scheduler = make_scheduler(FlowConfig())
    scheduler.set_timesteps(5)
    x = noise.clone()
    for timestep in scheduler.timesteps:
        x = scheduler.step(velocity_target(x_0, noise), timestep, x).prev_sample
    assert torch.allclose(x, x_0, atol=1e-5)

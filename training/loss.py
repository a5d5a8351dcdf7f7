"""The denoising loss in the checkpoint's own parameterization, through the host's model sampling.

The host defines the forward process (``model_sampling.noise_scaling``: x = x0 + sigma * noise for
EPS and V models), the discrete timesteps (``model_sampling.sigma(t)`` for t in 0..999) and what the
network predicts: ``BaseModel.apply_model`` returns the denoised estimate D through
``model_sampling.calculate_denoised``. ``prediction`` inverts that map, so the same function gives
the network's own output from D and the target from x0:

    EPS: pred = (x - D) / sigma                                          target = noise
    V:   pred = (x sd^2 / (sigma^2 + sd^2) - D) sqrt(sigma^2 + sd^2) / (sigma sd)   target = v

The loss is the mean squared error between the two, optionally weighted per pixel by a subject mask.
"""
from __future__ import annotations

import hashlib

import torch

from .errors import TrainingConfigError


def parameterization(model_sampling) -> str:
    """"eps" or "v" for the host's model sampling; other kinds (EDM, flow) are not supported."""
    import comfy.model_sampling as ms

    if not isinstance(model_sampling, ms.ModelSamplingDiscrete) or type(model_sampling).timestep is not \
            ms.ModelSamplingDiscrete.timestep:
        raise TrainingConfigError(
            f"the checkpoint's model sampling {type(model_sampling).__name__} is not the discrete 1000-step "
            "schedule of SD1.5/SDXL; train on an SD1.5 or SDXL (eps or v-prediction) checkpoint")
    if isinstance(model_sampling, (ms.EDM, ms.CONST, ms.X0)) or not isinstance(model_sampling, ms.EPS):
        raise TrainingConfigError(
            f"the checkpoint predicts with {type(model_sampling).__name__}, neither eps nor v: train on an SD1.5 "
            "or SDXL (eps or v-prediction) checkpoint")
    return "v" if isinstance(model_sampling, ms.V_PREDICTION) else "eps"


def prediction(kind: str, sigma: torch.Tensor, x_noisy: torch.Tensor, denoised: torch.Tensor,
               sigma_data: float = 1.0) -> torch.Tensor:
    """The network output that makes ``calculate_denoised`` give ``denoised``; sigma: [B]."""
    s = sigma.reshape(-1, *([1] * (x_noisy.ndim - 1))).to(x_noisy)
    if kind == "eps":
        return (x_noisy - denoised) / s
    total = s ** 2 + sigma_data ** 2
    return (x_noisy * sigma_data ** 2 / total - denoised) * total.sqrt() / (s * sigma_data)


def row_generator(*parts) -> torch.Generator:
    """A CPU generator seeded by ``parts`` (seed, epoch, sample position, ...): the same row always
    draws the same noise and timestep, whatever the batch size, process count or resume point."""
    digest = hashlib.sha256("/".join(map(str, parts)).encode()).digest()
    return torch.Generator().manual_seed(int.from_bytes(digest[:8], "little") & (2 ** 63 - 1))


def draw_sigma_and_noise(model_sampling, shape, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """One row: a timestep uniform over the host's discrete schedule, its sigma, and unit noise."""
    timestep = torch.randint(0, model_sampling.num_timesteps, (1,), generator=generator)
    noise = torch.randn(shape, generator=generator)
    return model_sampling.sigma(timestep).float(), noise


def noisy_input(model_sampling, sigma: torch.Tensor, noise: torch.Tensor, x0: torch.Tensor) -> torch.Tensor:
    """The forward process as the host defines it (``noise_scaling``)."""
    return model_sampling.noise_scaling(sigma, noise, x0)


def denoising_losses(kind: str, sigma, x_noisy, denoised, x0, weight=None) -> torch.Tensor:
    """Per-row mean squared error in the model's parameterization: [B]. ``weight``: [B, 1, h, w]."""
    error = (prediction(kind, sigma, x_noisy, denoised.float()) - prediction(kind, sigma, x_noisy, x0)) ** 2
    if weight is None:
        return error.mean(dim=tuple(range(1, error.ndim)))
    weight = weight.expand_as(error)
    return (error * weight).sum(dim=(1, 2, 3)) / weight.sum(dim=(1, 2, 3)).clamp_min(1e-8)

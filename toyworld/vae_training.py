"""The toy base's VAE: ComfyUI's TAESD architecture (8x down, 4 latent channels), trained from scratch.

An autoencoder on random 32x32 crops of the world's renders (the network is fully convolutional,
so crops cost a quarter of full images and teach the same filters), most of them centred on a pixel
of a subject (identity and looks live there; backgrounds are flat colours and simple textures that
the rest of the crops and the subjects' surroundings teach), with L1 + squared error, a
little noise on the latents (the decoder must tolerate what the diffusion model produces) and a
small penalty that keeps raw latents inside the decoder's input clamp (tanh(x/3)*3).

TAESD's ``vae_scale``/``vae_shift`` then normalise the latents: ComfyUI multiplies what the VAE
encodes by SD1.5's 0.18215 (``latent_formats.SD15``), and with
``vae_scale = 0.18215 sd``, ``vae_shift = -mean / (0.18215 sd)`` the UNet sees latents of mean 0
and std 1 over the training images, while decoding inverts it exactly.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

SD15_LATENT_SCALE = 0.18215


@dataclass(frozen=True)
class VaeTrainConfig:
    steps: int = 1200
    batch: int = 32
    crop: int = 32
    lr: float = 1e-3
    latent_noise: float = 0.05  # relative to the batch's latent std
    latent_penalty: float = 1e-3
    subject_crops: float = 0.75  # share of crops centred on a subject pixel (the rest: uniform)
    seed: int = 0
    bf16: bool = False  # fp32: bf16 autocast is many times slower on CPUs without native bf16 (AVX2 only)


def new_taesd(seed: int):
    import comfy.taesd.taesd

    from .base_model import init_trainable

    vae = comfy.taesd.taesd.TAESD(latent_channels=4)
    init_trainable(vae, seed)
    return vae


def _crops(images: np.ndarray, batch: int, crop: int, rng: np.random.Generator,
           subjects: np.ndarray | None = None, subject_share: float = 0.0) -> torch.Tensor:
    """``batch`` crops of random images: uniform positions, or with probability ``subject_share`` centred
    (as far as the image allows) on a random pixel of the image's subjects (``subjects``: bool [N, H, W];
    an image without subject pixels gets a uniform crop)."""
    n, h, w, _ = images.shape
    idx = rng.integers(0, n, batch)
    ys, xs = rng.integers(0, h - crop + 1, batch), rng.integers(0, w - crop + 1, batch)
    on_subject = rng.random(batch) < subject_share if subject_share > 0 else np.zeros(batch, bool)
    for k in np.flatnonzero(on_subject):
        py, px = np.nonzero(subjects[idx[k]])
        if len(py):
            pick = rng.integers(0, len(py))
            ys[k] = min(max(py[pick] - crop // 2, 0), h - crop)
            xs[k] = min(max(px[pick] - crop // 2, 0), w - crop)
    out = np.stack([images[i, y:y + crop, x:x + crop] for i, y, x in zip(idx, ys, xs)])
    return torch.from_numpy(out).permute(0, 3, 1, 2).float().div_(255)


def train_taesd(images: np.ndarray, config: VaeTrainConfig, progress=None, subjects: np.ndarray | None = None):
    """images: uint8 [N, H, W, 3]; subjects: bool [N, H, W], the union of each image's subject masks (needed
    when ``config.subject_crops`` > 0). Returns the trained ``TAESD`` module (eval mode, normalised)."""
    if config.subject_crops > 0 and (subjects is None or subjects.shape != images.shape[:3]):
        have = "none" if subjects is None else f"shape {tuple(subjects.shape)}"
        raise ValueError(f"subject_crops={config.subject_crops} needs each image's subject mask, bool "
                         f"{tuple(images.shape[:3])} ({have} given): pass subjects=, or set subject_crops=0")
    vae = new_taesd(config.seed)
    enc, dec = vae.taesd_encoder, vae.taesd_decoder
    params = list(enc.parameters()) + list(dec.parameters())
    opt = torch.optim.AdamW(params, lr=config.lr, weight_decay=0.0)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, config.lr, total_steps=config.steps, pct_start=0.05)
    rng = np.random.default_rng(config.seed)
    gen = torch.Generator().manual_seed(config.seed)
    vae.train()
    for step in range(config.steps):
        x = _crops(images, config.batch, config.crop, rng, subjects, config.subject_crops)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=config.bf16):
            z = enc(x)
            noise = torch.randn(z.shape, generator=gen) * (config.latent_noise * z.detach().float().std())
            y = dec(z + noise.to(z.dtype))
        y, z = y.float(), z.float()
        loss = (y - x).abs().mean() + ((y - x) ** 2).mean() + config.latent_penalty * (z ** 2).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        sched.step()
        if progress is not None:
            progress.update(1)
            progress.set_postfix(loss=f"{loss.item():.4f}")
    vae.eval().requires_grad_(False)
    normalise(vae, images)
    return vae


@torch.no_grad()
def raw_latents(vae, images: np.ndarray, batch: int = 256) -> torch.Tensor:
    """The encoder's raw output for uint8 images [N, H, W, 3] -> [N, 4, H/8, W/8] float32."""
    out = []
    for start in range(0, len(images), batch):
        x = torch.from_numpy(images[start:start + batch]).permute(0, 3, 1, 2).float().div_(255)
        out.append(vae.taesd_encoder(x).float())
    return torch.cat(out)


def normalise(vae, images: np.ndarray, count: int = 2048) -> None:
    """Set ``vae_scale``/``vae_shift`` from the raw latents of (up to) ``count`` images."""
    z = raw_latents(vae, images[:count])
    mean, std = float(z.mean()), float(z.std())
    with torch.no_grad():
        vae.vae_scale.fill_(SD15_LATENT_SCALE * std)
        vae.vae_shift.fill_(-mean / (SD15_LATENT_SCALE * std))


@torch.no_grad()
def reconstruction_error(vae, images: np.ndarray) -> float:
    """Mean absolute error (0..1 scale) of encode + decode through TAESD's own scale/shift."""
    x = torch.from_numpy(images).permute(0, 3, 1, 2).float().div_(255)
    y = vae.decode(vae.encode(x * 2 - 1)).add(1).div(2).clamp(0, 1)
    return float((y - x).abs().mean())

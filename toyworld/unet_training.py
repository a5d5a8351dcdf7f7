"""The toy base's UNet, trained from scratch on the world's latents and captions.

The model is ComfyUI's own ``BaseModel`` as loaded from the toy checkpoint, so the training sees
exactly what sampling will: the SD1.5 discrete schedule and eps parameterisation of its
``model_sampling``, ``apply_model``'s input scaling, and the frozen text encoder's conditioning
through ComfyUI's CLIP wrapper. Loss: the trainer's ``denoising_losses`` (eps MSE), timesteps
uniform over 0..999, captions dropped to "" with some probability (for classifier-free guidance),
AdamW with warm-up and cosine decay, and an exponential moving average of the weights that is
what gets saved. ``min_snr_gamma`` > 0 weights each row's loss by min-SNR-gamma (Hang et al., 2023:
``min(SNR, gamma) / SNR`` for eps prediction, SNR = 1 / sigma^2). Off by default: on run 10's data
(4,000 steps, no grounding) gamma 5 changed neither the look gap (shirt 2.97 vs 3.51 %, hat 2.31 vs
2.34 %) nor the sampled looks or placement (README, "Evidence on two CPU cores").

From step ``grounding_from`` on, the grounding loss (``grounding_loss.py``: each grounded word's
attention pulled into its region, capped) is added with ``grounding_weight``. It starts late
because from step 0 it cost the base its placement ("on the left" subjects drawn centred; placement
0.67 vs 1.00), while added to a base that has already learned the layout it kept placement 1.00.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class UNetTrainConfig:
    steps: int = 8000  # run 11: 4,000 more steps raised shirt / hat / pose following by +0.19 / +0.19 / +0.35
    batch: int = 64
    lr: float = 3e-4
    warmup: int = 200
    drop_caption: float = 0.1
    ema: float = 0.999
    seed: int = 0
    bf16: bool = False  # fp32: bf16 autocast is many times slower on CPUs without native bf16 (AVX2 only)
    grounding_weight: float = 0.5  # 0: no grounding loss
    grounding_cap: float = 0.25  # a word's mean share inside its region beyond which it is not pulled further
    grounding_from: int = 2000  # the step from which the grounding loss is added (0: from the start)
    min_snr_gamma: float = 0.0  # > 0: each row's eps loss weighted by min(SNR, gamma) / SNR (measured: no gain)
    look_gap_every: int = 1000  # steps between look-gap measurements (look_gap.py), also after the last; 0: never


def min_snr_weights(sigma: torch.Tensor, gamma: float) -> torch.Tensor:
    """min(SNR, gamma) / SNR per row for eps prediction, SNR = 1 / sigma^2 (ComfyUI's sigma of the
    discrete schedule): min(1, gamma * sigma^2). ``gamma`` 0: ones (the plain eps loss)."""
    if gamma < 0:
        raise ValueError(f"min_snr_gamma must be >= 0 (0: unweighted), got {gamma}")
    if gamma == 0:
        return torch.ones_like(sigma)
    return (gamma * sigma.float() ** 2).clamp(max=1.0)


@torch.no_grad()
def encode_captions(clip, captions: list[str], batch: int = 256) -> torch.Tensor:
    """[U, 77, width] conditioning of each caption through ComfyUI's CLIP (as CLIPTextEncode).

    Captions of one 77-token section are encoded ``batch`` at a time: ComfyUI's ``encode_from_tokens``
    takes a prompt's sections as one batch and joins their outputs along the tokens, so the sections of
    many one-section captions give each caption's conditioning at once (the same weights and attention
    per caption; one call per caption took ~7 of the full base stage's minutes on two cores)."""
    tokens = [clip.tokenize(text) for text in captions]
    for text, t in zip(captions, tokens):
        if any(len(sections) != 1 for sections in t.values()):
            raise ValueError(f"the caption {text!r} is longer than one 77-token section; the base's captions are "
                             "one section each")
    out = []
    for start in range(0, len(tokens), batch):
        chunk = tokens[start:start + batch]
        joined = {key: [t[key][0] for t in chunk] for key in chunk[0]}
        cond = clip.encode_from_tokens(joined).float()
        out.append(cond.reshape(len(chunk), -1, cond.shape[-1]))
    return torch.cat(out)


def _lr_lambda(config: UNetTrainConfig):
    import math

    def factor(step: int) -> float:
        if step < config.warmup:
            return (step + 1) / config.warmup
        progress = (step - config.warmup) / max(1, config.steps - config.warmup)
        return 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))
    return factor


def train_unet(model, latents: torch.Tensor, caption_ids: torch.Tensor, conds: torch.Tensor, empty_id: int,
               config: UNetTrainConfig, progress=None, grounding=None, look_gap=None) -> dict:
    """Train ``model.diffusion_model`` in place (ends holding the EMA weights).

    latents: [N, 4, h, w] as the model takes them (``process_latent_in`` applied); caption_ids: [N]
    rows of ``conds`` [U, 77, width]; ``empty_id``: the row of "" (caption dropout). ``grounding``:
    a ``GroundingLoss`` over the same images and caption rows, required when
    ``config.grounding_weight`` > 0.
    ``look_gap``: a ``look_gap.LookGap``, measured on the trained weights every ``look_gap_every`` steps and
    after the last (on the EMA weights).
    Returns {"denoising": the (min-SNR-weighted) denoising loss of every step, "grounding": the grounding term of
    every step from ``grounding_from`` on (unweighted), "look_gap": {step: {factor: %}}}.
    """
    from ..training.loss import denoising_losses
    from .errors import GroundingError

    if isinstance(config.look_gap_every, bool) or not isinstance(config.look_gap_every, int) or config.look_gap_every < 0:
        raise ValueError(f"UNetTrainConfig.look_gap_every is {config.look_gap_every!r}; give the steps between "
                         "look-gap measurements as an integer >= 0 (0: never)")
    if config.grounding_weight > 0 and grounding is None:
        raise GroundingError("grounding_weight > 0 but no grounding loss was given: pass grounding= "
                             "(base_pipeline builds it from the images' masks), or set grounding_weight=0")
    net = model.diffusion_model.train().requires_grad_(True)
    params = [p for p in net.parameters()]
    ema = [p.detach().clone() for p in params]
    opt = torch.optim.AdamW(params, lr=config.lr, weight_decay=0.01)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, _lr_lambda(config))
    sampling = model.model_sampling
    gen = torch.Generator().manual_seed(config.seed)
    losses, grounding_terms, gaps = [], [], {}
    for step in range(config.steps):
        idx = torch.randint(0, len(latents), (config.batch,), generator=gen)
        x0 = latents[idx]
        ids = torch.where(torch.rand(config.batch, generator=gen) < config.drop_caption,
                          torch.full_like(idx, empty_id), caption_ids[idx])
        t = torch.randint(0, sampling.num_timesteps, (config.batch,), generator=gen)
        sigma = sampling.sigma(t).float()
        noise = torch.randn(x0.shape, generator=gen)
        x_noisy = sampling.noise_scaling(sigma, noise, x0)
        grounded = config.grounding_weight > 0 and step >= config.grounding_from
        options = {}
        if grounded:
            grounding.begin(idx, ids)
            options = grounding.options
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=config.bf16):
            denoised = model.apply_model(x_noisy, sigma, c_crossattn=conds[ids], transformer_options=options)
        rows = denoising_losses("eps", sigma, x_noisy, denoised.float(), x0)
        loss = (rows * min_snr_weights(sigma, config.min_snr_gamma)).mean()
        total = loss
        if grounded:
            term = grounding.take()
            total = loss + config.grounding_weight * term
            grounding_terms.append(float(term.detach()))
        opt.zero_grad(set_to_none=True)
        total.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        sched.step()
        decay = min(config.ema, (1 + step) / (10 + step))
        with torch.no_grad():
            torch._foreach_lerp_(ema, [p.detach() for p in params], 1 - decay)
        losses.append(float(loss.detach()))
        if look_gap is not None and config.look_gap_every and (step + 1) % config.look_gap_every == 0:
            gaps[str(step + 1)] = look_gap(model)
        if progress is not None:
            progress.update(1)
            shown = {"loss": f"{sum(losses[-50:]) / len(losses[-50:]):.4f}"}
            if grounding_terms:
                shown["grounding"] = f"{sum(grounding_terms[-50:]) / len(grounding_terms[-50:]):.4f}"
            progress.set_postfix(**shown)
    with torch.no_grad():
        for p, e in zip(params, ema):
            p.copy_(e)
    net.eval().requires_grad_(False)
    if look_gap is not None:
        gaps["ema"] = look_gap(model)
    return {"denoising": losses, "grounding": grounding_terms, "look_gap": gaps}

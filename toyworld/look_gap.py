"""Whether the base uses its look words: the look gap, measured while the UNet trains.

Sampling and scoring tells whether a base draws what a look word says, but only at the end and with
much noise. The look gap asks the denoiser directly, as the trainer's reference gap asks it about a
reference: on held-out renders whose caption names every look factor of its domain, the denoising
loss (plain eps error, fixed noise and timesteps) with one factor's phrase swapped for another value
minus with the right phrase, relative to the latter, per factor. Zero: the word changes nothing the
denoiser predicts; positive: the right word helps it. Logged every ``UNetTrainConfig.look_gap_every``
steps into the base's report, it shows whether the look words are still being learned when the
budget ends. The renders are of held-out identities no evaluation uses (``LOOK_GAP_IDS``).
"""
from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import torch

from .identity import DOMAINS, heldout_ids, sample_identity
from .look import LOOK_FACTORS
from .render import render
from .rng import Rng
from .scene import caption, sample_scene

LOOK_GAP_IDS = tuple(heldout_ids())[150:166]  # 1950..1965: after the encoders' validation ids (1900..)
TIMESTEPS = (200, 400, 600, 800)


@dataclass(frozen=True)
class LookGapRow:
    domain: str
    identity_id: int
    factor: str  # the factor whose phrase is swapped in the wrong caption
    right: str
    wrong: str
    image: np.ndarray  # uint8 [64, 64, 3]


def look_gap_rows(ids=LOOK_GAP_IDS, seed: int = 0) -> list[LookGapRow]:
    """One render per (domain, identity, look factor): full framing, every look factor of its domain
    named at a drawn value; the wrong caption names another value of ``factor``."""
    rows = []
    for domain in DOMAINS:
        for identity_id in ids:
            for factor, values in LOOK_FACTORS[domain].items():
                rng = Rng("toyworld-look-gap", seed, domain, identity_id, factor)
                look = {f: rng.choice(v) for f, v in LOOK_FACTORS[domain].items()}
                scene = replace(sample_scene("toyworld-look-gap", seed, domain, identity_id, factor), framing="full",
                                **look).for_domain(domain)
                other = rng.choice([v for v in values if v != look[factor]])
                image = np.asarray(render(sample_identity(domain, identity_id), scene, rng.randint(2 ** 31 - 1)))
                rows.append(LookGapRow(domain, identity_id, factor, caption(domain, scene),
                                       caption(domain, replace(scene, **{factor: other})), image))
    return rows


@dataclass
class LookGap:
    """The look gap of a model on fixed rows: latents [n, c, h, w] as the UNet takes them, conditionings
    of the right and the wrong captions [n, 77, w], each row's factor, and fixed noise per timestep."""
    latents: torch.Tensor
    right: torch.Tensor
    wrong: torch.Tensor
    factors: list[str]
    seed: int = 0
    batch: int = 64

    @torch.no_grad()
    def __call__(self, model) -> dict[str, float]:
        """{factor: mean relative gap in %} for a ComfyUI BaseModel (``apply_model``)."""
        gen = torch.Generator().manual_seed(self.seed)
        gaps = torch.zeros(len(self.latents), dtype=torch.float64)
        was_training = model.diffusion_model.training
        model.diffusion_model.eval()
        try:
            for t in TIMESTEPS:
                noise = torch.randn(self.latents.shape, generator=gen)
                losses = []
                for cond in (self.right, self.wrong):
                    losses.append(torch.cat([self._errors(model, self.latents[s:s + self.batch],
                                                          noise[s:s + self.batch], cond[s:s + self.batch], t)
                                             for s in range(0, len(self.latents), self.batch)]))
                gaps += ((losses[1] - losses[0]) / losses[0].mean()).double()
        finally:
            model.diffusion_model.train(was_training)
        gaps /= len(TIMESTEPS)
        return {f: round(100 * float(gaps[[i for i, g in enumerate(self.factors) if g == f]].mean()), 3)
                for f in dict.fromkeys(self.factors)}

    @staticmethod
    def _errors(model, x0, noise, cond, t: int) -> torch.Tensor:
        """Each row's eps error at timestep ``t``: the trainer's forward process and loss."""
        from ..training.loss import denoising_losses, noisy_input

        sigma = model.model_sampling.sigma(torch.full((len(x0),), t)).float()
        x = noisy_input(model.model_sampling, sigma, noise, x0)
        return denoising_losses("eps", sigma, x, model.apply_model(x, sigma, c_crossattn=cond), x0)

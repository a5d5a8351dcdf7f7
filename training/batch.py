"""A micro-batch: which image each row trains on, with which reference, prompt, noise and timestep.

Everything random about a row (the classifier-free-guidance drop, the reference, the noise, the
timestep) is drawn from generators seeded by (seed, epoch, the row's position in the epoch's order),
never from a global generator: a row is the same whatever the batch size, the number of processes,
or where a run was resumed. Classifier-free guidance drops (probabilities from the config):

* text:    the caption becomes the bare subject word ("person"); the subject still acts
* subject: the caption is kept, the subject word keeps its plain text value
* both:    the caption is empty, no subject
"""
from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Optional

import torch

from ..nested_attention_core.prompt import PromptWords

from .binding import subject_only
from .data import ReferenceChoice, TargetCrop, TrainingData, choose_reference
from .features import FeatureStore, TextFeatures
from .loss import draw_sigma_and_noise, noisy_input, row_generator

DROPS = ("none", "text", "subject", "both")


@dataclass(frozen=True)
class RowPlan:
    image: int  # index into TrainingData.images
    epoch: int
    position: int  # position in the epoch's (global) order
    reference: ReferenceChoice
    drop: str  # one of DROPS


@dataclass
class Batch:
    rows: list[RowPlan]
    x0: torch.Tensor  # [B, C, h, w] clean latents in the model's space (process_latent_in)
    sigma: torch.Tensor  # [B]
    noise: torch.Tensor  # [B, C, h, w]
    x_noisy: torch.Tensor  # [B, C, h, w]
    texts: list[TextFeatures]
    crops: list[TargetCrop]
    prompts: list[Optional[PromptWords]]  # per row: the subject word's positions, None = no subject
    references: torch.Tensor  # [B, T, F] CLIP vision features of the references
    weight: Optional[torch.Tensor]  # [B, 1, h, w] loss weight, None = uniform

    def __len__(self) -> int:
        return self.x0.shape[0]

    def to(self, device) -> "Batch":
        move = lambda t: t.to(device) if t is not None else None  # noqa: E731
        return Batch(self.rows, move(self.x0), move(self.sigma), move(self.noise), move(self.x_noisy), self.texts,
                     self.crops, self.prompts, move(self.references), move(self.weight))


def plan_row(data: TrainingData, image: int, epoch: int, position: int, seed: int, reference_mode: str,
             augment_views: int, drops: tuple[float, float, float], mask_share: float = 1.0) -> RowPlan:
    """The random choices of one row; ``drops`` = (text, subject, both) probabilities, ``mask_share``
    the probability that the reference is masked."""
    rng = random.Random(f"{seed}/{epoch}/{position}/plan")
    u, drop = rng.random(), "none"
    for name, p in zip(DROPS[1:], drops):
        if u < p:
            drop = name
            break
        u -= p
    reference = choose_reference(data, image, rng, reference_mode, augment_views, mask_share)
    return RowPlan(image, epoch, position, reference, drop)


def assemble(store: FeatureStore, data: TrainingData, plans: list[RowPlan], model_sampling, process_latent_in,
             seed: int, background_loss_weight: float = 1.0, fixed_draws=None) -> Batch:
    """Features of every row (from the cache when warm), noised as the host defines it.

    ``fixed_draws``: optional (sigma [B], noise [B, C, h, w]) instead of the rows' own draws, for
    comparisons on fixed noise and timesteps."""
    latents, texts, crops, prompts, references, sigmas, noises, masks = [], [], [], [], [], [], [], []
    for plan in plans:
        image = data.images[plan.image]
        latent = store.latent(image)
        x0 = process_latent_in(latent.latent)
        text = store.text({"none": image.caption, "text": image.word, "subject": image.caption, "both": ""}[plan.drop])
        prompt = subject_only(text.words, image.word) if plan.drop in ("none", "text") else None
        sigma, noise = draw_sigma_and_noise(model_sampling, x0.shape[1:], row_generator(seed, plan.epoch, plan.position,
                                                                                       "noise"))
        latents.append(x0)
        texts.append(text)
        crops.append(latent.crop)
        prompts.append(prompt)
        references.append(store.reference(data.images[plan.reference.image], plan.reference.view,
                                          plan.reference.masked))
        sigmas.append(sigma)
        noises.append(noise[None])
        masks.append(latent.mask)
    x0 = torch.cat(latents)
    sigma, noise = (torch.cat(sigmas), torch.cat(noises)) if fixed_draws is None else fixed_draws
    weight = None
    if background_loss_weight != 1.0 and any(m is not None for m in masks):
        ones = torch.ones_like(x0[:1, :1])
        weight = torch.cat([ones if m is None else m + (1 - m) * background_loss_weight for m in masks])
    return Batch(list(plans), x0, sigma, noise, noisy_input(model_sampling, sigma, noise, x0), texts, crops, prompts,
                 torch.cat(references), weight)

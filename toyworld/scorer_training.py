"""Training the two scoring models on the generator's own labels, with fixed seeds.

Both models learn from one set of renders of training identities (random scenes). The identity net
is a CosFace classifier over those identities whose embedding is then used, on HELD-OUT identities,
for cosine similarity; the scene net has one cross-entropy head per scene factor and per look factor,
a look head learning only on images of its domain (labels: ``look.realised_look``, what the render shows).
"""
from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, replace
from typing import Callable, Optional, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from .dataset import Sample
from .errors import ScorerError
from .nets import IdentityNet, IdentityNetConfig, SceneNet, SceneNetConfig
from .identity import DOMAINS, attribute_labels, sample_identity
from .look import LOOK_FACTORS
from .scene import FACTORS

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class FitConfig:
    epochs: int = 5
    batch_size: int = 64
    lr: float = 3e-3
    weight_decay: float = 1e-4
    seed: int = 0
    noise_std: float = 0.03  # augmentation: pixel noise
    blur_prob: float = 0.3  # augmentation: a 3x3 box blur (generated images are softer than renders)


def identity_labels(samples: Sequence[Sample]) -> tuple[np.ndarray, list[str]]:
    """A class index per sample (its identity), and the identity key of each class."""
    keys = list(dict.fromkeys(s.key for s in samples))
    index = {k: i for i, k in enumerate(keys)}
    return np.array([index[s.key] for s in samples], np.int64), keys


def scene_labels(samples: Sequence[Sample]) -> dict[str, np.ndarray]:
    """Per scene-net head, each sample's value index; look heads: the shown look's (``Sample.shown_look``),
    -1 on the other domain and where the framing hides the factor (a close-up's shirt: nothing to learn)."""
    labels = {f: np.array([values.index(getattr(s.scene, f)) for s in samples], np.int64) for f, values in FACTORS.items()}
    for domain, factors in LOOK_FACTORS.items():
        for factor in factors:
            labels[factor] = np.full(len(samples), -1, np.int64)
    for i, sample in enumerate(samples):
        for factor, value in sample.shown_look.items():
            if value is not None:
                labels[factor][i] = LOOK_FACTORS[sample.domain][factor].index(value)
    return labels


def attribute_targets(samples: Sequence[Sample]) -> dict[str, np.ndarray]:
    """Per identity-net head, each sample's value index, or -1 where the head is of the other domain."""
    targets: dict[str, np.ndarray] = {}
    for i, sample in enumerate(samples):
        identity = sample_identity(sample.domain, sample.identity_id)
        for name, index in attribute_labels(identity).items():
            targets.setdefault(f"{sample.domain}_{name}", np.full(len(samples), -1, np.int64))[i] = index
        targets.setdefault("domain", np.zeros(len(samples), np.int64))[i] = DOMAINS.index(sample.domain)
    return targets


def train_identity_net(images: np.ndarray, attributes: dict[str, np.ndarray], fit: FitConfig,
                       config: IdentityNetConfig = IdentityNetConfig(), labels: Optional[np.ndarray] = None,
                       identity_weight: float = 1.0, progress: Optional[Callable] = None) -> IdentityNet:
    """images: uint8 [n, 64, 64, 3]; attributes: {head: [n] value indices, -1 = not this head's domain};
    labels: [n] training-identity classes for the CosFace head (None: attribute heads only)."""
    torch.manual_seed(fit.seed)
    num_classes = int(labels.max()) + 1 if labels is not None else 0
    model = IdentityNet(replace(config, num_classes=num_classes))
    heads = {name: torch.from_numpy(v) for name, v in attributes.items()}
    identities = torch.from_numpy(labels) if labels is not None else None

    def loss_fn(x, idx):
        features = model.features(x)
        logits = model.head_logits(features)
        loss = sum(F.cross_entropy(logits[name], target[idx], ignore_index=-1) for name, target in heads.items()
                   if bool((target[idx] >= 0).any()))
        if identities is not None:
            unit = F.normalize(features, dim=-1)
            loss = loss + identity_weight * F.cross_entropy(model.class_logits(unit, identities[idx]), identities[idx])
        return loss

    _fit(model, images, loss_fn, fit, "identity", progress)
    return model.eval()


def train_scene_net(images: np.ndarray, labels: dict[str, np.ndarray], fit: FitConfig,
                    config: Optional[SceneNetConfig] = None, progress: Optional[Callable] = None) -> SceneNet:
    """images: uint8 [n, 64, 64, 3]; labels: {factor: [n] value indices, -1 = not this look head's domain}."""
    torch.manual_seed(fit.seed)
    model = SceneNet(config or SceneNetConfig())
    targets = {f: torch.from_numpy(v) for f, v in labels.items()}
    missing = sorted(set(model.heads) - set(targets))
    if missing:
        raise ScorerError(f"no labels for the scene heads {missing}: build them with scene_labels(samples)")

    def loss_fn(x, idx):
        logits = model(x)
        return sum(F.cross_entropy(logits[f], targets[f][idx], ignore_index=-1) for f in logits
                   if bool((targets[f][idx] >= 0).any()))

    _fit(model, images, loss_fn, fit, "scene", progress)
    return model.eval()


def fit_steps(count: int, fit: FitConfig) -> int:
    """Optimizer steps of ``_fit`` on ``count`` images."""
    return fit.epochs * math.ceil(count / fit.batch_size)


def _fit(model: torch.nn.Module, images: np.ndarray, loss_fn: Callable, fit: FitConfig, name: str,
         progress: Optional[Callable] = None) -> None:
    """AdamW with a cosine schedule over ``fit.epochs`` shuffled passes; augmentation on the fly.
    ``progress(1)`` after every step."""
    generator = torch.Generator().manual_seed(fit.seed)
    steps_per_epoch = math.ceil(len(images) / fit.batch_size)
    total = fit.epochs * steps_per_epoch
    optimizer = torch.optim.AdamW(model.parameters(), lr=fit.lr, weight_decay=fit.weight_decay)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 0.5 * (1 + math.cos(math.pi * step / total)))
    pixels = torch.from_numpy(images)  # uint8, converted per batch
    model.train()
    start, step = time.perf_counter(), 0
    for epoch in range(fit.epochs):
        order = torch.randperm(len(images), generator=generator)
        running = 0.0
        for i in range(0, len(order), fit.batch_size):
            idx = order[i:i + fit.batch_size]
            x = _augment(pixels[idx].permute(0, 3, 1, 2).float() / 255.0, fit, generator)
            loss = loss_fn(x, idx)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
            running += float(loss.detach())
            step += 1
            if progress is not None:
                progress(1)
        log.info("%s net: epoch %d/%d, loss %.3f, %.0f s", name, epoch + 1, fit.epochs, running / steps_per_epoch,
                 time.perf_counter() - start)


def _augment(x: torch.Tensor, fit: FitConfig, generator: torch.Generator) -> torch.Tensor:
    if fit.blur_prob > 0:
        blurred = F.avg_pool2d(x, 3, stride=1, padding=1, count_include_pad=False)
        pick = (torch.rand(len(x), 1, 1, 1, generator=generator) < fit.blur_prob).to(x.dtype)
        x = pick * blurred + (1 - pick) * x
    if fit.noise_std > 0:
        x = x + fit.noise_std * torch.randn(x.shape, generator=generator)
    return x.clamp(0.0, 1.0)

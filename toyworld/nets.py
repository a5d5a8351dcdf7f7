"""The two scoring CNNs: an identity embedding net and a scene classifier (one head per scene factor
and per look factor of either domain).

Both take images as ``x: [b, 3, 64, 64]`` floats in 0..1. Each has a small frozen config that is
saved beside its weights.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .identity import ATTRIBUTES, DOMAINS
from .look import LOOK_FACTORS
from .scene import FACTORS

MEAN, STD = 0.5, 0.25


def scene_heads() -> tuple[tuple[str, int], ...]:
    """One head per scene factor, then one per look factor of each domain (``look.LOOK_FACTORS``)."""
    heads = [(name, len(values)) for name, values in FACTORS.items()]
    return tuple(heads + [(f, len(values)) for factors in LOOK_FACTORS.values() for f, values in factors.items()])


def attribute_heads() -> tuple[tuple[str, int], ...]:
    """One head per discrete identity attribute of each domain (``person_hair_style`` ...) and a domain head."""
    heads = [(f"{domain}_{name}", len(values)) for domain, attributes in ATTRIBUTES.items() for name, values in attributes]
    return tuple(heads) + (("domain", len(DOMAINS)),)


@dataclass(frozen=True)
class IdentityNetConfig:
    image_size: int = 64
    stem: int = 16  # channels of a full-resolution first conv (0: none)
    widths: tuple[int, ...] = (32, 64, 128, 128)  # then one stride-2 conv per width
    embedding_dim: int = 64
    heads: tuple[tuple[str, int], ...] = attribute_heads()  # attribute classifiers on the embedding
    num_classes: int = 0  # training identities of the CosFace head (0: no identity head)
    cos_scale: float = 16.0  # CosFace logit scale
    cos_margin: float = 0.2  # CosFace margin on the true class


@dataclass(frozen=True)
class SceneNetConfig:
    image_size: int = 64
    widths: tuple[int, ...] = (16, 32, 64, 64)
    hidden: int = 128
    heads: tuple[tuple[str, int], ...] = scene_heads()


def _trunk(widths: tuple[int, ...], stem: int = 0) -> nn.Sequential:
    """An optional full-resolution conv of ``stem`` channels, then one stride-2 conv per width."""
    layers, channels = [], 3
    if stem:
        layers += [nn.Conv2d(3, stem, 3, padding=1, bias=False), nn.BatchNorm2d(stem), nn.ReLU(inplace=True)]
        channels = stem
    for width in widths:
        layers += [nn.Conv2d(channels, width, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(width),
                   nn.ReLU(inplace=True)]
        channels = width
    return nn.Sequential(*layers)


class IdentityNet(nn.Module):
    """Conv features (average- and max-pooled) -> identity embedding, used unit-length for cosine
    similarity. Trained through attribute heads (generalize to unseen identities: every attribute
    value is seen on many) and optionally a CosFace head over the training identities."""

    def __init__(self, config: IdentityNetConfig) -> None:
        super().__init__()
        self.config = config
        self.trunk = _trunk(config.widths, config.stem)
        self.embed = nn.Linear(2 * config.widths[-1], config.embedding_dim)
        self.heads = nn.ModuleDict({name: nn.Linear(config.embedding_dim, count) for name, count in config.heads})
        self.classes = nn.Parameter(torch.randn(config.num_classes, config.embedding_dim) * 0.1) \
            if config.num_classes else None

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """x: [b, 3, h, w] in 0..1 -> the embedding before normalization, [b, embedding_dim]."""
        maps = self.trunk((x - MEAN) / STD)
        return self.embed(torch.cat([maps.mean(dim=(2, 3)), maps.amax(dim=(2, 3))], dim=1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: [b, 3, h, w] in 0..1 -> embeddings [b, embedding_dim], L2-normalized."""
        return F.normalize(self.features(x), dim=-1)

    def head_logits(self, features: torch.Tensor) -> dict[str, torch.Tensor]:
        return {name: head(features) for name, head in self.heads.items()}

    def class_logits(self, embeddings: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        """CosFace logits [b, num_classes] of unit embeddings; with labels, the margin is taken off each true class."""
        if self.classes is None:
            raise RuntimeError("this identity net has no identity head (num_classes=0)")
        cosine = embeddings @ F.normalize(self.classes, dim=-1).T
        if labels is not None:
            cosine = cosine - self.config.cos_margin * F.one_hot(labels, cosine.shape[1]).to(cosine.dtype)
        return self.config.cos_scale * cosine


class SceneNet(nn.Module):
    """Conv features kept spatial (placement and framing need where things are) -> one head per factor
    (scene and look)."""

    def __init__(self, config: SceneNetConfig) -> None:
        super().__init__()
        self.config = config
        self.trunk = _trunk(config.widths)
        cells = (config.image_size // 2 ** len(config.widths)) ** 2
        self.hidden = nn.Sequential(nn.Flatten(), nn.Linear(config.widths[-1] * cells, config.hidden),
                                    nn.ReLU(inplace=True))
        self.heads = nn.ModuleDict({name: nn.Linear(config.hidden, count) for name, count in config.heads})

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """x: [b, 3, h, w] in 0..1 -> {factor: logits [b, values]}."""
        hidden = self.hidden(self.trunk((x - MEAN) / STD))
        return {name: head(hidden) for name, head in self.heads.items()}


def parameter_count(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())

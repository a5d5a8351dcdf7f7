"""What is applied to a model: a binding (a subject, its strength, when and where it acts).

A region mask is in image coordinates. A conditioning that samples only an area of the latent
(``ConditioningSetArea``, ``ConditioningSetMask`` with mask bounds, any area the host applies) gets
the region cropped to that area, so the subject acts exactly where the region and the area overlap.
A mask batch of 1 serves every latent of the batch; a batch equal to the latent batch gives each
latent its own mask, as the host maps its own masks; any other size is an error naming both.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional, Protocol, Sequence

import torch
import torch.nn.functional as F

from ...nested_attention_core.errors import RegionMaskError
from ...nested_attention_core.rules import NESTED_RULE
from ...nested_attention_core.subject import NestedSubject

Area = tuple[int, int, int, int]  # (height, width, top, left) in latent pixels, as the host crops


class Binding(Protocol):
    """What every attn2 patch of ours asks of an applied subject (``apply_binding``).

    ``SubjectBinding`` is the frozen subject of the Apply node; the trainer's binding hands out the
    live encoder outputs of its batch. ``rule`` names how the subjects change attention
    (``nested_attention_core.rules``)."""

    word: str
    strength: float
    rule: str

    def active(self, sigma: float) -> bool: ...

    def nested_kv(self, layer_id: str, device, dtype) -> tuple[torch.Tensor, torch.Tensor]:
        """Nested keys/values [1 or rows, m, width] of one layer."""

    def query_mask(self, grid: tuple[int, int], areas: Sequence[Optional[Area]], latent_batch: int,
                   latent_size: tuple[int, int], device) -> Optional[torch.Tensor]:
        """Where the subject acts, [rows, h*w] in [0, 1] for rows = len(areas) chunks x latent_batch
        (``areas``: the latent area each chunk samples, None for all of it); None: everywhere."""


@dataclass(frozen=True, eq=False)
class SubjectBinding:
    """One applied subject: its nested keys/values, word, strength and when/where it acts."""

    subject: NestedSubject
    strength: float
    sigma_start: float  # active while sigma_end <= sigma <= sigma_start
    sigma_end: float
    region: torch.Tensor | None = None  # [1 or latent batch, H, W] in [0, 1], image coordinates
    rule: str = NESTED_RULE  # how the subject changes attention (nested_attention_core.rules)
    node: str | None = None  # the node that applied it ("Apply Nested Attention node #12"), for errors
    _cache: dict = field(default_factory=dict, repr=False)

    def __deepcopy__(self, memo):
        return self

    @property
    def word(self) -> str:
        return self.subject.word

    def active(self, sigma: float) -> bool:
        return self.sigma_end <= sigma <= self.sigma_start

    def nested_kv(self, layer_id: str, device, dtype) -> tuple[torch.Tensor, torch.Tensor]:
        """Nested keys/values [1, m, width] of one layer on the attention's device and dtype."""
        key = ("kv", layer_id, device, dtype)
        if key not in self._cache:
            keys, values = self.subject.nested[layer_id]
            self._cache[key] = tuple(t.to(device=device, dtype=dtype)[None] for t in (keys, values))
        return self._cache[key]

    def query_mask(self, grid, areas, latent_batch, latent_size, device) -> torch.Tensor | None:
        if self.region is None:
            return None
        key = ("mask", grid, tuple(areas), latent_batch, tuple(latent_size), device)
        if key not in self._cache:
            masks = self.region.shape[0]
            if masks not in (1, latent_batch):
                raise RegionMaskError(
                    f"the region mask (attn_mask) of subject {self.word!r} is a batch of {masks} masks but "
                    f"{latent_batch} images are sampled: give one mask for all images, or one per image")
            latent_of_row = torch.arange(latent_batch) % masks  # row of a chunk -> its mask
            chunks = [_resized(self.region if area is None else _cropped(self.region, area, latent_size), grid)
                      for area in areas]
            self._cache[key] = torch.cat([chunk[latent_of_row] for chunk in chunks]).to(device)
        return self._cache[key]


def _resized(region: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
    """[b, H, W] -> [b, h*w] on the layer's token grid."""
    small = F.interpolate(region[:, None].float(), size=grid, mode="bilinear", align_corners=False)
    return small.flatten(1).clamp(0, 1)


def _cropped(region: torch.Tensor, area: Area, latent_size: tuple[int, int]) -> torch.Tensor:
    """The part of an image-coordinate region that a latent area covers (at latent resolution)."""
    height, width, top, left = area
    latent = F.interpolate(region[:, None].float(), size=latent_size, mode="bilinear", align_corners=False)[:, 0]
    return latent[:, top:top + height, left:left + width]

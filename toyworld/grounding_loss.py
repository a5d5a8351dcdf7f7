"""The base's grounding loss: a word with a place in the image draws its attention there.

In every attn2 layer, for each grounded phrase of a row's caption (``grounding.grounded_phrases``)
with s = the phrase's share of each query's attention (softmax over the text tokens, mean over
heads: the formula of ``maps.word_share``, kept differentiable) and m = the phrase's region mask
pooled by area to the layer's grid:

    weight * [mean_outside(s) + relu(cap - mean_inside(s))]

averaged over the (phrase, image) pairs of the batch, then over layers. The cap stops the pull once
the phrase holds ``cap`` of the attention inside its region, so the words keep their meaning (the
start and end/padding tokens still carry most of the attention). Rows whose caption was dropped to
"" have no phrases. Cheap: the probabilities are over the 77 text keys only.

The loss reaches the attention through ComfyUI's public hook: an attn2 replace patch in the
transformer options (``ModelPatcher.set_model_attn2_replace``) that returns the host's own
attention output unchanged and adds its term on the side.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from einops import rearrange

from ..nested_attention_core.attention import outer_attention
from .errors import GroundingError
from .grounding import REGIONS, region_masks

EPS = 1e-6


class PooledRegions:
    """Region masks of every training image, pooled by area to each layer grid once (on first use).

    masks: uint8 [N, 3, H, W] subject masks (``grounding.SUBJECT_REGIONS`` order); ``at(grid)`` ->
    float32 [N, 4, h*w] in ``REGIONS`` order, queries row-major as the layer's."""

    def __init__(self, masks: np.ndarray, chunk: int = 1024):
        if masks.ndim != 4 or masks.shape[1] != len(REGIONS) - 1:
            raise GroundingError(f"subject masks of shape {masks.shape}: give uint8 [N, {len(REGIONS) - 1}, H, W] "
                                 "(subject, person, pet; zeros where an image has none)")
        self.masks, self.chunk = masks, chunk
        self._pooled: dict[tuple[int, int], torch.Tensor] = {}

    def __len__(self) -> int:
        return len(self.masks)

    def at(self, grid: tuple[int, int]) -> torch.Tensor:
        if grid not in self._pooled:
            parts = [F.adaptive_avg_pool2d(torch.from_numpy(region_masks(self.masks[i:i + self.chunk])), grid).flatten(2)
                     for i in range(0, len(self.masks), self.chunk)]
            self._pooled[grid] = torch.cat(parts)
        return self._pooled[grid]


def region_terms(shares: torch.Tensor, masks: torch.Tensor, cap: float) -> tuple[torch.Tensor, torch.Tensor]:
    """shares, masks [b, K, n_q] (a phrase's share per query; its region pooled to the grid) ->
    (terms [b, K] = mean_outside + relu(cap - mean_inside), usable [b, K]: the region and its
    complement both cover some queries)."""
    inside_weight, outside_weight = masks.sum(-1), (1 - masks).sum(-1)
    inside = (masks * shares).sum(-1) / inside_weight.clamp_min(EPS)
    outside = ((1 - masks) * shares).sum(-1) / outside_weight.clamp_min(EPS)
    return outside + torch.relu(cap - inside), (inside_weight > EPS) & (outside_weight > EPS)


class GroundingLoss:
    """attn2 replace patches that add the grounding term of each layer.

    tokens: bool [U, K, n_text], the context positions of each caption's K grounded phrases (unused
    slots all False); regions: long [U, K], each slot's index in ``REGIONS`` (-1: no phrase);
    pooled: the training images' ``PooledRegions``; patcher: the ComfyUI ModelPatcher whose attn2
    layers get the patch (in a clone's options, ``options``: the patcher is left as it was).
    Per UNet call: ``begin(images, captions)`` (the rows' image and caption indices), the call with
    ``transformer_options=options``, then ``take()`` -> the mean term over layers."""

    def __init__(self, tokens: torch.Tensor, regions: torch.Tensor, pooled: PooledRegions, cap: float, patcher):
        if tokens.shape[:2] != regions.shape:
            raise GroundingError(f"phrase tokens {tuple(tokens.shape)} and regions {tuple(regions.shape)} "
                                 "disagree: give one region per phrase slot of each caption")
        self.tokens, self.regions, self.pooled, self.cap = tokens.float(), regions.long(), pooled, cap
        self._rows: tuple[torch.Tensor, torch.Tensor] | None = None
        self._terms: list[torch.Tensor] = []
        self.options = self._transformer_options(patcher)

    def patch(self, layer_id: str):
        from ..nodes import host

        def attn2(q, k, v, extra):
            if self._rows is not None:
                shape = extra["activations_shape"]  # [b, c, h, w] of the layer's SpatialTransformer input
                self._terms.append(self.layer_term(q, k, extra["n_heads"], (int(shape[-2]), int(shape[-1]))))
            return host.host_attention(q, k, v, extra)

        return attn2

    def _transformer_options(self, patcher) -> dict:
        from ..nodes import host

        patched = patcher.clone()
        for layer in host.model_layers(patcher):
            patched.set_model_attn2_replace(self.patch(layer.id), *layer.key)
        return patched.model_options["transformer_options"]

    def begin(self, images: torch.Tensor, captions: torch.Tensor) -> None:
        self._rows, self._terms = (images, captions), []

    def take(self) -> torch.Tensor:
        """The mean term over the layers the last call went through (0 if it had no grounded phrase)."""
        terms, self._rows, self._terms = self._terms, None, []
        if not terms:
            raise GroundingError("no attn2 layer ran the grounding patch: pass .options as transformer_options to the "
                                 "UNet call between begin() and take()")
        return torch.stack(terms).mean()

    def layer_term(self, q: torch.Tensor, k: torch.Tensor, heads: int, grid: tuple[int, int]) -> torch.Tensor:
        images, captions = self._rows
        with torch.autocast(q.device.type, enabled=False):
            qh, kh = (rearrange(t.float(), "b n (h d) -> b h n d", h=heads) for t in (q, k))
            probs = outer_attention(qh, kh).mean(1)  # [b, n_q, n_text]
            tokens = self.tokens[captions].to(q.device)  # [b, K, n_text]
            shares = torch.einsum("bqt,bkt->bkq", probs, tokens)
            regions = self.regions[captions].to(q.device)  # [b, K]
            pooled = self.pooled.at(grid)[images].to(q.device)  # [b, 4, n_q]
            masks = pooled.gather(1, regions.clamp_min(0)[..., None].expand(-1, -1, pooled.shape[-1]))
            terms, usable = region_terms(shares, masks, self.cap)
            usable = usable & (regions >= 0)
            return (terms * usable).sum() / usable.sum().clamp_min(1)

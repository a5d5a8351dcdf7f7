"""The subject encoder: reference-image features -> subject tokens -> nested keys and values.

Two parts, as in the paper (Sec. 4):

- ``Resampler``: a Perceiver-Resampler / Q-Former. ``num_tokens`` learned latents cross-attend to the
  CLIP-vision penultimate hidden states of a reference image and become N subject tokens
  ``e: [B, N, output_dim]``. Its ``state_dict()`` has exactly the layout of IP-Adapter Plus's
  ``image_proj.*`` (without the prefix), so IP-Adapter Plus weights warm-start it.
- one ``NestedProjection`` per UNet cross-attention layer: bias-free ``to_k`` / ``to_v`` giving the
  nested keys ``K~ = e W~k`` and nested values ``V~ = e W~v`` in that layer's inner width.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields
from typing import Callable, Optional

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor, nn

from .errors import ModelMismatchError, NestedAttentionError
from .layers import LayerSpec

Progress = Callable[[int, int], None]  # progress(done, total)


@dataclass(frozen=True)
class EncoderConfig:
    """Sizes of the subject encoder. Defaults are IP-Adapter Plus SDXL (ViT-H features); each model
    family names its own (``families.ModelFamily.encoder``)."""

    num_tokens: int = 16  # N subject tokens = learned latents
    width: int = 1280  # resampler width
    depth: int = 4  # perceiver layers
    heads: int = 20
    dim_head: int = 64
    ff_mult: int = 4
    image_feature_dim: int = 1280  # CLIP-vision hidden size (ViT-H)
    output_dim: int = 2048  # subject token width = UNet context dim

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise NestedAttentionError(
                    f"EncoderConfig.{f.name} must be a positive integer, got {value!r}")

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> "EncoderConfig":
        try:
            values = json.loads(text)
        except (TypeError, json.JSONDecodeError) as err:
            raise NestedAttentionError(f"encoder config is not valid JSON ({err}): {text!r}") from None
        if not isinstance(values, dict):
            raise NestedAttentionError(f"encoder config must be a JSON object, got {text!r}")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise NestedAttentionError(
                f"encoder config has unknown fields {unknown}; known fields are {sorted(known)}")
        return cls(**values)


class PerceiverAttention(nn.Module):
    """Latents attend to image features and to themselves (keys/values from cat([x, latents]))."""

    def __init__(self, width: int, heads: int, dim_head: int):
        super().__init__()
        inner = heads * dim_head
        self.heads = heads
        self.norm1 = nn.LayerNorm(width)  # on image features
        self.norm2 = nn.LayerNorm(width)  # on latents
        self.to_q = nn.Linear(width, inner, bias=False)
        self.to_kv = nn.Linear(width, 2 * inner, bias=False)
        self.to_out = nn.Linear(inner, width, bias=False)

    def forward(self, x: Tensor, latents: Tensor) -> Tensor:
        # x: [b, t, width], latents: [b, n, width] -> [b, n, width] (the residual is the caller's)
        x = self.norm1(x)
        latents = self.norm2(latents)
        q = self.to_q(latents)  # [b, n, h*d]
        k, v = self.to_kv(torch.cat([x, latents], dim=1)).chunk(2, dim=-1)  # [b, t+n, h*d]
        q, k, v = (rearrange(z, "b s (h d) -> b h s d", h=self.heads) for z in (q, k, v))
        out = F.scaled_dot_product_attention(q, k, v)  # [b, h, n, d]
        return self.to_out(rearrange(out, "b h n d -> b n (h d)"))


def feed_forward(width: int, mult: int) -> nn.Sequential:
    """Pre-norm MLP; indices 0..3 give IP-Adapter's key names (``.1.0`` norm, ``.1.1``, ``.1.3``)."""
    return nn.Sequential(
        nn.LayerNorm(width),
        nn.Linear(width, width * mult, bias=False),
        nn.GELU(),
        nn.Linear(width * mult, width, bias=False),
    )


class Resampler(nn.Module):
    """Learned latents cross-attending to CLIP-vision features: [B, T, F] -> [B, N, output_dim]."""

    def __init__(self, config: EncoderConfig):
        super().__init__()
        c = config
        self.config = config
        self.latents = nn.Parameter(torch.randn(1, c.num_tokens, c.width) / c.width ** 0.5)
        self.proj_in = nn.Linear(c.image_feature_dim, c.width)
        self.proj_out = nn.Linear(c.width, c.output_dim)
        self.norm_out = nn.LayerNorm(c.output_dim)
        # registered last, so that state_dict() lists keys in IP-Adapter Plus's order
        self.layers = nn.ModuleList(
            nn.ModuleList([PerceiverAttention(c.width, c.heads, c.dim_head), feed_forward(c.width, c.ff_mult)])
            for _ in range(c.depth)
        )

    def forward(self, image_features: Tensor) -> Tensor:
        x = self.proj_in(image_features)  # [b, t, width]
        latents = self.latents.expand(x.shape[0], -1, -1)  # [b, n, width]
        for attn, ff in self.layers:
            latents = attn(x, latents) + latents
            latents = ff(latents) + latents
        return self.norm_out(self.proj_out(latents))  # [b, n, output_dim]


class NestedProjection(nn.Module):
    """Nested keys and values of one cross-attention layer: e [.., M, C] -> ([.., M, W], [.., M, W])."""

    def __init__(self, in_dim: int, width: int):
        super().__init__()
        self.to_k = nn.Linear(in_dim, width, bias=False)
        self.to_v = nn.Linear(in_dim, width, bias=False)

    def forward(self, tokens: Tensor) -> tuple[Tensor, Tensor]:
        return self.to_k(tokens), self.to_v(tokens)


class SubjectEncoder(nn.Module):
    """Resampler + one ``NestedProjection`` per cross-attention layer (keyed by ``LayerSpec.id``)."""

    def __init__(self, config: EncoderConfig, layers: list[LayerSpec]):
        super().__init__()
        if not layers:
            raise NestedAttentionError("SubjectEncoder needs at least one cross-attention layer")
        ids = [layer.id for layer in layers]
        duplicates = sorted({i for i in ids if ids.count(i) > 1})
        if duplicates:
            raise NestedAttentionError(f"SubjectEncoder got duplicate layer ids {duplicates}")
        self.config = config
        self.layers = list(layers)
        self.resampler = Resampler(config)
        self.nested_layers = nn.ModuleDict(
            {layer.id: NestedProjection(config.output_dim, layer.width) for layer in layers})

    def encode(self, image_features: Tensor) -> Tensor:
        """CLIP-vision penultimate hidden states [B, T, F] -> subject tokens [B, N, output_dim]."""
        if image_features.ndim != 3:
            raise ModelMismatchError(
                f"image features must be [batch, tokens, {self.config.image_feature_dim}], "
                f"got shape {tuple(image_features.shape)}; pass the CLIP vision penultimate hidden states")
        if image_features.shape[-1] != self.config.image_feature_dim:
            raise ModelMismatchError(
                f"image features are {image_features.shape[-1]} wide but the subject encoder expects "
                f"{self.config.image_feature_dim}; use the CLIP vision model these weights were trained "
                f"with (hidden size {self.config.image_feature_dim})")
        return self.resampler(image_features)

    def nested_keys_values(
        self, tokens: Tensor, progress: Optional[Progress] = None
    ) -> dict[str, tuple[Tensor, Tensor]]:
        """Subject tokens [M, C] or [B, M, C] -> {layer id: (nested keys, nested values) [.., M, W]}."""
        if tokens.ndim not in (2, 3) or tokens.shape[-1] != self.config.output_dim:
            raise ModelMismatchError(
                f"subject tokens must be [M, {self.config.output_dim}] or [B, M, {self.config.output_dim}], "
                f"got shape {tuple(tokens.shape)}; encode them with the same subject encoder")
        out = {}
        for i, layer in enumerate(self.layers, start=1):
            out[layer.id] = self.nested_layers[layer.id](tokens)
            if progress is not None:
                progress(i, len(self.layers))
        return out

    def extra_repr(self) -> str:
        c = self.config
        return f"tokens={c.num_tokens}, output_dim={c.output_dim}, layers={len(self.layers)}"

"""Stand-ins for the frozen models that only make cached features, at a real family's shapes.

A training step on a warm cache reads latents, text conditioning and CLIP vision features from the
cache and never calls the VAE, the text encoders or the vision tower. To time that step on a
full-size SD1.5 or SDXL UNet without their multi-gigabyte encoders, the trainer's first (cold)
epoch gets its features from these stand-ins instead: seeded random tensors of exactly the shapes
the real models give (latents 4 x h/8 x w/8; text 77 x context width, SDXL's pooled 1280; CLIP
ViT-H penultimate states 257 x 1280), while the prompt's tokens and word positions come from the
family's real tokenizer. Everything after the cache (the cache itself, batches, encoder, patched
UNet, loss, optimizer) is the real trainer.
"""
from __future__ import annotations

import zlib

import torch

VIT_H_TOKENS, VIT_H_WIDTH = 257, 1280  # CLIP-ViT-H-14 at 224 px: 16 x 16 patches + class token


def _generator(*key) -> torch.Generator:
    return torch.Generator().manual_seed(zlib.crc32(repr(key).encode()))


class StandInClip:
    """The family's real tokenizer (from any checkpoint of the family); random text features."""

    def __init__(self, clip, context_dim: int, pooled_dim: int | None):
        self.tokenizer = clip.tokenizer
        self._clip, self.context_dim, self.pooled_dim = clip, context_dim, pooled_dim

    def tokenize(self, text: str, **kwargs):
        return self._clip.tokenize(text, **kwargs)

    def encode_from_tokens(self, tokens, return_pooled: bool = False):
        chunks = next(iter(tokens.values()))
        generator = _generator("text", [[t[0] for t in chunk] for chunk in chunks])
        cond = torch.randn(1, sum(len(chunk) for chunk in chunks), self.context_dim, generator=generator)
        pooled = torch.randn(1, self.pooled_dim, generator=generator) if self.pooled_dim else None
        return (cond, pooled) if return_pooled else cond


class StandInVAE:
    """Latents of SD1.5/SDXL's shape (4 channels, 1/8 of the image size) for images [B, H, W, C]."""

    def encode(self, pixels: torch.Tensor) -> torch.Tensor:
        b, h, w, _ = pixels.shape
        return torch.randn(b, 4, h // 8, w // 8, generator=_generator("latent", float(pixels.sum())))


class StandInClipVision:
    """CLIP ViT-H penultimate hidden states [B, 257, 1280] (IP-Adapter Plus's vision tower)."""

    def encode_image(self, pixels: torch.Tensor, crop: bool = True) -> dict:
        generator = _generator("image", float(pixels.sum()))
        return {"penultimate_hidden_states": torch.randn(pixels.shape[0], VIT_H_TOKENS, VIT_H_WIDTH,
                                                         generator=generator)}

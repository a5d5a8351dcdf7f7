"""Reference images to CLIP vision features, the same way for the Subject node, the trainer and
the toy world's evaluation."""
from __future__ import annotations

import torch

from ...nested_attention_core.reference import prepare_reference_images


def reference_features(clip_vision, images: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """IMAGE [B, H, W, C] (+ optional subject MASK) -> penultimate hidden states [B, T, F]."""
    pixels = prepare_reference_images(images, mask)
    return clip_vision.encode_image(pixels, crop=True)["penultimate_hidden_states"]

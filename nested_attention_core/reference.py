"""Reference images as the CLIP vision tower wants them: RGB, [B, H, W, 3] in [0, 1].

Images come from other nodes in every shape: with alpha, grayscale, a single image without batch
dimension, any size (the vision tower's own preprocessing resizes and crops). An optional subject
mask blanks the background to white, so that the encoder sees the subject alone.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from .errors import ReferenceImageError

BACKGROUND = 1.0  # white


def prepare_reference_images(images: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """images: [B, H, W, C] or [H, W, C] with C in 1..4; mask: [B or 1, h, w] or [h, w] -> [B, H, W, 3]."""
    if images.ndim == 3:
        images = images[None]
    if images.ndim != 4 or images.shape[-1] not in (1, 2, 3, 4) or images.shape[0] == 0:
        raise ReferenceImageError(
            f"reference image has shape {tuple(images.shape)}; expected an IMAGE batch [B, H, W, C] with 1 to 4 "
            f"channels: connect a Load Image node (or any node giving IMAGE)")
    if not bool(images.isfinite().all()):
        raise ReferenceImageError("the reference image holds NaN or infinite pixel values (a broken image or a node "
                                  "upstream that divided by zero): give an image with values in [0, 1]")
    images = images.float().clamp(0, 1)
    channels = images.shape[-1]
    color = images[..., :3] if channels >= 3 else images[..., :1].expand(*images.shape[:-1], 3)
    if channels in (2, 4):  # composite the alpha channel over the background
        alpha = images[..., -1:]
        color = color * alpha + BACKGROUND * (1 - alpha)
    if mask is not None:
        color = apply_subject_mask(color, mask)
    return color.contiguous()


def apply_subject_mask(images: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Blank what lies outside the subject mask; the mask is resized to the images if needed."""
    if mask.ndim == 2:
        mask = mask[None]
    if mask.ndim != 3 or mask.shape[0] not in (1, images.shape[0]):
        raise ReferenceImageError(
            f"reference mask has shape {tuple(mask.shape)} for {images.shape[0]} reference image(s): give one mask "
            f"for all images or one per image (MASK [B, H, W])")
    if not bool(mask.isfinite().all()):
        raise ReferenceImageError("the reference mask holds NaN or infinite values: give a mask with values in [0, 1]")
    mask = mask.float().clamp(0, 1)
    if mask.shape[-2:] != images.shape[1:3]:
        mask = F.interpolate(mask[:, None], size=images.shape[1:3], mode="bilinear", align_corners=False)[:, 0]
    mask = mask[..., None]
    return images * mask + BACKGROUND * (1 - mask)

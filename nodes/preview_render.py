"""Drawing the preview's heatmaps over the image: one panel per subject (torch + Pillow only).

A panel has a title, one column per probed step (high noise to low) and two rows per layer group
(down/mid/up): where the subject word draws the outer attention, and where its nested value changes
the layer output. Each row is scaled from its minimum to its maximum over the levels, so a row's cells compare.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageDraw, ImageFont

KIND_LABELS = {"attention": "word attention", "change": "output change"}
# an inferno-like colormap: stops at 0, .25, .5, .75, 1
STOPS = torch.tensor([[0, 0, 4], [87, 16, 110], [188, 55, 84], [249, 142, 9], [252, 255, 164]]) / 255.0
MARGIN, HEADER, LABEL_WIDTH = 6, 34, 120


def colormap(values: torch.Tensor) -> torch.Tensor:
    """[..., ] in [0, 1] -> [..., 3] RGB."""
    position = values.clamp(0, 1) * (len(STOPS) - 1)
    low = position.floor().long().clamp(max=len(STOPS) - 2)
    t = (position - low)[..., None]
    return STOPS[low] * (1 - t) + STOPS[low + 1] * t


def overlay(image: torch.Tensor, heat: torch.Tensor) -> torch.Tensor:
    """image [H, W, 3] in [0, 1], heat [H, W] in [0, 1] -> the heatmap blended over the image (the
    image shows through where the heat is low)."""
    alpha = (0.8 * heat.clamp(0, 1))[..., None]
    return image * (1 - alpha) + colormap(heat) * alpha


def _font(size: int):
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1
        return ImageFont.load_default()


def _cell_size(height: int, width: int) -> tuple[int, int]:
    scale = max(1.0, 128 / max(height, width)) if max(height, width) < 128 else min(1.0, 256 / max(height, width))
    return round(height * scale), round(width * scale)


def render_panel(image: torch.Tensor, title: str, columns: list[str], rows: list[tuple[str, str, list]]) -> torch.Tensor:
    """image [H, W, 3]; rows: (group, kind, [map [H, W] or None per column]) -> panel [h, w, 3] in [0, 1]."""
    cell_h, cell_w = _cell_size(*image.shape[:2])
    cell_image = F.interpolate(image.permute(2, 0, 1)[None].float(), size=(cell_h, cell_w), mode="bilinear",
                               align_corners=False)[0].permute(1, 2, 0).clamp(0, 1)
    width = LABEL_WIDTH + len(columns) * (cell_w + MARGIN) + MARGIN
    height = 2 * HEADER + len(rows) * (cell_h + MARGIN) + MARGIN
    canvas = Image.new("RGB", (width, height), (24, 24, 28))
    draw = ImageDraw.Draw(canvas)
    draw.text((MARGIN, 8), title, fill=(235, 235, 235), font=_font(16))
    for c, label in enumerate(columns):
        draw.text((LABEL_WIDTH + c * (cell_w + MARGIN) + MARGIN, HEADER + 10), label, fill=(200, 200, 200), font=_font(12))
    for r, (group, kind, maps) in enumerate(rows):
        top = 2 * HEADER + r * (cell_h + MARGIN)
        draw.text((MARGIN, top + cell_h // 2 - 14), f"{group}\n{KIND_LABELS.get(kind, kind)}", fill=(220, 220, 220),
                  font=_font(13))
        found = [m for m in maps if m is not None]
        low = min(float(m.min()) for m in found) if found else 0.0
        span = max(float(m.max()) for m in found) - low if found else 0.0
        for c, heat in enumerate(maps):
            if heat is None:
                cell = cell_image * 0.3
            else:
                heat = F.interpolate(heat[None, None].float(), size=(cell_h, cell_w), mode="bilinear",
                                     align_corners=False)[0, 0]
                cell = overlay(cell_image, (heat - low) / span if span > 0 else heat * 0)
            pixels = (cell.clamp(0, 1).numpy() * 255).round().astype(np.uint8)
            canvas.paste(Image.fromarray(pixels), (LABEL_WIDTH + c * (cell_w + MARGIN) + MARGIN, top))
    return torch.from_numpy(np.asarray(canvas, dtype=np.float32) / 255.0)

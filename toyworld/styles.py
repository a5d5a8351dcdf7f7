"""Styles: the photo as drawn, a coloured-pencil drawing, a watercolor painting.

Applied to the whole composed image at twice the output size. Pencil keeps the shapes as dark
strokes and a hatched shading on paper faintly tinted by the original colours (so a red background
stays a reddish paper); watercolor keeps pale, soft, blotchy colours with darker pigment edges.
Noise is integer-hash noise of the pixel coordinates, the same on every platform.
"""
from __future__ import annotations

import numpy as np
from PIL import Image, ImageFilter

from .errors import SceneError

PAPER = np.array([246, 243, 236], np.float32)


def apply_style(image: Image.Image, style: str, texture_seed: int) -> Image.Image:
    if style == "photo":
        return image
    if style == "pencil":
        return _pencil(image, texture_seed)
    if style == "watercolor":
        return _watercolor(image, texture_seed)
    raise SceneError(f"style {style!r} is unknown: use 'photo', 'pencil' or 'watercolor'")


def hash_noise(height: int, width: int, seed: int, cell: int = 1) -> np.ndarray:
    """Uniform [0, 1) noise, constant on ``cell`` x ``cell`` blocks, from an integer hash."""
    y = (np.arange(height, dtype=np.uint32) // cell)[:, None]
    x = (np.arange(width, dtype=np.uint32) // cell)[None, :]
    with np.errstate(over="ignore"):
        h = x * np.uint32(0x9E3779B1) ^ y * np.uint32(0x85EBCA77) ^ np.uint32(seed & 0xFFFFFFFF)
        h ^= h >> np.uint32(15)
        h *= np.uint32(0x2C1B3C6D)
        h ^= h >> np.uint32(12)
        h *= np.uint32(0x297A2D39)
        h ^= h >> np.uint32(15)
    return (h >> np.uint32(8)).astype(np.float32) / float(1 << 24)


def _smooth_noise(height: int, width: int, seed: int, cell: int) -> np.ndarray:
    coarse = hash_noise(height // cell + 2, width // cell + 2, seed)
    up = Image.fromarray((coarse * 255).astype(np.uint8), "L").resize(
        ((width // cell + 2) * cell, (height // cell + 2) * cell), Image.BICUBIC)
    return np.asarray(up, np.float32)[:height, :width] / 255.0


def _gray(rgb: np.ndarray) -> np.ndarray:
    return rgb @ np.array([0.299, 0.587, 0.114], np.float32)


def _edges(gray: np.ndarray) -> np.ndarray:
    gy, gx = np.gradient(gray)
    return np.hypot(gx, gy)


def _pencil(image: Image.Image, seed: int) -> Image.Image:
    rgb = np.asarray(image, np.float32)
    h, w = rgb.shape[:2]
    gray = _gray(np.asarray(image.filter(ImageFilter.GaussianBlur(0.7)), np.float32)) / 255.0
    strokes = np.clip(_edges(gray) * 7.0, 0.0, 1.0) ** 0.8
    yy, xx = np.mgrid[0:h, 0:w]
    period = max(3, w // 20)
    hatch = ((xx + yy) % period) < max(1, period // 3)
    cross = ((xx - yy) % period) < max(1, period // 3)
    shading = 1.0 - 0.35 * (1.0 - gray)  # soft graphite tone
    shading = shading - 0.25 * hatch * (gray < 0.55) - 0.25 * cross * (gray < 0.3)
    grain = 0.94 + 0.06 * hash_noise(h, w, seed)
    tone = np.clip(shading * (1.0 - 0.85 * strokes) * grain, 0.0, 1.0)
    paper = PAPER + 0.5 * (rgb - PAPER)  # coloured pencil: the colours survive, faintly
    out = paper * tone[..., None] * np.array([0.97, 0.97, 1.0], np.float32)
    return Image.fromarray(np.clip(out, 0, 255).round().astype(np.uint8), "RGB")


def _watercolor(image: Image.Image, seed: int) -> Image.Image:
    h, w = image.height, image.width
    soft = np.asarray(image.filter(ImageFilter.GaussianBlur(w / 128)), np.float32)
    quantized = np.round(soft / 48.0) * 48.0  # flat washes of pigment
    pigment = 0.5 * soft + 0.5 * quantized
    bloom = 0.75 + 0.35 * _smooth_noise(h, w, seed, max(2, w // 10))  # uneven wash
    wash = PAPER + (pigment - PAPER) * 0.72 * bloom[..., None]
    rim = np.clip(_edges(_gray(soft) / 255.0) * 5.0, 0.0, 1.0)  # pigment pools at the edges
    wash = wash * (1.0 - 0.3 * rim[..., None])
    grain = 0.96 + 0.04 * hash_noise(h, w, seed + 1)
    out = wash * grain[..., None]
    return Image.fromarray(np.clip(out, 0, 255).round().astype(np.uint8), "RGB")

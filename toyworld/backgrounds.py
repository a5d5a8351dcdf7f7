"""The eight backgrounds, drawn at the working resolution. Texture details (snowflakes, stars,
trees, waves) come from the variation's texture seed; the kind of background never changes."""
from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw

from .errors import SceneError
from .rng import Rng

PLAIN = {"red": (200, 48, 44), "blue": (52, 96, 200), "green": (56, 160, 72), "yellow": (236, 204, 60)}
NIGHT_SKY = ((8, 10, 36), (30, 36, 84))
SNOW_SKY = ((176, 190, 206), (214, 222, 232))
BEACH_SKY = ((120, 190, 240), (190, 225, 250))
FOREST = ((28, 70, 40), (60, 110, 60))


def draw_background(name: str, side: int, texture_seed: int) -> Image.Image:
    """An RGB image ``side`` x ``side`` of the background ``name``."""
    rng = Rng("toyworld-background", name, texture_seed)
    if name in PLAIN:
        colour = tuple(int(np.clip(c + rng.uniform(-10, 10), 0, 255)) for c in PLAIN[name])
        return _gradient(side, colour, tuple(int(c * 0.82) for c in colour))
    painter = {"snow": _snow, "night": _night, "beach": _beach, "forest": _forest}.get(name)
    if painter is None:
        raise SceneError(f"background {name!r} is unknown: use one of {tuple(PLAIN) + ('snow', 'night', 'beach', 'forest')}")
    return painter(side, rng)


def _gradient(side: int, top, bottom) -> Image.Image:
    t = np.linspace(0.0, 1.0, side, dtype=np.float32)[:, None, None]
    rows = (1 - t) * np.array(top, np.float32) + t * np.array(bottom, np.float32)
    return Image.fromarray(np.repeat(rows, side, axis=1).round().astype(np.uint8), "RGB")


def _snow(side: int, rng: Rng) -> Image.Image:
    image = _gradient(side, *SNOW_SKY)
    draw = ImageDraw.Draw(image)
    horizon = side * rng.uniform(0.55, 0.65)
    for _ in range(2):  # snowy pines on the horizon
        x, h = side * rng.uniform(0.05, 0.95), side * rng.uniform(0.15, 0.25)
        draw.polygon([(x - h * 0.35, horizon), (x + h * 0.35, horizon), (x, horizon - h)], fill=(70, 100, 90))
        draw.polygon([(x - h * 0.16, horizon - h * 0.55), (x + h * 0.16, horizon - h * 0.55), (x, horizon - h)],
                     fill=(245, 248, 252))
    draw.rectangle((0, horizon, side, side), fill=(246, 248, 252))
    _scatter(draw, rng, side, 60, 1.0, (0.006, 0.014), (255, 255, 255))  # falling snow
    return image


def _scatter(draw, rng: Rng, side: int, count: int, height: float, radii: tuple[float, float], fill) -> None:
    """``count`` dots at random places of the top ``height`` of the image (snow flakes, stars)."""
    for _ in range(count):
        x, y, r = side * rng.random(), side * rng.random() * height, side * rng.uniform(*radii)
        draw.ellipse((x - r, y - r, x + r, y + r), fill=fill)


def _night(side: int, rng: Rng) -> Image.Image:
    image = _gradient(side, *NIGHT_SKY)
    draw = ImageDraw.Draw(image)
    _scatter(draw, rng, side, 40, 0.8, (0.003, 0.008), (255, 250, 220))  # stars
    mx, my, mr = side * rng.choice((0.15, 0.85)), side * rng.uniform(0.1, 0.2), side * 0.08
    draw.ellipse((mx - mr, my - mr, mx + mr, my + mr), fill=(250, 236, 170))
    draw.ellipse((mx - mr * 0.5, my - mr * 1.1, mx + mr * 1.4, my + mr * 0.8), fill=NIGHT_SKY[0])  # crescent
    draw.rectangle((0, side * 0.85, side, side), fill=(14, 18, 30))
    return image


def _beach(side: int, rng: Rng) -> Image.Image:
    image = _gradient(side, *BEACH_SKY)
    draw = ImageDraw.Draw(image)
    sea_top, sand_top = side * rng.uniform(0.45, 0.52), side * rng.uniform(0.66, 0.72)
    draw.rectangle((0, sea_top, side, sand_top), fill=(30, 110, 170))
    for i in range(4):  # wave lines
        y = sea_top + (sand_top - sea_top) * (i + 0.5) / 4
        draw.line((0, y, side, y + side * rng.uniform(-0.01, 0.01)), fill=(120, 180, 220), width=max(1, side // 120))
    draw.rectangle((0, sand_top, side, side), fill=(236, 210, 150))
    sx, sy, r = side * rng.uniform(0.1, 0.9), side * rng.uniform(0.08, 0.18), side * 0.07
    draw.ellipse((sx - r, sy - r, sx + r, sy + r), fill=(255, 230, 90))
    return image


def _forest(side: int, rng: Rng) -> Image.Image:
    image = _gradient(side, *FOREST)
    draw = ImageDraw.Draw(image)
    for _ in range(7):
        x, w = side * rng.random(), side * rng.uniform(0.03, 0.06)
        draw.rectangle((x - w / 2, side * 0.3, x + w / 2, side), fill=(90, 60, 34))
        h = side * rng.uniform(0.35, 0.55)
        top = side * rng.uniform(0.0, 0.2)
        green = (int(rng.uniform(20, 50)), int(rng.uniform(100, 150)), int(rng.uniform(40, 70)))
        draw.polygon([(x - h * 0.35, top + h), (x + h * 0.35, top + h), (x, top)], fill=green)
    draw.rectangle((0, side * 0.88, side, side), fill=(50, 90, 40))
    return image

"""Per-render jitter that is not identity: pose, scale, position, lighting, and small extras.

Drawn from ``(variation_seed, identity key)`` so two identities rendered with the same seed still
differ in pose; the same inputs always give the same jitter.
"""
from __future__ import annotations

from dataclasses import dataclass

from .rng import Rng

SHIRT_COLOURS = ((200, 40, 50), (40, 80, 180), (40, 140, 80), (230, 190, 40), (120, 60, 150), (240, 240, 240),
                 (50, 50, 56), (230, 120, 40), (100, 160, 200))
EXPRESSIONS = ("smile", "neutral", "open")


@dataclass(frozen=True)
class Variation:
    tilt_deg: float  # head/body roll, degrees
    yaw: float  # -1..1, features shift towards one side as the head turns
    scale: float  # multiplies the framing's subject size
    dx: float  # position offset, fraction of the image width
    dy: float  # fraction of the image height
    brightness: float  # multiplies the subject's colours
    light_angle_deg: float  # where the light comes from
    light_strength: float  # 0..1, side-to-side shading contrast
    shirt_rgb: tuple[int, int, int]  # person only: clothes are not identity
    expression: str
    tail_side: int  # pet only: -1 left, 1 right
    texture_seed: int  # background details (snowflakes, stars, trees)


def sample_variation(variation_seed: int, subject_key: str = "") -> Variation:
    rng = Rng("toyworld-variation", variation_seed, subject_key)
    return Variation(
        tilt_deg=rng.uniform(-12.0, 12.0), yaw=rng.uniform(-1.0, 1.0), scale=rng.uniform(0.9, 1.1),
        dx=rng.uniform(-0.04, 0.04), dy=rng.uniform(-0.03, 0.03), brightness=rng.uniform(0.82, 1.12),
        light_angle_deg=rng.uniform(0.0, 360.0), light_strength=rng.uniform(0.0, 0.35),
        shirt_rgb=rng.choice(SHIRT_COLOURS), expression=rng.choice(EXPRESSIONS), tail_side=rng.choice((-1, 1)),
        texture_seed=rng.randint(1 << 31))

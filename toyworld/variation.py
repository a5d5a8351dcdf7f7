"""Per-render jitter that is not identity: pose, scale, position, lighting, and the subject's look.

Drawn from ``(variation_seed, identity key)`` so two identities rendered with the same seed still
differ in pose; the same inputs always give the same jitter. The look values (shirt, expression,
hat; the dog's accessory and pose) are what a render shows when its caption does not name them
(``look.realised_look``); a caption that names one overrides the draw.
"""
from __future__ import annotations

from dataclasses import dataclass

from .rng import Rng

# Shirt colours share no word with the backgrounds ("on a red background"): run 10's base, trained with red, blue,
# green and yellow shirts too, painted the background in a shirt's colour and the shirt in the background's
# (README, "Evidence on two CPU cores").
SHIRT_RGB = {"white": (240, 240, 240), "black": (50, 50, 56), "purple": (120, 60, 150), "orange": (230, 120, 40)}
SHIRT_COLOURS = tuple(SHIRT_RGB)  # the shirt colours' names, in the order the variation draws them
EXPRESSIONS = ("smile", "neutral", "open")
HATS = ("none", "cap", "top_hat", "crown")  # person; never part of an identity
ACCESSORIES = ("none", "bandana", "party_hat", "bow")  # dog; the identity's collar is another thing
POSES = ("sitting", "standing", "lying")  # dog


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
    shirt: str  # person only: clothes are not identity (a SHIRT_COLOURS name)
    expression: str
    tail_side: int  # pet only: -1 left, 1 right
    texture_seed: int  # background details (snowflakes, stars, trees)
    hat: str = "none"  # person only
    accessory: str = "none"  # pet only
    pose: str = "sitting"  # pet only


def sample_variation(variation_seed: int, subject_key: str = "") -> Variation:
    rng = Rng("toyworld-variation", variation_seed, subject_key)
    return Variation(
        tilt_deg=rng.uniform(-12.0, 12.0), yaw=rng.uniform(-1.0, 1.0), scale=rng.uniform(0.9, 1.1),
        dx=rng.uniform(-0.04, 0.04), dy=rng.uniform(-0.03, 0.03), brightness=rng.uniform(0.82, 1.12),
        light_angle_deg=rng.uniform(0.0, 360.0), light_strength=rng.uniform(0.0, 0.35),
        shirt=rng.choice(SHIRT_COLOURS), expression=rng.choice(EXPRESSIONS), tail_side=rng.choice((-1, 1)),
        texture_seed=rng.randint(1 << 31),
        # drawn last, so the draws above are the second edition's: "none" half the time, else a kind
        hat=_none_or(rng, HATS), accessory=_none_or(rng, ACCESSORIES), pose=rng.choice(POSES))


def _none_or(rng: Rng, values: tuple[str, ...]) -> str:
    pick = rng.choice(values[1:])
    return values[0] if rng.random() < 0.5 else pick

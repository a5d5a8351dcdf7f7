"""A pet (a dog), head front-on, drawn in the unit square of a ``Pen``.

Layout (unit square): head centre (0.5, 0.33); below it the body in the pose: sitting (an upright
body and front legs, paws at y ~0.98), standing (a level body reaching to the tail's side on four
legs, paws at y ~0.98) or lying (a low level body, forepaws under the chin, y ~0.8). Identity is in
the head shape, ears, fur and pattern colours, snout, eyes, collar and nose; the expression, the
tail's side and the look (pose, accessory) come from the variation, where a caption's look has
replaced the draw.
"""
from __future__ import annotations

from .identity import COLLARS, NOSE_COLOURS, PET_EYE_COLOURS, PetIdentity
from .pen import Pen, mix, shade
from .rng import Rng
from .variation import Variation

HEAD_X, HEAD_Y = 0.5, 0.33
HEAD_RADII = {"round": (0.19, 0.18), "wide": (0.23, 0.165), "narrow": (0.155, 0.2)}
SNOUT_RADII = {"short": (0.1, 0.065), "medium": (0.115, 0.085), "long": (0.125, 0.11)}
INNER_EAR = (230, 150, 150)
BANDANA = (150, 50, 170)
PARTY_HAT, POMPOM = (40, 180, 220), (250, 250, 250)
BOW = (235, 60, 90)


def draw_pet(pen: Pen, pet: PetIdentity, variation: Variation) -> None:
    rx, ry = HEAD_RADII[pet.head_shape]
    hx, hy = HEAD_X, HEAD_Y
    fur, accent = pet.fur_rgb, pet.pattern_rgb
    tail = fur if pet.pattern != "saddle" else accent
    if variation.pose == "standing":
        _standing_body(pen, pet, fur, accent, tail, variation.tail_side)
    elif variation.pose == "lying":
        _lying_body(pen, pet, fur, accent, tail, variation.tail_side)
    else:
        _tail(pen, tail, variation.tail_side)
        _body(pen, pet, fur, accent)
    _collar(pen, pet)
    if variation.accessory == "bandana":
        pen.polygon([(0.5 - 0.15, 0.5), (0.5 + 0.15, 0.5), (0.5, 0.72)], BANDANA)
    ear_colour = accent if pet.pattern == "saddle" else fur
    inner = accent if pet.pattern == "solid" else INNER_EAR
    if pet.ear_shape in ("pointy", "bat"):
        _ears(pen, pet.ear_shape, ear_colour, inner, hx, hy, rx, ry, pet.ear_size)
    pen.ellipse(hx, hy, rx, ry, fur)
    fx = hx + 0.2 * rx * variation.yaw
    _head_pattern(pen, pet, accent, fx, hy, rx, ry)
    if pet.ear_shape in ("floppy", "folded"):
        _ears(pen, pet.ear_shape, ear_colour, inner, hx, hy, rx, ry, pet.ear_size)
    _eyes(pen, PET_EYE_COLOURS[pet.eye_colour], fx, hy - 0.12 * ry, 0.45 * rx)
    _snout(pen, pet, fur, fx, hy, ry, variation.expression)
    _head_accessory(pen, variation.accessory, hx, hy, rx, ry)


def _head_accessory(pen: Pen, kind: str, hx, hy, rx, ry) -> None:
    top = hy - ry
    if kind == "party_hat":
        pen.polygon([(hx - 0.085, top + 0.04), (hx + 0.085, top + 0.04), (hx + 0.01, top - 0.2)], PARTY_HAT)
        pen.ellipse(hx + 0.01, top - 0.2, 0.03, 0.03, POMPOM)
    elif kind == "bow":
        bx, by = hx + 0.45 * rx, top + 0.03
        pen.polygon([(bx, by), (bx - 0.1, by - 0.06), (bx - 0.1, by + 0.06)], BOW)
        pen.polygon([(bx, by), (bx + 0.1, by - 0.06), (bx + 0.1, by + 0.06)], BOW)
        pen.ellipse(bx, by, 0.025, 0.025, shade(BOW, 0.75))


def _collar(pen: Pen, pet: PetIdentity) -> None:
    collar = COLLARS[pet.collar]
    if collar is not None:
        pen.rounded_rect(0.5 - 0.13, 0.5, 0.5 + 0.13, 0.55, 0.02, collar)
        pen.ellipse(0.5, 0.57, 0.022, 0.022, (240, 200, 60))


def _level_body(pen: Pen, pet: PetIdentity, fur, accent, side: int, cy: float, ry: float) -> None:
    """A body seen from the side reaching from under the head to the tail's side; its pattern."""
    cx = 0.5 + side * 0.17
    pen.ellipse(cx, cy, 0.29, ry, fur)
    if pet.pattern == "saddle":
        pen.chord(cx, cy, 0.29, ry, 180, 360, accent)
    if pet.pattern == "spots":
        rng = Rng("toyworld-spots", pet.identity_id)
        for _ in range(4):
            pen.ellipse(cx + rng.uniform(-0.18, 0.18), cy + rng.uniform(-0.6, 0.6) * ry, rng.uniform(0.03, 0.05),
                        rng.uniform(0.025, 0.045), accent)
    pen.ellipse(0.5, cy - 0.03, 0.12, ry, fur)  # chest under the head
    if pet.pattern == "blaze":
        pen.ellipse(0.5, cy - 0.03, 0.07, 0.7 * ry, accent)


def _standing_body(pen: Pen, pet: PetIdentity, fur, accent, tail, side: int) -> None:
    pen.line([(0.5 + side * 0.44, 0.6), (0.5 + side * 0.53, 0.5), (0.5 + side * 0.56, 0.4)], tail, 0.05)
    for x in (0.5 - 0.06, 0.5 + 0.06, 0.5 + side * 0.3, 0.5 + side * 0.4):
        pen.rounded_rect(x - 0.035, 0.64, x + 0.035, 0.97, 0.03, shade(fur, 0.9))
        pen.ellipse(x, 0.97, 0.045, 0.022, shade(fur, 1.15))
    _level_body(pen, pet, fur, accent, side, 0.64, 0.13)


def _lying_body(pen: Pen, pet: PetIdentity, fur, accent, tail, side: int) -> None:
    pen.line([(0.5 + side * 0.42, 0.72), (0.5 + side * 0.56, 0.77), (0.5 + side * 0.66, 0.75)], tail, 0.05)
    _level_body(pen, pet, fur, accent, side, 0.66, 0.11)
    for dx in (-0.08, 0.08):
        pen.rounded_rect(0.5 + dx - 0.04, 0.62, 0.5 + dx + 0.04, 0.8, 0.03, shade(fur, 0.93))
        pen.ellipse(0.5 + dx, 0.8, 0.05, 0.03, shade(fur, 1.15))


def _tail(pen: Pen, colour, side: int) -> None:
    pen.line([(0.5 + side * 0.16, 0.92), (0.5 + side * 0.3, 0.88), (0.5 + side * 0.36, 0.74),
              (0.5 + side * 0.33, 0.64)], colour, 0.05)


def _body(pen: Pen, pet: PetIdentity, fur, accent) -> None:
    pen.ellipse(0.5, 0.76, 0.2, 0.24, fur)
    if pet.pattern == "saddle":
        pen.chord(0.5, 0.76, 0.2, 0.24, 150, 390, accent)
    if pet.pattern == "blaze":
        pen.ellipse(0.5, 0.7, 0.09, 0.13, accent)
    if pet.pattern == "spots":
        rng = Rng("toyworld-spots", pet.identity_id)
        for _ in range(4):
            pen.ellipse(rng.uniform(0.38, 0.62), rng.uniform(0.62, 0.9), rng.uniform(0.03, 0.05),
                        rng.uniform(0.025, 0.045), accent)
    for side in (-1, 1):
        x = 0.5 + side * 0.085
        pen.rounded_rect(x - 0.04, 0.74, x + 0.04, 0.98, 0.03, shade(fur, 0.93))
        pen.ellipse(x, 0.975, 0.05, 0.025, shade(fur, 1.15))


def _ears(pen: Pen, shape: str, colour, inner, hx, hy, rx, ry, size: float) -> None:
    for side in (-1, 1):
        if shape == "pointy":
            base_l, base_r = (hx + side * 0.85 * rx, hy - 0.3 * ry), (hx + side * 0.25 * rx, hy - 0.9 * ry)
            tip = (hx + side * 0.8 * rx, hy - (0.9 + 0.75 * size) * ry)
            pen.polygon([base_l, base_r, tip], colour)
            pen.polygon([_towards(base_l, tip, 0.3), _towards(base_r, tip, 0.3), _towards(tip, base_l, 0.15)], inner)
        elif shape == "bat":  # big, broad, upright and splayed
            cx, cy = hx + side * 0.95 * rx, hy - 0.95 * ry
            pen.rotated_ellipse(cx, cy, 0.075 * size, 0.14 * size, side * 35, colour)
            pen.rotated_ellipse(cx, cy + 0.015, 0.04 * size, 0.09 * size, side * 35, inner)
        elif shape == "floppy":
            pen.rotated_ellipse(hx + side * 1.0 * rx, hy + 0.2 * ry, 0.065 * size, 0.17 * size, -side * 12,
                                shade(colour, 0.85))
        else:  # folded: a triangle on the crown whose tip falls forward over the forehead
            pen.polygon([(hx + side * 0.95 * rx, hy - 0.55 * ry), (hx + side * 0.3 * rx, hy - 0.95 * ry),
                         (hx + side * 0.55 * rx, hy - (0.05 - 0.2 * (size - 1)) * ry)], shade(colour, 0.85))


def _head_pattern(pen: Pen, pet: PetIdentity, accent, fx, hy, rx, ry) -> None:
    if pet.pattern == "eye_patch":
        pen.ellipse(fx - 0.45 * rx, hy - 0.12 * ry, 0.075, 0.07, accent)
    elif pet.pattern == "blaze":
        pen.polygon([(fx - 0.03, hy - ry * 0.95), (fx + 0.03, hy - ry * 0.95), (fx + 0.07, hy + 0.3 * ry),
                     (fx - 0.07, hy + 0.3 * ry)], accent)
    elif pet.pattern == "spots":
        pen.ellipse(fx + 0.5 * rx, hy - 0.55 * ry, 0.045, 0.035, accent)
    elif pet.pattern == "saddle":
        pen.chord(fx, hy - 0.2 * ry, rx * 0.95, ry * 0.8, 190, 350, accent)


def _eyes(pen: Pen, iris, fx, ey, spacing: float) -> None:
    for side in (-1, 1):
        ex = fx + side * spacing
        pen.ellipse(ex, ey, 0.036, 0.036, (20, 16, 14))
        pen.ellipse(ex, ey, 0.027, 0.027, iris)
        pen.ellipse(ex, ey, 0.013, 0.013, (8, 8, 8))
        pen.ellipse(ex - 0.01, ey - 0.012, 0.007, 0.007, (255, 255, 255))


def _snout(pen: Pen, pet: PetIdentity, fur, fx, hy, ry, expression: str) -> None:
    sx, sy = SNOUT_RADII[pet.snout]
    muzzle_y = hy + 0.45 * ry + sy * 0.5
    muzzle = shade(fur, 1.35) if sum(fur) < 600 else shade(fur, 0.88)
    pen.ellipse(fx, muzzle_y, sx, sy, muzzle)
    nose_y = muzzle_y - sy * 0.5
    pen.ellipse(fx, nose_y, 0.05, 0.034, NOSE_COLOURS[pet.nose_colour])
    pen.ellipse(fx - 0.015, nose_y - 0.012, 0.012, 0.008, (250, 250, 250))
    mouth = shade(mix(fur, (40, 30, 30), 0.6), 0.8)
    pen.line([(fx, nose_y + 0.02), (fx, muzzle_y + sy * 0.45)], mouth, 0.01)
    if expression == "open":
        pen.ellipse(fx, muzzle_y + sy * 0.9, 0.03, 0.035, (230, 100, 120))  # tongue
    else:
        pen.arc(fx - 0.03, muzzle_y + sy * 0.35, 0.03, 0.02, 0, 180, mouth, 0.01)
        pen.arc(fx + 0.03, muzzle_y + sy * 0.35, 0.03, 0.02, 0, 180, mouth, 0.01)


def _towards(a, b, t: float):
    return (a[0] + (b[0] - a[0]) * t, a[1] + (b[1] - a[1]) * t)

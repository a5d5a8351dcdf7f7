"""A person, head and shoulders, drawn front-on in the unit square of a ``Pen``.

Layout (unit square): head centre (0.5, 0.36); shoulders from y ~0.72 to the bottom. Identity is in
the face shape, skin, eyes, hair, mark and glasses; the shirt, expression and hat (the look) come
from the variation, where a caption's look has replaced the draw.
"""
from __future__ import annotations

from .identity import EYE_COLOURS, PersonIdentity
from .pen import Pen, mix, shade
from .variation import SHIRT_RGB, Variation

HEAD_X, HEAD_Y = 0.5, 0.36
FACE_RADII = {"round": (0.20, 0.21), "oval": (0.175, 0.245), "long": (0.155, 0.265), "square": (0.19, 0.22)}
EYE_RADII = {"round": (0.05, 0.05, 0.036), "almond": (0.06, 0.034, 0.03), "narrow": (0.058, 0.02, 0.02)}
FRAME = (26, 24, 28)
SCAR = (150, 40, 60)
CAP, CAP_BRIM = (20, 150, 150), (10, 100, 100)
TOP_HAT, TOP_HAT_BAND = (28, 26, 32), (190, 30, 40)
CROWN, CROWN_JEWEL = (240, 196, 40), (200, 30, 60)


def head_radii(person: PersonIdentity) -> tuple[float, float]:
    rx, ry = FACE_RADII[person.face_shape]
    return rx, ry * person.face_aspect


def draw_person(pen: Pen, person: PersonIdentity, variation: Variation) -> None:
    rx, ry = head_radii(person)
    hx, hy = HEAD_X, HEAD_Y
    skin, hair = person.skin_rgb, person.hair_rgb
    _torso(pen, SHIRT_RGB[variation.shirt], skin, hy + ry)
    _hair_back(pen, person.hair_style, hair, hx, hy, rx, ry)
    _head(pen, person.face_shape, skin, hx, hy, rx, ry)
    fx = hx + 0.22 * rx * variation.yaw  # features follow the head's turn
    _mark(pen, person.mark, skin, fx, hy, rx, ry)
    _eyes(pen, person, hair, fx, hy, rx, ry)
    pen.polygon([(fx, hy + 0.18 * ry), (fx - 0.035, hy + 0.42 * ry), (fx + 0.02, hy + 0.44 * ry)], shade(skin, 0.8))
    _mouth(pen, variation.expression, skin, fx, hy + 0.66 * ry)
    _hair_front(pen, person.hair_style, hair, hx, hy, rx, ry)
    _glasses(pen, person.glasses, person, fx, hy, rx, ry)
    _hat(pen, variation.hat, hx, hy, rx, ry)


def _hat(pen: Pen, kind: str, hx, hy, rx, ry) -> None:
    """A hat on the crown of the head (above the brows), drawn over the hair."""
    top = hy - ry  # the crown of the head
    if kind == "cap":
        pen.chord(hx, hy - 0.45 * ry, rx * 1.1, ry * 0.72, 180, 360, CAP)
        pen.ellipse(hx, hy - 0.45 * ry, rx * 1.3, 0.035, CAP_BRIM)
        pen.ellipse(hx, hy - 1.12 * ry, 0.025, 0.02, CAP_BRIM)
    elif kind == "top_hat":
        pen.rounded_rect(hx - rx * 0.75, top - 0.28, hx + rx * 0.75, top + 0.12 * ry, 0.01, TOP_HAT)
        pen.rounded_rect(hx - rx * 0.75, top - 0.05, hx + rx * 0.75, top + 0.02, 0.0, TOP_HAT_BAND)
        pen.ellipse(hx, top + 0.12 * ry, rx * 1.25, 0.035, TOP_HAT)
    elif kind == "crown":
        base, peak = top + 0.1 * ry, top - 0.2
        xs = [hx - rx * 0.85 + i * rx * 0.425 for i in range(5)]
        points = [(xs[0], base)] + [(x, peak if i % 2 == 0 else top - 0.06) for i, x in enumerate(xs)] + [(xs[-1], base)]
        pen.polygon(points, CROWN)
        pen.ellipse(hx, top - 0.01, 0.025, 0.025, CROWN_JEWEL)


def _torso(pen: Pen, shirt, skin, chin_y: float) -> None:
    pen.rounded_rect(HEAD_X - 0.06, chin_y - 0.06, HEAD_X + 0.06, 0.74, 0.02, shade(skin, 0.9))
    pen.ellipse(HEAD_X, 0.95, 0.39, 0.26, shirt)
    pen.rounded_rect(HEAD_X - 0.39, 0.95, HEAD_X + 0.39, 1.2, 0.0, shirt)
    pen.chord(HEAD_X, 0.7, 0.085, 0.05, 0, 180, shade(skin, 0.9))  # neckline


def _head(pen: Pen, shape: str, skin, hx, hy, rx, ry) -> None:
    if shape == "square":
        pen.rounded_rect(hx - rx, hy - ry, hx + rx, hy + ry, 0.07, skin)
    else:
        pen.ellipse(hx, hy, rx, ry, skin)
    pen.ellipse(hx - rx * 0.98, hy + 0.05 * ry, 0.03, 0.05, shade(skin, 0.92))  # ears
    pen.ellipse(hx + rx * 0.98, hy + 0.05 * ry, 0.03, 0.05, shade(skin, 0.92))


def _hair_back(pen: Pen, style: str, hair, hx, hy, rx, ry) -> None:
    if style == "long":
        pen.rounded_rect(hx - rx * 1.22, hy - ry * 1.08, hx + rx * 1.22, hy + ry * 1.75, 0.12, shade(hair, 0.9))
    elif style == "afro":
        pen.ellipse(hx, hy - ry * 0.3, rx * 1.7, ry * 1.3, hair)
    elif style == "bun":
        pen.ellipse(hx, hy - ry * 1.12, rx * 0.5, rx * 0.5, hair)


def _hair_front(pen: Pen, style: str, hair, hx, hy, rx, ry) -> None:
    if style == "bald":
        return
    cap_bottom = hy - ry * 0.35  # the hairline; the cap is the upper half of an ellipse sitting on it
    pen.chord(hx, cap_bottom, rx * 1.06, ry * 0.75, 180, 360, hair)
    if style == "long":
        for side in (-1, 1):
            pen.rounded_rect(hx + side * rx * 0.97 - 0.022, hy - ry * 0.5, hx + side * rx * 0.97 + 0.022, hy + ry * 0.9,
                             0.02, hair)
    elif style == "spiky":
        for i in range(5):
            x = hx - rx * 0.8 + i * rx * 0.4
            pen.polygon([(x - rx * 0.22, hy - ry * 0.75), (x + rx * 0.22, hy - ry * 0.75), (x, hy - ry * 1.5)], hair)
    elif style == "afro":
        for side in (-1, 1):
            pen.ellipse(hx + side * rx * 1.05, hy - ry * 0.2, rx * 0.35, ry * 0.55, hair)


def _eyes(pen: Pen, person: PersonIdentity, hair, fx, hy, rx, ry) -> None:
    wx, wy, iris = EYE_RADII[person.eye_shape]
    ey = hy - 0.05 * ry
    iris_rgb = EYE_COLOURS[person.eye_colour]
    brow = shade(hair, 0.8) if person.hair_style != "bald" else shade(hair, 0.7)
    wx = min(wx, 0.8 * person.eye_spacing_value)
    for side in (-1, 1):
        ex = fx + side * person.eye_spacing_value
        pen.ellipse(ex, ey, wx, wy, (250, 250, 250))
        pen.ellipse(ex, ey, min(iris, wx), min(iris, wy), iris_rgb)
        pen.ellipse(ex, ey, iris * 0.45, min(iris, wy) * 0.45, (10, 10, 12))
        pen.line([(ex - wx, ey - wy - 0.03), (ex + wx, ey - wy - 0.03 - 0.01 * side)], brow, 0.02)


def _mouth(pen: Pen, expression: str, skin, fx, my) -> None:
    """Bold enough to read at 64 px: a wide smile, an open laughing mouth with teeth, a straight line."""
    lips = mix(shade(skin, 0.6), (170, 40, 50), 0.5)
    if expression == "smile":
        pen.arc(fx, my - 0.04, 0.08, 0.055, 15, 165, lips, 0.024)
    elif expression == "open":
        pen.ellipse(fx, my + 0.005, 0.06, 0.045, (90, 20, 30))
        pen.chord(fx, my - 0.012, 0.05, 0.025, 0, 180, (245, 245, 240))
    else:
        pen.line([(fx - 0.045, my), (fx + 0.045, my)], lips, 0.012)


def _mark(pen: Pen, mark: str, skin, fx, hy, rx, ry) -> None:
    if mark == "freckles":
        dots = shade(mix(skin, (150, 70, 30), 0.6), 0.7)
        for side in (-1, 1):
            for dx, dy in ((0.0, 0.0), (0.09, 0.03), (0.04, 0.1), (-0.04, 0.08), (0.1, 0.13)):
                pen.ellipse(fx + side * (0.4 * rx + dx * rx * 2.0), hy + 0.2 * ry + dy * ry, 0.018, 0.018, dots)
    elif mark == "scar":
        pen.line([(fx - 0.8 * rx, hy - 0.35 * ry), (fx - 0.25 * rx, hy + 0.55 * ry)], SCAR, 0.034)
        for t in (0.25, 0.5, 0.75):
            x, y = fx - 0.8 * rx + 0.55 * rx * t, hy - 0.35 * ry + 0.9 * ry * t
            pen.line([(x - 0.04, y + 0.016), (x + 0.04, y - 0.016)], SCAR, 0.018)
    elif mark == "mole":
        pen.ellipse(fx + 0.5 * rx, hy + 0.42 * ry, 0.035, 0.035, (60, 30, 20))


def _glasses(pen: Pen, kind: str, person: PersonIdentity, fx, hy, rx, ry) -> None:
    if kind == "none":
        return
    ey = hy - 0.05 * ry
    s = person.eye_spacing_value
    r = min(0.085, 0.95 * s)
    for side in (-1, 1):
        ex = fx + side * s
        if kind == "round":
            pen.ring(ex, ey, r, r, FRAME, 0.018)
        elif kind == "square":
            pen.rounded_rect(ex - r * 1.05, ey - r * 0.8, ex + r * 1.05, ey + r * 0.8, 0.01, None, FRAME, 0.018)
        else:
            pen.rounded_rect(ex - r * 1.05, ey - r * 0.75, ex + r * 1.05, ey + r * 0.75, 0.03, (20, 20, 26))
        pen.line([(ex + side * r * 0.95, ey - 0.01), (fx + side * rx * 0.98, ey - 0.02)], FRAME, 0.014)  # temples
    inner = max(s - r, 0.0)
    pen.line([(fx - inner, ey - 0.01), (fx + inner, ey - 0.01)], FRAME, 0.016)  # bridge

"""Drawing in a subject's unit coordinates straight onto the working canvas.

A subject is described in a unit square (x right, y down, 0..1). The pen maps unit points to canvas
pixels by an affine transform (scale, roll about an anchor, translation) and draws every shape as a
polygon or polyline with PIL, so a posed subject costs no image resampling.
"""
from __future__ import annotations

import math
from typing import Optional, Sequence

from PIL import Image, ImageDraw

RGB = tuple[int, int, int]
Point = tuple[float, float]


class Pen:
    def __init__(self, side: int, unit_px: float, anchor_unit: Point, anchor_px: Point, roll_deg: float) -> None:
        """``anchor_unit`` (a unit-square point) lands on canvas pixel ``anchor_px``; the subject is
        rolled by ``roll_deg`` (counter-clockwise as seen) about it."""
        self.image = Image.new("RGBA", (side, side), (0, 0, 0, 0))
        self.unit_px = float(unit_px)
        self._anchor_unit, self._anchor_px = anchor_unit, anchor_px
        roll = math.radians(roll_deg)
        self._cos, self._sin = math.cos(roll), math.sin(roll)
        self._draw = ImageDraw.Draw(self.image)

    def px(self, x: float, y: float) -> Point:
        """Canvas pixel of a unit-square point."""
        dx, dy = (x - self._anchor_unit[0]) * self.unit_px, (y - self._anchor_unit[1]) * self.unit_px
        return (self._anchor_px[0] + dx * self._cos + dy * self._sin, self._anchor_px[1] - dx * self._sin + dy * self._cos)

    def width(self, units: float) -> int:
        return max(1, round(units * self.unit_px))

    def ellipse(self, cx: float, cy: float, rx: float, ry: float, fill: RGB) -> None:
        self.polygon(ellipse_points(cx, cy, rx, ry, n=self._segments(rx, ry)), fill)

    def ring(self, cx: float, cy: float, rx: float, ry: float, colour: RGB, line: float) -> None:
        points = ellipse_points(cx, cy, rx, ry, n=self._segments(rx, ry))
        self.line(points + points[:2], colour, line)

    def rotated_ellipse(self, cx: float, cy: float, rx: float, ry: float, angle_deg: float, fill: RGB) -> None:
        self.polygon(ellipse_points(cx, cy, rx, ry, angle_deg, self._segments(rx, ry)), fill)

    def chord(self, cx: float, cy: float, rx: float, ry: float, start_deg: float, end_deg: float, fill: RGB) -> None:
        """The part of an ellipse between two angles (degrees clockwise from 3 o'clock, as PIL)."""
        self.polygon(arc_points(cx, cy, rx, ry, start_deg, end_deg, self._segments(rx, ry)), fill)

    def arc(self, cx: float, cy: float, rx: float, ry: float, start_deg: float, end_deg: float, colour: RGB,
            line: float) -> None:
        self.line(arc_points(cx, cy, rx, ry, start_deg, end_deg, self._segments(rx, ry)), colour, line)

    def polygon(self, points: Sequence[Point], fill: RGB) -> None:
        self._draw.polygon([self.px(x, y) for x, y in points], fill=(*fill, 255))

    def line(self, points: Sequence[Point], colour: RGB, line: float) -> None:
        self._draw.line([self.px(x, y) for x, y in points], fill=(*colour, 255), width=self.width(line),
                        joint="curve")

    def rounded_rect(self, x0: float, y0: float, x1: float, y1: float, radius: float, fill: Optional[RGB],
                     outline: Optional[RGB] = None, line: float = 0.0) -> None:
        points = rounded_rect_points(x0, y0, x1, y1, radius)
        if fill is not None:
            self.polygon(points, fill)
        if outline is not None:
            self.line(points + points[:2], outline, line)

    def _segments(self, rx: float, ry: float) -> int:
        return int(min(72, max(12, (rx + ry) * self.unit_px * 1.2)))


def ellipse_points(cx: float, cy: float, rx: float, ry: float, angle_deg: float = 0.0, n: int = 32) -> list[Point]:
    a = math.radians(angle_deg)
    ca, sa = math.cos(a), math.sin(a)
    points = []
    for i in range(n):
        t = 2 * math.pi * i / n
        x, y = rx * math.cos(t), ry * math.sin(t)
        points.append((cx + x * ca - y * sa, cy + x * sa + y * ca))
    return points


def arc_points(cx: float, cy: float, rx: float, ry: float, start_deg: float, end_deg: float, n: int) -> list[Point]:
    steps = max(2, int(n * abs(end_deg - start_deg) / 360) + 1)
    return [(cx + rx * math.cos(math.radians(start_deg + (end_deg - start_deg) * i / (steps - 1))),
             cy + ry * math.sin(math.radians(start_deg + (end_deg - start_deg) * i / (steps - 1))))
            for i in range(steps)]


def rounded_rect_points(x0: float, y0: float, x1: float, y1: float, radius: float, n: int = 6) -> list[Point]:
    r = max(0.0, min(radius, (x1 - x0) / 2, (y1 - y0) / 2))
    if r == 0:
        return [(x0, y0), (x1, y0), (x1, y1), (x0, y1)]
    points = []
    for cx, cy, start in ((x1 - r, y0 + r, 270), (x1 - r, y1 - r, 0), (x0 + r, y1 - r, 90), (x0 + r, y0 + r, 180)):
        points += arc_points(cx, cy, r, r, start, start + 90, 4 * n)
    return points


def shade(colour: RGB, factor: float) -> RGB:
    """Darker (< 1) or lighter (> 1, towards white) version of a colour."""
    if factor <= 1:
        return tuple(int(c * factor) for c in colour)
    t = min(1.0, factor - 1)
    return tuple(int(c + (255 - c) * t) for c in colour)


def mix(a: RGB, b: RGB, t: float) -> RGB:
    return tuple(int(round(x + (y - x) * t)) for x, y in zip(a, b))

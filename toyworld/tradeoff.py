"""The trade-off plot the paper's claim is about: identity (y) against prompt alignment (x).

One polyline per method through its strength sweep (nested attention and the IP-Adapter file
through the nested rule: lambda, single token: value scale, decoupled cross-attention: scale), each point labelled with its strength; the base without a
subject, the base with the attribute caption (oracle text) and the renders as labelled points (the
renders are named in the legend when they lie far above everything else); the standard errors
clustered by identity as error bars. Input: ``evaluation.sweep_scores``. PIL only.
"""
from __future__ import annotations

import math
import textwrap
from dataclasses import dataclass
from typing import Optional

from PIL import Image, ImageDraw, ImageFont

CURVE_COLOURS = ((214, 39, 40), (31, 119, 180), (44, 160, 44), (148, 103, 189), (140, 86, 75))
POINT_COLOURS = ((0, 0, 0), (227, 119, 194), (127, 127, 127))
PLOT = (90, 50, 610, 470)  # the axes' box: left, top, right, bottom
WIDTH, HEIGHT = 1040, 540
LEGEND = PLOT[2] + 60  # the legend's left edge: room for the strength labels of points at the right edge
GRID, INK = (235, 235, 235), (0, 0, 0)
OFF_FRAME = "renders"  # points whose name starts so do not set the axes' range


@dataclass(frozen=True)
class Point:
    x: float  # prompt alignment (share of the prompt's factors right)
    y: float  # identity
    x_se: float
    y_se: float

    @classmethod
    def of(cls, scores: dict) -> "Point":
        return cls(scores["prompt"]["share"], scores["identity"], scores["prompt_se"] or 0.0,
                   scores["identity_se"] or 0.0)


@dataclass(frozen=True)
class Frame:
    """The data range shown in ``PLOT``."""
    x_low: float
    x_high: float
    y_low: float
    y_high: float

    def at(self, x: float, y: float) -> tuple[float, float]:
        left, top, right, bottom = PLOT
        return (left + (x - self.x_low) / (self.x_high - self.x_low) * (right - left),
                bottom - (y - self.y_low) / (self.y_high - self.y_low) * (bottom - top))

    def holds(self, point: Point) -> bool:
        return self.x_low <= point.x <= self.x_high and self.y_low <= point.y <= self.y_high


def frame(sweep: dict) -> Optional[Frame]:
    """The range of every curve point and every labelled point but the renders, error bars included;
    None when the sweep is empty."""
    shown = [Point.of(s) for points in sweep["curves"].values() for s in points.values()]
    shown += [Point.of(s) for name, s in sweep["points"].items() if not name.startswith(OFF_FRAME)]
    if not shown:
        return None
    x_low, x_high = _range([p.x - p.x_se for p in shown] + [p.x + p.x_se for p in shown], 0.0, 1.0)
    y_low, y_high = _range([p.y - p.y_se for p in shown] + [p.y + p.y_se for p in shown], -1.0, 1.0)
    return Frame(x_low, x_high, y_low, y_high)


def tradeoff_plot(sweep: dict) -> Image.Image:
    """``sweep``: {"points": {name: scores}, "curves": {method: {strength: scores}}} (scores with
    identity, identity_se, prompt["share"], prompt_se)."""
    image = Image.new("RGB", (WIDTH, HEIGHT), "white")
    draw = ImageDraw.Draw(image)
    box = frame(sweep)
    if box is None:
        draw.text((WIDTH / 2, HEIGHT / 2), "no strength sweep in this evaluation (sweep_prompts or "
                  "sweep_ids_per_domain is 0)", fill=INK, font=_font(14), anchor="mm")
        return image
    _axes(image, draw, box)
    small = _font(12)
    left, top, right, bottom = PLOT
    legend_y = top
    for n, (method, points) in enumerate(sweep["curves"].items()):
        colour = CURVE_COLOURS[n % len(CURVE_COLOURS)]
        shown = [(strength, Point.of(s)) for strength, s in points.items() if box.holds(Point.of(s))]
        if len(shown) > 1:
            draw.line([box.at(p.x, p.y) for _, p in shown], fill=colour, width=2)
        for strength, point in shown:
            px, py = _marker(draw, box, point, colour, filled=True)
            draw.text((px + 6, py - 6), strength, fill=colour, font=small, anchor="lb")
        draw.line([(LEGEND, legend_y + 8), (LEGEND + 24, legend_y + 8)], fill=colour, width=2)
        for line in textwrap.wrap(method, 48):
            draw.text((LEGEND + 30, legend_y + 8), line, fill=colour, font=small, anchor="lm")
            legend_y += 16
        legend_y += 6
    for n, (name, scores) in enumerate(sweep["points"].items()):
        colour, point = POINT_COLOURS[n % len(POINT_COLOURS)], Point.of(scores)
        text = name
        if box.holds(point):
            px, py = _marker(draw, box, point, colour, filled=False)
            right_edge = px > right - 150  # labelled to the left, inside the plot
            draw.text((px - 8 if right_edge else px + 8, py + 4), name.split(" (")[0], fill=colour, font=small,
                      anchor="rt" if right_edge else "lt")
        else:
            text = f"{name}: identity {point.y:.2f}, prompt {point.x:.2f} (off the plot)"
        draw.rectangle([LEGEND + 7, legend_y + 3, LEGEND + 17, legend_y + 13], outline=colour, width=2)
        for line in textwrap.wrap(text, 48):
            draw.text((LEGEND + 30, legend_y + 8), line, fill=colour, font=small, anchor="lm")
            legend_y += 16
        legend_y += 6
    for note in ("numbers: strength (1 = the main table)", "nested, IP-Adapter file: lambda;",
                 "single token: value scale; decoupled: scale", "bars: ± SE clustered by identity"):
        draw.text((LEGEND, legend_y + 14), note, fill=(80, 80, 80), font=small, anchor="lm")
        legend_y += 16
    return image


def _axes(image: Image.Image, draw: ImageDraw.ImageDraw, box: Frame) -> None:
    left, top, right, bottom = PLOT
    small, normal = _font(12), _font(14)
    draw.rectangle(PLOT, outline=INK)
    for x in _ticks(box.x_low, box.x_high):
        px, _ = box.at(x, box.y_low)
        draw.line([(px, top), (px, bottom)], fill=GRID)
        draw.line([(px, bottom), (px, bottom + 5)], fill=INK)
        draw.text((px, bottom + 8), f"{x:g}", fill=INK, font=small, anchor="mt")
    for y in _ticks(box.y_low, box.y_high):
        _, py = box.at(box.x_low, y)
        draw.line([(left, py), (right, py)], fill=GRID)
        draw.line([(left - 5, py), (left, py)], fill=INK)
        draw.text((left - 8, py), f"{y:g}", fill=INK, font=small, anchor="rm")
    draw.text(((left + right) / 2, bottom + 30), "prompt alignment: share of the prompt's factors read right (higher is better)",
              fill=INK, font=normal, anchor="mt")
    label = Image.new("RGB", (bottom - top, 20), "white")
    ImageDraw.Draw(label).text(((bottom - top) / 2, 10), "identity: cosine to the identity's renders (higher is "
                               "better)", fill=INK, font=normal, anchor="mm")
    image.paste(label.rotate(90, expand=True), (12, top))
    draw.text(((left + right) / 2, 18), "Identity vs prompt alignment: strength sweeps on held-out identities",
              fill=INK, font=normal, anchor="mm")


def _marker(draw: ImageDraw.ImageDraw, box: Frame, point: Point, colour, filled: bool) -> tuple[float, float]:
    """Error bars (clipped to the frame) and a dot (curves) or a square (labelled points)."""
    x_low, x_high = max(point.x - point.x_se, box.x_low), min(point.x + point.x_se, box.x_high)
    y_low, y_high = max(point.y - point.y_se, box.y_low), min(point.y + point.y_se, box.y_high)
    draw.line([box.at(x_low, point.y), box.at(x_high, point.y)], fill=colour, width=1)
    draw.line([box.at(point.x, y_low), box.at(point.x, y_high)], fill=colour, width=1)
    px, py = box.at(point.x, point.y)
    if filled:
        draw.ellipse([px - 4, py - 4, px + 4, py + 4], fill=colour)
    else:
        draw.rectangle([px - 5, py - 5, px + 5, py + 5], outline=colour, width=2)
    return px, py


def _font(size: int):
    return ImageFont.load_default(size=size)


def _ticks(low: float, high: float) -> list[float]:
    """Round tick values covering [low, high], at most 9 of them."""
    for step in (0.01, 0.02, 0.025, 0.05, 0.1, 0.2, 0.25, 0.5):
        if (high - low) / step <= 8:
            break
    start = math.ceil(low / step - 1e-9) * step
    return [round(start + i * step, 4) for i in range(int((high - start) / step + 1e-9) + 1)]


def _range(values: list[float], floor: float, ceiling: float) -> tuple[float, float]:
    low, high = min(values), max(values)
    margin = max(0.02, 0.08 * (high - low))
    return max(floor, low - margin), min(ceiling, high + margin)

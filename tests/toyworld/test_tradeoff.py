"""The trade-off plot: every point where its numbers put it, the renders named when off the plot."""
from __future__ import annotations

from nested_attention.toyworld.evaluation import BASE, ORACLE_TEXT, OURS, RENDERS
from nested_attention.toyworld.tradeoff import CURVE_COLOURS, POINT_COLOURS, Point, frame, tradeoff_plot


def scores(identity, prompt, se=0.01):
    return {"identity": identity, "identity_se": se, "prompt": {"share": prompt}, "prompt_se": se}


SWEEP = {"points": {RENDERS: scores(0.78, 1.0), ORACLE_TEXT: scores(0.2, 0.9), BASE: scores(0.1, 0.95, None)},
         "curves": {OURS: {"0.5": scores(0.1, 0.96), "1": scores(0.15, 0.94), "2": scores(0.25, 0.8)},
                    "decoupled cross-attention": {"0.25": scores(0.12, 0.9), "1": scores(0.2, 0.6)}}}


def test_points_are_drawn_where_their_scores_put_them():
    image = tradeoff_plot(SWEEP)
    box = frame(SWEEP)
    for method, colour in zip(SWEEP["curves"], CURVE_COLOURS):
        for s in SWEEP["curves"][method].values():
            x, y = box.at(s["prompt"]["share"], s["identity"])
            assert image.getpixel((round(x), round(y))) == colour, (method, s)
    x, y = box.at(0.9, 0.2)  # the oracle text's square: its error bars cross at its centre
    assert image.getpixel((round(x), round(y))) == POINT_COLOURS[1]


def test_the_range_follows_the_methods_not_the_renders():
    box = frame(SWEEP)
    assert box.y_low < 0.1 - 0.01 and 0.25 + 0.01 < box.y_high < 0.78
    assert box.x_low < 0.6 - 0.01 and box.x_high == 1.0
    assert not box.holds(Point.of(SWEEP["points"][RENDERS]))


def test_an_empty_sweep_draws_a_note_instead_of_failing():
    image = tradeoff_plot({"points": {}, "curves": {}})
    assert frame({"points": {}, "curves": {}}) is None
    assert image.getextrema() != ((255, 255), (255, 255), (255, 255))

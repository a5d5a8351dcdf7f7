"""toyworld/look_gap.py: the base's look gap (wrong look phrase minus right, relative, per factor)."""
from __future__ import annotations

import torch

from nested_attention.toyworld.look import LOOK_FACTORS
from nested_attention.toyworld.scene import parse_caption
from nested_attention.toyworld.look_gap import LOOK_GAP_IDS, LookGap, look_gap_rows


class _Sampling:
    num_timesteps = 1000

    def sigma(self, t):
        return 0.1 + t.float() / 100

    def noise_scaling(self, sigma, noise, x0):
        return x0 + sigma.reshape(-1, 1, 1, 1) * noise


class _Model:
    """Denoises to x0 + err * sigma, with err 0.1 for the 'right' conditioning (ones) and 0.2 otherwise:
    eps errors 0.01 vs 0.04, a gap of +300 %; or ignores the conditioning (err 0.1 always)."""

    def __init__(self, x0, uses_words: bool):
        self.x0, self.uses_words = x0, uses_words
        self.model_sampling = _Sampling()
        self.diffusion_model = torch.nn.Linear(1, 1)

    def apply_model(self, x, sigma, c_crossattn):
        err = torch.where(c_crossattn.mean(dim=(1, 2)) > 0.5, 0.1, 0.2) if self.uses_words else torch.full((len(x),), 0.1)
        return self.x0[:len(x)] + (err * sigma).reshape(-1, 1, 1, 1)


def _gap(uses_words: bool):
    x0 = torch.randn(6, 4, 8, 8)
    gap = LookGap(x0, torch.ones(6, 77, 8), torch.zeros(6, 77, 8), ["shirt", "hat", "shirt", "pose", "hat", "pose"],
                  batch=64)
    model = _Model(x0, uses_words)
    model.diffusion_model.train()
    out = gap(model)
    assert model.diffusion_model.training  # measured in eval mode, left as it was
    return out


def test_the_gap_is_zero_when_the_words_change_nothing_and_the_relative_loss_increase_otherwise():
    assert _gap(False) == {"shirt": 0.0, "hat": 0.0, "pose": 0.0}
    assert _gap(True) == {"shirt": 300.0, "hat": 300.0, "pose": 300.0}


def test_rows_swap_one_named_look_factor_of_full_framed_held_out_renders():
    rows = look_gap_rows(ids=LOOK_GAP_IDS[:2])
    assert len(rows) == 2 * sum(len(f) for f in LOOK_FACTORS.values())
    assert min(LOOK_GAP_IDS) >= 1950  # no evaluation (1800..) and no encoder validation id (1900..)
    for row in rows:
        (_, right), (_, wrong) = parse_caption(row.right), parse_caption(row.wrong)
        assert right.framing == "full" and row.image.shape == (64, 64, 3)
        differing = [f for f in LOOK_FACTORS[row.domain] if getattr(right, f) != getattr(wrong, f)]
        assert differing == [row.factor] and all(getattr(right, f) is not None for f in LOOK_FACTORS[row.domain])
    assert look_gap_rows(ids=LOOK_GAP_IDS[:1])[0].right == rows[0].right  # fixed rows

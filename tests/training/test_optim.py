"""Gradient clipping and the parameters' finite check: the values torch's own functions give, without
their extra passes over every tensor."""
from __future__ import annotations

import math

import torch


def grads_of(*values):
    params = [torch.nn.Parameter(torch.zeros_like(v)) for v in values]
    for p, v in zip(params, values):
        p.grad = v.clone()
    return params


def test_clipping_above_the_limit_matches_torchs_clip_grad_norm():
    from nested_attention.training.optim import clip_gradients

    g = torch.Generator().manual_seed(0)
    values = [torch.randn(5, 7, generator=g) * 3, torch.randn(11, generator=g)]
    ours, theirs = grads_of(*values), grads_of(*values)
    norm = clip_gradients(ours, 1.0)
    expected = torch.nn.utils.clip_grad_norm_(theirs, 1.0)
    torch.testing.assert_close(norm, expected)
    for a, b in zip(ours, theirs):
        torch.testing.assert_close(a.grad, b.grad)
    assert math.isclose(float(torch.linalg.vector_norm(torch.cat([p.grad.flatten() for p in ours]))), 1.0,
                        rel_tol=1e-5)


def test_gradients_below_the_limit_or_without_a_limit_are_left_as_they_are():
    from nested_attention.training.optim import clip_gradients

    values = [torch.full((3, 3), 0.1), torch.full((4,), -0.2)]
    for max_norm in (10.0, 0.0):
        params = grads_of(*values)
        norm = clip_gradients(params, max_norm)
        assert math.isclose(float(norm), math.sqrt(9 * 0.01 + 4 * 0.04), rel_tol=1e-6)
        assert all(torch.equal(p.grad, v) for p, v in zip(params, values))


def test_a_nan_gradient_gives_a_nan_norm_and_the_loop_skips_the_step():
    from nested_attention.training.optim import clip_gradients

    params = grads_of(torch.tensor([1.0, float("nan")]), torch.ones(2))
    assert math.isnan(float(clip_gradients(params, 1.0)))


def test_the_finite_check_finds_nan_and_infinities_and_no_false_alarm_on_an_overflowing_sum():
    from nested_attention.training.loop import parameters_finite

    huge = torch.full((4,), 3e38)  # finite, but its float32 sum overflows
    assert not torch.isfinite(huge.sum())
    assert parameters_finite([torch.ones(3), huge])
    for bad in (float("nan"), float("inf"), -float("inf")):
        assert not parameters_finite([torch.ones(3), torch.tensor([0.0, bad])])
    assert not parameters_finite([torch.tensor([float("inf"), -float("inf")])])  # sums to NaN

"""The profiler ranges the trainer and the attn2 patch mark their parts with."""
from __future__ import annotations

import contextlib

import torch

from nested_attention.nested_attention_core.profiling import PREFIX, scope


def test_a_scope_costs_nothing_without_a_profiler():
    assert isinstance(scope("rule"), contextlib.nullcontext)


def test_a_scope_is_a_named_range_while_the_profiler_records():
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as profiler:
        with scope("rule"):
            torch.ones(3).sum()
    ranges = [e for e in profiler.events() if e.name == PREFIX + "rule"]
    assert len(ranges) == 1
    assert any(child.name == "aten::sum" for child in ranges[0].cpu_children)

"""Named ranges for the torch profiler, free when no profiler records.

``scope(name)`` marks a stretch of work (a training step's parts, the nested attention of a layer)
so that ``torch.profiler`` tables can group ops by it; ``benchmarks/step_profile.py`` reads them.
A ``record_function`` costs about 6 us even with no profiler running, which is a measurable share of
a small attention call, so outside a profiler ``scope`` is a bare null context.
"""
from __future__ import annotations

import contextlib

import torch.autograd.profiler as autograd_profiler
from torch.profiler import record_function

PREFIX = "nested_attention."


def scope(name: str):
    """A profiler range ``nested_attention.<name>`` while a profiler records, else a null context."""
    if autograd_profiler._is_profiler_enabled:
        return record_function(PREFIX + name)
    return contextlib.nullcontext()

"""Toy-world tests: pure numpy/PIL/torch, no ComfyUI (unless a test asks for a ComfyUI fixture).
One torch thread (the CPUs are shared)."""
from __future__ import annotations

import pytest
import torch

@pytest.fixture(autouse=True, scope="session")
def _one_thread():
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)

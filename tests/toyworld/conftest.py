"""Toy-world tests: pure numpy/PIL/torch, no ComfyUI. One torch thread (the CPUs are shared).

Name clash, fixed here: in importlib mode pytest names this folder's modules ``toyworld.<module>``
and, finding no ``toyworld`` imported yet, registers THIS folder as the package ``toyworld``, which
hides the real one at the repository root. So before any test module is imported, the stand-in is
swapped for the real package; pytest then files the test modules under it (as ``toyworld.test_*``,
names the package does not use).
"""
from __future__ import annotations

import importlib
import sys
from pathlib import Path

import pytest
import torch

REPO_ROOT = Path(__file__).resolve().parents[2]


def _use_the_real_toyworld_package() -> None:
    current = sys.modules.get("toyworld")
    real_init = REPO_ROOT / "toyworld" / "__init__.py"
    if current is not None and Path(getattr(current, "__file__", None) or "/") == real_init:
        return
    if str(REPO_ROOT) not in sys.path:
        sys.path.append(str(REPO_ROOT))
    stand_in = sys.modules.pop("toyworld", None)
    real = importlib.import_module("toyworld")
    if Path(real.__file__) != real_init:
        sys.modules["toyworld"] = stand_in
        raise RuntimeError(f"imported toyworld from {real.__file__}, expected {real_init}")


_use_the_real_toyworld_package()


@pytest.fixture(autouse=True, scope="session")
def _one_thread():
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)

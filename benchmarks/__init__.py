"""Benchmark scripts (``make bench``, ``make bench-train``): they print ratios (``RESULT k=v``).

They run from a checkout and share the tests' harness (``tests/harness``, imported as ``harness``:
the tiny models), put last on sys.path so that nothing on it can shadow ComfyUI's or the pack's modules.
"""
import sys
from pathlib import Path

_TESTS = str(Path(__file__).resolve().parents[1] / "tests")
if _TESTS not in sys.path:
    sys.path.append(_TESTS)

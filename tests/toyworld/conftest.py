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


@pytest.fixture
def committed_results() -> dict:
    """The committed docs/toyworld/results.json; the test is skipped (saying why) while it is of an older
    format: then the committed weights and results are an earlier edition's, measured on an earlier world
    (the renders, prompts and scorers this code no longer makes), until ``make toyworld`` replaces them."""
    import json

    from nested_attention.toyworld.publish import COMMITTED_RESULTS, RESULTS_FORMAT

    results = json.loads((COMMITTED_RESULTS / "results.json").read_text())
    if results.get("format") != RESULTS_FORMAT:
        pytest.skip(f"docs/toyworld/results.json is of format {results.get('format')}, an earlier edition's, which "
                    f"this code no longer writes (format {RESULTS_FORMAT}): run `make toyworld` (the experiment, "
                    "which copies its weights and results into the repository) to replace it")
    return results

"""The committed toy-world weights and results: intact files, and the committed table reproduced
from the committed weights (a subset of the evaluation: one person, one dog, one pair)."""
from __future__ import annotations

import hashlib
import json
from dataclasses import replace

import pytest

from nested_attention.toyworld.evaluation import EvalConfig
from nested_attention.toyworld.publish import COMMITTED_RESULTS, COMMITTED_WEIGHTS, RESULT_FILES, run_evaluation


def committed_scores() -> dict:
    return json.loads((COMMITTED_RESULTS / "results.json").read_text())["scores"]


def test_committed_weights_match_their_manifest():
    manifest = json.loads((COMMITTED_WEIGHTS / "manifest.json").read_text())
    assert len(manifest) == 7
    for rel, entry in manifest.items():
        data = (COMMITTED_WEIGHTS / rel).read_bytes()
        assert hashlib.sha256(data).hexdigest() == entry["sha256"], rel
    assert sum(entry["bytes"] for entry in manifest.values()) < 40 * 2 ** 20


def test_committed_results_are_complete():
    for name in RESULT_FILES:
        assert (COMMITTED_RESULTS / name).is_file(), name
    scores = committed_scores()
    assert {"nested attention (ours)", "single token", "decoupled cross-attention"} <= set(scores["single"])
    assert all(s["n"] == 2 * EvalConfig().ids_per_domain * 6 for s in scores["single"].values())


def test_committed_weights_reproduce_the_committed_per_image_scores(tmp_path):
    config = replace(EvalConfig(), ids_per_domain=1, pairs=1)
    scores = run_evaluation(COMMITTED_WEIGHTS, tmp_path, config)
    committed = committed_scores()
    compared = 0
    for name, s in scores["single"].items():
        for key, value in s["per_image"].items():
            assert value == pytest.approx(committed["single"][name]["per_image"][key], abs=2e-3), (name, key)
            compared += 1
    for name, parts in scores["two"].items():
        for side, s in parts.items():
            for key, value in s["per_image"].items():
                assert value == pytest.approx(committed["two"][name][side]["per_image"][key], abs=2e-3)
                compared += 1
    assert compared == 5 * 2 * 6 + 2 * 2 * 3

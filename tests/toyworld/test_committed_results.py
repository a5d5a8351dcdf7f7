"""The committed toy-world weights and results: intact files, and the committed table reproduced
from the committed weights (a subset of the evaluation: one person, one dog, two prompts, one
sweep prompt, one pair)."""
from __future__ import annotations

import hashlib
import json

import pytest

from nested_attention.toyworld.evaluation import BASE, EvalConfig, masked_row
from nested_attention.toyworld.publish import (COMMITTED_RESULTS, COMMITTED_WEIGHTS, METHODS, RESULT_FILES,
                                               RESULTS_FORMAT, run_evaluation)

SUBSET = EvalConfig(ids_per_domain=1, prompts=2, sweep_ids_per_domain=1, sweep_prompts=1, pairs=1)


def committed() -> dict:
    """The committed results.json; the test is skipped (saying why) when it is of the first edition's structure."""
    results = json.loads((COMMITTED_RESULTS / "results.json").read_text())
    if results.get("format") != RESULTS_FORMAT:
        pytest.skip(f"docs/toyworld/results.json has the first edition's structure (no \"format\": {RESULTS_FORMAT}), "
                    "which this evaluation no longer writes: regenerate it with `make toyworld-eval` and copy "
                    f"toyworld_eval/{{{','.join(RESULT_FILES)}}} to docs/toyworld/")
    return results


def test_committed_weights_match_their_manifest():
    manifest = json.loads((COMMITTED_WEIGHTS / "manifest.json").read_text())
    assert len(manifest) >= 7
    for rel, entry in manifest.items():
        data = (COMMITTED_WEIGHTS / rel).read_bytes()
        assert hashlib.sha256(data).hexdigest() == entry["sha256"], rel
    assert sum(entry["bytes"] for entry in manifest.values()) < 40 * 2 ** 20


def test_committed_results_are_complete():
    results = committed()
    for name in RESULT_FILES:
        assert (COMMITTED_RESULTS / name).is_file(), name
    config, scores = results["config"], results["scores"]
    single = scores["single"]
    assert {*METHODS, *map(masked_row, METHODS), BASE} <= set(single)
    for name, s in single.items():
        if not name.endswith("(oracle)"):
            assert s["n"] == 2 * config["ids_per_domain"] * config["prompts"], name
        assert {"person", "dog"} == set(s["attributes"])
    assert set(scores["sweep"]["curves"]) == set(METHODS)
    assert set(scores["two"]) == {BASE, *(name for name in single if name.startswith("nested attention (ours)")
                                          and not name.endswith("(oracle)"))}


def test_committed_weights_reproduce_the_committed_per_image_scores(tmp_path):
    reference = committed()["scores"]
    scores = run_evaluation(COMMITTED_WEIGHTS, tmp_path, SUBSET)
    compared = 0

    def check(ours: dict, theirs: dict, where: str) -> None:
        nonlocal compared
        for key, value in ours["per_image"].items():
            assert value == pytest.approx(theirs["per_image"][key], abs=2e-3), (where, key)
            compared += 1

    for name, s in scores["single"].items():
        check(s, reference["single"][name], name)
    for method, points in scores["sweep"]["curves"].items():
        for strength, s in points.items():
            if "per_image" in s:  # strength 1 is the main row's images
                check(s, reference["sweep"]["curves"][method][strength], f"{method} at {strength}")
    for name, parts in scores["two"].items():
        for side, s in parts.items():
            check(s, reference["two"][name][side], f"{name}, {side}")
    oracle_images = sum(s["n"] for name, s in scores["single"].items() if name.endswith("(oracle)"))
    assert compared == 10 * 2 * 2 + oracle_images + 2 * 7 + 3 * 2 * 3

"""The committed toy-world weights and results: intact files, and the committed table reproduced
from the committed weights (a subset of the evaluation: one person, one dog, two prompts, one
sweep prompt, one pair, the demo). Skipped while docs/toyworld/results.json is of an older format."""
from __future__ import annotations

import hashlib
import json
import time

import pytest

from nested_attention.toyworld.evaluation import (BASE, IP_ADAPTER_ROW, NO_REGIONS, OURS, EvalConfig, evaluation_size,
                                                  masked_row)
from nested_attention.toyworld.publish import (COMMITTED_RESULTS, COMMITTED_WEIGHTS, METHODS, RESULT_FILES,
                                               RESULTS_FORMAT, SCORER_FILES, run_evaluation)

SUBSET = EvalConfig(ids_per_domain=1, prompts=2, sweep_ids_per_domain=1, sweep_prompts=1, pairs=1)


def test_committed_weights_match_their_manifest():
    manifest = json.loads((COMMITTED_WEIGHTS / "manifest.json").read_text())
    assert len(manifest) >= 7
    for rel, entry in manifest.items():
        data = (COMMITTED_WEIGHTS / rel).read_bytes()
        assert hashlib.sha256(data).hexdigest() == entry["sha256"], rel
    assert sum(entry["bytes"] for entry in manifest.values()) < 40 * 2 ** 20


def test_committed_results_are_complete(committed_results):
    results = committed_results
    for name in RESULT_FILES:
        assert (COMMITTED_RESULTS / name).is_file(), name
    config, scores = results["config"], results["scores"]
    single = scores["single"]
    assert {*METHODS, IP_ADAPTER_ROW, *map(masked_row, METHODS), BASE} <= set(single)
    for name, s in single.items():
        if not name.endswith("(oracle)"):
            assert s["n"] == 2 * config["ids_per_domain"] * config["prompts"], name
        assert {"person", "dog"} == set(s["attributes"])
    assert set(scores["sweep"]["curves"]) == {*METHODS, IP_ADAPTER_ROW}
    assert set(scores["two"]) == {BASE, OURS, masked_row(OURS), NO_REGIONS}
    assert set(scores["paired"]) == {f"{OURS} - {other}" for other in (*METHODS, IP_ADAPTER_ROW) if other != OURS}
    assert scores["demo"]["person"]["ours - base"]["n"] == 9


@pytest.fixture(scope="module")
def subset(tmp_path_factory):
    """The subset evaluated on the committed weights: (results folder, scores, seconds)."""
    from nested_attention.toyworld.errors import ScorerError
    from nested_attention.toyworld.scoring import load_scorer

    try:
        load_scorer(COMMITTED_WEIGHTS / SCORER_FILES["scene"])
    except ScorerError as err:
        pytest.skip(f"the committed weights are of an older edition than this evaluation ({err}); run `make toyworld`")
    folder = tmp_path_factory.mktemp("subset")
    started = time.monotonic()
    scores = run_evaluation(COMMITTED_WEIGHTS, folder, SUBSET)
    return folder, scores, time.monotonic() - started


def test_a_subset_evaluation_runs_end_to_end_on_the_committed_weights(subset):
    folder, scores, seconds = subset
    written = json.loads((folder / "results.json").read_text())
    assert written["format"] == RESULTS_FORMAT and written["scores"]["demo"]["rule"]["person"] == 1800
    assert all((folder / name).is_file() for name in RESULT_FILES)
    methods = [*METHODS, IP_ADAPTER_ROW]
    assert written["ksampler_calls"] == evaluation_size(SUBSET, methods, [(m, d, 1800) for m in list(METHODS)[::2]
                                                                          for d in ("person", "pet")])
    print(f"subset: {written['ksampler_calls']} KSampler calls in {seconds:.0f} s "
          f"({seconds / written['ksampler_calls']:.2f} s per call, loading and scoring included)")
    # the IP-Adapter file's row carries the decoupled encoder's subject by the nested rule: not the base
    single = scores["single"]
    assert single[IP_ADAPTER_ROW]["per_image"] != single[BASE]["per_image"]
    assert single[IP_ADAPTER_ROW]["per_image"] != single["decoupled cross-attention"]["per_image"]


def test_committed_weights_reproduce_the_committed_per_image_scores(committed_results, subset):
    reference = committed_results["scores"]
    _, scores, _ = subset
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
    for side in ("person", "dog"):
        for name in (BASE, OURS):
            check(scores["demo"][side][name], reference["demo"][side][name], f"demo, {side}, {name}")
    oracle_images = sum(s["n"] for name, s in scores["single"].items() if name.endswith("(oracle)"))
    # 11 rows x 2 ids x 2 prompts; 13 sweep points x 2 keys; 4 two-subject rows x 4 parts x 3 prompts; the demo
    assert compared == 11 * 2 * 2 + oracle_images + 2 * 13 + 4 * 4 * 3 + 2 * 2 * 9

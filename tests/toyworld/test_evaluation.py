"""The evaluation's plan and its statistics, without ComfyUI: a stand-in host records every subject it
encodes, every model it applies and every image it is asked for; the scores come from the committed
scoring models. (The real host's path is in test_generation.py and test_committed_results.py.)"""
from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from nested_attention.toyworld.errors import ExperimentError
from nested_attention.toyworld.evaluation import (BASE, IP_ADAPTER_ROW, NO_REGIONS, ORACLE_TEXT, OURS, RENDERS,
                                                  ROUND_TRIP, EvalConfig, evaluate, evaluation_size, masked_row,
                                                  oracle_row)
from nested_attention.toyworld.evaluation_two import DEMO_SEEDS, demo_choice, demo_seeds, pair_seed
from nested_attention.toyworld.evaluation_inputs import reference, scene_render
from nested_attention.toyworld.evaluation_scores import Collected, clustered_se
from nested_attention.toyworld.generation import SamplerSettings
from nested_attention.toyworld.publish import COMMITTED_WEIGHTS, METHODS, SCORER_FILES, compare_results
from nested_attention.toyworld.report import markdown_report
from nested_attention.toyworld.scoring import load_scorer

METHOD_RULES = {**{name: method.rule for name, method in METHODS.items()}, IP_ADAPTER_ROW: "nested"}
TRAINED = list(METHODS)  # the rows with a masked-reference twin


class RecordingHost:
    """ToyHost's interface; a model is the tuple of what was applied to the base. An image is noise
    keyed by the seed, or, for the base with the prompt of a scene render, nothing special: the
    evaluation's plan, not the images, is under test."""

    def __init__(self):
        self.model = ()
        self.encoded, self.samples = [], []

    def subject(self, method, encoder, references, word, masks=None):
        self.encoded.append({"rule": method.rule, "encoder": encoder, "references": references, "masks": masks,
                             "word": word})
        return len(self.encoded) - 1

    def apply(self, model, subject, rule, strength=1.0, region=None):
        side = None if region is None else ("left" if float(region[0, :, 0].mean()) == 1 else "right")
        return model + ((subject, rule, float(strength), side),)

    def with_subject(self, model, method, encoder, references, word, region=None, strength=1.0, masks=None):
        return self.apply(model, self.subject(method, encoder, references, word, masks), method.rule, strength, region)

    def sample(self, model, text, seed, settings, size=64):
        self.samples.append((model, text, seed))
        return np.random.default_rng(seed).integers(0, 256, (size, size, 3), dtype=np.uint8)

    def round_trip(self, images):
        return images // 2 * 2


@pytest.fixture(scope="module")
def scorers():
    """The committed identity model; the committed scene model, or, while the committed one is of the second
    edition (no look heads, refused by load_scorer until `make toyworld` retrains it), an untrained scene model
    of the current head layout: these tests check the evaluation's plan, not what the scene model reads."""
    import torch

    from nested_attention.toyworld.errors import ScorerError
    from nested_attention.toyworld.nets import SceneNet, SceneNetConfig

    try:
        scene = load_scorer(COMMITTED_WEIGHTS / SCORER_FILES["scene"]).float()
    except ScorerError:
        torch.manual_seed(0)
        scene = SceneNet(SceneNetConfig()).eval()
    return load_scorer(COMMITTED_WEIGHTS / SCORER_FILES["identity"]).float(), scene


CONFIG = EvalConfig(ids_per_domain=2, gallery=2, pairs=1, prompts=2, sweep_ids_per_domain=1, sweep_prompts=1,
                    sampler=SamplerSettings(steps=1))


@pytest.fixture(scope="module")
def evaluated(scorers):
    host = RecordingHost()
    methods = {name: (SimpleNamespace(rule=rule), f"encoder of {name}") for name, rule in METHOD_RULES.items()}
    oracles = {(OURS, "person", 1800): "oracle of person 1800", ("decoupled cross-attention", "pet", 1801): "oracle",
               (OURS, "person", 1999): "not an evaluated id"}
    result = evaluate(host, methods, *scorers, CONFIG, oracles)
    return host, methods, oracles, result


def test_every_sampler_call_is_counted_and_every_row_is_paired_by_seed(evaluated):
    host, methods, oracles, result = evaluated
    assert len(host.samples) == evaluation_size(CONFIG, methods, oracles) == (
        2 * 2 * 2 * (2 + 4 + 3) + 2 * 2  # single rows: 4 whole, 3 masked (+ the two oracles' prompts)
        + 2 * 1 * 1 * (3 + 2 + 4 + 4)  # the sweep's strengths other than 1, on one id per domain, one prompt
        + 1 * 3 * 4  # two subjects: base, ours with regions whole and masked, ours without regions
        + DEMO_SEEDS * 2)  # the demo: ours and the base
    seeds = {}
    for model, text, seed in host.samples:
        seeds.setdefault(seed, set()).add(text)
    # one seed per (identity, prompt) and per (pair, prompt), shared by the rows; the demo's first is its pair's
    assert len(seeds) == 2 * 2 * 2 + 3 + DEMO_SEEDS - 1


def test_rows_hold_what_their_names_say(evaluated):
    host, methods, _, result = evaluated
    single = result["single"]
    assert list(single) == [RENDERS, ROUND_TRIP, ORACLE_TEXT, BASE, *METHOD_RULES, *map(masked_row, TRAINED),
                            oracle_row(OURS), oracle_row("decoupled cross-attention")]
    for name, s in single.items():
        expected = 2 if "oracle)" in name else 2 * 2 * 2
        assert s["n"] == len(s["per_image"]) == expected, name
    assert single[oracle_row(OURS)]["identities"] == 1
    assert set(single[oracle_row(OURS)]["same_images"]) == {BASE, OURS}
    # the masked rows' subjects were encoded with the reference render's own subject mask; the others without
    masked = [e for e in host.encoded if e["masks"] is not None]
    whole = [e for e in host.encoded if e["masks"] is None]
    assert len(masked) == 2 * 2 * 3 + 2  # each identity once per trained method (the sweep reuses it), a pair
    assert len(whole) == 2 * 2 * 4 + 2 * 3  # every method; a pair with regions, without, and the demo
    first = reference("person", 1800)
    assert any(np.array_equal(e["masks"][0], np.asarray(first.mask)) and
               np.array_equal(e["references"][0], np.asarray(first.image)) for e in masked)
    # the renders row holds the scene renders; the round-trip row what the host's VAE gave back for them
    renders = result["rows"][RENDERS]
    key = renders.keys[0]
    assert np.array_equal(renders.image(key), scene_render(*key))
    assert np.array_equal(result["rows"][ROUND_TRIP].image(key), scene_render(*key) // 2 * 2)
    # renders look like their identity, noise does not
    assert single[RENDERS]["identity"] > single[BASE]["identity"] + 0.2


def test_the_ip_adapter_row_is_applied_by_the_nested_rule_and_swept_by_lambda(evaluated):
    host, methods, _, result = evaluated
    ipa = [n for n, e in enumerate(host.encoded) if e["encoder"] == f"encoder of {IP_ADAPTER_ROW}"]
    assert len(ipa) == 2 * 2 and all(host.encoded[n]["masks"] is None for n in ipa)  # whole references only
    applied = {(step[1], step[2]) for model, _, _ in host.samples for step in model if step[0] in ipa}
    assert applied == {("nested", s) for s in (0.5, 1.0, 2.0, 4.0, 8.0)}
    applied = {(step[1], step[2]) for model, _, _ in host.samples for step in model}
    assert {("decoupled", 2.0), ("decoupled", 4.0)} <= applied
    assert list(result["sweep"]["curves"][IP_ADAPTER_ROW]) == ["0.5", "1", "2", "4", "8"]
    assert masked_row(IP_ADAPTER_ROW) not in result["single"]


def test_paired_differences_are_image_by_image_on_the_same_keys(evaluated, scorers):
    _, _, _, result = evaluated
    paired = result["paired"]
    assert set(paired) == {f"{OURS} - {other}" for other in METHOD_RULES if other != OURS}
    ours, theirs = (result["single"][name]["per_image"] for name in (OURS, "decoupled cross-attention"))
    d = paired[f"{OURS} - decoupled cross-attention"]
    assert d["n"] == len(ours) == 8 and d["identities"] == 4
    assert d["identity"] == pytest.approx(np.mean([ours[k] - theirs[k] for k in ours]), abs=1e-4)
    per_identity = {}
    for k in ours:
        per_identity.setdefault(k.split(" |")[0], []).append(ours[k] - theirs[k])
    means = [np.mean(v) for v in per_identity.values()]
    assert d["identity_se"] == pytest.approx(np.std(means, ddof=1) / 2, abs=1e-4)
    rows = {name: result["rows"][name].per_image(*scorers) for name in (OURS, "decoupled cross-attention")}
    looked = [k for k, v in rows[OURS].items() if v[2] is not None]
    assert looked and d["subject"] == pytest.approx(np.mean([rows[OURS][k][2] - rows["decoupled cross-attention"][k][2]
                                                             for k in looked]))


def test_the_sweep_reuses_strength_one_and_applies_each_strength(evaluated):
    host, _, _, result = evaluated
    curves = result["sweep"]["curves"]
    assert {m: list(points) for m, points in curves.items()} == {
        OURS: ["0.5", "1", "2", "3"], "single token": ["0.5", "1", "2"],
        "decoupled cross-attention": ["0.25", "0.5", "1", "2", "4"], IP_ADAPTER_ROW: ["0.5", "1", "2", "4", "8"]}
    keys = CONFIG.sweep_keys()
    main = result["rows"][OURS].subset(keys)
    per_image = result["single"][OURS]["per_image"]
    assert len(main.keys) == 2
    assert curves[OURS]["1"]["identity"] == pytest.approx(np.mean([per_image[k] for k in per_image
                                                                    if "snow/left" in k and " 1800 " in k]), abs=1e-5)
    applied = {(step[1], step[2]) for model, _, _ in host.samples for step in model}
    assert {("nested", 3.0), ("decoupled", 0.25), ("single_token", 2.0), ("nested", 1.0)} <= applied
    assert set(result["sweep"]["points"]) == {RENDERS, ORACLE_TEXT, BASE}
    assert all(p["n"] == len(keys) for p in result["sweep"]["points"].values())


def test_two_subjects_apply_one_subject_per_region_or_none(evaluated):
    host, _, _, result = evaluated
    assert set(result["two"]) == {BASE, OURS, masked_row(OURS), NO_REGIONS}
    two_models = {model for model, text, _ in host.samples if "and a dog" in text}
    assert () in two_models
    sides = sorted(tuple(str(step[3]) for step in model) for model in two_models if model)
    assert sides == [("None", "None"), ("left", "right"), ("left", "right"), ("left", "right")]  # + the demo's
    for side in ("person", "dog", "person_in_dog_half", "dog_in_person_half"):
        assert result["two"][OURS][side]["n"] == 3


def test_leakage_scores_each_half_against_the_other_subjects_gallery(evaluated):
    _, _, _, result = evaluated
    parts = result["two_rows"][NO_REGIONS]
    cluster = parts["dog"].keys[0][:2]
    assert np.array_equal(parts["person_in_dog_half"].images[0], parts["dog"].images[0])  # the right half
    assert np.array_equal(parts["dog_in_person_half"].images[0], parts["person"].images[0])  # the left half
    assert np.array_equal(parts["person_in_dog_half"].galleries[cluster], parts["person"].galleries[cluster])
    assert np.array_equal(parts["dog_in_person_half"].galleries[cluster], parts["dog"].galleries[cluster])


def test_the_demo_follows_its_rule_and_is_scored_against_the_base_over_its_seeds(evaluated):
    host, _, _, result = evaluated
    choice = demo_choice(CONFIG)
    assert (choice.person_id, choice.pet_id, choice.strength) == (*CONFIG.pair_ids()[0], 1.0) == (1800, 1800, 1.0)
    assert choice.seed == pair_seed(CONFIG.seed, 1800, 1800, choice.scene)
    seeds = demo_seeds(choice)
    assert seeds[0] == choice.seed and len(set(seeds)) == DEMO_SEEDS
    demo = result["demo"]
    assert demo["rule"]["seed"] == choice.seed and demo["rule"]["prompt"] == choice.text
    for part in ("person", "dog"):
        ours, base, diff = demo[part][OURS], demo[part][BASE], demo[part]["ours - base"]
        assert ours["n"] == base["n"] == diff["n"] == diff["identities"] == DEMO_SEEDS
        assert diff["identity"] == pytest.approx(ours["identity"] - base["identity"], abs=1e-6)
    demo_calls = [(model, seed) for model, text, seed in host.samples if text == choice.text and seed in seeds]
    assert {seed for _, seed in demo_calls} == set(seeds)


def test_the_report_has_every_table(evaluated):
    _, _, _, result = evaluated
    scores = {k: result[k] for k in ("single", "paired", "sweep", "two", "demo")}
    text = markdown_report(scores, CONFIG, 123)
    for name in result["single"]:
        assert f"| {name} |" in text
    assert "| persons | face shape |" in text and "| dogs | head shape |" in text
    assert "| nested attention (ours) | 3 |" in text and "123 KSampler calls" in text
    assert "Two subjects in one image (1 held-out person/dog pairs" in text and f"| {NO_REGIONS} |" in text
    assert f"| {OURS} - decoupled cross-attention |" in text and "| person | " in text  # paired, demo
    assert f"| {IP_ADAPTER_ROW} | 8 |" in text


def test_clustered_standard_error_counts_identities_not_images():
    # four images of identity a score 1, one image of b scores 0: two identity means, 1 and 0
    assert clustered_se([1, 1, 1, 1, 0], ["a"] * 4 + ["b"]) == pytest.approx(np.std([1, 0], ddof=1) / np.sqrt(2))
    assert clustered_se([0.2, 0.4], ["a", "a"]) is None
    assert clustered_se([1, 2, 3, 4], ["a", "b", "c", "d"]) == pytest.approx(np.std([1, 2, 3, 4], ddof=1) / 2)


def test_collected_subset_keeps_order_and_galleries():
    collected = Collected()
    gallery = np.zeros((1, 64, 64, 3), np.uint8)
    for n in range(3):
        collected.add(np.full((64, 64, 3), n, np.uint8), gallery, None, ("person", 1800 + n, None))
    part = collected.subset([("person", 1802, None), ("person", 1800, None), ("person", 9, None)])
    assert part.keys == [("person", 1800, None), ("person", 1802, None)]
    assert set(part.galleries) == {("person", 1800), ("person", 1802)}


@pytest.mark.parametrize("field, value", [("prompts", 7), ("prompts", 0), ("sweep_prompts", 3), ("gallery", 0)])
def test_a_bad_config_names_the_field(field, value):
    with pytest.raises(ExperimentError, match=f"EvalConfig.{field} is {value}"):
        EvalConfig(**{"prompts": 2, field: value})


def test_a_sweep_without_finite_strengths_is_refused():
    with pytest.raises(ExperimentError, match="strengths of 'single token'"):
        EvalConfig(sweeps=(("single token", (1.0, float("nan"))),))


def test_compare_results_takes_every_number_and_refuses_other_measurements():
    ours = {"single": {"a": {"identity": 0.5, "identity_se": None, "per_image": {"x": 0.1}}}}
    theirs = {"single": {"a": {"identity": 0.52, "identity_se": None, "per_image": {"x": 0.1}}}}
    assert compare_results(ours, theirs) == pytest.approx(0.02)
    with pytest.raises(ValueError, match="differ in what they measure"):
        compare_results(ours, {"single": {"a": {"identity": 0.5, "per_image": {"y": 0.1}}}})


def test_published_oracles_are_found_by_method_name_and_their_absence_is_said(tmp_path, caplog):
    import torch

    from nested_attention.nested_attention_core.subject import NestedSubject, save_subject
    from nested_attention.toyworld.publish import ORACLE_DIR, load_oracle_subjects

    assert load_oracle_subjects(tmp_path) == {}
    assert "leaves out the per-identity oracle rows" in caplog.text
    subject = NestedSubject("dog", torch.zeros(2, 4), {"input_1_0": (torch.ones(2, 8), torch.ones(2, 8))}, "toy", 4,
                            method="decoupled")
    (tmp_path / ORACLE_DIR / "decoupled").mkdir(parents=True)
    save_subject(tmp_path / ORACLE_DIR / "decoupled" / "pet_1801.safetensors", subject)
    (key, loaded), = load_oracle_subjects(tmp_path).items()
    assert key == ("decoupled cross-attention", "pet", 1801) and loaded.word == "dog"


def test_the_default_evaluation_fits_make_toyworld_evals_budget():
    """916 KSampler calls with the oracles of every identity: at 0.69-0.88 s per call (README) 630-810 s,
    within make toyworld-eval's 15 minutes; a change of the defaults changes this number on purpose."""
    oracles = [(m, d, i) for m in (OURS, "decoupled cross-attention") for d in ("person", "pet") for i in range(1800, 1812)]
    assert evaluation_size(EvalConfig(), [*METHOD_RULES], oracles) == 916
    assert evaluation_size(EvalConfig(), [*METHOD_RULES], oracles) * 0.85 <= 780

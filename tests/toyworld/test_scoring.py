"""Scoring: image batches, metrics, the file format, and a fast end-to-end training smoke test.

The full scorer-quality test (default pipeline, a few minutes on one thread) runs only with
TOYWORLD_FULL_SCORERS=1; its bars are stated in FULL_BARS.
"""
from __future__ import annotations

import itertools
import json
import os
import time

import numpy as np
import pytest
import torch
from PIL import Image

from nested_attention.toyworld.dataset import make_samples, render_array
from nested_attention.toyworld.errors import ScorerError
from nested_attention.toyworld.identity import DOMAINS, heldout_ids, train_ids
from nested_attention.toyworld.metrics import retrieval_top1, roc_auc, verification
from dataclasses import replace

from nested_attention.toyworld.look import HIDDEN_IN_CLOSE_UP, LOOK_FACTORS, LOOK_FIELDS
from nested_attention.toyworld.nets import IdentityNet, IdentityNetConfig, SceneNet, SceneNetConfig, parameter_count, scene_heads
from nested_attention.toyworld.scene import FACTORS, Scene
from nested_attention.toyworld.scorer_pipeline import ScorerPipelineConfig, evaluate_scorers, shown_scene, train_scorers
from nested_attention.toyworld.scorer_training import FitConfig, attribute_targets, scene_labels, train_identity_net, train_scene_net
from nested_attention.toyworld.scoring import (identity_similarity, load_scorer, predict_scenes, reference_similarity, save_scorer,
                              scene_accuracy, scene_hits, to_batch)

FULL_SCORERS_ENV = "TOYWORLD_FULL_SCORERS"
# Bars of the full test (default ScorerPipelineConfig, held-out identities 1800..1999 of both domains).
FULL_BARS = {"roc_auc": 0.97, "top1_retrieval": 0.6, "scene_factor": 0.95}
# Bars of the full scene model's look heads, on the renders whose framing shows the factor. The third
# edition's first full run (scorers stage, 2026-12-04) measured shirt 0.97, hat 0.95, accessory 0.94,
# pose 0.72 and expression 0.61 on 60 held-out identities per domain (chance then 1/9, 1/3, 1/3,
# 1/3, 1/3; the shirt has four colours since run 11, chance 1/4):
# the 64 px mouth and a dog's pose are a few pixels, so those two scores are coarse (README).
LOOK_FULL_BARS = {"shirt": 0.9, "hat": 0.9, "accessory": 0.9, "pose": 0.6, "expression": 0.5}
# Smoke bars of the look heads on full-framing photos (measured, seed 0, one thread: shirt 0.93, hat 0.85,
# accessory 0.73, pose 0.75; expression 0.35, i.e. chance at this size: the mouth is a few pixels).
LOOK_SMOKE_BARS = {"shirt": 0.6, "hat": 0.6, "accessory": 0.55, "pose": 0.55}  # chance: 1/4, ~1/2, ~1/2, 1/3


def test_to_batch_takes_pil_uint8_and_comfy_images():
    rgb = (np.arange(64 * 64 * 3) % 251).astype(np.uint8).reshape(64, 64, 3)
    from_pil = to_batch([Image.fromarray(rgb)] * 2)
    from_uint8 = to_batch(np.stack([rgb, rgb]))
    from_comfy = to_batch(torch.from_numpy(np.stack([rgb, rgb])).float() / 255.0)
    assert from_pil.shape == (2, 3, 64, 64)
    assert torch.equal(from_pil, from_uint8) and torch.allclose(from_uint8, from_comfy)
    assert torch.equal(to_batch(from_comfy), from_comfy)  # [n, 3, h, w] passes through
    assert to_batch(np.zeros((1, 128, 128, 3), np.uint8)).shape == (1, 3, 64, 64)
    with pytest.raises(ScorerError, match="uint8"):
        to_batch(np.zeros((1, 64, 64, 3), np.float64))
    with pytest.raises(ScorerError, match="shape"):
        to_batch(torch.zeros(1, 64, 64))


def test_roc_auc_matches_counting_pairs():
    gen = torch.Generator().manual_seed(0)
    scores = torch.randint(0, 6, (40,), generator=gen).double()  # many ties
    positive = torch.rand(40, generator=gen) < 0.4
    pairs = [(p, n) for p, n in itertools.product(scores[positive], scores[~positive])]
    expected = sum(1.0 if p > n else 0.5 if p == n else 0.0 for p, n in pairs) / len(pairs)
    assert roc_auc(scores, positive) == pytest.approx(expected)
    assert roc_auc(torch.tensor([0.1, 0.9]), torch.tensor([False, True])) == 1.0


def test_verification_and_retrieval_on_known_embeddings():
    e = torch.tensor([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0], [0.1, 0.9]])
    report = verification(e, ["a", "a", "b", "b"], ["person"] * 4)
    assert report["roc_auc"] == 1.0 and report["same_identity_cos"] > 0.9 > 0.2 > report["different_identity_cos"]
    assert retrieval_top1(e[[0, 2]], e[[1, 3]], torch.tensor([0, 1])) == 1.0
    assert retrieval_top1(e[[0, 2]], e[[1, 3]], torch.tensor([1, 0])) == 0.0


def test_nets_are_small():
    identity = IdentityNet(IdentityNetConfig(num_classes=0))
    scene = SceneNet(SceneNetConfig())
    assert parameter_count(identity) < 1_000_000 and parameter_count(scene) < 1_000_000
    with torch.no_grad():
        assert torch.allclose(identity(torch.rand(2, 3, 64, 64)).norm(dim=1), torch.ones(2))
        assert {k: v.shape[1] for k, v in scene(torch.rand(2, 3, 64, 64)).items()} == {
            **{k: len(v) for k, v in FACTORS.items()},
            **{k: len(v) for factors in LOOK_FACTORS.values() for k, v in factors.items()}}


def test_save_and_load_round_trip(tmp_path):
    torch.manual_seed(0)
    identity, scene = IdentityNet(IdentityNetConfig(widths=(8, 16), stem=0)).eval(), SceneNet(SceneNetConfig()).eval()
    x = torch.rand(3, 3, 64, 64)
    loaded_identity = load_scorer(save_scorer(identity, tmp_path / "identity.safetensors"))
    loaded_scene = load_scorer(save_scorer(scene, tmp_path / "scene.safetensors"))
    assert loaded_identity.config == identity.config and loaded_scene.config == scene.config
    assert torch.equal(loaded_identity(x), identity(x))
    assert all(torch.equal(a, b) for a, b in zip(loaded_scene(x).values(), scene(x).values()))
    (tmp_path / "junk.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(ScorerError, match="cannot be read"):
        load_scorer(tmp_path / "junk.safetensors")


def test_fast_smoke_training_beats_chance_on_held_out_renders():
    """A tiny run (about 15 s): both models must beat chance clearly on held-out identities."""
    start = time.perf_counter()
    train = make_samples(DOMAINS, train_ids()[:160], 3, seed=0)
    held_out = make_samples(DOMAINS, heldout_ids()[:12], 3, seed=1)
    images, held_out_images = render_array(train), render_array(held_out)
    fit = FitConfig(epochs=6, batch_size=32, lr=3e-3)
    identity = train_identity_net(images, attribute_targets(train), fit, IdentityNetConfig(widths=(16, 32, 64, 64),
                                                                                           stem=0))
    scene = train_scene_net(images, scene_labels(train), fit)
    report = evaluate_scorers(identity, scene, held_out, held_out_images)
    elapsed = time.perf_counter() - start
    print(json.dumps({"elapsed_s": elapsed, **report}))
    ident = report["identity"]
    # measured (seed 0, one thread): roc_auc 0.73, cosine gap 0.23, top-1 0.15, scene factors 0.93-0.96
    assert ident["roc_auc"] > 0.65 and ident["same_identity_cos"] > ident["different_identity_cos"] + 0.1
    assert ident["top1_retrieval"] > 2 / 24  # chance: 1 / 24 held-out identities
    for factor, values in FACTORS.items():
        assert report["scene"][factor] > max(0.7, 1 / len(values)), factor  # chance: 1/8, 1/3, 1/2, 1/3
    assert set(report["scene"]) == set(FACTORS) | set(LOOK_FIELDS) | {"all"}  # look heads: test_smoke_look_heads_...
    # the public scoring calls agree with the report
    sims = identity_similarity(identity, held_out_images[:3], held_out_images[:3])
    assert sims.shape == (3, 3) and torch.allclose(sims.diagonal(), torch.ones(3), atol=1e-5)
    assert reference_similarity(identity, held_out_images[:2], held_out_images[:3]).shape == (2,)
    shown = [shown_scene(s) for s in held_out]
    assert scene_accuracy(scene, held_out_images, shown, [s.domain for s in held_out]) == report["scene"]
    assert set(predict_scenes(scene, held_out_images[:2])) == set(FACTORS) | set(LOOK_FIELDS)


def test_smoke_look_heads_learn_shirt_hat_accessory_and_pose_on_held_out_identities():
    """Full-framing photos (the look is largest there; a close-up crops the shirt and the dog's body):
    a tiny scene net's look heads beat chance clearly on held-out identities (about 25 s)."""
    def full(samples):
        return [replace(s, scene=replace(s.scene, framing="full", style="photo")) for s in samples]

    train = full(make_samples(DOMAINS, train_ids()[:200], 3, seed=0))
    held = full(make_samples(DOMAINS, heldout_ids()[:20], 3, seed=1))
    net = train_scene_net(render_array(train), scene_labels(train), FitConfig(epochs=8, batch_size=32, lr=3e-3))
    accuracy = scene_accuracy(net, render_array(held), [replace(s.scene, **s.look) for s in held],
                              [s.domain for s in held])
    print(json.dumps(accuracy))
    for factor, bar in LOOK_SMOKE_BARS.items():
        assert accuracy[factor] > bar, factor


def test_scene_labels_give_look_heads_the_shown_look_of_their_domain_only():
    """-1 (no label) on the other domain's heads and where the framing hides the factor: a close-up's
    shirt or a dog's pose is not in the image."""
    samples = make_samples(DOMAINS, train_ids()[:12], 3, seed=3)
    assert any(s.scene.framing == "close-up" for s in samples)
    labels = scene_labels(samples)
    assert set(labels) == {name for name, _ in scene_heads()}
    hidden = 0
    for i, sample in enumerate(samples):
        for domain, factors in LOOK_FACTORS.items():
            for factor, values in factors.items():
                shown = domain == sample.domain and not (sample.scene.framing == "close-up"
                                                         and factor in HIDDEN_IN_CLOSE_UP)
                hidden += domain == sample.domain and not shown
                assert labels[factor][i] == (values.index(sample.look[factor]) if shown else -1), (factor, i)
    assert hidden > 0


def test_the_scorers_report_scores_a_look_factor_only_on_renders_that_show_it():
    """A close-up crops the shirt and a dog's body: the report does not score them there (it read 0.54
    for the shirt head of the first full run with close-ups counted, 0.97 without)."""
    samples = make_samples(DOMAINS, heldout_ids()[:8], 3, seed=5)
    framings = {s.scene.framing for s in samples}
    assert "close-up" in framings and len(framings) > 1
    for sample in samples:
        shown = shown_scene(sample)
        for factor, value in sample.look.items():
            hidden = sample.scene.framing == "close-up" and factor in HIDDEN_IN_CLOSE_UP
            assert getattr(shown, factor) == (None if hidden else value), (sample.scene.framing, factor)
        assert (shown.background, shown.framing) == (sample.scene.background, sample.scene.framing)


def test_look_factors_are_scored_for_one_subject_where_the_scene_names_them():
    torch.manual_seed(0)
    net = SceneNet(SceneNetConfig()).eval()
    images = np.zeros((2, 64, 64, 3), np.uint8)
    predicted = predict_scenes(net, images)
    hat = LOOK_FACTORS["person"]["hat"][int(predicted["hat"][0])]
    pose = LOOK_FACTORS["pet"]["pose"][int(predicted["pose"][0])]
    plain, both = Scene(), Scene(hat=hat, pose=pose)
    assert set(scene_hits(net, images, [plain, plain])) == set(FACTORS) | {"all"}
    with pytest.raises(ScorerError, match="domain='person' or domain='pet'"):
        scene_hits(net, images, [both, both])
    person = scene_hits(net, images, [both, both], domain="person")
    assert set(person) == set(FACTORS) | {"hat", "all"} and bool(person["hat"][0])
    assert set(scene_hits(net, images, [both, both], domain="pet")) == set(FACTORS) | {"pose", "all"}
    with pytest.raises(ScorerError, match="named by 1 of 2 scenes"):
        scene_hits(net, images, [both, plain], domain="person")
    accuracy = scene_accuracy(net, images, [both, plain], domain="person")
    assert accuracy["hat"] == 1.0  # over the one scene that names it


def test_a_second_edition_scene_model_is_refused_with_the_reason(tmp_path):
    old = SceneNet(SceneNetConfig(heads=tuple((name, len(values)) for name, values in FACTORS.items())))
    with pytest.raises(ScorerError, match="second edition's scene model has no look heads.*--stages scorers"):
        load_scorer(save_scorer(old, tmp_path / "scene.safetensors"))


def test_a_scene_model_of_an_older_palette_is_refused_naming_the_head_that_changed(tmp_path):
    """Run 10's scene model (nine shirt colours) was refused as a 'second edition' model missing no head."""
    heads = tuple((name, 9 if name == "shirt" else count) for name, count in scene_heads())
    with pytest.raises(ScorerError, match=r"shirt: 9 values in the file, 4 in this code.*--stages scorers"):
        load_scorer(save_scorer(SceneNet(SceneNetConfig(heads=heads)), tmp_path / "scene.safetensors"))


def test_scene_accuracy_needs_one_scene_per_image():
    scene = SceneNet(SceneNetConfig())
    with pytest.raises(ScorerError, match="one scene per image"):
        scene_accuracy(scene, np.zeros((2, 64, 64, 3), np.uint8), [Scene()])


@pytest.mark.skipif(os.environ.get(FULL_SCORERS_ENV) != "1", reason=f"set {FULL_SCORERS_ENV}=1 (takes minutes)")
def test_full_scorers_reach_their_bars_on_held_out_identities(tmp_path):
    report = train_scorers(tmp_path, ScorerPipelineConfig())
    print(json.dumps(report, indent=1))
    assert report["identity"]["roc_auc"] >= FULL_BARS["roc_auc"]
    assert report["identity"]["top1_retrieval"] >= FULL_BARS["top1_retrieval"]
    check_scene_bars(report["scene"])
    assert isinstance(load_scorer(tmp_path / "identity.safetensors"), IdentityNet)


def check_scene_bars(scene: dict) -> None:
    """Every scene factor at ``FULL_BARS``, every look factor (on renders that show it) at ``LOOK_FULL_BARS``."""
    assert set(scene) == {*FACTORS, *LOOK_FULL_BARS, "all"}
    for factor, accuracy in scene.items():
        if factor != "all":
            assert accuracy >= LOOK_FULL_BARS.get(factor, FULL_BARS["scene_factor"]), (factor, accuracy)


def test_committed_scorers_reach_their_bars_on_held_out_identities(committed_results):
    """The scoring models the committed results were measured with (toyworld/weights/scorers), on
    renders of 60 held-out identities per domain they never saw (skipped while they are an earlier
    edition's: the renders they were trained on are not this world's)."""
    from nested_attention.toyworld.publish import COMMITTED_WEIGHTS, SCORER_FILES

    identity_net = load_scorer(COMMITTED_WEIGHTS / SCORER_FILES["identity"]).float()
    scene_net = load_scorer(COMMITTED_WEIGHTS / SCORER_FILES["scene"]).float()
    samples = make_samples(DOMAINS, heldout_ids()[:60], 4, seed=4242)
    report = evaluate_scorers(identity_net, scene_net, samples, render_array(samples))
    assert report["identity"]["roc_auc"] >= FULL_BARS["roc_auc"]
    assert report["identity"]["top1_retrieval"] >= FULL_BARS["top1_retrieval"]
    check_scene_bars(report["scene"])


def test_committed_attribute_heads_read_held_out_renders_well_above_chance(committed_results):
    """``predict_attributes`` (the evaluation's per-attribute table) on renders of 40 held-out
    identities per domain: the strongest attributes are read far above chance (1/7 for both colours)."""
    from nested_attention.toyworld.identity import attribute_labels, sample_identity
    from nested_attention.toyworld.publish import COMMITTED_WEIGHTS, SCORER_FILES
    from nested_attention.toyworld.scoring import predict_attributes

    identity_net = load_scorer(COMMITTED_WEIGHTS / SCORER_FILES["identity"]).float()
    for domain, attribute in (("person", "hair_colour"), ("pet", "fur_colour")):
        samples = make_samples([domain], heldout_ids()[:40], 1, seed=77)
        predicted = predict_attributes(identity_net, render_array(samples), domain)[attribute]
        truth = torch.tensor([attribute_labels(sample_identity(domain, s.identity_id))[attribute] for s in samples])
        assert float((predicted == truth).double().mean()) > 0.5, (domain, attribute)
    with pytest.raises(ScorerError, match="unknown domain 'cat'"):
        predict_attributes(identity_net, np.zeros((1, 64, 64, 3), np.uint8), "cat")

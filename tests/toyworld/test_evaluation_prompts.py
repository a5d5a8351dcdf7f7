"""The evaluation's prompts ask each subject for look values its reference does not show, and the
rows score those look factors apart from the scene's."""
from __future__ import annotations

import numpy as np
import pytest

from nested_attention.toyworld.evaluation import EVAL_SCENES, EvalConfig
from nested_attention.toyworld.evaluation_inputs import reference, reference_look
from nested_attention.toyworld.evaluation_scores import Collected
from nested_attention.toyworld.look import HIDDEN_IN_CLOSE_UP, LOOK_FACTORS, named_look
from nested_attention.toyworld.nets import IdentityNet, IdentityNetConfig, SceneNet, SceneNetConfig
from nested_attention.toyworld.scene import caption


def test_every_prompt_asks_for_look_values_the_reference_does_not_show():
    config = EvalConfig(prompts=len(EVAL_SCENES))
    for domain in LOOK_FACTORS:
        for identity_id in config.ids():
            shown = reference_look(domain, identity_id)
            assert shown.get("hat", "none") == "none" and shown.get("accessory", "none") == "none"
            for scene, plain in zip(config.scenes_for(domain, identity_id), EVAL_SCENES):
                asked = named_look(domain, scene)
                hidden = HIDDEN_IN_CLOSE_UP if plain.framing == "close-up" else set()
                assert set(asked) == set(LOOK_FACTORS[domain]) - hidden
                assert all(value != shown[factor] and value != "none" for factor, value in asked.items())
                assert (scene.background, scene.placement, scene.framing, scene.style) == \
                    (plain.background, plain.placement, plain.framing, plain.style)
    assert config.scenes_for("person", 1800) == EvalConfig(prompts=len(EVAL_SCENES)).scenes_for("person", 1800)
    assert "wearing a" in caption("person", config.scenes_for("person", 1800)[0])


def test_the_reference_is_rendered_as_its_look_says():
    from nested_attention.toyworld.evaluation_inputs import _reference_source
    from nested_attention.toyworld.identity import sample_identity
    from nested_attention.toyworld.render import render_with_mask
    from dataclasses import replace

    for domain in LOOK_FACTORS:
        scene, seed = _reference_source(domain, 1803)
        named = replace(scene, **reference_look(domain, 1803))
        again = render_with_mask(sample_identity(domain, 1803), named, seed).image
        assert np.array_equal(np.asarray(again), np.asarray(reference(domain, 1803).image))


def test_a_row_scores_each_look_factor_on_the_prompts_that_name_it():
    config = EvalConfig()
    row = Collected()
    rng = np.random.default_rng(0)
    for domain in ("person", "pet"):
        for scene in config.scenes_for(domain, 1800):
            row.add(rng.integers(0, 255, (64, 64, 3), dtype=np.uint8), np.zeros((1, 64, 64, 3), np.uint8), scene,
                    (domain, 1800, scene))
    scene_net = SceneNet(SceneNetConfig()).eval()
    hits = row._hits(scene_net)
    assert int(hits["shirt"][1].sum()) == 2 and int(hits["pose"][1].sum()) == 2  # the full-framing prompts only
    assert int(hits["hat"][1].sum()) == 3 and int(hits["accessory"][1].sum()) == 3
    scores = row.scores(IdentityNet(IdentityNetConfig()).eval(), scene_net)
    right, named = hits["shirt"]
    assert scores["prompt"]["shirt"] == float(right[named].double().mean())
    every = np.ones(6, bool)
    for right, named in hits.values():
        every &= (right | ~named).numpy()
    assert scores["prompt"]["all"] == float(every.mean())
    right_count = sum((right & named).numpy().astype(float) for right, named in hits.values())
    named_count = sum(named.numpy().astype(float) for _, named in hits.values())
    assert scores["prompt"]["share"] == pytest.approx(float(np.mean(right_count / named_count)))
    looks = [hits[f] for f in ("shirt", "expression", "hat", "accessory", "pose")]
    look_share = sum((r & n).numpy().astype(float) for r, n in looks) / sum(n.numpy().astype(float) for _, n in looks)
    assert scores["prompt"]["subject"] == pytest.approx(float(look_share.mean()))  # every prompt names a look here
    per_image = row.per_image(IdentityNet(IdentityNetConfig()).eval(), scene_net)
    assert [v[1] for v in per_image.values()] == pytest.approx(list(right_count / named_count))
    assert {"scene: all", "subject: all"} <= set(scores["prompt"]) and scores["subject_se"] is not None

"""The whole toy-world experiment at tiny size (preset "smoke"), through the real ComfyUI host:
data, scorers, base model, the three encoders through the trainer, publishing, evaluation."""
from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest
import torch
from PIL import Image

from nested_attention.toyworld.experiment import PRESETS, STAGES, run
from nested_attention.toyworld.publish import BASE_FILES, ENCODER_FILES, METHODS, SCORER_FILES


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    out = tmp_path_factory.mktemp("toyworld_smoke")
    run(out, "smoke")
    return out


def test_every_stage_finishes_and_is_stamped(smoke):
    for stage in STAGES:
        stamp = json.loads((smoke / f"{stage}.done.json").read_text())
        assert stamp["seconds"] >= 0


def test_published_files_match_their_manifest_and_are_fp16(smoke):
    from safetensors import safe_open

    weights = smoke / "weights"
    manifest = json.loads((weights / "manifest.json").read_text())
    oracles = {f"benchmark/oracles/{key}/{domain}_1800.safetensors" for key in ("nested_attention", "decoupled")
               for domain in ("person", "pet")}  # one held-out id per domain in the smoke preset
    expected = {*BASE_FILES.values(), *ENCODER_FILES.values(), *SCORER_FILES.values(), *oracles}
    assert set(manifest) == expected
    for rel, entry in manifest.items():
        data = (weights / rel).read_bytes()
        assert hashlib.sha256(data).hexdigest() == entry["sha256"] and len(data) == entry["bytes"]
        with safe_open(str(weights / rel), framework="pt") as f:
            dtypes = {f.get_slice(k).get_dtype() for k in f.keys()}
        assert dtypes <= {"F16", "I64"}, (rel, dtypes)


def test_base_checkpoint_loads_in_comfyui_with_normalised_latents(smoke):
    from nested_attention.toyworld.base_model import load_checkpoint

    report = json.loads((smoke / "base" / "base_report.json").read_text())
    assert abs(report["latents"]["mean"]) < 1e-3 and abs(report["latents"]["std"] - 1) < 1e-3
    gaps = report["unet"]["look_gap"]  # every look_gap_every (2) steps and on the EMA weights
    assert list(gaps) == ["2", "ema"] and set(gaps["ema"]) == {"shirt", "expression", "hat", "accessory", "pose"}
    assert all(abs(v) < 1e4 for g in gaps.values() for v in g.values())
    model, clip, vae = load_checkpoint(smoke / "weights" / BASE_FILES["checkpoint"])
    assert type(model.model.model_config).__name__ == "ToyWorldSD15"
    cond = clip.encode_from_tokens(clip.tokenize("a photo of a dog in the snow, on the left"))
    assert cond.shape == (1, 77, 64)
    decoded = vae.decode(torch.zeros(1, 4, 8, 8))
    assert decoded.shape == (1, 64, 64, 3)


def test_text_encoder_knows_only_the_world_vocabulary(smoke):
    from nested_attention.toyworld.base_model import load_checkpoint

    _, clip, _ = load_checkpoint(smoke / "weights" / BASE_FILES["checkpoint"])
    table = clip.cond_stage_model.clip_l.transformer.text_model.embeddings.token_embedding.weight
    tokens = clip.tokenizer.clip_l.tokenizer
    world, other = tokens.convert_tokens_to_ids("dog</w>"), tokens.convert_tokens_to_ids("violin</w>")
    assert table[world].abs().sum() > 0 and table[other].abs().sum() == 0


def test_results_table_and_grid(smoke):
    from nested_attention.toyworld.evaluation import (BASE, NO_REGIONS, ORACLE_TEXT, OURS, RENDERS, ROUND_TRIP,
                                                      masked_row)

    results = smoke / "results"
    table = (results / "results.md").read_text()
    for name in (*METHODS, *map(masked_row, METHODS), BASE, RENDERS, ROUND_TRIP, ORACLE_TEXT):
        assert f"| {name} |" in table
    scores = json.loads((results / "results.json").read_text())["scores"]
    assert set(scores["two"]) == {BASE, OURS, masked_row(OURS), NO_REGIONS}
    config = PRESETS["smoke"].evaluation
    for name, s in scores["single"].items():
        assert -1 <= s["identity"] <= 1 and 0 <= s["prompt"]["all"] <= 1
        assert s["n"] == 2 * config.ids_per_domain * config.prompts
    assert set(scores["sweep"]["curves"]) == set(METHODS)
    for name in ("grid.png", "tradeoff.png"):
        image = np.asarray(Image.open(results / name))
        assert image.ndim == 3 and image.std() > 0, name


def test_finished_stages_are_skipped_and_evaluation_is_deterministic(smoke):
    before = (smoke / "results" / "results.json").read_text()
    (smoke / "evaluate.done.json").unlink()
    run(smoke, "smoke")  # every other stage is skipped; the evaluation runs again
    assert (smoke / "results" / "results.json").read_text() == before


def test_the_second_evaluation_process_changes_no_score(smoke, tmp_path):
    """The experiment evaluates the dogs in a spawned second process; all in one process gives the same files."""
    from nested_attention.toyworld.publish import run_evaluation

    run_evaluation(smoke / "weights", tmp_path, PRESETS["smoke"].evaluation, processes=1)
    for name in ("results.json", "results.md"):
        assert (tmp_path / name).read_text() == (smoke / "results" / name).read_text(), name


def test_a_stage_without_its_earlier_stages_is_refused(tmp_path):
    from nested_attention.toyworld.errors import ExperimentError

    with pytest.raises(ExperimentError, match="stage base needs stage\\(s\\) data, vae, clip"):
        run(tmp_path, "smoke", ["base"])
    with pytest.raises(ExperimentError, match="stage vae needs stage\\(s\\) data of"):
        run(tmp_path, "smoke", ["vae"])


def test_evaluation_of_an_incomplete_weights_folder_names_the_missing_file(tmp_path):
    from nested_attention.toyworld.errors import ExperimentError
    from nested_attention.toyworld.evaluation import EvalConfig
    from nested_attention.toyworld.publish import run_evaluation

    with pytest.raises(ExperimentError, match="has no models/checkpoints/toyworld_base.safetensors"):
        run_evaluation(tmp_path, tmp_path / "results", EvalConfig())
    with pytest.raises(ExperimentError, match=r"processes is 3; give 1 \(everything here\) or 2"):
        run_evaluation(tmp_path, tmp_path / "results", EvalConfig(), processes=3)


def test_the_trained_toy_clip_is_what_the_base_and_the_encoders_read(smoke):
    from safetensors.torch import load_file

    from nested_attention.toyworld.base_model import load_checkpoint

    report = json.loads((smoke / "clip" / "clip_report.json").read_text())
    for tower in ("trained_tower", "random_tower"):
        for domain in ("person", "pet"):
            assert set(report[tower][domain]) == {"retrieval_top1", "retrieval_chance", "attribute_probes"}
    published = load_file(str(smoke / "weights" / BASE_FILES["clip_vision"]))
    trained = load_file(str(smoke / "clip" / "clip_vision.safetensors"))
    assert set(published) == set(trained) and all(torch.equal(published[k], trained[k].half()) for k in trained)
    text = load_file(str(smoke / "clip" / "text_encoder.safetensors"))
    _, clip, _ = load_checkpoint(smoke / "weights" / BASE_FILES["checkpoint"])
    in_checkpoint = clip.cond_stage_model.state_dict()
    for key, value in text.items():
        if not key.startswith("clip_l.transformer.text_model."):
            continue  # logit scale, text projection: an SD1.5 checkpoint keeps neither (the UNet reads neither)
        assert torch.equal(in_checkpoint[key].float(), value.half().float()), key


def test_every_encoder_logged_the_reference_gap_on_held_out_subjects(smoke):
    from nested_attention.toyworld.publish import reference_gaps

    gaps = reference_gaps(smoke)  # what the repository keeps as docs/toyworld/reference_gap.json
    assert set(gaps) == set(METHODS)
    for events in gaps.values():
        assert [e["step"] for e in events] == [1, 2]
        assert all(e["loss_right"] > 0 and e["loss_wrong"] > 0 for e in events)
    held = json.loads((smoke / "encoders" / "validation" / "toyworld.json").read_text())["images"]
    assert {item["identity_id"] for item in held} <= set(range(1900, 2000))


def test_the_base_stage_measures_where_the_subject_word_attends(smoke):
    from nested_attention.toyworld.attention_share import KEYS

    share = json.loads((smoke / "base" / "attention_share.json").read_text())
    assert len(share["layers"]) == 7 and all(0 <= v["inside"] <= 1 for v in share["layers"].values())
    assert set(share["mean"]) == set(KEYS) and {"background_background", "two_own", "two_other"} <= set(KEYS)


def test_the_smoke_base_trains_with_the_grounding_loss(smoke):
    report = json.loads((smoke / "base" / "base_report.json").read_text())
    unet = PRESETS["smoke"].base.unet
    assert unet.grounding_weight > 0 and unet.grounding_from == 1 < unet.steps
    assert report["config"]["unet"]["grounding_from"] == 1
    assert report["unet"]["grounding_first_100"] > 0  # the term of steps 1.. (a fresh UNet spreads its words)


def test_pairs_store_each_subjects_mask_and_the_caption_source(smoke):
    from nested_attention.toyworld.experiment import base_grounding, single_subject_images

    pairs = np.load(smoke / "data" / "pairs.npz")
    n = PRESETS["smoke"].data.pairs
    assert pairs["person_masks"].shape == pairs["pet_masks"].shape == (n, 64, 64)
    assert len(pairs["scenes"]) == len(pairs["sides"]) == n
    _, manifest = single_subject_images(smoke)
    grounded = base_grounding(smoke, manifest, pairs)
    assert grounded.masks.shape == (len(manifest) + n, 3, 64, 64)
    assert grounded.masks[:len(manifest), 0].any(axis=(1, 2)).all() and not grounded.masks[:len(manifest), 1:].any()
    assert grounded.masks[len(manifest):, 1:].any(axis=(2, 3)).all() and not grounded.masks[len(manifest):, 0].any()
    last = grounded.phrases[-1]  # class words, the look values the caption names, the background's words
    assert [(p, r) for p, r in last if p in ("person", "dog")] == [("person", "person"), ("dog", "pet")]
    assert last[-1][1] == "background" and {r for _, r in last[:-1]} == {"person", "pet"}


def test_rendered_pairs_hold_the_masks_of_their_renders():
    from nested_attention.toyworld.experiment import pair_samples, render_pairs
    from nested_attention.toyworld.identity import sample_identity
    from nested_attention.toyworld.render import render_two
    from nested_attention.toyworld.scene import Scene

    samples = pair_samples(2, 3, range(20))
    pairs = render_pairs(samples)
    for i, p in enumerate(samples):
        rendered = render_two(sample_identity("person", p["person"]), sample_identity("pet", p["pet"]), p["scene"],
                              p["seed"], 64, person_side=p["side"])
        assert np.array_equal(pairs["person_masks"][i], np.asarray(rendered.person_mask))
        assert np.array_equal(pairs["pet_masks"][i], np.asarray(rendered.pet_mask))
        columns = np.arange(64)
        person_x = (pairs["person_masks"][i].sum(0) * columns).sum() / pairs["person_masks"][i].sum()
        assert (person_x < 32) == (p["side"] == "left") and pairs["sides"][i] == p["side"]
        assert Scene(**json.loads(str(pairs["scenes"][i]))) == p["scene"]


def test_base_captions_name_the_attributes_for_their_share_of_images():
    from nested_attention.toyworld.dataset import make_samples
    from nested_attention.toyworld.experiment import base_captions

    manifest = [{"file": f"{s.key}/{n:03d}.png", "domain": s.domain, "identity_id": s.identity_id,
                 "scene": {"background": s.scene.background, "placement": s.scene.placement,
                           "framing": s.scene.framing, "style": s.scene.style}}
                for n, s in enumerate(make_samples(["person", "pet"], range(200), 2, seed=1))]
    counts = {share: sum(" with " in c for c in base_captions(manifest, share, 0)) for share in (0.0, 0.5, 1.0)}
    assert counts[0.0] == 0 and counts[1.0] == len(manifest) and 0.4 < counts[0.5] / len(manifest) < 0.6
    assert base_captions(manifest, 0.5, 0) == base_captions(manifest, 0.5, 0)


def test_the_toy_clip_reads_captions_and_groups_without_the_look():
    """Named, the look made the CLIP's task easy without the identity (loss to 0.004, retrieval near chance)."""
    from dataclasses import asdict

    from nested_attention.toyworld.experiment import described_captions
    from nested_attention.toyworld.scene import Scene

    scene = Scene("snow", "left", "full", "photo", shirt="orange", expression="smile", hat="cap")
    manifest = [{"domain": "person", "identity_id": 3, "scene": asdict(scene), "file": "x.png"}]
    with_look, without = described_captions(manifest)[0], described_captions(manifest, look=False)[0]
    assert "wearing a cap" in with_look and "orange shirt" in with_look
    assert "cap" not in without and "shirt" not in without and "smiling" not in without and "snow" in without
    assert scene.without_look() == Scene("snow", "left", "full", "photo")

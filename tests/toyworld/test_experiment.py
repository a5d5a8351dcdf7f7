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
    expected = {*BASE_FILES.values(), *ENCODER_FILES.values(), *SCORER_FILES.values()}
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
    results = smoke / "results"
    table = (results / "results.md").read_text()
    for name in (*METHODS, "base (no subject)", "renders (upper bound)"):
        assert f"| {name} |" in table
    scores = json.loads((results / "results.json").read_text())["scores"]
    assert set(scores["two"]) == {"base (no subject)", "nested attention (ours)"}
    for name, s in scores["single"].items():
        assert -1 <= s["identity"] <= 1 and 0 <= s["prompt"]["all"] <= 1
        assert s["n"] == 2 * PRESETS["smoke"].evaluation.ids_per_domain * 6
    grid = np.asarray(Image.open(results / "grid.png"))
    assert grid.ndim == 3 and grid.std() > 0


def test_finished_stages_are_skipped_and_evaluation_is_deterministic(smoke):
    before = (smoke / "results" / "results.json").read_text()
    (smoke / "evaluate.done.json").unlink()
    run(smoke, "smoke")  # every other stage is skipped; the evaluation runs again
    assert (smoke / "results" / "results.json").read_text() == before


def test_a_stage_without_its_earlier_stages_is_refused(tmp_path):
    from nested_attention.toyworld.errors import ExperimentError

    with pytest.raises(ExperimentError, match="stage base needs stage\\(s\\) data, scorers"):
        run(tmp_path, "smoke", ["base"])


def test_evaluation_of_an_incomplete_weights_folder_names_the_missing_file(tmp_path):
    from nested_attention.toyworld.errors import ExperimentError
    from nested_attention.toyworld.evaluation import EvalConfig
    from nested_attention.toyworld.publish import run_evaluation

    with pytest.raises(ExperimentError, match="has no models/checkpoints/toyworld_base.safetensors"):
        run_evaluation(tmp_path, tmp_path / "results", EvalConfig())

"""Oracle subjects (toyworld/oracle.py): per-identity nested keys/values fitted directly, on the committed
toy weights through the trainer's denoiser, saved, loaded and applied as the evaluation applies subjects."""
from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch

from nested_attention.toyworld import oracle
from nested_attention.toyworld.errors import ExperimentError
from nested_attention.toyworld.oracle import OracleConfig, load_oracles, train_oracles

TINY = OracleConfig(renders=2, steps=2, batch=2, ids_per_domain=1, heldout_renders=1, heldout_draws=2)


@pytest.fixture(scope="module")
def toy():
    """The committed toy base (ToyHost), its encoders, and a trainer Denoiser per method."""
    from nested_attention.nested_attention_core.weights import load_weights
    from nested_attention.toyworld.generation import ToyHost
    from nested_attention.toyworld.publish import BASE_FILES, COMMITTED_WEIGHTS, ENCODER_FILES
    from nested_attention.training.method import method_named
    from nested_attention.training.step import Denoiser

    host = ToyHost.load(COMMITTED_WEIGHTS / BASE_FILES["checkpoint"], COMMITTED_WEIGHTS / BASE_FILES["clip_vision"])
    host.model.model.eval().requires_grad_(False)
    methods = {}
    for registered in oracle.ORACLE_METHODS:
        name, method = registered.name, method_named(registered.name)
        encoder = load_weights(COMMITTED_WEIGHTS / ENCODER_FILES[registered.file_key], accept=[name]).encoder
        encoder = encoder.float().eval()
        denoiser = Denoiser(host.model, method.rule)
        denoiser.load()
        methods[name] = (method, encoder, denoiser)
    return host, oracle._RenderStore(host), methods


def start_subject(toy, name, domain="person", identity_id=1800):
    from nested_attention.toyworld.evaluation import reference_render
    from nested_attention.toyworld.identity import CLASS_WORDS

    host, _, methods = toy
    method, encoder, _ = methods[name]
    with torch.no_grad():
        return method.subject(encoder, host.features(reference_render(domain, identity_id)[None]), CLASS_WORDS[domain],
                              host.family)


def renders_of(toy, domain, identity_id, count, purpose="train"):
    _, store, _ = toy
    return [store.render(s, 64) for s in oracle.identity_samples(domain, identity_id, count, 0, purpose)]


def test_training_renders_are_neither_the_evaluation_renders_nor_its_scenes():
    from nested_attention.toyworld.evaluation import EVAL_SCENES, gallery_renders, reference_render
    from nested_attention.toyworld.dataset import render_array

    train = oracle.identity_samples("pet", 1803, 16, 0, "train")
    heldout = oracle.identity_samples("pet", 1803, 8, 0, "heldout")
    assert len(train) == 16 and len(heldout) == 8
    assert all(s.domain == "pet" and s.identity_id == 1803 for s in train + heldout)
    assert not any(s.scene in EVAL_SCENES for s in train + heldout)
    assert not {s.variation_seed for s in train} & {s.variation_seed for s in heldout}
    images = render_array(train + heldout)
    evaluation = np.concatenate([reference_render("pet", 1803)[None], gallery_renders("pet", 1803, 4)])
    assert not any(np.array_equal(a, b) for a in images for b in evaluation)


@pytest.mark.parametrize("name", ["nested", "decoupled"])
def test_optimisation_lowers_the_loss_on_its_own_training_batch_and_changes_only_keys_values(toy, name):
    _, store, methods = toy
    denoiser = methods[name][2]
    start = start_subject(toy, name)
    renders = renders_of(toy, "person", 1800, 4)
    config = replace(OracleConfig(), steps=24, batch=4, lr=1e-1)
    found, history = oracle.optimise_subjects(denoiser, store, [start], [renders], config, seed=5)
    (fitted,) = found
    assert len(history) == 24 and all(np.isfinite(history))
    first = oracle.make_batch(denoiser, store, [renders], 4, 0, 5, config.background_loss_weight)  # step 0's batch
    with torch.no_grad():
        before = float(oracle.subject_losses(denoiser, first, oracle.stacked([start]), 4)[0])
        after = float(oracle.subject_losses(denoiser, first, oracle.stacked([fitted]), 4)[0])
    assert after < before * 0.995, (before, after)  # new toy weights: nested -1.2 %, decoupled more
    assert (fitted.word, fitted.base_family, fitted.context_dim) == (start.word, start.base_family, start.context_dim)
    assert torch.equal(fitted.tokens, start.tokens)
    assert fitted.nested.keys() == start.nested.keys()
    for layer, (k, v) in start.nested.items():  # every layer's keys and values moved, shapes kept
        assert fitted.nested[layer][0].shape == k.shape and fitted.nested[layer][1].shape == v.shape
        assert not torch.equal(fitted.nested[layer][0], k) and not torch.equal(fitted.nested[layer][1], v)
    # the starting subject is untouched (the parameters are copies)
    assert torch.equal(start.nested[layer][1], start_subject(toy, name).nested[layer][1])


def test_subjects_fitted_together_get_each_its_own_gradient(toy):
    """One UNet call for several subjects: row j of subject s gets subject s's keys/values, so the
    gradient on subject 0 is the gradient of subject 0's loss alone (same rows, same draws)."""
    _, store, methods = toy
    denoiser = methods["nested"][2]
    person, pet = start_subject(toy, "nested", "person", 1801), start_subject(toy, "nested", "pet", 1801)
    person_renders, pet_renders = renders_of(toy, "person", 1801, 2), renders_of(toy, "pet", 1801, 2)

    def grads(subjects, renders):
        params = {layer: tuple(torch.nn.Parameter(t) for t in kv) for layer, kv in oracle.stacked(subjects).items()}
        batch = oracle.make_batch(denoiser, store, renders, 2, 3, 11, 0.25)
        oracle.subject_losses(denoiser, batch, params, 2).sum().backward()
        return {layer: (k.grad, v.grad) for layer, (k, v) in params.items()}

    together = grads([person, pet], [person_renders, pet_renders])
    alone = grads([person], [person_renders])
    for layer, (k, v) in alone.items():
        assert k.abs().max() > 0 and v.abs().max() > 0
        torch.testing.assert_close(together[layer][0][:1], k, rtol=1e-3, atol=1e-7)
        torch.testing.assert_close(together[layer][1][:1], v, rtol=1e-3, atol=1e-7)
    layer = next(iter(alone))
    assert not torch.allclose(together[layer][1][1], alone[layer][1][0])  # the dog's is its own


def test_train_oracles_writes_files_that_load_and_apply_through_the_host(toy, tmp_path):
    from nested_attention.nodes import host as host_layer
    from nested_attention.nested_attention_core.subject import load_subject
    from nested_attention.toyworld.generation import SamplerSettings
    from nested_attention.toyworld.publish import COMMITTED_WEIGHTS
    from nested_attention.training.method import method_named

    report = train_oracles(COMMITTED_WEIGHTS, tmp_path / "oracles", TINY)
    for key in ("nested_attention", "decoupled"):
        entry = report[key]
        assert entry["subjects"] == 2 and entry["seconds"] > 0
        assert np.isfinite([entry["loss_encoder"], entry["loss_oracle"], entry["loss_drop_pct"]]).all()
    oracles = load_oracles(tmp_path / "oracles")
    assert sorted(oracles) == [(k, d, 1800) for k in ("decoupled", "nested_attention") for d in ("person", "pet")]
    assert (tmp_path / "oracles" / "nested_attention" / "pet_1800.safetensors").is_file()
    host, _, _ = toy
    settings = SamplerSettings(steps=2)
    base = host.sample(host.model, "a photo of a dog on a red background, in the center", 3, settings)
    for (key, domain, identity_id), subject in oracles.items():
        name = next(m.name for m in oracle.ORACLE_METHODS if m.file_key == key)
        assert subject.method == name  # the file says which method it is
        start = start_subject(toy, name, domain, identity_id)
        assert subject.word == start.word and torch.equal(subject.tokens, start.tokens)
        assert any(not torch.equal(subject.nested[layer][1], v) for layer, (_, v) in start.nested.items())
        assert subject.source.startswith(f"subject file {domain}_{identity_id}.safetensors")
        if domain == "pet":
            model = host_layer.apply_subject(host.model, subject, 1.0, rule=method_named(name).rule)
            image = host.sample(model, "a photo of a dog on a red background, in the center", 3, settings)
            assert image.shape == (64, 64, 3) and image.dtype == np.uint8
            assert not np.array_equal(image, base)  # the subject acts
    # a second file of a subject reads back bit for bit
    again = load_subject(tmp_path / "oracles" / "decoupled" / "person_1800.safetensors")
    first = oracles[("decoupled", "person", 1800)]
    assert all(torch.equal(again.nested[layer][i], first.nested[layer][i]) for layer in first.nested for i in (0, 1))


def test_bad_folders_and_methods_give_clear_errors(tmp_path):
    from nested_attention.toyworld.publish import COMMITTED_WEIGHTS

    missing = tmp_path / "no_weights_here"
    with pytest.raises(ExperimentError, match="no_weights_here"):
        train_oracles(missing, tmp_path / "out", TINY)
    incomplete = tmp_path / "incomplete"
    incomplete.mkdir()
    with pytest.raises(ExperimentError, match=r"incomplete has no models/checkpoints/toyworld_base\.safetensors"):
        train_oracles(incomplete, tmp_path / "out", TINY)
    with pytest.raises(ExperimentError, match="single_token"):
        train_oracles(COMMITTED_WEIGHTS, tmp_path / "out", replace(TINY, methods=("single_token",)))
    with pytest.raises(ExperimentError, match="no_oracles"):
        load_oracles(tmp_path / "no_oracles")
    with pytest.raises(ExperimentError, match="holds no oracle subjects"):
        load_oracles(incomplete)
    (incomplete / "decoupled").mkdir()
    (incomplete / "decoupled" / "person_x.safetensors").write_bytes(b"")
    with pytest.raises(ExperimentError, match="person_x"):
        load_oracles(incomplete)
    assert not (tmp_path / "out").exists()

"""The toy world's baselines: their attention rules (nested_attention_core/baselines.py) against per-row,
per-head float64 loops, and their training methods (training/method.py) through the trainer on a tiny
real ComfyUI checkpoint."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from PIL import Image

from nested_attention.nested_attention_core import SubjectAttention, plain_attention
from nested_attention.nested_attention_core.baselines import decoupled_attention, single_token_attention
from nested_attention.training.method import METHODS

SINGLE_TOKEN, DECOUPLED = METHODS["single_token"], METHODS["decoupled"]

ROWS, HEADS, HEAD_WIDTH, N_QUERIES, N_TEXT = 4, 3, 8, 10, 7
WIDTH = HEADS * HEAD_WIDTH


def random(*shape, seed, scale=1.0):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed)) * scale


def layer_inputs():
    q, k, v = (random(ROWS, n, WIDTH, seed=i) for i, n in enumerate((N_QUERIES, N_TEXT, N_TEXT)))
    return plain_attention(q, k, v, HEADS), q, k, v


def subjects(tokens_a: int, tokens_b: int) -> list[SubjectAttention]:
    """A two-token word in rows 0 and 2 (per-row nested keys/values, a region); a one-token word in
    rows 2 and 3 (keys/values shared by every row, strength 0.7). Row 1 holds no subject word."""
    word_a = torch.zeros(ROWS, N_TEXT, dtype=torch.bool)
    word_a[[0, 2], 2:4] = True
    word_b = torch.zeros(ROWS, N_TEXT, dtype=torch.bool)
    word_b[[2, 3], 5] = True
    region = torch.rand(ROWS, N_QUERIES, generator=torch.Generator().manual_seed(9))
    return [SubjectAttention(random(ROWS, tokens_a, WIDTH, seed=5, scale=2), random(ROWS, tokens_a, WIDTH, seed=6),
                             word_a, 1.0, region),
            SubjectAttention(random(1, tokens_b, WIDTH, seed=7, scale=2), random(1, tokens_b, WIDTH, seed=8),
                             word_b, 0.7)]


def attention64(q, k, v):
    """softmax(q k^T / sqrt(d)) v head by head, in float64. q: [n_q, h*d], k/v: [n_k, h*d]."""
    out = torch.empty(q.shape[0], v.shape[-1], dtype=torch.float64)
    for h in range(HEADS):
        cols = slice(h * HEAD_WIDTH, (h + 1) * HEAD_WIDTH)
        weights = torch.softmax(q[:, cols].double() @ k[:, cols].double().T / math.sqrt(HEAD_WIDTH), -1)
        out[:, cols] = weights @ v[:, cols].double()
    return out


def row_of(t, b):
    return t[0] if t.shape[0] == 1 else t[b]


def region_of(s, b):
    return torch.ones(N_QUERIES, dtype=torch.float64) if s.query_mask is None else row_of(s.query_mask, b).double()


def single_token_reference(base, q, k, v, subjects):
    out = base.double().clone()
    for b in range(ROWS):
        keys, values = k[b].double().clone(), v[b].double().clone()
        gate = torch.zeros(N_QUERIES, dtype=torch.float64)
        for s in subjects:
            positions = s.token_mask[b].nonzero().flatten().tolist()
            for j in positions:
                keys[j] = row_of(s.nested_keys, b).double().mean(0)
                values[j] = s.strength * row_of(s.nested_values, b).double().mean(0)
            if positions:
                gate = torch.maximum(gate, region_of(s, b))
        out[b] += gate[:, None] * (attention64(q[b], keys, values) - base[b].double())
    return out


def decoupled_reference(base, q, k, v, subjects):
    out = base.double().clone()
    for b in range(ROWS):
        for s in subjects:
            if s.token_mask[b].any():
                image = attention64(q[b], row_of(s.nested_keys, b), row_of(s.nested_values, b))
                out[b] += s.strength * region_of(s, b)[:, None] * image
    return out


@pytest.mark.parametrize("rule, reference, tokens", [(single_token_attention, single_token_reference, (1, 3)),
                                                     (decoupled_attention, decoupled_reference, (4, 3))])
def test_rule_matches_the_per_row_per_head_loop(rule, reference, tokens):
    base, q, k, v = layer_inputs()
    both = subjects(*tokens)
    out = rule(base, q, k, v, HEADS, both)
    expected = reference(base, q, k, v, both)
    assert torch.allclose(out.double(), expected, atol=1e-5, rtol=1e-5)
    assert torch.equal(out[1], base[1])  # no subject word: bit for bit
    assert all((out[b] - base[b]).abs().max() > 1e-2 for b in (0, 2, 3))
    only_b = rule(base, q, k, v, HEADS, both[1:])
    assert torch.equal(only_b[:2], base[:2])


def test_single_token_with_the_text_key_and_value_is_plain_attention():
    _, q, k, v = layer_inputs()
    word = torch.zeros(ROWS, N_TEXT, dtype=torch.bool)
    word[:3, 2:4] = True
    key, value = random(ROWS, 1, WIDTH, seed=11), random(ROWS, 1, WIDTH, seed=12)
    k, v = k.clone(), v.clone()
    k[:, 2:4], v[:, 2:4] = key, value  # both tokens of the word already carry the pooled key and value
    out = single_token_attention(random(ROWS, N_QUERIES, WIDTH, seed=13), q, k, v, HEADS,
                                 [SubjectAttention(key, value, word)])
    assert torch.allclose(out[:3], plain_attention(q, k, v, HEADS)[:3], atol=1e-6, rtol=0)


def test_decoupled_at_scale_zero_is_the_base():
    base, q, k, v = layer_inputs()
    off = [SubjectAttention(s.nested_keys, s.nested_values, s.token_mask, 0.0, s.query_mask) for s in subjects(4, 3)]
    assert torch.equal(decoupled_attention(base, q, k, v, HEADS, off), base)


def test_rules_leave_the_base_alone_without_subject_words():
    base, q, k, v = layer_inputs()
    nobody = [SubjectAttention(s.nested_keys, s.nested_values, torch.zeros_like(s.token_mask)) for s in subjects(1, 1)]
    for rule in (single_token_attention, decoupled_attention):
        assert rule(base, q, k, v, HEADS, nobody) is base


# ---- training through the trainer, and the subject at inference -----------------------------------------------

@pytest.fixture(scope="module")
def trainer(host, tiny_models, tmp_path_factory):
    """The tiny SD1.5 checkpoint loaded once by the trainer, and a toy-world data folder."""
    from nested_attention.training.config import TrainConfig
    from nested_attention.training.base_models import load_base_models

    from nested_attention.toyworld.dataset import write_training_folder

    data = write_training_folder(tmp_path_factory.mktemp("toy") / "data", ["person"], [0, 1], 2)

    def config(output):
        return TrainConfig(checkpoint=str(tiny_models["sd15"]), clip_vision=str(tiny_models["clip_vision"]),
                           data=str(data), output=str(output), resolution=64, batch_size=2, max_steps=2,
                           warmup_steps=0, lr=1e-3, save_every=0, sample_every=0, progress_bar=False, cache=False,
                           num_tokens=4, encoder_width=32, encoder_depth=1, encoder_heads=2, encoder_dim_head=16,
                           encoder_ff_mult=2, sample_steps=2)

    models = load_base_models(config("unused"))
    return config, models


@pytest.mark.parametrize("method", [SINGLE_TOKEN, DECOUPLED], ids=lambda m: m.name)
def test_baseline_trains_through_the_trainer(trainer, host, method, tmp_path):
    from nested_attention.training.loop import optimizer_step
    from nested_attention.training.samples import render_grid, sample_prompts
    from nested_attention.training.session import open_session

    config, models = trainer
    session = open_session(config(tmp_path / "out"), models=models, method=method)
    assert session.identity["method"] == method.name
    assert [b.rule for b in host.applied_subjects(session.denoiser.patched).bindings] == [method.rule]
    encoder = session.encoder
    trained = {id(p) for p in session.parameters}
    assert {id(p) for group in session.optimizer.param_groups for p in group["params"]} == trained
    before = {name: p.detach().clone() for name, p in encoder.named_parameters()}
    for step in range(2):
        loss, _norm, _epoch, finite = optimizer_step(session, step)
        assert finite and math.isfinite(loss)
    changed = {name for name, p in encoder.named_parameters() if not torch.equal(p, before[name])}
    assert changed == {name for name, p in encoder.named_parameters() if id(p) in trained}
    attn2 = host.attention_modules(models.patcher)
    frozen = all(torch.equal(encoder.nested_layers[layer.id].to_k.weight, attn2[layer.id].to_k.weight.float())
                 and torch.equal(encoder.nested_layers[layer.id].to_v.weight, attn2[layer.id].to_v.weight.float())
                 for layer in models.layers)
    assert frozen == (method is SINGLE_TOKEN)
    if method is SINGLE_TOKEN:
        assert not any(p.requires_grad for p in encoder.nested_layers.parameters())

    features = torch.randn(2, 5, encoder.config.image_feature_dim)  # two reference images of one subject
    subject = method.subject(encoder, features, "Person", models.family)
    assert subject.word == "person" and subject.num_tokens == (1 if method is SINGLE_TOKEN else 8)
    if method is SINGLE_TOKEN:  # the one token is the mean of both images' tokens
        with torch.no_grad():
            pooled = encoder.encode(features).mean((0, 1))
        assert torch.allclose(subject.tokens[0], pooled, atol=1e-6)
    assert subject.method == method.name  # the subject says what it is, and is applied by its rule
    patched = host.apply_subject(models.patcher, subject, 1.0)
    binding = host.applied_subjects(patched).bindings[-1]
    assert binding.rule == method.rule and binding.subject is subject

    prompts = sample_prompts(session.data, None, 1, session.has_word)  # sampled by the host's KSampler path
    grid = np.asarray(Image.open(render_grid(session, prompts, tmp_path / "grid.png")), dtype=np.float32)
    without, with_subject = grid[:, 64:128], grid[:, 128:]
    assert np.abs(with_subject - without).max() > 10

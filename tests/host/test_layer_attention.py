"""Whose attention computes a patched layer's plain rows: the layer's own (ComfyUI 0.38's
``comfy_attention``, passed there as ``preferred_attention``), an attention override, or the host's.

ComfyUI 0.3.75 layers carry no attention of their own; the tests give one to each attn2 layer of a
freshly loaded tiny model, as a 0.38 checkpoint with a per-layer attention config would.
"""
import types

import pytest
import torch

from fixtures.spies import record_patch_calls
from fixtures.subjects import random_subject


@pytest.fixture
def fresh(host, tiny_models):
    """A tiny SD1.5 model of this test's own (its layers are changed), with a CLIP."""
    import comfy.sd

    model, clip, _vae, _ = comfy.sd.load_checkpoint_guess_config(str(tiny_models["sd15"]), output_vae=False)
    return model, clip


@pytest.fixture
def spied(monkeypatch):
    """Every call of our layer patch."""
    return record_patch_calls(monkeypatch)


def sample(model, clip, positive_text="a photo of a person", cfg=5.0):
    import nodes

    from nested_attention.nodes.text_encode import NestedAttentionTextEncode

    positive, negative = (NestedAttentionTextEncode.execute(clip, t).args[0] for t in (positive_text, "blurry"))
    latent = {"samples": torch.zeros(1, 4, 8, 8)}
    return nodes.common_ksampler(model, 7, 2, cfg, "euler", "normal", positive, negative, latent)[0]["samples"]


def uncond_rows(extra, out):
    rows = out.shape[0] // len(extra["cond_or_uncond"])
    return [r for chunk, kind in enumerate(extra["cond_or_uncond"]) if kind == 1
            for r in range(chunk * rows, (chunk + 1) * rows)]


def test_a_layers_own_attention_computes_the_rows_without_the_subject(host, fresh, spied):
    import comfy.ldm.modules.attention as attention

    model, clip = fresh
    counted = []

    def own(q, k, v, heads, **kwargs):  # the layer's attention: counted, and recognisably not the host's default
        counted.append(q.shape[0])
        return attention.attention_basic(q, k, v, heads, attn_precision=kwargs.get("attn_precision")) + 0.5

    for module in host.attention_modules(model).values():
        module.comfy_attention = types.SimpleNamespace(function=own)
    patched = host.apply_subject(model, random_subject(host, model, "person"), 1.0, 0.0, 1.0)
    assert len(host.applied_subjects(patched).layer_attention) == len(host.model_layers(model))
    sample(patched, clip)
    assert spied and len(counted) == len(spied)  # once per patched layer call, on the whole batch
    for q, k, v, extra, out, *_ in spied:
        rows = uncond_rows(extra, out)
        assert rows and len(rows) < out.shape[0]
        expected = attention.attention_basic(q, k, v, extra["n_heads"]) + 0.5
        assert torch.equal(out[rows], expected[rows])
        assert not torch.equal(out, expected)  # the positive row holds the subject


def test_layers_without_their_own_attention_change_nothing(host, fresh, spied):
    """ComfyUI 0.3.75: no layer attention recorded; the host's attention gives the plain rows."""
    import comfy.ldm.modules.attention as attention

    model, clip = fresh
    patched = host.apply_subject(model, random_subject(host, model, "person"), 1.0, 0.0, 1.0)
    assert host.applied_subjects(patched).layer_attention == ()
    sample(patched, clip)
    for q, k, v, extra, out, *_ in spied:
        rows = uncond_rows(extra, out)
        assert torch.equal(out[rows], attention.optimized_attention(q, k, v, extra["n_heads"])[rows])


def test_an_attention_override_comes_before_the_layers_own(host, fresh, spied):
    """An ``optimized_attention_override`` (another pack's attention for every layer) runs, on the whole
    batch, before a layer's own attention, as in ComfyUI 0.38's wrap_attn."""
    import comfy.ldm.modules.attention as attention

    model, clip = fresh
    overridden, own_calls = [], []

    def override(func, q, k, v, heads, **kwargs):
        overridden.append(q.shape[0])
        return func(q, k, v, heads, **kwargs) * 0.5

    for module in host.attention_modules(model).values():
        module.comfy_attention = types.SimpleNamespace(function=lambda *a, **kw: own_calls.append(1))
    work = model.clone()
    work.model_options["transformer_options"]["optimized_attention_override"] = override
    patched = host.apply_subject(work, random_subject(host, model, "person"), 1.0, 0.0, 1.0)
    sample(patched, clip)
    assert not own_calls and overridden
    patched_calls = [c for c in spied]
    assert len([n for n in overridden if n == patched_calls[0][0].shape[0]]) >= len(patched_calls)
    for q, k, v, extra, out, *_ in patched_calls:
        rows = uncond_rows(extra, out)
        assert torch.equal(out[rows], (attention.optimized_attention(q, k, v, extra["n_heads"]) * 0.5)[rows])

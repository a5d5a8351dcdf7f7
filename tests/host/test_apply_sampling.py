"""Nested attention applied to real ComfyUI models, sampled with the real KSampler, in-process."""
import pytest
import torch

from nested_attention.nodes.host import patch as host_patch

from nested_attention.nested_attention_core import SubjectWordError
from fixtures.subjects import random_subject

STEPS = 3


@pytest.fixture(scope="module")
def env(host):
    import comfy.ldm.modules.attention as attention
    import nodes

    return host, nodes, attention


@pytest.fixture(scope="module", params=["sd15", "sdxl"])
def loaded(request, tiny_models):
    import comfy.sd

    path = tiny_models[request.param]
    model, clip, _vae, _ = comfy.sd.load_checkpoint_guess_config(str(path), output_vae=False, output_clip=True)
    return request.param, model, clip


def encode(clip, text):
    from nested_attention.nodes.text_encode import NestedAttentionTextEncode

    return NestedAttentionTextEncode.execute(clip, text).args[0]


def sample(nodes, model, positive, negative, cfg=5.0, batch=1, seed=7):
    latent = {"samples": torch.zeros(batch, 4, 8, 8)}
    return nodes.common_ksampler(model, seed, STEPS, cfg, "euler", "normal", positive, negative, latent)[0]["samples"]


@pytest.fixture
def recorded(monkeypatch):
    """Every call of our layer patch: (cond_or_uncond, its output, the host's plain attention, text length)."""
    import comfy.ldm.modules.attention as attention

    calls, patch_call = [], host_patch.NestedAttentionPatch.__call__

    def spy(self, q, k, v, extra):
        out = patch_call(self, q, k, v, extra)
        calls.append((list(extra["cond_or_uncond"]), out, attention.optimized_attention(q, k, v, extra["n_heads"]),
                      k.shape[1]))
        return out

    monkeypatch.setattr(host_patch.NestedAttentionPatch, "__call__", spy)
    return calls


def test_subject_changes_the_image_and_leaves_the_upstream_model_alone(env, loaded):
    adapter, nodes, _ = env
    _, model, clip = loaded
    before = {k: dict(v) if isinstance(v, dict) else v
              for k, v in model.model_options["transformer_options"].get("patches_replace", {}).items()}
    positive, negative = encode(clip, "a photo of a person"), encode(clip, "blurry")
    patched = adapter.apply_subject(model, random_subject(adapter, model, "person"), 1.0, 0.0, 1.0)
    assert model.model_options["transformer_options"].get("patches_replace", {}) == before
    assert not model.get_wrappers("calc_cond_batch", host_patch.WRAPPER_KEY)
    plain, nested = sample(nodes, model, positive, negative), sample(nodes, patched, positive, negative)
    assert (plain - nested).abs().max() > 1e-3
    assert torch.equal(plain, sample(nodes, model, positive, negative))  # the upstream model still samples plain


def test_window_excluding_every_step_is_bit_equal(env, loaded):
    adapter, nodes, _ = env
    _, model, clip = loaded
    positive, negative = encode(clip, "a photo of a person"), encode(clip, "blurry")
    idle = adapter.apply_subject(model, random_subject(adapter, model, "person"), 1.0, 1.0, 1.0)
    assert torch.equal(sample(nodes, model, positive, negative), sample(nodes, idle, positive, negative))


def test_only_positive_rows_with_the_word_change(env, loaded, recorded):
    adapter, nodes, attention = env
    _, model, clip = loaded
    positive = encode(clip, "a person and a dog")
    negative = encode(clip, "an ugly person")  # the word in the negative prompt must not matter
    patched = adapter.apply_subject(model, random_subject(adapter, model, "person"), 1.0, 0.0, 1.0)
    calls = recorded
    sample(nodes, patched, positive, negative, batch=3)
    assert calls and all(sorted(c[0]) == [0, 1] for c in calls)  # one batched call per layer: cond + uncond
    changed = 0
    for cond_or_uncond, out, plain, _ in calls:
        rows = out.shape[0] // len(cond_or_uncond)
        for chunk, kind in enumerate(cond_or_uncond):
            part = slice(chunk * rows, (chunk + 1) * rows)
            if kind == 1:
                assert torch.equal(out[part], plain[part])
            else:
                changed += int(not torch.equal(out[part], plain[part]))
    assert changed == len(calls)


def test_two_chained_subjects(env, loaded):
    adapter, nodes, _ = env
    _, model, clip = loaded
    positive, negative = encode(clip, "a person with a dog"), encode(clip, "blurry")
    person = adapter.apply_subject(model, random_subject(adapter, model, "person", seed=1), 1.0, 0.0, 1.0)
    both = adapter.apply_subject(person, random_subject(adapter, model, "dog", seed=2), 0.8, 0.0, 1.0)
    dog = adapter.apply_subject(model, random_subject(adapter, model, "dog", seed=2), 0.8, 0.0, 1.0)
    assert adapter.applied_subjects(person).words == ("person",)
    assert adapter.applied_subjects(both).words == ("person", "dog")
    assert adapter.applied_subjects(model) is None  # the upstream model is left alone
    results = [sample(nodes, m, positive, negative) for m in (person, dog, both)]
    assert (results[2] - results[0]).abs().max() > 1e-3 and (results[2] - results[1]).abs().max() > 1e-3
    with pytest.raises(SubjectWordError, match="'dog' is already bound"):
        adapter.apply_subject(both, random_subject(adapter, model, "dog", seed=3), 1.0, 0.0, 1.0)


def test_long_prompts_cfg1_and_uneven_lengths(env, loaded, recorded):
    adapter, nodes, attention = env
    _, model, clip = loaded
    filler = ", ".join(["a very detailed photograph"] * 20)
    long_positive = encode(clip, filler + ", a person")  # > 77 tokens, the word in the second chunk
    prompt = long_positive[0][1][adapter.PROMPT_KEY]
    assert prompt.length == 154 and min(prompt.positions("person")) >= 77
    negative = encode(clip, "blurry")  # 77 tokens next to a 154-token positive
    patched = adapter.apply_subject(model, random_subject(adapter, model, "person"), 1.0, 0.0, 1.0)
    calls = recorded
    nested = sample(nodes, patched, long_positive, negative)
    assert {c[3] for c in calls} == {154}
    assert (nested - sample(nodes, model, long_positive, negative)).abs().max() > 1e-3
    cfg1 = sample(nodes, patched, long_positive, negative, cfg=1.0)  # no uncond rows at all
    assert (cfg1 - sample(nodes, model, long_positive, negative, cfg=1.0)).abs().max() > 1e-3


def test_word_missing_from_positive_prompt_is_a_clear_error(env, loaded):
    adapter, nodes, _ = env
    _, model, clip = loaded
    patched = adapter.apply_subject(model, random_subject(adapter, model, "corgi"), 1.0, 0.0, 1.0)
    with pytest.raises(SubjectWordError, match=r"'corgi' is not in the positive prompt.*positive: 'a photo of a dog'"):
        sample(nodes, patched, encode(clip, "a photo of a dog"), encode(clip, "corgi"))
    import nodes as host_nodes

    plain_positive = host_nodes.CLIPTextEncode().encode(clip, "a photo of a corgi")[0]
    with pytest.raises(SubjectWordError, match="NestedAttentionTextEncode"):
        sample(nodes, patched, plain_positive, encode(clip, "blurry"))

"""Guiders that call the model with their conditionings in other orders (core nodes of ComfyUI):
the subject acts on the rows whose conditioning carries the word, never on the guider's negative.

Each test samples the tiny models through the core nodes' own classes and records every call of
our layer patch (which chunk of the batch is which conditioning: the index in the guider's call)."""
import pytest
import torch

from fixtures.spies import record_patch_calls
from fixtures.subjects import random_subject

STEPS = 3


@pytest.fixture(scope="module")
def env(host):
    import nodes
    from comfy_extras import nodes_custom_sampler, nodes_perpneg, nodes_sag

    return host, nodes, nodes_custom_sampler, nodes_perpneg, nodes_sag


@pytest.fixture(scope="module")
def loaded(tiny_models):
    """SD1.5 only: which rows change is the host's batching, the same for every family."""
    import comfy.sd

    model, clip, _vae, _ = comfy.sd.load_checkpoint_guess_config(str(tiny_models["sd15"]), output_vae=False,
                                                                  output_clip=True)
    return model, clip


@pytest.fixture
def calls(monkeypatch):
    """Every call of our layer patch, with the output of the layer's plain attention."""
    return record_patch_calls(monkeypatch, with_plain=True)


def encode(clip, text):
    from nested_attention.nodes.text_encode import NestedAttentionTextEncode

    return NestedAttentionTextEncode.execute(clip, text).args[0]


def plain_encode(nodes, clip, text):
    return nodes.CLIPTextEncode().encode(clip, text)[0]


def ksample(nodes, model, positive, negative, cfg=5.0):
    latent = {"samples": torch.zeros(1, 4, 8, 8)}
    return nodes.common_ksampler(model, 7, STEPS, cfg, "euler", "normal", positive, negative, latent)[0]["samples"]


def custom_sample(custom, model, guider):
    noise = custom.RandomNoise.execute(7).args[0]
    sampler = custom.KSamplerSelect.execute("euler").args[0]
    sigmas = custom.BasicScheduler.execute(model, "normal", STEPS, 1.0).args[0]
    return custom.SamplerCustomAdvanced.execute(noise, guider, sampler, sigmas, {"samples": torch.zeros(1, 4, 8, 8)}).args[0]["samples"]


def changed_chunks(calls) -> dict[tuple[int, int], set]:
    """{(number of chunks in the call, chunk index): {changed?}} over every recorded layer call."""
    seen: dict = {}
    for call in calls:
        cond_or_uncond, out, plain = call.cond_or_uncond, call.out, call.plain
        rows = out.shape[0] // len(cond_or_uncond)
        for chunk, index in enumerate(cond_or_uncond):
            part = slice(chunk * rows, (chunk + 1) * rows)
            seen.setdefault((len(cond_or_uncond), index), set()).add(not torch.equal(out[part], plain[part]))
    return seen


def person(env, model, seed=1):
    adapter = env[0]
    return adapter.apply_subject(model, random_subject(adapter, model, "person", seed=seed), 1.0, 0.0, 1.0)


@pytest.mark.parametrize("negative_kind", ["plain", "nested_with_word"])
def test_self_attention_guidance(env, loaded, calls, negative_kind):
    """SAG calls the model a second time with the negative alone: that call must neither stop the run
    nor change the negative, whatever it carries; the positive still gets the subject."""
    _, nodes, _, _, sag = env
    model, clip = loaded
    positive = encode(clip, "a photo of a person")
    negative = (plain_encode(nodes, clip, "blurry") if negative_kind == "plain" else encode(clip, "an ugly person"))
    guided = sag.SelfAttentionGuidance.execute(person(env, model), 0.5, 2.0).args[0]
    unpatched = sag.SelfAttentionGuidance.execute(model, 0.5, 2.0).args[0]
    result = ksample(nodes, guided, positive, negative)
    seen = changed_chunks(calls)
    assert seen[(1, 0)] == {False}  # SAG's pass: the negative alone, left exactly as the host computes it
    assert seen[(2, 0)] == {True} and seen[(2, 1)] == {False}  # the main pass: positive changed, negative not
    assert (result - ksample(nodes, unpatched, positive, negative)).abs().max() > 1e-3


@pytest.mark.parametrize("style", ["regular", "nested"])
def test_dual_cfg_guider_changes_the_prompts_with_the_word_not_the_negative(env, loaded, calls, style):
    """DualCFGGuider calls the model with negative, middle, positive (indices 0, 1, 2)."""
    _, nodes, custom, _, _ = env
    model, clip = loaded
    positive, middle = encode(clip, "a photo of a person"), encode(clip, "a person, watercolor")
    negative = encode(clip, "an ugly person")  # carries the word: the guider's negative is never changed
    guider = custom.DualCFGGuider.execute(person(env, model), positive, middle, negative, 5.0, 3.0, style).args[0]
    result = custom_sample(custom, model, guider)
    seen = changed_chunks(calls)
    assert seen[(3, 2)] == {True} and seen[(3, 1)] == {True} and seen[(3, 0)] == {False}
    plain = custom.DualCFGGuider.execute(model, positive, middle, negative, 5.0, 3.0, style).args[0]
    assert (result - custom_sample(custom, model, plain)).abs().max() > 1e-3
    calls.clear()  # a plain middle prompt is simply left alone
    custom_sample(custom, model, custom.DualCFGGuider.execute(person(env, model), positive,
                                                              plain_encode(nodes, clip, "a person, watercolor"),
                                                              negative, 5.0, 3.0, style).args[0])
    seen = changed_chunks(calls)
    assert seen[(3, 2)] == {True} and seen[(3, 1)] == {False} and seen[(3, 0)] == {False}


def test_cfg_basic_and_perpneg_guiders(env, loaded, calls):
    _, nodes, custom, perpneg, _ = env
    model, clip = loaded
    patched = person(env, model)
    positive, negative = encode(clip, "a photo of a person"), encode(clip, "an ugly person")
    empty = plain_encode(nodes, clip, "")
    guiders = {
        "CFGGuider": (lambda m: custom.CFGGuider.execute(m, positive, negative, 5.0).args[0], {(2, 0)}, {(2, 1)}),
        "BasicGuider": (lambda m: custom.BasicGuider.execute(m, positive).args[0], {(1, 0)}, set()),
        "PerpNegGuider": (lambda m: perpneg.PerpNegGuider.execute(m, positive, negative, empty, 5.0, 1.0).args[0],
                          {(3, 0)}, {(3, 1), (3, 2)}),
    }
    for name, (make, changed, unchanged) in guiders.items():
        calls.clear()
        result = custom_sample(custom, model, make(patched))
        seen = changed_chunks(calls)
        assert all(seen[c] == {True} for c in changed) and all(seen[c] == {False} for c in unchanged), name
        assert (result - custom_sample(custom, model, make(model))).abs().max() > 1e-3, name


def test_perpneg_model_patch(env, loaded, calls):
    """The PerpNeg node calls the model with the empty prompt alone in its cfg function."""
    _, nodes, _, perpneg, _ = env
    model, clip = loaded
    positive, negative = encode(clip, "a photo of a person"), plain_encode(nodes, clip, "blurry")
    empty = plain_encode(nodes, clip, "")
    guided = perpneg.PerpNeg.execute(person(env, model), empty, 1.0).args[0]
    result = ksample(nodes, guided, positive, negative)
    seen = changed_chunks(calls)
    assert seen[(1, 0)] == {False} and seen[(2, 0)] == {True} and seen[(2, 1)] == {False}
    assert (result - ksample(nodes, perpneg.PerpNeg.execute(model, empty, 1.0).args[0], positive, negative)).abs().max() > 1e-3

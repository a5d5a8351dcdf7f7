"""Another pack's attn2 replace next to ours, in both orders, with both key forms the host looks up.

The other pack is a faithful double of ComfyUI_IPAdapter_plus (cubiq): its ``set_model_patch_replace``
copies the transformer options, creates an ``Attn2Replace`` under a free key and calls ``.add`` on
the object it finds under a taken key; SD1.5 models get ``(block, id)`` keys, SDXL ``(block, id,
depth)``. Ours is never an object in ``patches_replace`` (it is laid over each UNet call), so in
either order both effects apply, exactly, and ComfyUI's own calls reach the other pack's object.
"""
import pytest
import torch

from fixtures.subjects import random_subject

STEPS = 2


def ip_callback(out, q, k, v, extra_options, weight=1.0, **kwargs):
    """The other pack's term: here a known constant, so that its presence is exact to check."""
    return torch.full_like(out, 0.0625 * weight)


class Attn2Replace:
    """ComfyUI_IPAdapter_plus's attn2 replace, as that pack has it (plain attention + its callbacks)."""

    def __init__(self, callback=None, **kwargs):
        self.callback = [callback]
        self.kwargs = [kwargs]
        self.moved_to = []

    def add(self, callback, **kwargs):
        self.callback.append(callback)
        self.kwargs.append(kwargs)

    def to(self, device):  # ComfyUI calls this on every patch object when it moves the model
        self.moved_to.append(device)
        return self

    def __call__(self, q, k, v, extra_options):
        from comfy.ldm.modules.attention import optimized_attention

        dtype = q.dtype
        out = optimized_attention(q, k, v, extra_options["n_heads"])
        sigma = extra_options["sigmas"].detach().cpu()[0].item() if "sigmas" in extra_options else 999999999.9
        for i, callback in enumerate(self.callback):
            if self.kwargs[i]["sigma_start"] >= sigma >= self.kwargs[i]["sigma_end"]:
                out = out + callback(out, q, k, v, extra_options, **self.kwargs[i])
        return out.to(dtype=dtype)


def set_model_patch_replace(model, patch_kwargs, key):
    """ComfyUI_IPAdapter_plus's installer, as that pack has it."""
    to = model.model_options["transformer_options"].copy()
    to["patches_replace"] = dict(to.get("patches_replace", {}))
    to["patches_replace"]["attn2"] = dict(to["patches_replace"].get("attn2", {}))
    if key not in to["patches_replace"]["attn2"]:
        to["patches_replace"]["attn2"][key] = Attn2Replace(ip_callback, **patch_kwargs)
        model.model_options["transformer_options"] = to
    else:
        to["patches_replace"]["attn2"][key].add(ip_callback, **patch_kwargs)


def apply_other_pack(host, model, key_form: int):
    """The other pack's node: a clone with its patch on every cross-attention layer."""
    work = model.clone()
    for key in dict.fromkeys(layer.key[:key_form] for layer in host.model_layers(model)):
        set_model_patch_replace(work, {"weight": 1.0, "sigma_start": 1e9, "sigma_end": 0.0}, key)
    return work


@pytest.fixture(scope="module", params=["sd15", "sdxl"])
def loaded(request, tiny_models, host):
    import comfy.sd

    model, clip, _vae, _ = comfy.sd.load_checkpoint_guess_config(str(tiny_models[request.param]), output_vae=False)
    return model, clip, random_subject(host, model, "person")


def sample(model, clip):
    import nodes

    from nested_attention.nodes.text_encode import NestedAttentionTextEncode

    positive = NestedAttentionTextEncode.execute(clip, "a photo of a person").args[0]
    negative = nodes.CLIPTextEncode().encode(clip, "blurry")[0]
    latent = {"samples": torch.zeros(1, 4, 8, 8)}
    return nodes.common_ksampler(model, 7, STEPS, 5.0, "euler", "normal", positive, negative, latent)[0]["samples"]


@pytest.mark.parametrize("key_form", [2, 3], ids=["(block, id) keys", "(block, id, depth) keys"])
def test_both_orders_apply_both_effects_exactly(loaded, host, key_form):
    model, clip, subject = loaded
    theirs_then_ours = host.apply_subject(apply_other_pack(host, model, key_form), subject, 1.0)
    ours_then_theirs = apply_other_pack(host, host.apply_subject(model, subject, 1.0), key_form)
    only_theirs, only_ours = apply_other_pack(host, model, key_form), host.apply_subject(model, subject, 1.0)
    a, b = sample(theirs_then_ours, clip), sample(ours_then_theirs, clip)
    assert torch.equal(a, b)  # the order does not matter
    for alone in (sample(only_theirs, clip), sample(only_ours, clip), sample(model, clip)):
        assert (a - alone).abs().max() > 1e-3  # and neither effect is dropped


def test_a_pack_that_overwrites_the_slot_after_ours_keeps_both_effects(loaded, host):
    from comfy.ldm.modules.attention import optimized_attention

    model, clip, subject = loaded
    calls = []

    def overwrite(q, k, v, extra):  # a plain attn2 replace set with set_model_attn2_replace after ours
        calls.append(1)
        return optimized_attention(q, k, v, extra["n_heads"]) + 0.125

    ours = host.apply_subject(model, subject, 1.0)
    both = ours.clone()
    for layer in host.model_layers(model):
        both.set_model_attn2_replace(overwrite, *layer.key)
    theirs = model.clone()
    for layer in host.model_layers(model):
        theirs.set_model_attn2_replace(overwrite, *layer.key)
    result = sample(both, clip)
    assert len(calls) == len(host.model_layers(model)) * STEPS
    assert torch.equal(result, sample(host.apply_subject(theirs, subject, 1.0), clip))
    assert (result - sample(theirs, clip)).abs().max() > 1e-3


def test_layer_output_is_theirs_plus_our_correction(loaded, host):
    """At one layer, ours over theirs == theirs + (ours over the host's attention - plain), exactly."""
    from comfy.ldm.modules.attention import optimized_attention

    from nested_attention.nodes.host.patch import step_transformer_options

    model, clip, subject = loaded
    both = apply_other_pack(host, host.apply_subject(model, subject, 1.0), 3)
    ours = host.apply_subject(model, subject, 1.0)
    layer = host.model_layers(model)[0]
    prompt = host.encode_prompt(clip, "a person")[0][1][host.PROMPT_KEY]
    step = host.StepPrompts({"p": prompt, "n": prompt}, sigma=1.0)
    patch_both, patch_ours = (step_transformer_options(m.model_options["transformer_options"], step)
                              ["patches_replace"]["attn2"][layer.key] for m in (both, ours))
    assert isinstance(patch_both.previous, Attn2Replace) and patch_ours.previous is None
    g = torch.Generator().manual_seed(0)
    q = torch.randn(2, 16, layer.width, generator=g)
    k, v = torch.randn(2, 77, layer.width, generator=g), torch.randn(2, 77, layer.width, generator=g)
    extra = {"n_heads": 2, "cond_or_uncond": [0, 1], "uuids": ["p", "n"], "original_shape": [2, 4, 4, 4],
             host.STEP_KEY: step}
    plain = optimized_attention(q, k, v, 2)
    torch.testing.assert_close(patch_both(q, k, v, extra), plain + 0.0625 + (patch_ours(q, k, v, extra) - plain),
                               atol=1e-6, rtol=0)


def test_comfyuis_own_calls_reach_the_other_packs_patch(loaded, host):
    model, _clip, subject = loaded
    both = apply_other_pack(host, host.apply_subject(model, subject, 1.0), 3)
    patches = both.model_options["transformer_options"]["patches_replace"]["attn2"]
    assert patches and all(isinstance(p, Attn2Replace) for p in patches.values())  # nothing of ours in the slots
    both.model_patches_to(torch.device("cpu"))
    assert all(p.moved_to == [torch.device("cpu")] for p in patches.values())

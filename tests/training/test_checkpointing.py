"""--gradient-checkpointing: the frozen UNet's block activations are recomputed in the backward pass, and the
nested patch inside a recomputed block sees what it saw in the forward pass (bindings, word positions, RNG)."""
from __future__ import annotations

import pytest
import torch


def saved_bytes(fn):
    """Bytes autograd keeps for the backward pass while ``fn`` runs (what checkpointing saves)."""
    total = [0]

    def pack(t):
        total[0] += t.numel() * t.element_size()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = fn()
    return out, total[0]


def gradients(session, batch, checkpointing: bool, noisy: bool):
    """The encoder's gradients of one batch's loss, the bytes saved for backward, and the nested patch's calls."""
    from nested_attention.training.loss import denoising_losses
    from nested_attention.training.step import Denoiser, encode_nested

    den = Denoiser(session.models.patcher, session.method.rule, gradient_checkpointing=checkpointing)
    calls = []
    binding_kv = den.live

    class Counting(dict):
        def __getitem__(self, key):
            calls.append(key)
            return super().__getitem__(key)

    options = den.transformer_options(batch, with_subject=True)
    if noisy:  # a random draw inside every block: the recomputation must draw the same numbers
        patches = dict(options.get("patches", {}))
        patches["attn2_output_patch"] = [lambda out, extra: out + 0.05 * torch.randn_like(out)]
        options["patches"] = patches
    conds = den.model_conds(batch, batch.x_noisy)
    session.encoder.zero_grad(set_to_none=True)
    torch.manual_seed(7)
    nested = encode_nested(session.encoder, batch.references)
    binding_kv.current = Counting(nested)

    def forward():
        return den.base.apply_model(batch.x_noisy, batch.sigma, transformer_options=options, **conds)

    try:
        denoised, kept = saved_bytes(forward)
    finally:
        binding_kv.current = None  # as Denoiser.denoise leaves it: the backward runs after the step's forward
    forward_calls = len(calls)
    denoising_losses(den.kind, batch.sigma, batch.x_noisy, denoised, batch.x0).mean().backward()
    grads = {name: p.grad.clone() for name, p in session.encoder.named_parameters()}
    return grads, kept, forward_calls, len(calls) - forward_calls, denoised.detach()


@pytest.mark.parametrize("family", ["sd15", "sdxl"])
def test_gradients_with_checkpointing_equal_those_without(training, helpers, tiny_models, tmp_path, family):
    from nested_attention.training.base_models import load_base_models
    from nested_attention.training.batch import assemble
    from nested_attention.training.loop import plans_for
    from nested_attention.training.session import open_session

    data = helpers.make_data(tmp_path / "data", {"a": 2, "b": 2})
    config = helpers.tiny_config(tiny_models, data, tmp_path / "out", checkpoint=str(tiny_models[family]), cache=False,
                                 drop_text=0.0, drop_subject=0.0, drop_both=0.0)
    session = open_session(config, models=load_base_models(config))
    den = session.denoiser
    batch = assemble(session.store, session.data, plans_for(session, 0)[1], den.model_sampling, den.process_latent_in, 0)
    for noisy in (False, True):
        plain, kept_plain, calls_plain, recomputed_plain, out_plain = gradients(session, batch, False, noisy)
        ckpt, kept_ckpt, calls_ckpt, recomputed_ckpt, out_ckpt = gradients(session, batch, True, noisy)
        layers = len(session.models.layers)
        assert calls_plain == calls_ckpt == layers and recomputed_plain == 0
        assert recomputed_ckpt == layers  # every layer's nested patch ran again in the backward pass, with its values
        assert kept_ckpt < kept_plain / 3, (kept_ckpt, kept_plain)  # the blocks' activations were not kept
        torch.testing.assert_close(out_ckpt, out_plain, rtol=0, atol=0)  # the same forward, block by block
        print(f"{family} noisy={noisy}: saved for backward {kept_plain / 2**20:.1f} MiB without, "
              f"{kept_ckpt / 2**20:.2f} MiB with checkpointing; max |grad difference| "
              f"{max(float((ckpt[k] - plain[k]).abs().max()) for k in plain):.2e}")
        for key in plain:
            assert plain[key].abs().sum() > 0, key
            torch.testing.assert_close(ckpt[key], plain[key], rtol=1e-5, atol=1e-7, msg=key)


def test_checkpointing_leaves_sampling_and_no_grad_calls_to_the_host(training, sdxl_models, helpers, tiny_models,
                                                                     tmp_path):
    from nested_attention.training.step import Denoiser

    den = Denoiser(sdxl_models.patcher, gradient_checkpointing=True)
    from nested_attention.nodes import host

    assert host.is_checkpointed(den.patched) and host.is_checkpointed(den.frozen)
    assert not host.is_checkpointed(den.plain) and not host.is_checkpointed(sdxl_models.patcher)  # clones only


def test_a_resumed_checkpointed_run_matches_an_uninterrupted_one(training, sdxl_models, helpers, tiny_models,
                                                                  tmp_path):
    """4 steps with checkpointing in one go = 2 steps, a new session resumed from the state, 2 more; and both
    equal the run without checkpointing to fp32 rounding."""
    from nested_attention.training.loop import train
    from nested_attention.training.session import open_session

    data = helpers.make_data(tmp_path / "data", {"a": 2, "b": 2})
    common = dict(cache_dir=str(tmp_path / "cache"), save_every=2, warmup_steps=1, max_steps=4)
    full = train(open_session(helpers.tiny_config(tiny_models, data, tmp_path / "full", gradient_checkpointing=True,
                                                  **common), models=sdxl_models))
    train(open_session(helpers.tiny_config(tiny_models, data, tmp_path / "cut", gradient_checkpointing=True,
                                           **{**common, "max_steps": 2}), models=sdxl_models))
    resumed = train(open_session(helpers.tiny_config(tiny_models, data, tmp_path / "cut", gradient_checkpointing=True,
                                                     resume="latest", **common), models=sdxl_models))
    plain = train(open_session(helpers.tiny_config(tiny_models, data, tmp_path / "plain", **common),
                               models=sdxl_models))
    ours, theirs, without = (helpers.load_weights_tensors(r.weights) for r in (resumed, full, plain))
    for key in theirs:
        torch.testing.assert_close(ours[key], theirs[key], rtol=0, atol=0, msg=key)
        torch.testing.assert_close(without[key], theirs[key], rtol=1e-5, atol=1e-6, msg=key)

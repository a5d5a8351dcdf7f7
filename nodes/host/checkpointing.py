"""Gradient checkpointing of the frozen UNet, through a public hook: block activations are recomputed in
the backward pass instead of kept.

``checkpointed(model)`` returns a clone of a ModelPatcher with a ``WrappersMP.DIFFUSION_MODEL`` wrapper
(``comfy.patcher_extension``; the same wrapper type exists in the newest ComfyUI). When gradients are
being recorded, the wrapper runs the UNet (``UNetModel``: SD1.5, SD2, SDXL) block by block as the host's
own ``UNetModel._forward`` does, with the same public pieces (``forward_timestep_embed``,
``apply_control``, the block lists and the host's block patches), each input block, the middle block
and each output block inside ``torch.utils.checkpoint.checkpoint`` (non-reentrant, RNG state preserved).
Without gradients (sampling, validation) it calls the host's forward unchanged.

What the attention patches inside a block see when the block is recomputed is what they saw in the
forward pass:

- the transformer options: each block runs on its own copy, made before the block from the options as
  they were at that point (``block``, ``transformer_index``, the step's prompts and word positions);
- the bindings' state: a binding with a ``recompute_state()`` method (the trainer's, whose nested
  keys/values live only for one step) returns a context manager factory at forward time; the
  recomputation runs inside it;
- the random number generators: ``preserve_rng_state=True`` replays the CPU and CUDA states.
"""
from __future__ import annotations

import contextlib

import torch
import torch.utils.checkpoint

from .patch import SUBJECTS_KEY

WRAPPER_KEY = "nested_attention_gradient_checkpointing"


class CheckpointingError(RuntimeError):
    pass


def checkpointed(model):
    """A clone of ``model`` whose UNet recomputes block activations in the backward pass."""
    from comfy.patcher_extension import WrappersMP

    patched = model.clone()
    if not patched.get_wrappers(WrappersMP.DIFFUSION_MODEL, WRAPPER_KEY):
        patched.add_wrapper_with_key(WrappersMP.DIFFUSION_MODEL, WRAPPER_KEY, _checkpointed_forward)
    return patched


def is_checkpointed(model) -> bool:
    from comfy.patcher_extension import WrappersMP

    return bool(model.get_wrappers(WrappersMP.DIFFUSION_MODEL, WRAPPER_KEY))


def _checkpointed_forward(executor, x, timesteps=None, context=None, y=None, control=None, transformer_options={},
                          **kwargs):
    from comfy.ldm.modules.diffusionmodules.openaimodel import UNetModel

    unet = executor.class_obj
    if not torch.is_grad_enabled():
        return executor(x, timesteps, context, y, control, transformer_options, **kwargs)
    if not isinstance(unet, UNetModel) or executor.idx + 1 < len(executor.wrappers):  # another wrapper inside ours
        raise CheckpointingError(
            f"gradient checkpointing runs ComfyUI's UNetModel block by block; this model is a "
            f"{type(unet).__name__}{' with another diffusion-model wrapper' if isinstance(unet, UNetModel) else ''}: "
            "train without --gradient-checkpointing")
    recompute = _recompute_context(transformer_options)
    return _blockwise(unet, x, timesteps, context, y, control, transformer_options, recompute, **kwargs)


def _recompute_context(transformer_options):
    """A factory of the context the recomputation runs in: the bindings' state as it is now."""
    subjects = transformer_options.get(SUBJECTS_KEY)
    states = [b.recompute_state() for b in (subjects.bindings if subjects else ()) if hasattr(b, "recompute_state")]

    @contextlib.contextmanager
    def recomputing():
        with contextlib.ExitStack() as stack:
            for state in states:
                stack.enter_context(state())
            yield

    def factory():
        return contextlib.nullcontext(), recomputing()
    return factory


def _blockwise(unet, x, timesteps, context, y, control, transformer_options, recompute, **kwargs):
    """The host's ``UNetModel._forward`` (comfy/ldm/modules/diffusionmodules/openaimodel.py), each block checkpointed."""
    from comfy.ldm.modules.diffusionmodules.openaimodel import apply_control, forward_timestep_embed, timestep_embedding

    transformer_options["original_shape"] = list(x.shape)
    transformer_options["transformer_index"] = 0
    patches = transformer_options.get("patches", {})
    video = {"time_context": kwargs.get("time_context", None),
             "num_video_frames": kwargs.get("num_video_frames", unet.default_num_video_frames),
             "image_only_indicator": kwargs.get("image_only_indicator", None)}

    def block(module, h, emb, output_shape=None):
        options = dict(transformer_options)  # as they are before this block; the recomputation starts from them
        after = {}

        def run(h, emb, context):
            mine = dict(options)
            out = forward_timestep_embed(module, h, emb, context, mine, output_shape, **video)
            after["transformer_index"] = mine["transformer_index"]
            return out

        out = torch.utils.checkpoint.checkpoint(run, h, emb, context, use_reentrant=False, preserve_rng_state=True,
                                                context_fn=recompute)
        transformer_options["transformer_index"] = after["transformer_index"]
        return out

    t_emb = timestep_embedding(timesteps, unet.model_channels, repeat_only=False).to(x.dtype)
    emb = unet.time_embed(t_emb)
    for p in patches.get("emb_patch", []):
        emb = p(emb, unet.model_channels, transformer_options)
    if unet.num_classes is not None:
        emb = emb + unet.label_emb(y)

    hs, h = [], x
    for index, module in enumerate(unet.input_blocks):
        transformer_options["block"] = ("input", index)
        h = apply_control(block(module, h, emb), control, "input")
        for p in patches.get("input_block_patch", []):
            h = p(h, transformer_options)
        hs.append(h)
        for p in patches.get("input_block_patch_after_skip", []):
            h = p(h, transformer_options)
    transformer_options["block"] = ("middle", 0)
    if unet.middle_block is not None:
        h = block(unet.middle_block, h, emb)
    h = apply_control(h, control, "middle")
    for index, module in enumerate(unet.output_blocks):
        transformer_options["block"] = ("output", index)
        hsp = apply_control(hs.pop(), control, "output")
        for p in patches.get("output_block_patch", []):
            h, hsp = p(h, hsp, transformer_options)
        h = torch.cat([h, hsp], dim=1)
        del hsp
        h = block(module, h, emb, hs[-1].shape if hs else None)
    h = h.type(x.dtype)
    return unet.id_predictor(h) if unet.predict_codebook_ids else unet.out(h)

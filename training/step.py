"""The frozen host UNet, patched for training, and the per-row denoising loss of a batch.

``Denoiser`` installs a ``TrainingBinding`` with ``host.apply_binding``, the very call the
Apply node makes at inference, and then calls the host's
``BaseModel.apply_model`` with the patched ModelPatcher's transformer options plus what the host's
sampler would add for a batch: ``cond_or_uncond`` (every row positive), one ``uuid`` per row, the
``sigmas``, and the ``StepPrompts`` that say which prompt (subject word positions) each row carries.
Model conditioning comes from the host's own ``extra_conds`` (SDXL: pooled output and size/crop
embedding), one row at a time, concatenated as the host concatenates conds.
"""
from __future__ import annotations

import contextlib

import torch

from ..nested_attention_core.rules import NESTED_RULE
from ..nodes import host
from .batch import Batch
from .binding import LiveNested, TrainingBinding
from .loss import denoising_losses, parameterization
from .method import NESTED_TRAINING


class Denoiser:
    def __init__(self, patcher, rule: str = NESTED_RULE, gradient_checkpointing: bool = False):
        self.live = LiveNested()
        model = host.apply_binding(patcher, TrainingBinding(self.live, rule))
        self.plain = patcher  # the unpatched model: the "no adapter" reference and the sampling base
        # with --gradient-checkpointing the UNet recomputes its block activations in the backward pass
        self.patched = host.checkpointed(model) if gradient_checkpointing else model
        self.frozen = host.checkpointed(patcher) if gradient_checkpointing else patcher  # a step without subject
        self.base = model.model  # comfy.model_base.BaseModel, shared by every clone
        self.model_sampling = model.get_model_object("model_sampling")
        self.kind = parameterization(self.model_sampling)

    @property
    def device(self) -> torch.device:
        return torch.device(self.patched.load_device)

    def load(self) -> None:
        """Make sure the frozen UNet sits on the training device (the host may have offloaded it)."""
        import comfy.model_management

        comfy.model_management.load_models_gpu([self.patched], force_full_load=True)

    def process_latent_in(self, latent: torch.Tensor) -> torch.Tensor:
        return self.base.process_latent_in(latent)

    def model_conds(self, batch: Batch, x_noisy: torch.Tensor) -> dict:
        """c_crossattn (and y, ...) for the batch, built by the host's ``extra_conds`` row by row."""
        per_row = []
        for i, (text, crop) in enumerate(zip(batch.texts, batch.crops)):
            kwargs = {"cross_attn": text.cond.to(x_noisy.device), "noise": x_noisy[i:i + 1], "device": x_noisy.device,
                      "width": crop.width, "height": crop.height, "crop_w": crop.crop_left, "crop_h": crop.crop_top,
                      "target_width": crop.resolution, "target_height": crop.resolution}
            if text.pooled is not None:
                kwargs["pooled_output"] = text.pooled.to(x_noisy.device)
            per_row.append(self.base.extra_conds(**kwargs))
        return {key: per_row[0][key].concat([row[key] for row in per_row[1:]]) for key in per_row[0]}

    def transformer_options(self, batch: Batch, with_subject: bool) -> dict:
        uuids = [f"row{i}" for i in range(len(batch))]
        prompts = {uuid: p for uuid, p in zip(uuids, batch.prompts) if p is not None} if with_subject else {}
        step = host.StepPrompts(prompts, float(batch.sigma.max()), latent_size=tuple(batch.x_noisy.shape[-2:]))
        model = self.patched if with_subject else self.frozen
        options = host.model_call_options(model, step)
        options.update(cond_or_uncond=[0] * len(batch), uuids=uuids, sigmas=batch.sigma)
        return options

    def denoise(self, batch: Batch, nested: dict | None, autocast_dtype=None) -> torch.Tensor:
        """The host's denoised estimate D(x_noisy, sigma) with the rows' subjects (nested None: none)."""
        options = self.transformer_options(batch, with_subject=nested is not None)
        conds = self.model_conds(batch, batch.x_noisy)
        self.live.current = nested
        try:
            with _autocast(batch.x_noisy.device, autocast_dtype):
                return self.base.apply_model(batch.x_noisy, batch.sigma, transformer_options=options, **conds)
        finally:
            self.live.current = None

    def losses(self, batch: Batch, nested: dict | None, autocast_dtype=None) -> torch.Tensor:
        """Per-row denoising loss [B] in the model's parameterization."""
        denoised = self.denoise(batch, nested, autocast_dtype)
        return denoising_losses(self.kind, batch.sigma, batch.x_noisy, denoised, batch.x0, batch.weight)


def encode_nested(encoder, references: torch.Tensor) -> dict:
    """Reference features [B, T, F] -> {layer id: (nested keys, nested values) [B, N, width]}."""
    return NESTED_TRAINING.nested(encoder, references)


def _autocast(device: torch.device, dtype):
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)

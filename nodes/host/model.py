"""What the host's model is: its family, cross-attention layers and context width.

The walk over the layers is the family's (``nested_attention_core.families``); this module only
reads the ModelPatcher. Everyone who needs a model's layers (the Apply node, the trainer, the toy
world, the benchmarks) asks here.
"""
from __future__ import annotations

from ...nested_attention_core.errors import ModelMismatchError
from ...nested_attention_core.families import ModelFamily, display_name, family_of_model
from ...nested_attention_core.layers import LayerSpec


def model_context_dim(model) -> int:
    return int(model.model.model_config.unet_config.get("context_dim") or 0)


def model_type(model) -> str:
    """What a ComfyUI ModelPatcher holds, for messages, e.g. "Flux: comfy.model_base.Flux, denoiser
    comfy.ldm.flux.model.Flux": the host's model config name, its model class and its denoiser class."""
    base, denoiser = model.model, model.get_model_object("diffusion_model")
    config = type(getattr(base, "model_config", None) or base).__name__
    return (f"{config}: {type(base).__module__}.{type(base).__qualname__}, denoiser "
            f"{type(denoiser).__module__}.{type(denoiser).__qualname__}")


def _family_of(model):
    return family_of_model(model.get_model_object("diffusion_model"), model_context_dim(model), model_type(model))


def model_family(model) -> ModelFamily:
    """The family of a ComfyUI ModelPatcher, with the layers its walk found; an UnsupportedModelError
    naming the model's type and the supported families for a model without UNet cross-attention."""
    return _family_of(model)[0]


def model_layers(model) -> list[LayerSpec]:
    return list(model_family(model).layers)


def attention_modules(model) -> dict[str, object]:
    """{layer id: the host's cross-attention module} of a ComfyUI ModelPatcher."""
    return _family_of(model)[1]


def check_fits_model(model, family: str, context_dim: int, layers: list[LayerSpec], what: str) -> None:
    """Raise ModelMismatchError unless ``layers`` are exactly the model's cross-attention layers."""
    theirs = model_family(model)
    if context_dim != theirs.context_dim or sorted(layers) != sorted(theirs.layers):
        raise ModelMismatchError(
            f"{what} was made for {display_name(family)} ({len(layers)} cross-attention layers, context width "
            f"{context_dim}), but the model is {theirs.describe()}: load Nested Attention weights made for this "
            f"model's base family")

"""Model families: what the pack supports, and everything it knows about each kind of base model.

Supported are UNet denoisers with cross-attention (attn2) layers, the layers Nested Attention
changes: SD1.5 and SDXL (and their fine-tunes) are built in; the toy world and the tests register
their own with ``register_family``; any other UNet with attn2 layers (SD2, a custom layout) gets a
family named after its context width (``context<dim>``), for which weights can be trained. Nothing
else is supported: a denoiser without such layers (Flux, SD3 and other DiT models, a UNet without
cross-attention) is an ``UnsupportedModelError`` naming the model and ``supported_models()``.

A family says what its cross-attention layers are (the layer table, and the walk that finds them
in a loaded model), its text context width and which tokenizers index that context, the subject
encoder a user gets by default, the training resolution, and whether IP-Adapter Plus files exist
for it (one IP-Adapter entry per layer). Adding a family is one ``ModelFamily`` entry plus its walk.

Family names are what weight and subject files record (``base_family``); whether a file fits a
model is decided by its layers and context width, never by the name alone.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Callable, Iterable, Optional

from .encoder import EncoderConfig
from .errors import UnsupportedModelError
from .layers import LayerSpec, layer_table, unet_cross_attention

Walk = Callable[[object], Iterable[tuple[LayerSpec, object]]]  # denoiser -> (layer, attention module)


@dataclass(frozen=True)
class ModelFamily:
    name: str  # recorded in files, e.g. "sd15"
    display_name: str  # for people, e.g. "SD1.5"
    context_dim: int  # width of the text context (= subject token width)
    layers: tuple[LayerSpec, ...]  # every cross-attention layer, in the walk's order
    text_encoders: tuple[str, ...] = ("l",)  # host tokenizer keys; all share the context positions
    encoder: EncoderConfig = field(default_factory=EncoderConfig)  # default encoder sizes
    resolution: int = 512  # default training resolution (px)
    ip_adapter: bool = False  # IP-Adapter Plus files exist (one entry per layer)
    walk: Walk = unet_cross_attention

    def describe(self) -> str:
        return f"{self.display_name} ({len(self.layers)} cross-attention layers, context width {self.context_dim})"

    def fits(self, context_dim: int, layers: Iterable[LayerSpec]) -> bool:
        return context_dim == self.context_dim and sorted(layers) == sorted(self.layers)


SD15 = ModelFamily(
    "sd15", "SD1.5", 768,
    tuple(layer_table("input", {1: (1, 320), 2: (1, 320), 4: (1, 640), 5: (1, 640), 7: (1, 1280), 8: (1, 1280)})
          + layer_table("middle", {0: (1, 1280)})
          + layer_table("output", {3: (1, 1280), 4: (1, 1280), 5: (1, 1280), 6: (1, 640), 7: (1, 640),
                                   8: (1, 640), 9: (1, 320), 10: (1, 320), 11: (1, 320)})),
    encoder=EncoderConfig(width=768, heads=12, output_dim=768), resolution=512, ip_adapter=True)

SDXL = ModelFamily(
    "sdxl", "SDXL", 2048,
    tuple(layer_table("input", {4: (2, 640), 5: (2, 640), 7: (10, 1280), 8: (10, 1280)})
          + layer_table("middle", {0: (10, 1280)})
          + layer_table("output", {0: (10, 1280), 1: (10, 1280), 2: (10, 1280), 3: (2, 640), 4: (2, 640),
                                   5: (2, 640)})),
    text_encoders=("g", "l"), encoder=EncoderConfig(), resolution=1024, ip_adapter=True)

_FAMILIES: dict[str, ModelFamily] = {}


def register_family(family: ModelFamily) -> ModelFamily:
    """Add a family (idempotent for an equal entry; another entry under a taken name is an error)."""
    known = _FAMILIES.get(family.name)
    if known is not None and known != family:
        raise ValueError(f"model family {family.name!r} is already registered with another layout")
    _FAMILIES[family.name] = family
    return family


for _family in (SD15, SDXL):
    register_family(_family)


def families() -> list[ModelFamily]:
    return list(_FAMILIES.values())


def family_named(name: str) -> Optional[ModelFamily]:
    return _FAMILIES.get(name)


def display_name(name: str) -> str:
    """A family's display name, or the label itself for a family this process does not know."""
    family = _FAMILIES.get(name)
    return family.display_name if family is not None else name


def unknown_family(context_dim: int, layers: Iterable[LayerSpec]) -> ModelFamily:
    """The family of a model no registered family describes: named after its context width."""
    name = f"context{context_dim}"
    return ModelFamily(name, f"a model with context width {context_dim}", context_dim, tuple(layers))


def supported_models() -> str:
    """What the pack supports, for messages: the registered families, then any UNet with attn2 layers."""
    known = ", ".join(f.display_name for f in _FAMILIES.values())
    return (f"{known} (and their fine-tunes), or another UNet model with cross-attention (attn2) layers with "
            "Nested Attention weights trained for it; not Flux, SD3 or other DiT models")


def family_of_model(diffusion_model, context_dim: int, model_type: str = "") -> tuple[ModelFamily, dict[str, object]]:
    """The family of a loaded denoiser, and its attention modules by layer id.

    Each registered family of that context width walks the model in its own way; the first whose
    layer table is what its walk finds wins. Otherwise the default walk's layers make an unknown
    family (``unknown_family``); none at all is an UnsupportedModelError naming ``model_type`` (the
    denoiser's class when not given)."""
    walks: dict[Walk, list] = {}
    candidates = [f for f in _FAMILIES.values() if f.context_dim == context_dim]
    for family in candidates + [None]:
        walk = family.walk if family is not None else unet_cross_attention
        if walk not in walks:
            walks[walk] = list(walk(diffusion_model))
        found = walks[walk]
        if family is not None and family.fits(context_dim, [layer for layer, _ in found]):
            return replace(family, layers=tuple(layer for layer, _ in found)), {l.id: m for l, m in found}
    if not found:
        kind = model_type or f"{type(diffusion_model).__module__}.{type(diffusion_model).__qualname__}"
        raise UnsupportedModelError(
            f"the model ({kind}) has no UNet cross-attention (attn2) layers for Nested Attention to personalize; "
            f"supported are {supported_models()}: load a checkpoint of one of these")
    return unknown_family(context_dim, [layer for layer, _ in found]), {l.id: m for l, m in found}


def ip_adapter_family(entries: int) -> Optional[ModelFamily]:
    """The family of an IP-Adapter Plus file with this many cross-attention entries."""
    return next((f for f in _FAMILIES.values() if f.ip_adapter and len(f.layers) == entries), None)

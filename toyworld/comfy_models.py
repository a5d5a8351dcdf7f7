"""The toy world's models, taught to ComfyUI and to the pack's family registry (never by the pack).

The toy world (``toyworld/``) trains a whole text-to-image model from scratch on two CPU cores: an
SD1.5-architecture UNet far narrower than any real one, a TAESD-shaped VAE, a 2-layer CLIP text
encoder and a small CLIP vision tower. ComfyUI recognises checkpoints by exact widths, so it cannot
know these sizes by itself. ``register_toy_models()`` (called by the toy world's ``load_host`` and
by the demo/test ComfyUI pack ``toyworld/comfyui_pack``; a user's install of the pack never runs
it) adds:

* ``ToyWorldSD15``, a config subclass of ComfyUI's ``SD15`` put first in
  ``comfy.supported_models.models``. It matches only the toy UNet's exact widths and depths
  (``model_channels`` 64, context 64), so no real checkpoint can ever match it;
* a CLIP vision recogniser: ComfyUI's ``load_clipvision_from_sd`` runs first; only when it
  returns None (it knows towers by layer count) and the state dict has exactly the layout of a
  registered config (the toy tower's, ``toy_clip_vision.json``, or the first edition's random
  tower, ``toy_clip_vision_first_edition.json``) is a ``ClipVisionModel`` built from that config;
* ``TOY_FAMILY`` (``family.py``) in the pack's model-family registry.

The tests' tiny models register through the same two helpers (``tiny_models.py``).
"""
from __future__ import annotations

import functools
import json
import logging
from pathlib import Path

import comfy.clip_vision
import comfy.sd1_clip
import comfy.supported_models
import comfy.supported_models_base

from ..nested_attention_core.families import register_family
from .family import TOY_CONTEXT_DIM, TOY_FAMILY

log = logging.getLogger(__name__)

TOY_CLIP_VISION_CONFIG = Path(__file__).resolve().parent / "toy_clip_vision.json"
# The first edition's random tower (4 px patches): weights made with it still load.
FIRST_EDITION_CLIP_VISION_CONFIG = Path(__file__).resolve().parent / "toy_clip_vision_first_edition.json"
_MARK = "_nested_attention_original"  # on our wrapper of the CLIP vision loader: the loader it wraps

# The 2-layer, 64-wide CLIP text encoder of the toy base (full CLIP vocabulary and 77 positions, so
# ComfyUI's stock SD1 tokenizer drives it).
TOY_TEXT_ENCODER = {"hidden_size": TOY_CONTEXT_DIM, "intermediate_size": 256, "num_attention_heads": 2,
                    "num_hidden_layers": 2, "projection_dim": 64}

# The toy UNet, in the words of comfy.model_detection.detect_unet_config (SD1.5 layout: conv
# proj_in, no ADM): 8x8 latents (64 px images), levels of 64 and 128 channels, one transformer each.
TOY_UNET = {"use_checkpoint": False, "image_size": 32, "use_spatial_transformer": True, "legacy": False,
            "in_channels": 4, "out_channels": 4, "use_temporal_resblock": False, "use_temporal_attention": False,
            "adm_in_channels": None, "model_channels": 64, "num_res_blocks": [1, 1], "channel_mult": [1, 2],
            "transformer_depth": [1, 1], "transformer_depth_output": [1, 1, 1, 1], "transformer_depth_middle": 1,
            "use_linear_in_transformer": False, "context_dim": TOY_TEXT_ENCODER["hidden_size"]}


class ToyWorldClipModel(comfy.sd1_clip.SD1ClipModel):
    """ComfyUI's SD1.5 text encoder class at the toy sizes (passed through ``model_options``)."""

    def __init__(self, device="cpu", dtype=None, model_options={}, **kwargs):
        super().__init__(device=device, dtype=dtype, model_options={"clip_l_model_config": TOY_TEXT_ENCODER,
                                                                    **model_options}, **kwargs)


class ToyWorldSD15(comfy.supported_models.SD15):
    """TOY-WORLD ONLY: the toy world's SD1.5-architecture base (eps prediction, SD1.5 schedule)."""

    unet_config = {key: TOY_UNET[key] for key in (
        "model_channels", "context_dim", "use_linear_in_transformer", "adm_in_channels", "use_temporal_attention",
        "num_res_blocks", "channel_mult", "transformer_depth", "transformer_depth_middle")}
    unet_extra_config = {"num_heads": -1, "num_head_channels": 32}

    def clip_target(self, state_dict={}):
        return comfy.supported_models_base.ClipTarget(comfy.sd1_clip.SD1Tokenizer, ToyWorldClipModel)


@functools.lru_cache(maxsize=None)
def _clip_vision_layout(config_path: str) -> tuple[int, int, int]:
    cfg = json.loads(Path(config_path).read_text())
    positions = (cfg["image_size"] // cfg["patch_size"]) ** 2 + 1
    return cfg["num_hidden_layers"], cfg["hidden_size"], positions


def clip_vision_matches(sd, config_path) -> bool:
    """True only for a transformers-format state dict with exactly the config's layer count and widths."""
    layers, width, positions = _clip_vision_layout(str(config_path))
    norm = sd.get(f"vision_model.encoder.layers.{layers - 1}.layer_norm1.weight")
    pos = sd.get("vision_model.embeddings.position_embedding.weight")
    return (norm is not None and tuple(norm.shape) == (width,)
            and f"vision_model.encoder.layers.{layers}.layer_norm1.weight" not in sd
            and pos is not None and tuple(pos.shape) == (positions, width))


_CLIP_VISION_CONFIGS: list[str] = []  # config paths the wrapped loader recognises


def _recognising(original):
    @functools.wraps(original)
    def load_clipvision_from_sd(sd, prefix="", convert_keys=False):
        clip = original(sd, prefix, convert_keys)  # converts ``sd`` in place when asked to
        if clip is not None:
            return clip
        config = next((c for c in _CLIP_VISION_CONFIGS if clip_vision_matches(sd, c)), None)
        if config is None:
            return None
        clip = comfy.clip_vision.ClipVisionModel(config)
        missing, unexpected = clip.load_sd(sd)
        if missing:
            log.warning("CLIP vision %s: missing keys %s", Path(config).name, missing)
        for key in set(sd) - set(unexpected):  # consume the keys, like the stock loader
            sd.pop(key)
        return clip

    setattr(load_clipvision_from_sd, _MARK, original)
    return load_clipvision_from_sd


def register_clip_vision_config(config_path) -> None:
    """Let ComfyUI's CLIP vision loader build towers of this exact layout (a transformers JSON)."""
    if getattr(comfy.clip_vision.load_clipvision_from_sd, _MARK, None) is None:
        comfy.clip_vision.load_clipvision_from_sd = _recognising(comfy.clip_vision.load_clipvision_from_sd)
    if str(config_path) not in _CLIP_VISION_CONFIGS:
        _CLIP_VISION_CONFIGS.append(str(config_path))


def registered_clip_vision_configs() -> list[str]:
    return list(_CLIP_VISION_CONFIGS)


def register_model_config(config_class) -> None:
    """Put a model config class first in ComfyUI's list (once)."""
    if config_class not in comfy.supported_models.models:
        comfy.supported_models.models.insert(0, config_class)


def register_toy_models() -> None:
    """Idempotent."""
    register_model_config(ToyWorldSD15)
    register_clip_vision_config(TOY_CLIP_VISION_CONFIG)
    register_clip_vision_config(FIRST_EDITION_CLIP_VISION_CONFIG)
    register_family(TOY_FAMILY)

"""Teaching a ComfyUI process checkpoints it cannot recognise by itself (DEMO/TEST/EXPERIMENT ONLY).

ComfyUI recognises a checkpoint by exact widths and depths, and a CLIP vision tower by its layer
count, so the tests' tiny models (``tiny_comfy.py``) and the toy world's models
(``toyworld/comfy_models.py``) are registered through these two helpers; a user's install of the
pack never runs them:

* ``register_model_config``: a config class (a subclass of one of ComfyUI's, matching only the
  exact sizes of one checkpoint) put first in ``comfy.supported_models.models``;
* ``register_clip_vision_config``: a CLIP vision recogniser: ComfyUI's ``load_clipvision_from_sd``
  runs first; only when it returns None and the state dict has exactly the layout of a registered
  config (a transformers JSON) is a ``ClipVisionModel`` built from that config.

Imports ComfyUI: bootstrap it first.
"""
from __future__ import annotations

import functools
import json
import logging
from pathlib import Path

import comfy.clip_vision
import comfy.supported_models

log = logging.getLogger(__name__)

_MARK = "_nested_attention_original"  # on our wrapper of the CLIP vision loader: the loader it wraps


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

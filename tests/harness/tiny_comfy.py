"""DEMO/TEST-ONLY registration of the tiny models that ComfyUI cannot recognise on its own.

Nothing here is part of the pack. ``register_test_models()`` teaches a ComfyUI process the tiny
models of ``tiny_models.py``, through ``comfy_registration.py`` (the toy world registers its
models through the same helpers), and adds their families to the pack's family registry:

* the tiny SDXL-shaped checkpoint: a config subclass of ``comfy.supported_models.SDXL`` is put
  first in ``comfy.supported_models.models``. It matches only the tiny UNet's exact widths
  (``model_channels`` 64, ``context_dim`` 144), so no real model can ever match it;
* the tiny CLIP vision tower: its JSON config is registered with the CLIP vision recogniser, which
  builds a ``ClipVisionModel`` from it only when the stock loader returns None and the state dict
  has exactly that layout;
* ``SD15_MINI_FAMILY`` and ``SDXL_TINY_FAMILY`` (the one-level SD1.5 at real widths, and the tiny SDXL).

Imports ComfyUI: bootstrap it first.
"""
from __future__ import annotations

import functools
import json
import logging
from pathlib import Path

import comfy.sdxl_clip
import comfy.supported_models
import comfy.supported_models_base

from nested_attention.nested_attention_core.encoder import EncoderConfig
from nested_attention.nested_attention_core.families import ModelFamily, register_family
from nested_attention.nested_attention_core.layers import layer_table

from .comfy_registration import clip_vision_matches, register_clip_vision_config, register_model_config

log = logging.getLogger(__name__)

CLIP_VISION_TINY_CONFIG = Path(__file__).resolve().parent / "tiny_clip_vision.json"


# Text encoders of the tiny SDXL: the real SDXL pair (CLIP-L + CLIP-G, penultimate layers, pooled
# CLIP-G projection) at 3 layers. Different widths, so that mixing up l and g cannot pass a test.
TINY_SDXL_TEXT_ENCODERS = {
    "clip_l_model_config": {"hidden_size": 48, "intermediate_size": 192, "num_attention_heads": 3,
                            "num_hidden_layers": 3, "projection_dim": 48},
    "clip_g_model_config": {"hidden_size": 96, "intermediate_size": 384, "num_attention_heads": 6,
                            "num_hidden_layers": 3, "projection_dim": 96},
}
# All widths differ (UNet 64/128, context 144, CLIP-L 48, CLIP-G 96, CLIP vision 32): a tensor
# routed to the wrong place fails on its shape instead of passing by accident.
TINY_SDXL_CONTEXT_DIM = 48 + 96  # cat([clip_l, clip_g], -1)
TINY_SDXL_ADM_IN_CHANNELS = 96 + 6 * 256  # pooled CLIP-G + six size/crop embeddings


class TinySDXLClipModel(comfy.sdxl_clip.SDXLClipModel):
    """ComfyUI's SDXL text encoder pair, with the tiny sizes passed through ``model_options``."""

    def __init__(self, device="cpu", dtype=None, model_options={}):
        super().__init__(device=device, dtype=dtype, model_options={**TINY_SDXL_TEXT_ENCODERS, **model_options})


class TinySDXLForTests(comfy.supported_models.SDXL):
    """TEST-ONLY: the tiny SDXL-shaped checkpoint (real ``model_base.SDXL`` with size conditioning)."""

    unet_config = {
        "model_channels": 64,
        "use_linear_in_transformer": True,
        "transformer_depth": [1, 2],
        "context_dim": TINY_SDXL_CONTEXT_DIM,
        "adm_in_channels": TINY_SDXL_ADM_IN_CHANNELS,
        "use_temporal_attention": False,
    }
    unet_extra_config = {"num_heads": -1, "num_head_channels": 32}

    def clip_target(self, state_dict={}):
        return comfy.supported_models_base.ClipTarget(comfy.sdxl_clip.SDXLTokenizer, TinySDXLClipModel)


@functools.lru_cache(maxsize=1)
def tiny_clip_vision_config() -> dict:
    return json.loads(CLIP_VISION_TINY_CONFIG.read_text())


def is_tiny_clip_vision(sd) -> bool:
    """True only for a transformers-format state dict with exactly the tiny tower's shapes."""
    return clip_vision_matches(sd, CLIP_VISION_TINY_CONFIG)


# The one-level SD1.5 at the real widths (tiny_models.SD15_MINI_UNET) and the tiny SDXL (SDXL_TINY_UNET).
SD15_MINI_FAMILY = ModelFamily(
    "sd15_mini", "the tests' one-level SD1.5", 768,
    tuple(layer_table("input", {1: (1, 320)}) + layer_table("middle", {0: (1, 320)})
          + layer_table("output", {0: (1, 320), 1: (1, 320)})),
    encoder=EncoderConfig(width=768, heads=12, output_dim=768), resolution=64)
SDXL_TINY_FAMILY = ModelFamily(
    "sdxl_tiny", "the tests' tiny SDXL", TINY_SDXL_CONTEXT_DIM,
    tuple(layer_table("input", {1: (1, 64), 3: (2, 128)}) + layer_table("middle", {0: (2, 128)})
          + layer_table("output", {0: (2, 128), 1: (2, 128), 2: (1, 64), 3: (1, 64)})),
    text_encoders=("g", "l"), encoder=EncoderConfig(output_dim=TINY_SDXL_CONTEXT_DIM), resolution=64)


def register_test_models() -> None:
    """Idempotent."""
    register_model_config(TinySDXLForTests)
    register_clip_vision_config(CLIP_VISION_TINY_CONFIG)
    register_family(SD15_MINI_FAMILY)
    register_family(SDXL_TINY_FAMILY)
    log.debug("registered the Nested Attention TEST-ONLY tiny models")

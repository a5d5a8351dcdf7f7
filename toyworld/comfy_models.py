"""The toy world's models, taught to ComfyUI and to the pack's family registry (never by the pack).

The toy world (``toyworld/``) trains a whole text-to-image model from scratch on two CPU cores: an
SD1.5-architecture UNet far narrower than any real one, a TAESD-shaped VAE, a 2-layer CLIP text
encoder and a small CLIP vision tower. ComfyUI recognises checkpoints by exact widths, so it cannot
know these sizes by itself. ``register_toy_models()`` (called by the toy world's ``load_host`` and
by the toy world's ComfyUI pack ``toyworld/comfyui_pack``; a user's install of the pack never runs
it) adds:

* ``ToyWorldSD15``, a config subclass of ComfyUI's ``SD15`` put first in
  ``comfy.supported_models.models``. It matches only the toy UNet's exact widths and depths
  (``model_channels`` 64, context 64), so no real checkpoint can ever match it;
* the toy CLIP vision tower's layout (``toy_clip_vision.json``, and the first edition's random
  tower, ``toy_clip_vision_first_edition.json``) with the CLIP vision recogniser;
* ``TOY_FAMILY`` (``family.py``) in the pack's model-family registry.

Both go through the harness's helpers (``tests/harness/comfy_registration.py``), as the tests' tiny
models do.
"""
from __future__ import annotations

from pathlib import Path

import comfy.sd1_clip
import comfy.supported_models
import comfy.supported_models_base

from harness.comfy_registration import register_clip_vision_config, register_model_config

from ..nested_attention_core.families import register_family
from .family import TOY_CONTEXT_DIM, TOY_FAMILY

TOY_CLIP_VISION_CONFIG = Path(__file__).resolve().parent / "toy_clip_vision.json"
# The first edition's random tower (4 px patches): weights made with it still load.
FIRST_EDITION_CLIP_VISION_CONFIG = Path(__file__).resolve().parent / "toy_clip_vision_first_edition.json"

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


def register_toy_models() -> None:
    """Idempotent."""
    register_model_config(ToyWorldSD15)
    register_clip_vision_config(TOY_CLIP_VISION_CONFIG)
    register_clip_vision_config(FIRST_EDITION_CLIP_VISION_CONFIG)
    register_family(TOY_FAMILY)

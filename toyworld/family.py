"""The toy world's model family: its base model's cross-attention layers, and the subject encoder that
its experiment trains (the sizes every method gets, ``experiment.EncoderStageConfig``). Pure: no ComfyUI;
``comfy_models.register_toy_models`` adds it to the pack's family registry."""
from __future__ import annotations

from ..nested_attention_core.encoder import EncoderConfig
from ..nested_attention_core.families import ModelFamily
from ..nested_attention_core.layers import layer_table

TOY_CONTEXT_DIM = 64  # the toy text encoder's width
TOY_IMAGE_FEATURE_DIM = 64  # the toy CLIP vision tower's width (toy_clip_vision.json)

# The toy UNet's cross-attention layers: one transformer per level, 64 and 128 channels.
TOY_FAMILY = ModelFamily(
    "toyworld", "the toy world's base", TOY_CONTEXT_DIM,
    tuple(layer_table("input", {1: (1, 64), 3: (1, 128)}) + layer_table("middle", {0: (1, 128)})
          + layer_table("output", {0: (1, 128), 1: (1, 128), 2: (1, 64), 3: (1, 64)})),
    encoder=EncoderConfig(num_tokens=8, width=128, depth=2, heads=4, dim_head=32, ff_mult=2,
                          image_feature_dim=TOY_IMAGE_FEATURE_DIM, output_dim=TOY_CONTEXT_DIM),
    resolution=64, ip_adapter=True)  # the evaluation writes its decoupled baseline as an IP-Adapter Plus file

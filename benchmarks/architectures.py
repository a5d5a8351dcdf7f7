"""Full-size SD1.5 and SDXL UNets with seeded random weights, built by ComfyUI's own model classes.

No checkpoint is needed: ``comfy.supported_models.SD15`` / ``SDXL`` with the unet config ComfyUI's
detection gives the real checkpoints (``comfy/model_detection.py``) build the real layout (SD1.5:
860M parameters, 16 cross-attention layers; SDXL: 2.57B, 70). Weights are drawn so that every
layer keeps unit-variance activations (biases zero, norms one), which is what timing needs.
"""
from __future__ import annotations

import math

COMMON = {"use_checkpoint": False, "image_size": 32, "use_spatial_transformer": True, "legacy": False,
          "in_channels": 4, "out_channels": 4, "use_temporal_resblock": False, "use_temporal_attention": False}
# What ComfyUI's detection reads from an SD1.5 / SDXL base checkpoint, with each family's own unet_config.
UNET_CONFIGS = {
    "sd15": {**COMMON, "num_res_blocks": [2, 2, 2, 2], "transformer_depth": [1, 1, 1, 1, 1, 1, 0, 0],
             "channel_mult": [1, 2, 4, 4], "transformer_depth_middle": 1,
             "transformer_depth_output": [1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0]},
    "sdxl": {**COMMON, "num_classes": "sequential", "num_res_blocks": [2, 2, 2], "channel_mult": [1, 2, 4],
             "transformer_depth_middle": 10, "transformer_depth_output": [0, 0, 0, 2, 2, 2, 10, 10, 10]},
}


def random_weights_model(family: str, seed: int = 0, dtype=None):
    """A ComfyUI ModelPatcher of the ``family`` ("sd15" or "sdxl") architecture, seeded weights, fp32 (or
    ``dtype``: the weights are made in it, never in fp32 first)."""
    import comfy.model_management
    import comfy.model_patcher
    import comfy.supported_models
    import torch

    config_class = {"sd15": comfy.supported_models.SD15, "sdxl": comfy.supported_models.SDXL}[family]
    config = config_class({**UNET_CONFIGS[family], **config_class.unet_config})
    config.set_inference_dtype(dtype or torch.float32, None)
    model = config.get_model({})
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.diffusion_model.named_parameters():
            if name.endswith("bias"):
                p.zero_()
            elif p.ndim == 1:
                p.fill_(1.0)  # norms
            else:
                p.normal_(0.0, 1.0 / math.sqrt(p[0].numel()), generator=generator)
    model.eval().requires_grad_(False)
    device = comfy.model_management.get_torch_device()
    return comfy.model_patcher.ModelPatcher(model, load_device=device, offload_device=device)

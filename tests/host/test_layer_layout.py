"""Our attn2 layer bookkeeping against the host: real UNet layouts and the keys used at runtime."""
from __future__ import annotations

import pytest
import torch

from nested_attention.nested_attention_core.families import SD15, SDXL, family_of_model
from nested_attention.nested_attention_core.layers import LayerSpec, unet_cross_attention

_STRUCTURE = {"use_checkpoint": False, "image_size": 32, "use_spatial_transformer": True, "legacy": False,
              "in_channels": 4, "out_channels": 4, "use_temporal_resblock": False}
# The released layouts, in the form comfy.model_detection.detect_unet_config returns them; the
# family-specific values come from comfy.supported_models (checked in _real_unet).
REAL_UNETS = {
    "SD15": {**_STRUCTURE, "num_res_blocks": [2, 2, 2, 2], "channel_mult": [1, 2, 4, 4],
             "transformer_depth": [1, 1, 1, 1, 1, 1, 0, 0], "transformer_depth_middle": 1,
             "transformer_depth_output": [1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0]},
    "SDXL": {**_STRUCTURE, "num_classes": "sequential", "num_res_blocks": [2, 2, 2], "channel_mult": [1, 2, 4],
             "transformer_depth_middle": 10, "transformer_depth_output": [0, 0, 0, 2, 2, 2, 10, 10, 10]},
}

def _plain(layers) -> list[tuple]:
    return [(s.block, s.block_id, s.depth, s.width) for s in layers]


@pytest.fixture(scope="module")
def attn2_layers(comfy_root):
    """The default walk of the family registry: the layers of a ComfyUI UNet, in order."""
    return lambda unet: [layer for layer, _module in unet_cross_attention(unet)]


def _real_unet(family: str):
    """ComfyUI's own UNet for a released family, on the meta device (no memory)."""
    import comfy.model_detection
    import comfy.ops
    import comfy.supported_models
    from comfy.ldm.modules.diffusionmodules.openaimodel import UNetModel

    config_cls = getattr(comfy.supported_models, family)
    unet_config = {**REAL_UNETS[family], **config_cls.unet_config}
    unet = UNetModel(**config_cls(unet_config).unet_config, device="meta", operations=comfy.ops.disable_weight_init)
    # The layout is what ComfyUI detects from such weights, and detection picks exactly this family.
    detected = comfy.model_detection.detect_unet_config(unet.state_dict(), "")
    assert detected == unet_config
    assert type(comfy.model_detection.model_config_from_unet_config(detected)) is config_cls
    return unet


@pytest.mark.parametrize("family, expected", [("SD15", SD15), ("SDXL", SDXL)])
def test_attn2_layers_of_the_released_unets(attn2_layers, tiny_models, family, expected):
    # tiny_models: the test-only SDXL config is registered and must not capture real SDXL.
    unet = _real_unet(family)
    layers = attn2_layers(unet)
    assert _plain(layers) == _plain(expected.layers)
    assert len(layers) == {"SD15": 16, "SDXL": 70}[family]
    found, modules = family_of_model(unet, expected.context_dim)  # the registry recognises it
    assert found.name == expected.name and set(modules) == {layer.id for layer in layers}


def test_a_model_no_family_describes_gets_a_family_named_by_its_width(attn2_layers):
    unet = _real_unet("SD15")
    found, _ = family_of_model(unet, 1024)  # SD2-like: SD1.5's layout, another context width
    assert found.name == "context1024" and _plain(found.layers) == _plain(SD15.layers)


class RecordingAttn2:
    """attn2 replace patch for one layer: records what the host passes, computes plain attention."""

    def __init__(self, layer: LayerSpec, calls: list):
        self.layer, self.calls = layer, calls

    def __call__(self, q, k, v, extra):
        from comfy.ldm.modules.attention import optimized_attention

        self.calls.append({"layer": self.layer, "block": tuple(extra["block"]), "depth": extra["block_index"],
                           "q": q.shape[-1], "k": k.shape[-1], "v": v.shape[-1],
                           "heads_x_dim": extra["n_heads"] * extra["dim_head"]})
        return optimized_attention(q, k, v, extra["n_heads"])


@pytest.mark.parametrize("key", ["sd15", "sdxl"])
def test_every_layer_key_is_called_at_runtime(attn2_layers, tiny_models, key):
    import comfy.sd
    import nodes

    model, clip, _, _ = comfy.sd.load_checkpoint_guess_config(str(tiny_models[key]), output_vae=False)
    from harness.tiny_comfy import SD15_MINI_FAMILY, SDXL_TINY_FAMILY

    layers = attn2_layers(model.model.diffusion_model)
    family = {"sd15": SD15_MINI_FAMILY, "sdxl": SDXL_TINY_FAMILY}[key]
    assert _plain(layers) == _plain(family.layers)
    from nested_attention.nodes import host

    assert host.model_family(model).name == family.name  # the registry entry is what the walk finds

    patched, calls = model.clone(), []
    for layer in layers:
        patched.set_model_attn2_replace(RecordingAttn2(layer, calls), layer.block, layer.block_id, layer.depth)
    cond = nodes.CLIPTextEncode().encode(clip, "a photo of sks dog")[0]
    uncond = nodes.CLIPTextEncode().encode(clip, "")[0]
    latent = {"samples": torch.zeros(1, 4, 8, 8)}
    nodes.common_ksampler(patched, 0, 1, 4.0, "euler", "normal", cond, uncond, latent)

    seen = [c["layer"] for c in calls]  # each UNet call visits every layer once, in this order
    assert seen and seen == layers * (len(seen) // len(layers))
    for c in calls:
        layer = c["layer"]
        assert (c["block"], c["depth"]) == ((layer.block, layer.block_id), layer.depth)
        assert c["q"] == c["k"] == c["v"] == c["heads_x_dim"] == layer.width

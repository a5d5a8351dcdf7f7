"""Models the pack does not support are named at Apply, with the families it does support.

The models are ComfyUI's own classes at tiny sizes, built and wrapped the way ComfyUI loads them
(a ``supported_models`` config -> ``model_base`` model -> ``ModelPatcher``): Flux and SD3 (DiT
denoisers: text tokens in joint attention, no attn2 layers) and an SD1.5-config UNet without any
transformer (no cross-attention at all).
"""
import pytest
import torch

FLUX = {"image_model": "flux", "in_channels": 4, "out_channels": 4, "vec_in_dim": 8, "context_in_dim": 8,
        "hidden_size": 32, "mlp_ratio": 2.0, "num_heads": 2, "depth": 1, "depth_single_blocks": 1,
        "axes_dim": [4, 6, 6], "theta": 10000, "patch_size": 2, "qkv_bias": True, "guidance_embed": False}
SD3 = {"in_channels": 4, "out_channels": 4, "patch_size": 2, "depth": 1, "adm_in_channels": 8, "pos_embed_max_size": 8,
       "context_embedder_config": {"target": "torch.nn.Linear", "params": {"in_features": 8, "out_features": 64}}}
UNET_WITHOUT_ATTN2 = {"image_size": 32, "in_channels": 4, "out_channels": 4, "model_channels": 32,
                      "num_res_blocks": [1, 1], "channel_mult": [1, 2], "num_heads": 2, "context_dim": None,
                      "transformer_depth": [0, 0], "transformer_depth_output": [0, 0, 0, 0],
                      "transformer_depth_middle": -1, "use_linear_in_transformer": False, "adm_in_channels": None,
                      "use_temporal_attention": False}


def tiny_model(config_class: str, unet_config: dict):
    """A ModelPatcher around a tiny model of a ComfyUI model config, as the checkpoint loader builds one."""
    import comfy.model_patcher
    import comfy.supported_models

    config = getattr(comfy.supported_models, config_class)(dict(unet_config))
    config.set_inference_dtype(torch.float32, None)
    model = config.get_model({})
    return comfy.model_patcher.ModelPatcher(model, torch.device("cpu"), torch.device("cpu"))


def any_subject():
    from nested_attention.nested_attention_core.subject import NestedSubject

    return NestedSubject("dog", torch.ones(2, 8), {"input_1_0": (torch.ones(2, 32), torch.ones(2, 32))}, "sd15", 8)


@pytest.mark.parametrize("config_class, unet_config, model_class, denoiser", [
    ("Flux", FLUX, "comfy.model_base.Flux", "comfy.ldm.flux.model.Flux"),
    ("SD3", SD3, "comfy.model_base.SD3", "comfy.ldm.modules.diffusionmodules.mmdit.OpenAISignatureMMDITWrapper"),
    ("SD15", UNET_WITHOUT_ATTN2, "comfy.model_base.BaseModel",
     "comfy.ldm.modules.diffusionmodules.openaimodel.UNetModel"),
], ids=["flux", "sd3", "unet without attn2"])
def test_apply_names_the_model_type_and_the_supported_families(host, config_class, unet_config, model_class,
                                                               denoiser):
    from nested_attention.nested_attention_core.errors import UnsupportedModelError
    from nested_attention.nodes.apply import ApplyNestedAttention

    model = tiny_model(config_class, unet_config)
    assert f"{type(model.model).__module__}.{type(model.model).__name__}" == model_class
    with pytest.raises(UnsupportedModelError) as info:
        ApplyNestedAttention.execute(model, any_subject(), 1.0, 0.0, 1.0)
    msg = str(info.value)
    assert f"the model ({config_class}: {model_class}, denoiser {denoiser})" in msg, msg
    assert "no UNet cross-attention (attn2) layers" in msg, msg
    assert "supported are SD1.5, SDXL" in msg and "not Flux, SD3 or other DiT models" in msg, msg
    with pytest.raises(UnsupportedModelError):  # the trainer and every other caller ask the same question
        host.model_family(model)

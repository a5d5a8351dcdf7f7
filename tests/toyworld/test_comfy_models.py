"""The toy world's models in ComfyUI: registered beside the tests' tiny models, and the toy family is
what the pack finds in the committed base model."""
from __future__ import annotations

import torch


def test_toy_and_tiny_clip_vision_towers_share_one_recogniser(tiny_models, tmp_path):
    import comfy.clip_vision
    import comfy.utils

    from harness import comfy_registration, tiny_comfy

    from nested_attention.toyworld import comfy_models

    wrapped = comfy.clip_vision.load_clipvision_from_sd
    comfy_models.register_toy_models()
    tiny_comfy.register_test_models()
    assert comfy.clip_vision.load_clipvision_from_sd is wrapped
    tiny, toy = str(tiny_comfy.CLIP_VISION_TINY_CONFIG), str(comfy_models.TOY_CLIP_VISION_CONFIG)
    first = str(comfy_models.FIRST_EDITION_CLIP_VISION_CONFIG)
    assert sorted(comfy_registration.registered_clip_vision_configs()) == sorted([tiny, toy, first])
    assert comfy.clip_vision.load(str(tiny_models["clip_vision"])).image_size == 56

    for config, tokens in ((toy, 65), (first, 257)):  # random towers of the toy layouts: each loads as itself
        tower = comfy.clip_vision.ClipVisionModel(config)
        comfy.utils.save_torch_file(tower.model.state_dict(), str(tmp_path / "toy.safetensors"))
        loaded = comfy.clip_vision.load(str(tmp_path / "toy.safetensors"))
        features = loaded.encode_image(torch.rand(1, 64, 64, 3))["penultimate_hidden_states"]
        assert loaded.image_size == 64 and features.shape == (1, tokens, 64)


def test_the_toy_family_is_the_committed_toy_models(comfy_root):
    """The registry's toy entry (toyworld/family.py) is what the walk finds in the committed base model,
    and its encoder is the one the committed weights were trained with."""
    from nested_attention.nested_attention_core.weights import load_weights
    from nested_attention.nodes import host
    from nested_attention.toyworld.base_model import load_checkpoint
    from nested_attention.toyworld.family import TOY_FAMILY
    from nested_attention.toyworld.publish import BASE_FILES, COMMITTED_WEIGHTS, ENCODER_FILES

    model, _clip, _vae = load_checkpoint(COMMITTED_WEIGHTS / BASE_FILES["checkpoint"])
    assert host.model_family(model).name == TOY_FAMILY.name
    weights = load_weights(COMMITTED_WEIGHTS / ENCODER_FILES["nested_attention"])
    assert weights.config == TOY_FAMILY.encoder and sorted(weights.layers) == sorted(TOY_FAMILY.layers)

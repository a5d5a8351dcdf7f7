"""The tiny test models load and run through ComfyUI's real loaders, sampler and VAE."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch

# Runs in a fresh interpreter: nothing registered, cwd outside the repository.
_STOCK_HOST_SCRIPT = r"""
import importlib.util, json, sys
host_py, sd15, sdxl, clip_vision = sys.argv[1:5]
spec = importlib.util.spec_from_file_location("host", host_py)
host = importlib.util.module_from_spec(spec); spec.loader.exec_module(host)
host.bootstrap_comfy()
import comfy.clip_vision, comfy.model_base, comfy.sd, comfy.supported_models
out = {"test_models_registered": any(hasattr(m, "_nested_attention_registered") for m in comfy.supported_models.models)}
model, clip, vae, _ = comfy.sd.load_checkpoint_guess_config(sd15)
out["sd15"] = {"config": type(model.model.model_config).__qualname__, "model": type(model.model).__qualname__,
               "clip": type(clip.cond_stage_model).__qualname__, "vae": type(vae.first_stage_model).__qualname__}
try:
    model = comfy.sd.load_checkpoint_guess_config(sdxl)[0]
    out["sdxl"] = type(model.model.model_config).__qualname__
except Exception as e:
    out["sdxl"] = type(e).__qualname__
out["clip_vision"] = repr(comfy.clip_vision.load(clip_vision))
print("RESULT " + json.dumps(out))
"""


def _sample(model, clip, vae, seed=0, steps=2, cfg=4.0, size=64):
    import nodes

    positive = nodes.CLIPTextEncode().encode(clip, "a photo of sks dog")[0]
    negative = nodes.CLIPTextEncode().encode(clip, "")[0]
    latent = {"samples": torch.zeros(1, 4, size // 8, size // 8)}
    samples = nodes.common_ksampler(model, seed, steps, cfg, "euler", "normal", positive, negative, latent)[0]["samples"]
    return samples, vae.decode(samples), positive


def test_stock_comfyui_loads_the_sd15_mini_and_nothing_else(fixture_modules, tiny_models, tmp_path):
    proc = subprocess.run(
        [sys.executable, "-c", _STOCK_HOST_SCRIPT, str(fixture_modules.host.__file__),
         str(tiny_models["sd15"]), str(tiny_models["sdxl"]), str(tiny_models["clip_vision"])],
        cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-4000:]
    result = json.loads(proc.stdout.rsplit("RESULT ", 1)[1])
    assert result["test_models_registered"] is False
    assert result["sd15"] == {"config": "SD15", "model": "BaseModel", "clip": "SD1ClipModel", "vae": "TAESD"}
    assert result["sdxl"] == "RuntimeError"  # "Could not detect model type": needs register_test_models()
    assert result["clip_vision"] == "None"


def test_written_unets_are_what_comfyui_detects(fixture_modules, tiny_models):
    import comfy.model_detection
    import comfy.utils

    expected = {"sd15": fixture_modules.tiny_models.SD15_MINI_UNET, "sdxl": fixture_modules.tiny_models.SDXL_TINY_UNET}
    for key, unet_config in expected.items():
        sd = comfy.utils.load_torch_file(str(tiny_models[key]))
        assert comfy.model_detection.detect_unet_config(sd, "model.diffusion_model.") == unet_config, key


def test_writer_is_idempotent_and_deterministic(fixture_modules, tiny_models):
    before = {key: path.stat().st_mtime_ns for key, path in tiny_models.items()}
    assert fixture_modules.tiny_models.write_tiny_models(tiny_models["sd15"].parents[1]) == tiny_models
    assert {key: path.stat().st_mtime_ns for key, path in tiny_models.items()} == before

    first, second = (fixture_modules.tiny_models.build_clip_vision_tiny() for _ in range(2))
    assert first.keys() == second.keys()
    assert all(torch.equal(first[k], second[k]) for k in first)


def test_registration_is_idempotent(fixture_modules, tiny_models):
    import comfy.clip_vision
    import comfy.supported_models

    wrapped = comfy.clip_vision.load_clipvision_from_sd
    fixture_modules.test_host_models.register_test_models()
    models = comfy.supported_models.models
    marked = [m for m in models if m.__name__ == "TinySDXLForTests"]
    assert marked == [fixture_modules.test_host_models.registered_sdxl_test_config()]
    assert models.index(marked[0]) < models.index(comfy.supported_models.SDXL)
    assert comfy.clip_vision.load_clipvision_from_sd is wrapped


def test_registrations_from_two_copies_of_toy_models_share_one_recogniser(fixture_modules, tiny_models, pack, tmp_path):
    """The pack imports nodes/toy_models.py as part of its package, the fixtures load it by path: a
    CLIP vision config registered through either copy is recognised by the one installed loader."""
    import comfy.clip_vision
    import comfy.utils

    fixture_copy, pack_copy = fixture_modules.test_host_models.toy_models(), pack.nodes.toy_models
    assert fixture_copy is not pack_copy
    wrapped = comfy.clip_vision.load_clipvision_from_sd
    tiny, toy = str(fixture_modules.test_host_models.CLIP_VISION_TINY_CONFIG), str(pack_copy.TOY_CLIP_VISION_CONFIG)
    for copy in (fixture_copy, pack_copy):
        copy.register_toy_models()
        fixture_modules.test_host_models.register_test_models()
        assert comfy.clip_vision.load_clipvision_from_sd is wrapped
        assert sorted(copy.registered_clip_vision_configs()) == sorted([tiny, toy])
    assert comfy.clip_vision.load(str(tiny_models["clip_vision"])).image_size == 56

    toy_tower = comfy.clip_vision.ClipVisionModel(toy)  # a random tower of the toy layout
    comfy.utils.save_torch_file(toy_tower.model.state_dict(), str(tmp_path / "toy.safetensors"))
    assert comfy.clip_vision.load(str(tmp_path / "toy.safetensors")).image_size == 64


def test_sd15_mini_samples_and_decodes(comfy_root, tiny_models):
    import comfy.sd
    import comfy.supported_models

    model, clip, vae, _ = comfy.sd.load_checkpoint_guess_config(str(tiny_models["sd15"]))
    assert type(model.model.model_config) is comfy.supported_models.SD15
    samples, images, positive = _sample(model, clip, vae)
    assert positive[0][0].shape == (1, 77, 768)
    assert samples.shape == (1, 4, 8, 8) and torch.isfinite(samples).all()
    assert images.shape == (1, 64, 64, 3) and torch.isfinite(images).all()


def test_sdxl_tiny_samples_and_decodes(fixture_modules, tiny_models):
    import comfy.model_base
    import comfy.sd

    model, clip, vae, _ = comfy.sd.load_checkpoint_guess_config(str(tiny_models["sdxl"]))
    assert type(model.model.model_config) is fixture_modules.test_host_models.registered_sdxl_test_config()
    assert type(model.model) is comfy.model_base.SDXL
    samples, images, positive = _sample(model, clip, vae)
    assert positive[0][0].shape == (1, 77, 144)  # cat([CLIP-L 48, CLIP-G 96])
    assert positive[0][1]["pooled_output"].shape == (1, 96)
    assert model.model.diffusion_model.label_emb[0][0].in_features == 96 + 6 * 256  # pooled + size conds
    assert samples.shape == (1, 4, 8, 8) and torch.isfinite(samples).all()
    assert images.shape == (1, 64, 64, 3) and torch.isfinite(images).all()


def test_clip_vision_tiny_encodes(tiny_models):
    import comfy.clip_vision

    tower = comfy.clip_vision.load(str(tiny_models["clip_vision"]))
    assert tower is not None and tower.image_size == 56
    out = tower.encode_image(torch.rand(2, 80, 64, 3))
    assert out["penultimate_hidden_states"].shape == (2, 17, 32)  # 4x4 patches + class token
    assert out["last_hidden_state"].shape == (2, 17, 32)
    assert out["image_embeds"].shape == (2, 32)
    assert torch.isfinite(out["penultimate_hidden_states"]).all()
    assert not torch.equal(out["penultimate_hidden_states"], out["last_hidden_state"])


@pytest.mark.parametrize("config", ["clip_vision_config_vitl.json", "clip_vision_config_h.json", "clip_vision_config_g.json"])
def test_real_clip_vision_towers_are_not_taken_for_the_tiny_one(fixture_modules, tiny_models, comfy_root, config):
    import comfy.clip_model
    import comfy.ops
    import comfy.utils

    with torch.device("meta"):
        real = comfy.clip_model.CLIPVisionModelProjection(
            json.loads((comfy_root / "comfy" / config).read_text()), None, "meta", comfy.ops.manual_cast)
    is_tiny = fixture_modules.test_host_models.is_tiny_clip_vision
    assert not is_tiny(real.state_dict())
    assert is_tiny(comfy.utils.load_torch_file(str(tiny_models["clip_vision"])))

"""The tiny test models load and run through ComfyUI's real loaders, sampler and VAE."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from harness import tiny_models as tiny_writer

REPO_ROOT = Path(__file__).resolve().parents[2]

# Runs in a fresh interpreter, cwd outside the repository: ComfyUI loads the pack from its folder as it
# loads any custom node (a user's install); nothing of the toy world or the tests may be registered.
_STOCK_HOST_SCRIPT = r"""
import asyncio, json, sys
repo, sd15, sdxl, clip_vision = sys.argv[1:5]
from nested_attention.training.bootstrap import bootstrap_comfy
bootstrap_comfy()
import comfy.clip_vision, comfy.model_base, comfy.sd, comfy.supported_models, nodes
loader = comfy.clip_vision.load_clipvision_from_sd
assert asyncio.run(nodes.load_custom_node(repo)), "the pack did not load"
assert "ApplyNestedAttention" in nodes.NODE_CLASS_MAPPINGS
from nested_attention.nested_attention_core.families import families
out = {"registered": [m.__name__ for m in comfy.supported_models.models if m.__module__.startswith(("nested_attention", "harness"))],
       "clip_vision_loader_unchanged": comfy.clip_vision.load_clipvision_from_sd is loader,
       "families": [f.name for f in families()]}
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


def test_a_users_comfyui_with_the_pack_loads_the_sd15_mini_and_nothing_else(tiny_models, tmp_path):
    proc = subprocess.run(
        [sys.executable, "-c", _STOCK_HOST_SCRIPT, str(REPO_ROOT),
         str(tiny_models["sd15"]), str(tiny_models["sdxl"]), str(tiny_models["clip_vision"])],
        cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-4000:]
    result = json.loads(proc.stdout.rsplit("RESULT ", 1)[1])
    assert result["registered"] == [] and result["clip_vision_loader_unchanged"] is True
    assert result["families"] == ["sd15", "sdxl"]
    assert result["sd15"] == {"config": "SD15", "model": "BaseModel", "clip": "SD1ClipModel", "vae": "TAESD"}
    assert result["sdxl"] == "RuntimeError"  # "Could not detect model type": needs register_test_models()
    assert result["clip_vision"] == "None"


def test_written_unets_are_what_comfyui_detects(tiny_models):
    import comfy.model_detection
    import comfy.utils

    expected = {"sd15": tiny_writer.SD15_MINI_UNET, "sdxl": tiny_writer.SDXL_TINY_UNET}
    for key, unet_config in expected.items():
        sd = comfy.utils.load_torch_file(str(tiny_models[key]))
        assert comfy.model_detection.detect_unet_config(sd, "model.diffusion_model.") == unet_config, key


def test_writer_is_idempotent_and_deterministic(tiny_models):
    before = {key: path.stat().st_mtime_ns for key, path in tiny_models.items()}
    assert tiny_writer.write_tiny_models(tiny_models["sd15"].parents[1]) == tiny_models
    assert {key: path.stat().st_mtime_ns for key, path in tiny_models.items()} == before

    first, second = (tiny_writer.build_clip_vision_tiny() for _ in range(2))
    assert first.keys() == second.keys()
    assert all(torch.equal(first[k], second[k]) for k in first)


def test_registration_is_idempotent(tiny_models):
    import comfy.clip_vision
    import comfy.supported_models

    from harness import tiny_comfy

    wrapped = comfy.clip_vision.load_clipvision_from_sd
    tiny_comfy.register_test_models()
    models = comfy.supported_models.models
    assert [m for m in models if m.__name__ == "TinySDXLForTests"] == [tiny_comfy.TinySDXLForTests]
    assert models.index(tiny_comfy.TinySDXLForTests) < models.index(comfy.supported_models.SDXL)
    assert comfy.clip_vision.load_clipvision_from_sd is wrapped


def test_sd15_mini_samples_and_decodes(comfy_root, tiny_models):
    import comfy.sd
    import comfy.supported_models

    model, clip, vae, _ = comfy.sd.load_checkpoint_guess_config(str(tiny_models["sd15"]))
    assert type(model.model.model_config) is comfy.supported_models.SD15
    samples, images, positive = _sample(model, clip, vae)
    assert positive[0][0].shape == (1, 77, 768)
    assert samples.shape == (1, 4, 8, 8) and torch.isfinite(samples).all()
    assert images.shape == (1, 64, 64, 3) and torch.isfinite(images).all()


def test_sdxl_tiny_samples_and_decodes(tiny_models):
    from harness.tiny_comfy import TinySDXLForTests

    import comfy.model_base
    import comfy.sd

    model, clip, vae, _ = comfy.sd.load_checkpoint_guess_config(str(tiny_models["sdxl"]))
    assert type(model.model.model_config) is TinySDXLForTests
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
def test_real_clip_vision_towers_are_not_taken_for_the_tiny_one(tiny_models, comfy_root, config):
    import comfy.clip_model
    import comfy.ops
    import comfy.utils

    with torch.device("meta"):
        real = comfy.clip_model.CLIPVisionModelProjection(
            json.loads((comfy_root / "comfy" / config).read_text()), None, "meta", comfy.ops.manual_cast)
    from harness.tiny_comfy import is_tiny_clip_vision as is_tiny
    assert not is_tiny(real.state_dict())
    assert is_tiny(comfy.utils.load_torch_file(str(tiny_models["clip_vision"])))


_NOT_INSTALLED_SCRIPT = r"""
import asyncio, importlib.util, json, sys
comfy_root, custom_nodes = sys.argv[1:3]
sys.meta_path[:] = [f for f in sys.meta_path if "editable" not in repr(f)]  # as if never pip-installed
assert importlib.util.find_spec("nested_attention") is None
sys.path.insert(0, comfy_root)
import comfy.cli_args
comfy.cli_args.args.cpu = True
import nodes
assert asyncio.run(nodes.load_custom_node(custom_nodes + "/comfyui-nested-attention"))
import nested_attention
print("RESULT " + json.dumps({"nodes": sorted(k for k in nodes.NODE_CLASS_MAPPINGS if "NestedAttention" in k),
                              "package": nested_attention.__file__,
                              "one_copy": sys.modules["nested_attention.nodes.extension"].NODES[0].__module__}))
"""


def test_the_pack_loads_in_a_comfyui_where_it_is_not_installed(comfy_root, tmp_path):
    """A user's install: the folder in custom_nodes, never pip-installed; the root __init__ binds the
    package name to the folder by its path, and every module exists once, as nested_attention.*."""
    (tmp_path / "custom_nodes").mkdir()
    (tmp_path / "custom_nodes" / "comfyui-nested-attention").symlink_to(REPO_ROOT)
    proc = subprocess.run([sys.executable, "-c", _NOT_INSTALLED_SCRIPT, str(comfy_root), str(tmp_path / "custom_nodes")],
                          cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-4000:]
    result = json.loads(proc.stdout.rsplit("RESULT ", 1)[1])
    assert "ApplyNestedAttention" in result["nodes"] and len(result["nodes"]) == 7  # six nodes and the preview
    assert result["package"] == str(REPO_ROOT / "__init__.py")
    assert result["one_copy"] == "nested_attention.nodes.loader"

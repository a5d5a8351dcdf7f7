"""The toy base model as ComfyUI files: a fresh UNet, the frozen text encoder and CLIP vision tower,
and the single-file checkpoint (UNet + text encoder + TAESD-shaped VAE) that ComfyUI's own
``CheckpointLoaderSimple`` loads once the toy sizes are registered (``comfy_models.py``).

Every module is built with ComfyUI's own classes and initialised here (ComfyUI's layers skip
initialisation): trained parts get PyTorch's default init with zeroed residual outputs (as the SD
UNet zeroes them), frozen parts a seeded random init that keeps their input's information:

* text encoder: seeded random init, then trained with the vision tower (``clip_training.py``;
  the first edition kept it random and frozen); frozen while the UNet learns to read it. Token
  embeddings outside the world's vocabulary (the BPE tokens of its captions and attribute words,
  and the special tokens) are zero, which keeps the committed file small; any other word reads as
  "no word".
* CLIP vision tower (first edition only; the second trains it with the text encoder,
  ``clip_training.py``): random and frozen; 4 px patches of the 64 px image, so the patch
  projection (48 -> 64) loses nothing; position embeddings strong enough to survive the pre-norm.
"""
from __future__ import annotations

import math
import zlib
from pathlib import Path

import torch

from .comfy_runtime import load_host, toy_models

CHECKPOINT_NAME = "toyworld_base.safetensors"
CLIP_VISION_NAME = "toyworld_clip_vision.safetensors"


def seeded(namespace: str, name: str, seed: int) -> torch.Generator:
    return torch.Generator().manual_seed((seed * 1_000_003) ^ zlib.crc32(f"{namespace}/{name}".encode()))


def init_frozen_random(module: torch.nn.Module, namespace: str, seed: int, embedding_std: dict) -> None:
    """Seeded per tensor name: variance-preserving matrices, unit norms, zero biases; embeddings with
    the std given by the first key of ``embedding_std`` found in their name."""
    with torch.no_grad():
        for name, p in module.state_dict(keep_vars=True).items():
            if not p.dtype.is_floating_point:
                continue
            g, leaf = seeded(namespace, name, seed), name.rsplit(".", 1)[-1]
            std = next((s for key, s in embedding_std.items() if key in name), None)
            if std is not None:
                p.copy_(torch.randn(p.shape, generator=g) * std)
            elif leaf == "bias":
                p.zero_()
            elif p.ndim == 1:
                p.fill_(1.0)
            else:
                p.copy_(torch.randn(p.shape, generator=g) / math.sqrt(math.prod(p.shape[1:])))


def init_trainable(module: torch.nn.Module, seed: int) -> None:
    """PyTorch's default init for every layer (ComfyUI's ops skip it), residual outputs zeroed."""
    torch.manual_seed(seed)
    kinds = (torch.nn.Linear, torch.nn.Conv2d, torch.nn.GroupNorm, torch.nn.LayerNorm, torch.nn.Embedding)
    for m in module.modules():
        for kind in kinds:
            if isinstance(m, kind):
                kind.reset_parameters(m)
                break


def zero_residual_outputs(diffusion_model: torch.nn.Module) -> None:
    """Zero what the SD UNet zero-initialises: each ResBlock's last conv, each transformer's
    proj_out and the output conv, so that every block starts as the identity."""
    with torch.no_grad():
        for name, m in diffusion_model.named_modules():
            last_conv = name.endswith("out_layers.3") or name.endswith("proj_out") or name == "out.2"
            if last_conv and hasattr(m, "weight"):
                m.weight.zero_()
                if getattr(m, "bias", None) is not None:
                    m.bias.zero_()


def vocabulary_tokens(tokenizer, texts) -> set[int]:
    """Token ids of ``texts`` under ComfyUI's SD1 tokenizer, plus start/end/padding."""
    ids = {49406, 49407}
    for text in texts:
        for chunk in tokenizer.tokenize_with_weights(text)["l"]:
            ids.update(int(t[0]) for t in chunk)
    return ids


def new_text_encoder_state(texts, seed: int) -> dict:
    """The frozen text encoder's weights (ComfyUI ``clip_l.*`` keys), words outside ``texts`` zeroed."""
    import comfy.sd1_clip

    tm = toy_models()
    encoder = tm.ToyWorldClipModel(device="cpu", dtype=torch.float32)
    init_frozen_random(encoder, "text_encoder", seed, {"token_embedding": 1.0, "position_embedding": 0.5})
    table = encoder.clip_l.transformer.text_model.embeddings.token_embedding.weight
    keep = torch.zeros(table.shape[0], dtype=torch.bool)
    keep[sorted(vocabulary_tokens(comfy.sd1_clip.SD1Tokenizer(), texts))] = True
    with torch.no_grad():
        table[~keep] = 0
    return encoder.state_dict()


def toy_text_encoder(state: dict):
    """The toy ``ToyWorldClipModel`` (fp32) holding ``state`` (``clip_l.*`` keys)."""
    encoder = toy_models().ToyWorldClipModel(device="cpu", dtype=torch.float32)
    encoder.load_state_dict(state)
    return encoder


def new_clip_vision(seed: int, config=None):
    """A toy CLIP vision tower (ComfyUI ``ClipVisionModel`` of ``config``, default the toy world's), seeded."""
    import comfy.clip_vision

    tower = comfy.clip_vision.ClipVisionModel(str(config or toy_models().TOY_CLIP_VISION_CONFIG))
    init_frozen_random(tower.model, "clip_vision", seed, {"position_embedding": 0.5, "class_embedding": 1.0})
    return tower


def new_model(seed: int):
    """A fresh ``comfy.model_base.BaseModel`` of the toy config (fp32, default init)."""
    tm = toy_models()
    config = tm.ToyWorldSD15(dict(tm.TOY_UNET))
    config.set_inference_dtype(torch.float32, None)
    model = config.get_model({})
    init_trainable(model.diffusion_model, seed)
    zero_residual_outputs(model.diffusion_model)
    return model


def checkpoint_state(model, text_encoder_state: dict, vae_state: dict) -> dict:
    """The single-file checkpoint layout ComfyUI's CheckpointSave writes."""
    return model.state_dict_for_saving(text_encoder_state, vae_state, None)


def save_file(state: dict, path, metadata: dict, dtype=torch.float16) -> Path:
    """Floating tensors in ``dtype``, written atomically with string metadata."""
    from ..nested_attention_core.weights import write_safetensors

    load_host()
    state = {k: (v.to(dtype) if v.dtype.is_floating_point else v).contiguous() for k, v in state.items()}
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_safetensors(path, state, {k: str(v) for k, v in metadata.items()})
    return path


def load_checkpoint(path):
    """(ModelPatcher, CLIP, VAE) through ComfyUI's own loader, all fp32."""
    load_host()
    import comfy.sd

    patcher, clip, vae, _ = comfy.sd.load_checkpoint_guess_config(
        str(path), output_vae=True, output_clip=True, model_options={"dtype": torch.float32})
    return patcher, clip, vae


def load_clip_vision(path):
    load_host()
    import comfy.clip_vision

    return comfy.clip_vision.load(str(path))

"""Build the toy base model: VAE, frozen text encoder and CLIP vision tower, UNet; write the files.

``build_base`` writes, under ``out_dir/models`` (a ComfyUI ``models/`` layout):

* ``checkpoints/toyworld_base.safetensors``: UNet + text encoder + TAESD-shaped VAE, fp16, the
  single-file layout of ComfyUI's CheckpointSave;
* ``clip_vision/toyworld_clip_vision.safetensors``: the frozen CLIP vision tower, fp16.

The UNet is trained on the model as ComfyUI loads it: a provisional checkpoint (fresh UNet, the
trained VAE, the text encoder) is written first and loaded through ComfyUI's own loader, so a
file ComfyUI cannot read fails here, before any training time is spent. From ``grounding_from`` on
the grounding loss is added (``grounding_loss.py``: the caption's grounded words, ``grounding.py``,
draw their attention into their regions; the images' subject masks are pooled to the layer grids once).
"""
from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from .base_model import CHECKPOINT_NAME, CLIP_VISION_NAME, checkpoint_state, load_checkpoint, new_model, save_file
from .description import attribute_words
from .look import LOOK_FACTORS
from .scene import Scene, all_scenes, caption, caption_two
from .comfy_runtime import load_host
from .identity import DOMAINS
from .grounding import GroundedImages, caption_slots
from .grounding_loss import GroundingLoss, PooledRegions
from .look_gap import LookGap, look_gap_rows
from .progress import progress_bar
from .unet_training import UNetTrainConfig, encode_captions, train_unet
from .vae_training import VaeTrainConfig, new_taesd, raw_latents, reconstruction_error, train_taesd

VAE_FILE = "vae.safetensors"


@dataclass(frozen=True)
class BaseConfig:
    unet: UNetTrainConfig = field(default_factory=UNetTrainConfig)
    described_share: float = 0.5  # single-subject images whose caption names the attributes; the rest: class word
    seed: int = 0


def world_captions() -> list[str]:
    """Every class-word caption the world writes without a look (one subject of each domain, two
    subjects), each look phrase in one caption of its domain and one two-subject caption, then "";
    then every word of an appearance or look phrase (the text encoder's vocabulary). Small: the
    combinations of looks and scenes are not enumerated."""
    scenes = all_scenes()
    texts = [caption(d, s) for d in DOMAINS for s in scenes]
    texts += [caption_two(s, side) for s in scenes for side in ("left", "right")]
    for domain, factors in LOOK_FACTORS.items():
        for factor, values in factors.items():
            for value in values:
                texts += [caption(domain, Scene(**{factor: value})), caption_two(Scene(**{factor: value}), "left")]
    return sorted(set(texts)) + [""] + attribute_words()


def build_vae(images: np.ndarray, out_dir, config: VaeTrainConfig, bar=None,
              heldout_images: np.ndarray | None = None, subjects: np.ndarray | None = None) -> dict:
    """Train the VAE (``subjects``: bool [N, H, W], each image's subject pixels, for the subject-centred
    crops); write ``out_dir/vae.safetensors`` (fp32) and return its report."""
    load_host()
    out_dir = Path(out_dir)
    started = time.perf_counter()
    with progress_bar(bar, config.steps, "vae") as progress:
        vae = train_taesd(images, config, progress, subjects)
    check = heldout_images if heldout_images is not None else images[:256]
    report = {"seconds": round(time.perf_counter() - started, 1),
              "heldout_l1": round(reconstruction_error(vae, check[:256]), 4),
              "vae_scale": float(vae.vae_scale), "vae_shift": float(vae.vae_shift)}
    save_file(vae.state_dict(), out_dir / VAE_FILE, {"toyworld": "vae"}, dtype=torch.float32)
    (out_dir / "vae_report.json").write_text(json.dumps(report, indent=1) + "\n")
    return report


def load_vae(path):
    from safetensors.torch import load_file

    vae = new_taesd(0)
    vae.load_state_dict(load_file(str(path)))
    return vae.eval().requires_grad_(False)


def build_base(images: np.ndarray, captions: list[str], out_dir, config: BaseConfig, vae_dir, clip_dir,
               bar=None, grounded: GroundedImages | None = None) -> dict:
    """Train and write the base model from uint8 images [N, 64, 64, 3] and their captions, with the VAE
    of ``vae_dir`` (``build_vae``) and the toy CLIP of ``clip_dir`` (``clip_training.build_clip``).
    ``grounded``: the images' grounded phrases and subject masks, needed when the config's
    ``grounding_weight`` > 0.

    ``bar(total, desc)`` makes a progress bar (tqdm-like) or is None. Returns the report (also
    written to ``out_dir/base_report.json``)."""
    from safetensors.torch import load_file

    load_host()
    out_dir, clip_dir = Path(out_dir), Path(clip_dir)
    models_dir = out_dir / "models"
    report: dict = {"config": asdict(config), "images": int(len(images))}
    vae = load_vae(Path(vae_dir) / VAE_FILE)
    text_state = load_file(str(clip_dir / "text_encoder.safetensors"))
    save_file(load_file(str(clip_dir / "clip_vision.safetensors")), models_dir / "clip_vision" / CLIP_VISION_NAME,
              {"toyworld": "clip_vision", "trained": "contrastive, toyworld/clip_training.py"})

    # A provisional checkpoint with the fresh UNet, loaded back through ComfyUI's loader.
    provisional = out_dir / "provisional_base.safetensors"
    save_file(checkpoint_state(new_model(config.seed), text_state, vae.state_dict()), provisional,
              {"toyworld": "provisional"}, dtype=torch.float32)
    patcher, clip, comfy_vae = load_checkpoint(provisional)
    model = patcher.model

    started = time.perf_counter()
    latents = unet_latents(vae, model, images)
    unique = sorted(set(captions))
    if "" not in unique:
        unique.append("")
    index = {text: i for i, text in enumerate(unique)}
    conds = encode_captions(clip, unique)
    caption_ids = torch.tensor([index[c] for c in captions])
    report["latents"] = {"mean": float(latents.mean()), "std": float(latents.std()),
                         "seconds": round(time.perf_counter() - started, 1)}

    look_gap = new_look_gap(vae, model, clip) if config.unet.look_gap_every else None
    grounding = None
    if config.unet.grounding_weight > 0:
        grounding = grounding_loss(clip, patcher, unique, captions, grounded, config.unet.grounding_cap)

    started = time.perf_counter()
    with progress_bar(bar, config.unet.steps, "base: UNet") as progress:
        losses = train_unet(model, latents, caption_ids, conds, index[""], config.unet, progress, grounding, look_gap)
    denoising, terms = losses["denoising"], losses["grounding"]
    report["unet"] = {"seconds": round(time.perf_counter() - started, 1),
                      "loss_first_100": round(float(np.mean(denoising[:100])), 4),
                      "loss_last_100": round(float(np.mean(denoising[-100:])), 4),
                      "grounding_first_100": round(float(np.mean(terms[:100])), 4) if terms else None,
                      "grounding_last_100": round(float(np.mean(terms[-100:])), 4) if terms else None,
                      "parameters": sum(p.numel() for p in model.diffusion_model.parameters()),
                      "look_gap": losses["look_gap"]}

    checkpoint = save_file(checkpoint_state(model, clip.get_sd(), vae.state_dict()),
                           models_dir / "checkpoints" / CHECKPOINT_NAME,
                           {"toyworld": "base", "config": json.dumps(asdict(config))})
    provisional.unlink()
    report["files"] = {"checkpoint": str(checkpoint), "clip_vision": str(models_dir / "clip_vision" / CLIP_VISION_NAME)}
    (out_dir / "base_report.json").write_text(json.dumps(report, indent=1) + "\n")
    return report


def grounding_loss(clip, patcher, unique: list[str], captions: list[str], grounded: GroundedImages | None,
                   cap: float) -> GroundingLoss:
    """The grounding loss over the training images: each unique caption's grounded phrases (token
    positions by ``grounding.caption_slots``), the images' masks pooled once per layer grid."""
    from .errors import GroundingError

    if grounded is None or len(grounded.phrases) != len(captions):
        have = "none" if grounded is None else f"{len(grounded.phrases)}"
        raise GroundingError(f"the grounding loss needs each image's grounded phrases and masks ({have} given for "
                             f"{len(captions)} images): pass grounded=GroundedImages(...), or set grounding_weight=0")
    phrases_of: dict[str, list] = {}
    for text, phrases in zip(captions, grounded.phrases):
        if phrases_of.setdefault(text, list(phrases)) != list(phrases):
            raise GroundingError(f"caption {text!r} is grounded two ways ({phrases_of[text]} and {list(phrases)}): "
                                 "ground each image from the source its caption was written from")
    tokens, regions = caption_slots(clip, unique, [phrases_of.get(text, []) if text else [] for text in unique])
    return GroundingLoss(tokens, regions, PooledRegions(grounded.masks), cap, patcher)


def new_look_gap(vae, model, clip) -> LookGap:
    """The look gap's fixed rows (``look_gap.py``) as the UNet takes them: latents through this VAE,
    right and wrong captions through this text encoder."""
    rows = look_gap_rows()
    return LookGap(unet_latents(vae, model, np.stack([r.image for r in rows])),
                   encode_captions(clip, [r.right for r in rows]), encode_captions(clip, [r.wrong for r in rows]),
                   [r.factor for r in rows])


def unet_latents(vae, model, images: np.ndarray) -> torch.Tensor:
    """uint8 images [N, H, W, 3] as the UNet takes them: raw encoder output -> what the VAE node outputs
    (TAESD's own scale/shift) -> ``process_latent_in``."""
    return model.process_latent_in(raw_to_vae_latent(vae, raw_latents(vae, images)))


def raw_to_vae_latent(vae, raw: torch.Tensor) -> torch.Tensor:
    """TAESD.encode's output for a raw encoder output."""
    return raw / vae.vae_scale.float() + vae.vae_shift.float()

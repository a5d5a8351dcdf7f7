"""Features from the frozen host models: VAE latents, text conditioning, CLIP vision features.

``HostEncoders`` calls the host's own VAE, CLIP and CLIP vision, one image or prompt at a time (so a
feature never depends on what it was batched with), and counts its calls. ``FeatureStore`` puts the
cache in front of it: a feature is computed once, stored as float16, and read back from then on; it
is rounded the same way whether or not a cache folder is used, so a run with a warm cache sees
exactly the features of a run with a cold one.
"""
from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass
from typing import Optional

import torch

from ..nested_attention_core.prompt import PromptWords

from ..nodes import host
from .cache import FeatureCache, as_stored, feature_key
from .data import TargetCrop, TrainImage, reference_pixels, target_crop, target_mask, target_pixels

FEATURE_DTYPE = torch.float16


def literal_text(text: str) -> str:
    """``text`` escaped so that the host tokenizer reads it as it is written: ComfyUI's prompt weighting, ``(dog:1.2)``
    and ``(dog)`` (x1.1), does not apply to what the trainer encodes (captions, sample prompts); parentheses and
    numbers are words like any other, as captions are read by other trainers (kohya's without
    --weighted_captions, diffusers')."""
    return text.replace("(", "\\(").replace(")", "\\)")


@dataclass(frozen=True)
class TextFeatures:
    cond: torch.Tensor  # [1, L, context_dim]
    pooled: Optional[torch.Tensor]  # [1, P] (SDXL's pooled CLIP-G output), None when the model has none
    words: PromptWords  # words of the prompt and their context positions
    token_ids: dict  # tokenizer name ("l", "g") -> [L] token ids


@dataclass(frozen=True)
class LatentFeatures:
    latent: torch.Tensor  # [1, C, h, w], the VAE's raw latent (before the model's process_latent_in)
    mask: Optional[torch.Tensor]  # [1, 1, h, w] subject mask at latent size, in [0, 1]
    crop: TargetCrop


class HostEncoders:
    """The frozen host models that make features, each call counted in ``calls``."""

    def __init__(self, clip, vae, clip_vision):
        self.clip, self.vae, self.clip_vision = clip, vae, clip_vision
        self.calls = Counter()

    def latent(self, pixels: torch.Tensor) -> torch.Tensor:
        self.calls["vae"] += 1
        return self.vae.encode(pixels[..., :3])

    def text(self, text: str) -> tuple[torch.Tensor, Optional[torch.Tensor], dict, PromptWords]:
        self.calls["text"] += 1
        tokens, words = host.prompt_words(self.clip, text)
        cond, pooled = self.clip.encode_from_tokens(tokens, return_pooled=True)
        ids = {name: torch.tensor([t[0] for chunk in chunks for t in chunk], dtype=torch.int64)
               for name, chunks in tokens.items()}
        return cond, pooled, ids, words

    def image(self, pixels: torch.Tensor) -> torch.Tensor:
        self.calls["clip_vision"] += 1
        return host.reference_features(self.clip_vision, pixels)


class FeatureStore:
    """Cached features of training images, references and prompts."""

    def __init__(self, encoders: HostEncoders, cache: FeatureCache, checkpoint_id: str, clip_vision_id: str,
                 resolution: int):
        self.encoders, self.cache = encoders, cache
        self.checkpoint_id, self.clip_vision_id, self.resolution = checkpoint_id, clip_vision_id, resolution

    def latent(self, image: TrainImage) -> LatentFeatures:
        _, crop = target_crop(image.size, self.resolution)
        key = feature_key("latent", self.checkpoint_id, image.digest, image.mask_digest, self.resolution)
        found = self.cache.load("latent", key)
        if found is None:
            pixels, crop = target_pixels(image, self.resolution)
            tensors = {"latent": as_stored(self.encoders.latent(pixels), FEATURE_DTYPE)}
            mask = target_mask(image, self.resolution)
            if mask is not None:
                size = tensors["latent"].shape[-2:]
                tensors["mask"] = as_stored(torch.nn.functional.interpolate(mask[:, None], size=size, mode="area"),
                                            FEATURE_DTYPE)
            self.cache.save("latent", key, tensors, {})
        else:
            tensors = found[0]
        mask = tensors.get("mask")
        return LatentFeatures(tensors["latent"].float(), mask.float() if mask is not None else None, crop)

    def text(self, text: str) -> TextFeatures:
        text = literal_text(text)  # (before the key: an entry made with weighting is never read for it)
        key = feature_key("text", self.checkpoint_id, text)
        found = self.cache.load("text", key)
        if found is None:
            cond, pooled, ids, words = self.encoders.text(text)
            tensors = {"cond": as_stored(cond, FEATURE_DTYPE)}
            if pooled is not None:
                tensors["pooled"] = as_stored(pooled, FEATURE_DTYPE)
            tensors.update({f"token_ids.{name}": t for name, t in ids.items()})
            metadata = {"words": json.dumps([[w, list(p)] for w, p in words.words]), "length": str(words.length),
                        "text": text}
            self.cache.save("text", key, tensors, metadata)
        else:
            tensors, metadata = found
            words = PromptWords(tuple((w, tuple(p)) for w, p in json.loads(metadata["words"])), int(metadata["length"]))
        pooled = tensors.get("pooled")
        ids = {k.split(".", 1)[1]: t for k, t in tensors.items() if k.startswith("token_ids.")}
        return TextFeatures(tensors["cond"].float(), pooled.float() if pooled is not None else None, words, ids)

    def reference(self, image: TrainImage, view: Optional[int], masked: bool = True) -> torch.Tensor:
        """CLIP vision penultimate hidden states of a reference image (or crop), masked or whole: [1, T, F]."""
        mask_digest = image.mask_digest if masked else None  # an image without mask: the same entry either way
        key = feature_key("clip_vision", self.clip_vision_id, image.digest, mask_digest, view)
        found = self.cache.load("clip_vision", key)
        if found is None:
            features = as_stored(self.encoders.image(reference_pixels(image, view, masked)), FEATURE_DTYPE)
            self.cache.save("clip_vision", key, {"features": features}, {})
        else:
            features = found[0]["features"]
        return features.float()

"""Images from the toy base through ComfyUI, with a subject applied by ours or a baseline.

The evaluation drives ComfyUI's own pieces in process, as a workflow would: the checkpoint
through ``CheckpointLoaderSimple``'s loader, the CLIP vision tower, the pack's text encoding
(prompt words on the conditioning), ``host.apply_subject`` (what ApplyNestedAttention
calls; a baseline only names its attention rule), ``common_ksampler`` (KSampler) and the VAE.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from .comfy_runtime import load_host


@dataclass(frozen=True)
class SamplerSettings:
    steps: int = 20
    cfg: float = 5.0
    sampler: str = "euler"
    scheduler: str = "normal"


@dataclass(eq=False)
class ToyHost:
    """The loaded toy base: ComfyUI ModelPatcher, CLIP, VAE and CLIP vision."""
    model: object
    clip: object
    vae: object
    clip_vision: object
    family: str
    _conditioning: dict = field(default_factory=dict)  # text -> CONDITIONING (each prompt is encoded once)

    @classmethod
    def load(cls, checkpoint: Path, clip_vision: Path) -> "ToyHost":
        from .base_model import load_checkpoint, load_clip_vision

        load_host()
        import comfy.utils

        comfy.utils.PROGRESS_BAR_ENABLED = False  # one bar for the evaluation, not one per image
        model, clip, vae = load_checkpoint(checkpoint)
        from ..nodes import host

        return cls(model, clip, vae, load_clip_vision(clip_vision), host.model_family(model).name)

    def positive(self, text: str):
        """CONDITIONING with the prompt's words, as NestedAttentionTextEncode makes it."""
        if ("positive", text) not in self._conditioning:
            from ..nodes import host

            self._conditioning["positive", text] = host.encode_prompt(self.clip, text)
        return self._conditioning["positive", text]

    def negative(self, text: str = ""):
        if ("negative", text) not in self._conditioning:
            self._conditioning["negative", text] = self.clip.encode_from_tokens_scheduled(self.clip.tokenize(text))
        return self._conditioning["negative", text]

    @torch.no_grad()
    def features(self, images: np.ndarray, masks: np.ndarray | None = None) -> torch.Tensor:
        """CLIP vision penultimate features of uint8 reference images [R, H, W, 3], as the Subject node
        encodes them; ``masks`` (uint8 [R, H, W], 255 = subject) blank the background first, as the
        Subject node's mask input and the trainer's masked references do (``host.reference_features``)."""
        from ..nodes import host

        mask = None if masks is None else torch.from_numpy(np.array(masks, dtype=np.float32)) / 255
        return host.reference_features(self.clip_vision, _to_float(images), mask)

    def subject(self, method, encoder, references: np.ndarray, word: str, masks: np.ndarray | None = None):
        """One subject encoded by ``method`` (ours: the trainer's NESTED_TRAINING) from its references (and masks)."""
        with torch.inference_mode():
            return method.subject(encoder, self.features(references, masks), word, self.family)

    def apply(self, model, subject, rule: str, strength: float = 1.0, region=None):
        """``model`` with ``subject`` applied by ``rule`` at ``strength`` (what ApplyNestedAttention calls)."""
        from ..nodes import host

        return host.apply_subject(model, subject, strength, region=region, rule=rule)

    def with_subject(self, model, method, encoder, references: np.ndarray, word: str, region=None,
                     strength: float = 1.0, masks: np.ndarray | None = None):
        """``model`` with one subject encoded and applied by ``method``."""
        return self.apply(model, self.subject(method, encoder, references, word, masks), method.rule, strength, region)

    @torch.no_grad()
    def sample(self, model, text: str, seed: int, settings: SamplerSettings, size: int = 64) -> np.ndarray:
        """One image (uint8 [size, size, 3]) through KSampler's own code path."""
        import nodes

        latent = {"samples": torch.zeros(1, 4, size // 8, size // 8)}
        out = nodes.common_ksampler(model, seed, settings.steps, settings.cfg, settings.sampler, settings.scheduler,
                                    self.positive(text), self.negative(), latent)[0]["samples"]
        return _to_uint8(self.vae.decode(out))[0]

    @torch.no_grad()
    def round_trip(self, images: np.ndarray) -> np.ndarray:
        """uint8 images [n, H, W, 3] encoded and decoded by the base's VAE: what its latents can hold."""
        return _to_uint8(self.vae.decode(self.vae.encode(_to_float(images))))


def _to_float(images: np.ndarray) -> torch.Tensor:
    """uint8 [n, H, W, 3] -> ComfyUI IMAGE, float [n, H, W, 3] in 0..1."""
    return torch.from_numpy(np.array(images, dtype=np.float32)) / 255


def _to_uint8(images: torch.Tensor) -> np.ndarray:
    return (images.clamp(0, 1).numpy() * 255).round().astype(np.uint8)

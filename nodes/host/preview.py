"""Attention maps of applied subjects on a sampled image: the recorder and the probe run.

The Preview node's one host call, ``record_attention_maps``: the sampled image is encoded, noised
again to ``steps`` noise levels of the model's schedule (one seed), and denoised once per level with
the positive prompt only (cfg 1). During these calls, and only then, a ``MapRecorder`` sits in the
transformer options under ``RECORDER_KEY``; each of our attn2 patches hands it the layer's inputs,
and it keeps, per subject word, layer group (down/mid/up) and step, two maps upsampled to the
image: the word's share of the outer attention (P_qs*) and the change of the layer output the
subject makes. Normal sampling never sees a recorder, so it does no extra work.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from ...nested_attention_core.maps import output_change, word_share
from ...nested_attention_core.rules import rule_named
from .patch import RECORDER_KEY

GROUPS = {"input": "down", "middle": "mid", "output": "up"}  # UNet block -> layer group
KINDS = ("attention", "change")


@dataclass
class MapRecorder:
    """Sums of per-layer maps, keyed (word, group, step, kind) -> [batch, H, W] at image size."""

    size: tuple[int, int]
    step: int = 0
    sums: dict = field(default_factory=dict)
    counts: dict = field(default_factory=dict)
    words: list = field(default_factory=list)

    def __deepcopy__(self, memo):
        return self  # ModelPatcher.clone deep-copies model options; the recorder is shared on purpose

    def record(self, layer_id: str, extra: dict, grid: tuple[int, int], q, k, v, base, applied) -> None:
        group = GROUPS.get(extra.get("block", (layer_id.rsplit("_", 2)[0],))[0], layer_id.rsplit("_", 2)[0])
        with torch.no_grad():
            for binding, subject in applied:
                share = word_share(q, k, extra["n_heads"], subject.token_mask)
                alone = rule_named(binding.rule)(base, q, k, v, extra["n_heads"], [subject])
                change = output_change(alone, base)
                if binding.word not in self.words:
                    self.words.append(binding.word)
                for kind, values in zip(KINDS, (share, change)):
                    self._add((binding.word, group, self.step, kind), values, grid)

    def _add(self, key, values: torch.Tensor, grid: tuple[int, int]) -> None:
        maps = values.reshape(values.shape[0], 1, *grid)
        maps = F.interpolate(maps, size=self.size, mode="bilinear", align_corners=False)[:, 0].cpu()
        self.sums[key] = self.sums.get(key, 0) + maps
        self.counts[key] = self.counts.get(key, 0) + 1

    def maps(self, word: str, group: str, step: int, kind: str) -> torch.Tensor | None:
        """Mean over the group's layers [batch, H, W], or None if nothing was recorded."""
        key = (word, group, step, kind)
        return self.sums[key] / self.counts[key] if key in self.sums else None

    def groups(self) -> list[str]:
        seen = {key[1] for key in self.sums}
        return [g for g in GROUPS.values() if g in seen] + sorted(seen - set(GROUPS.values()))


def record_attention_maps(model, positive, vae, image: torch.Tensor, steps: int, seed: int) -> tuple[MapRecorder, list]:
    """Probe ``model`` (subjects applied) on ``image`` [B, H, W, C] at ``steps`` noise levels.

    Returns the recorder and the probed sigmas (high to low)."""
    import comfy.sample
    import comfy.samplers

    latent = vae.encode(image[..., :3])
    recorder = MapRecorder(size=tuple(image.shape[1:3]))
    probing = model.clone()
    probing.model_options["transformer_options"][RECORDER_KEY] = recorder
    sigmas = comfy.samplers.calculate_sigmas(model.get_model_object("model_sampling"), "normal", steps)[:steps]
    noise = comfy.sample.prepare_noise(latent, seed)

    def probe(model_k, x, schedule, extra_args=None, callback=None, disable=None):
        sampling = model_k.inner_model.inner_model.model_sampling
        ones = x.new_ones([x.shape[0]])
        for step, sigma in enumerate(schedule[:-1]):
            recorder.step = step
            noisy = sampling.noise_scaling(sigma, noise.to(x), x)
            model_k(noisy, sigma * ones, **(extra_args or {}))
        return x

    # zero noise: the sampler starts from the clean latent, and ``probe`` noises it per level
    comfy.sample.sample_custom(probing, torch.zeros_like(latent), 1.0, comfy.samplers.KSAMPLER(probe),
                               torch.cat([sigmas, sigmas.new_zeros(1)]), positive, positive, latent,
                               disable_pbar=True, seed=seed)
    return recorder, [float(s) for s in sigmas]

"""Where the grounded words' cross-attention goes in the toy base, per layer.

Held-out renders (class-only captions, random scenes; one-subject renders and person-and-dog
renders) are VAE-encoded, noised at a few fixed timesteps of the model's schedule and denoised once
each with their caption's conditioning (the pack's ``host.encode_prompt``). In every attn2 layer an
attn2 replace patch (the host's public hook, ``set_model_attn2_replace``) returns the host's own
attention unchanged and records, per query, the outer-attention share (``maps.word_share``: softmax
over the whole context, mean over heads) of token groups: the grounded phrases of the caption
(``grounding.grounded_phrases``, positions by ``grounding.phrase_masks``: the class word(s), the
background phrase), the start token, the end/padding tokens. Per layer and image a share is
averaged over a region (the mask pooled by area to the layer's grid, used as weights); then
everything is averaged over images and timesteps. Keys (``KEYS``):

* one subject: ``inside`` / ``outside`` (the class word inside vs outside the subject's mask),
  ``background_background`` / ``background_subject`` (the background phrase inside the background
  vs inside the subject), ``start``, ``end_padding`` (whole image), ``end_padding_inside`` /
  ``_outside``;
* two subjects: ``two_own`` / ``two_other`` (each class word inside its own subject's mask vs inside
  the other subject's, mean of "person" and "dog").
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ..nested_attention_core.maps import word_share
from .grounding import grounded_phrases, phrase_masks

TIMESTEPS = (200, 500, 800)
SINGLE_KEYS = ("inside", "outside", "background_background", "background_subject", "start", "end_padding",
               "end_padding_inside", "end_padding_outside")
TWO_KEYS = ("two_own", "two_other")
KEYS = SINGLE_KEYS + TWO_KEYS


class ShareRecorder:
    """attn2 replace of every layer: the host's attention, plus each token group's share per query.

    groups: {name: bool [b, n_text]} token masks of the batch rows. After a UNet call, ``shares``
    holds {layer id: {name: [b, n_q]}} and ``grids`` {layer id: (h, w)} of the layer's queries."""

    def __init__(self, groups: dict[str, torch.Tensor]):
        self.groups = groups
        self.shares: dict[str, dict[str, torch.Tensor]] = {}
        self.grids: dict[str, tuple[int, int]] = {}

    def patch(self, layer_id: str):
        from ..nodes import host

        def attn2(q, k, v, extra):
            shape = extra["activations_shape"]  # [b, c, h, w] of the layer's SpatialTransformer input
            self.grids[layer_id] = (int(shape[-2]), int(shape[-1]))
            self.shares[layer_id] = {name: word_share(q, k, extra["n_heads"], mask.to(q.device))
                                     for name, mask in self.groups.items()}
            return host.host_attention(q, k, v, extra)

        return attn2


@torch.no_grad()
def record_shares(model, x0: torch.Tensor, timestep: int, context: torch.Tensor, groups: dict, noise: torch.Tensor
                  ) -> ShareRecorder:
    """One UNet call of ``model`` (ModelPatcher) on ``x0`` (the model's latents) noised to ``timestep``
    with ``noise``, text ``context`` [b, n_text, width]; returns the recorder of the shares of ``groups``."""
    from ..nodes import host

    recorder = ShareRecorder(groups)
    probing = model.clone()
    for layer in host.model_layers(model):
        probing.set_model_attn2_replace(recorder.patch(layer.id), *layer.key)
    sampling = model.get_model_object("model_sampling")
    sigma = sampling.sigma(torch.tensor([float(timestep)])).float().expand(x0.shape[0])
    x_noisy = sampling.noise_scaling(sigma.view(-1, 1, 1, 1), noise, x0)
    options = dict(probing.model_options["transformer_options"], cond_or_uncond=[0], sigmas=sigma)
    probing.model.apply_model(x_noisy, sigma, c_crossattn=context, transformer_options=options)
    return recorder


def masked_mean(share: torch.Tensor, mask: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
    """share [b, n_q] (queries row-major on ``grid``), mask [b, H, W] in [0, 1] -> [b]: the share's mean
    weighted by the mask pooled by area to ``grid`` (NaN where the weights sum to 0)."""
    m = F.adaptive_avg_pool2d(mask[:, None].float(), grid).flatten(1)
    return (m * share.float()).sum(1) / m.sum(1)


def mask_shares(share: torch.Tensor, mask: torch.Tensor, grid: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
    """(inside [b], outside [b]): ``masked_mean`` over the mask and over its complement."""
    return masked_mean(share, mask, grid), masked_mean(share, 1 - mask.float(), grid)


def prompt_groups(clip, text: str, grounded: list[tuple[str, str]]) -> tuple[list, dict[str, torch.Tensor]]:
    """CONDITIONING of ``text`` (``host.encode_prompt``) and its token groups, bool [n_text] each: one
    per region of the grounded phrases, its first phrase (``grounded``: ``grounding.grounded_phrases`` of
    the caption's source: ``subject`` / ``person`` / ``pet`` is the class word, not the look phrases
    grounded after it; ``background`` the background phrase), ``start`` (start tokens), ``end_padding``
    (the other positions of no word: end and padding), and ``word:<i>:<text>`` for every word."""
    from ..nodes import host

    tokens, words = host.prompt_words(clip, text)
    name = "l" if "l" in tokens else next(iter(tokens))
    ids = torch.tensor([int(t[0]) for chunk in tokens[name] for t in chunk])
    start = ids == getattr(clip.tokenizer, f"clip_{name}").start_token
    in_word = torch.zeros(words.length, dtype=torch.bool)
    groups = {}
    for (_, region), mask in zip(grounded, phrase_masks(words, [p for p, _ in grounded])):
        groups.setdefault(region, mask)  # a region's first phrase: its class word (look phrases follow it)
    groups["start"] = start
    for i, (text_i, positions) in enumerate(words.words):
        groups[f"word:{i}:{text_i}"] = torch.zeros(words.length, dtype=torch.bool)
        groups[f"word:{i}:{text_i}"][list(positions)] = True
        in_word[list(positions)] = True
    groups["end_padding"] = ~in_word & ~start
    return host.encode_prompt(clip, text), groups


def heldout_renders(ids_per_domain: int, seed: int):
    """[(domains, scene, caption, uint8 image [64, 64, 3], {region: mask [64, 64] in [0, 1]})] of held-out
    identities: one-subject renders of each domain (region ``subject``), then person-and-dog renders
    (regions ``person``, ``pet``); every mask set also has ``background`` (outside every subject)."""
    from .identity import DOMAINS, heldout_ids, sample_identity
    from .render import render_two, render_with_mask
    from .scene import caption, caption_two, sample_scene

    def masks(**subjects):
        out = {name: np.asarray(mask, dtype=np.float32) / 255 for name, mask in subjects.items()}
        return {**out, "background": 1 - np.max(np.stack(list(out.values())), axis=0)}

    out = []
    for domain in DOMAINS:
        for identity_id in heldout_ids()[:ids_per_domain]:
            scene = sample_scene("attention_share", seed, domain, identity_id)
            rendered = render_with_mask(sample_identity(domain, identity_id), scene, seed * 10_007 + identity_id)
            out.append(((domain,), scene, caption(domain, scene), np.asarray(rendered.image),
                        masks(subject=rendered.mask)))
    for n, identity_id in enumerate(heldout_ids()[:ids_per_domain]):
        scene = sample_scene("attention_share_two", seed, identity_id)
        side = ("left", "right")[n % 2]
        rendered = render_two(sample_identity("person", identity_id), sample_identity("pet", identity_id), scene,
                              seed * 10_007 + identity_id, person_side=side)
        out.append((DOMAINS, scene, caption_two(scene, side), np.asarray(rendered.image),
                    masks(person=rendered.person_mask, pet=rendered.pet_mask)))
    return out


def _per_image(shares: dict, masks: dict, grid) -> dict[str, torch.Tensor]:
    """One layer's shares of a batch -> {key: [b]} (``SINGLE_KEYS`` for one-subject rows, ``TWO_KEYS`` for two)."""
    if "subject" in shares:
        inside, outside = mask_shares(shares["subject"], masks["subject"], grid)
        end_inside, end_outside = mask_shares(shares["end_padding"], masks["subject"], grid)
        return {"inside": inside, "outside": outside,
                "background_background": masked_mean(shares["background"], masks["background"], grid),
                "background_subject": masked_mean(shares["background"], masks["subject"], grid),
                "start": shares["start"].mean(1), "end_padding": shares["end_padding"].mean(1),
                "end_padding_inside": end_inside, "end_padding_outside": end_outside}
    own = (masked_mean(shares["person"], masks["person"], grid) + masked_mean(shares["pet"], masks["pet"], grid)) / 2
    other = (masked_mean(shares["person"], masks["pet"], grid) + masked_mean(shares["pet"], masks["person"], grid)) / 2
    return {"two_own": own, "two_other": other}


@torch.no_grad()
def attention_share(checkpoint: Path, ids_per_domain: int = 16, timesteps=TIMESTEPS, seed: int = 0) -> dict:
    """``attention_share_of`` the base ``checkpoint``."""
    from .base_model import load_checkpoint
    from .comfy_runtime import load_host

    load_host()
    return attention_share_of(*load_checkpoint(checkpoint), ids_per_domain, timesteps, seed)


@torch.no_grad()
def attention_share_of(model, clip, vae, ids_per_domain: int = 16, timesteps=TIMESTEPS, seed: int = 0) -> dict:
    """The grounded words' attention shares per attn2 layer of a loaded base (ModelPatcher, CLIP, VAE):
    {"layers": {layer id: {key: share}}, "mean": {key: mean over layers}, "images": n (one-subject),
    "two_subject_images": n, "timesteps": [...]}, keys ``KEYS`` (the module's docstring)."""
    from ..nodes import host

    renders = heldout_renders(ids_per_domain, seed)
    generator = torch.Generator().manual_seed(seed)
    sums: dict[str, dict[str, list]] = {}
    for two in (False, True):
        batch = [r for r in renders if (len(r[0]) == 2) == two]
        conds, groups = zip(*(prompt_groups(clip, text, grounded_phrases(domains, scene))
                              for domains, scene, text, _, _ in batch))
        context = torch.cat([c[0][0] for c in conds])
        names = ("person", "pet", "background", "start", "end_padding") if two else \
            ("subject", "background", "start", "end_padding")
        groups = {key: torch.stack([g[key] for g in groups]) for key in names}
        images = torch.from_numpy(np.stack([r[3] for r in batch])).float() / 255
        masks = {key: torch.from_numpy(np.stack([r[4][key] for r in batch])) for key in batch[0][4]}
        x0 = model.model.process_latent_in(vae.encode(images)).float()
        for timestep in timesteps:
            noise = torch.randn(x0.shape, generator=generator)
            recorder = record_shares(model, x0, timestep, context, groups, noise)
            for layer_id, shares in recorder.shares.items():
                for key, values in _per_image(shares, masks, recorder.grids[layer_id]).items():
                    sums.setdefault(layer_id, {}).setdefault(key, []).append(values)
    order = [layer.id for layer in host.model_layers(model)]
    layers = {layer_id: {key: float(torch.cat(sums[layer_id][key]).nanmean()) for key in KEYS} for layer_id in order}
    mean = {key: float(np.mean([layers[layer_id][key] for layer_id in order])) for key in KEYS}
    singles = sum(len(r[0]) == 1 for r in renders)
    return {"layers": layers, "mean": mean, "images": singles, "two_subject_images": len(renders) - singles,
            "timesteps": [int(t) for t in timesteps]}


TABLE_COLUMNS = (("subject word: inside / outside its subject", ("inside", "outside")),
                 ("background phrase: in background / on subject", ("background_background", "background_subject")),
                 ("two subjects: class word on own / other subject", ("two_own", "two_other")))


def format_share_table(before: dict, after: dict) -> str:
    """Markdown: one row per layer (and the mean); per pair of shares (``TABLE_COLUMNS``) the cell
    reads "before -> after", e.g. "3.0 / 3.0 % -> 30.9 / 1.7 %"."""
    head = "| layer | " + " | ".join(name for name, _ in TABLE_COLUMNS) + " |\n|---|" + "---|" * len(TABLE_COLUMNS)
    rows = [(layer_id, before["layers"][layer_id], after["layers"].get(layer_id)) for layer_id in before["layers"]]
    rows.append(("mean", before["mean"], after["mean"]))

    def pair(values, keys):
        if values is None or any(key not in values for key in keys):
            return "-"
        return " / ".join(f"{100 * values[key]:.1f}" for key in keys) + " %"

    lines = [head]
    for layer_id, b, a in rows:
        lines.append(f"| {layer_id} | " + " | ".join(f"{pair(b, keys)} -> {pair(a, keys)}" for _, keys in TABLE_COLUMNS)
                     + " |")
    return "\n".join(lines)

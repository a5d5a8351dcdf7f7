"""Where the subject word's cross-attention goes in the toy base, per layer.

Held-out renders (class-only captions, random scenes) are VAE-encoded, noised at a few fixed
timesteps of the model's schedule and denoised once each with their caption's conditioning (the
pack's ``host.encode_prompt``). In every attn2 layer an attn2 replace patch (the host's public hook,
``set_model_attn2_replace``) returns the host's own attention unchanged and records, per query, the
outer-attention share (``maps.word_share``: softmax over the whole context, mean over heads) of
token groups: the subject word, the start token, the end/padding tokens. Per layer and image the
subject word's share is averaged inside and outside the subject's mask (the mask pooled by area to
the layer's grid, used as weights), the start and end/padding shares over the whole image (and the
end/padding share also inside and outside the mask); then everything is averaged over images and
timesteps.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ..nested_attention_core.maps import word_share

TIMESTEPS = (200, 500, 800)
KEYS = ("inside", "outside", "start", "end_padding", "end_padding_inside", "end_padding_outside")


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


def mask_shares(share: torch.Tensor, mask: torch.Tensor, grid: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
    """share [b, n_q] (queries row-major on ``grid``), mask [b, H, W] in [0, 1] -> (inside [b], outside [b]):
    the share's mean weighted by the mask pooled by area to ``grid``, and by its complement (NaN where a
    weight sums to 0)."""
    m = F.adaptive_avg_pool2d(mask[:, None].float(), grid).flatten(1)
    s = share.float()
    return (m * s).sum(1) / m.sum(1), ((1 - m) * s).sum(1) / (1 - m).sum(1)


def prompt_groups(clip, text: str, word: str) -> tuple[list, dict[str, torch.Tensor]]:
    """CONDITIONING of ``text`` (``host.encode_prompt``) and its token groups, bool [n_text] each:
    ``subject`` (the word's positions), ``start`` (start tokens), ``end_padding`` (the other
    positions of no word: end and padding), and ``word:<i>:<text>`` for every word of the prompt."""
    from ..nodes import host

    tokens, words = host.prompt_words(clip, text)
    name = "l" if "l" in tokens else next(iter(tokens))
    ids = torch.tensor([int(t[0]) for chunk in tokens[name] for t in chunk])
    start = ids == getattr(clip.tokenizer, f"clip_{name}").start_token
    in_word = torch.zeros(words.length, dtype=torch.bool)
    groups = {"subject": words.token_mask(word), "start": start}
    for i, (text_i, positions) in enumerate(words.words):
        groups[f"word:{i}:{text_i}"] = torch.zeros(words.length, dtype=torch.bool)
        groups[f"word:{i}:{text_i}"][list(positions)] = True
        in_word[list(positions)] = True
    groups["end_padding"] = ~in_word & ~start
    return host.encode_prompt(clip, text), groups


def heldout_renders(ids_per_domain: int, seed: int):
    """[(domain, caption, uint8 image [64, 64, 3], mask [64, 64] in [0, 1])] of held-out identities."""
    from .identity import DOMAINS, heldout_ids, sample_identity
    from .render import render_with_mask
    from .scene import caption, sample_scene

    out = []
    for domain in DOMAINS:
        for identity_id in heldout_ids()[:ids_per_domain]:
            scene = sample_scene("attention_share", seed, domain, identity_id)
            rendered = render_with_mask(sample_identity(domain, identity_id), scene, seed * 10_007 + identity_id)
            out.append((domain, caption(domain, scene), np.asarray(rendered.image),
                        np.asarray(rendered.mask, dtype=np.float32) / 255))
    return out


@torch.no_grad()
def attention_share(checkpoint: Path, ids_per_domain: int = 16, timesteps=TIMESTEPS, seed: int = 0) -> dict:
    """The subject word's attention share inside/outside its mask, and the start and end/padding
    shares, per attn2 layer of the base ``checkpoint``: {"layers": {layer id: {key: share}},
    "mean": {key: mean over layers}, "images": n, "timesteps": [...]}, keys ``KEYS``: inside,
    outside (the subject word), start, end_padding (whole image), end_padding_inside/_outside."""
    from ..nodes import host
    from .base_model import load_checkpoint
    from .comfy_runtime import load_host
    from .scene import class_word

    load_host()
    model, clip, vae = load_checkpoint(checkpoint)
    renders = heldout_renders(ids_per_domain, seed)
    conds, groups = zip(*(prompt_groups(clip, text, class_word(domain)) for domain, text, _, _ in renders))
    context = torch.cat([c[0][0] for c in conds])
    groups = {key: torch.stack([g[key] for g in groups]) for key in ("subject", "start", "end_padding")}
    images = torch.from_numpy(np.stack([r[2] for r in renders])).float() / 255
    masks = torch.from_numpy(np.stack([r[3] for r in renders]))
    x0 = model.model.process_latent_in(vae.encode(images)).float()
    generator = torch.Generator().manual_seed(seed)
    sums: dict[str, dict[str, list]] = {}
    for timestep in timesteps:
        noise = torch.randn(x0.shape, generator=generator)
        recorder = record_shares(model, x0, timestep, context, groups, noise)
        for layer_id, shares in recorder.shares.items():
            grid = recorder.grids[layer_id]
            inside, outside = mask_shares(shares["subject"], masks, grid)
            end_inside, end_outside = mask_shares(shares["end_padding"], masks, grid)
            per_image = {"inside": inside, "outside": outside, "start": shares["start"].mean(1),
                         "end_padding": shares["end_padding"].mean(1), "end_padding_inside": end_inside,
                         "end_padding_outside": end_outside}
            for key, values in per_image.items():
                sums.setdefault(layer_id, {}).setdefault(key, []).append(values)
    order = [layer.id for layer in host.model_layers(model)]
    layers = {layer_id: {key: float(torch.cat(sums[layer_id][key]).nanmean()) for key in KEYS} for layer_id in order}
    mean = {key: float(np.mean([layers[layer_id][key] for layer_id in order])) for key in KEYS}
    return {"layers": layers, "mean": mean, "images": len(renders), "timesteps": [int(t) for t in timesteps]}


def format_share_table(before: dict, after: dict) -> str:
    """Markdown: one row per layer (and the mean), the subject word's share inside/outside its mask
    and the end/padding share, before and after."""
    head = ("| layer | inside, before | outside, before | end/padding, before "
            "| inside, after | outside, after | end/padding, after |\n|---|---|---|---|---|---|---|")
    rows = [(layer_id, before["layers"][layer_id], after["layers"].get(layer_id)) for layer_id in before["layers"]]
    rows.append(("mean", before["mean"], after["mean"]))

    def cells(values):
        if values is None:
            return "- | - | -"
        return " | ".join(f"{100 * values[key]:.1f} %" for key in ("inside", "outside", "end_padding"))

    return "\n".join([head] + [f"| {layer_id} | {cells(b)} | {cells(a)} |" for layer_id, b, a in rows])

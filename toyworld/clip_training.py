"""The toy CLIP: an image tower and a text tower trained contrastively on the world's renders and captions.

Real subject encoders read a CLIP vision tower that learned, from captions saying what is seen, which
visual differences have names; the first toy world froze a random tower instead, and its features
hardly told identities apart (held-out top-1 retrieval 2-6 %). Here both towers are ComfyUI's own
classes at the toy sizes (``comfy.clip_vision.ClipVisionModel`` of ``toy_clip_vision.json``, and
the text encoder of the toy checkpoint, ``ToyWorldClipModel``) and learn CLIP's symmetric InfoNCE
objective on training renders whose captions name the subject's attributes and the scene
(``description.described_caption``). The vision tower then goes into the encoders' CLIP vision file,
the text tower into the base checkpoint (the base UNet is trained on it, frozen).

It is independent of the scorers: its own objective, seed and weights. Measured on held-out
identities next to the random tower of the first edition (``tower_report``): retrieval of an
identity's second render among 200, and linear probes of every attribute.
"""
from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass

import numpy as np
import torch
import torch.nn.functional as F

from .base_model import new_clip_vision, new_text_encoder_state, toy_text_encoder
from .identity import ATTRIBUTES, DOMAINS, attribute_labels, heldout_ids, sample_identity, train_ids


@dataclass(frozen=True)
class ClipTrainConfig:
    steps: int = 1500  # 192k samples (~11 epochs of the 18k single-subject renders): what fits the time limit
    batch: int = 128
    lr: float = 2e-3
    warmup: int = 50
    weight_decay: float = 0.1
    same_scene: int = 32  # a batch is batch / same_scene scenes, each with this many images (see train_clip)
    look_term: bool = True  # a second InfoNCE term on captions that also name the look (see train_clip)
    seed: int = 7  # not the scorers' (0): an independent model
    bf16: bool = False  # fp32: bf16 autocast is many times slower on CPUs without native bf16 (AVX2 only)


def caption_tokens(texts: list[str]) -> torch.Tensor:
    """[n, 77] token ids of ComfyUI's SD1 tokenizer (what the checkpoint's CLIP reads)."""
    import comfy.sd1_clip

    tokenizer = comfy.sd1_clip.SD1Tokenizer()
    return torch.tensor([[t for t, *_ in tokenizer.tokenize_with_weights(text)["l"][0]] for text in texts])


def pixel_values(tower, images: np.ndarray) -> torch.Tensor:
    """uint8 [n, h, w, 3] -> what the tower's ``encode_image`` feeds its model (ComfyUI's clip_preprocess)."""
    import comfy.clip_vision

    x = torch.from_numpy(np.ascontiguousarray(images)).float() / 255
    return comfy.clip_vision.clip_preprocess(x, size=tower.image_size, mean=tower.image_mean, std=tower.image_std)


def _snapshots():
    """ComfyUI's CLIP layers add residuals in place (inference code); a copy of every tensor autograd
    saves keeps the backward pass exact."""
    return torch.autograd.graph.saved_tensors_hooks(lambda t: t.clone(), lambda t: t)


def _lr(step: int, config: ClipTrainConfig) -> float:
    if step < config.warmup:
        return (step + 1) / config.warmup
    return 0.5 * (1 + math.cos(math.pi * (step - config.warmup) / max(1, config.steps - config.warmup)))


def scene_batches(scenes: list, config: ClipTrainConfig, generator: torch.Generator):
    """Image indices of each step: ``batch / same_scene`` random scenes, ``same_scene`` random images of each.

    With uniformly random batches the scene words alone tell a caption's image from the other 127
    (144 scenes), and the towers learn the scene and ignore the subject (measured: loss 0.73 with
    held-out identity retrieval at chance). Within a scene only the subject's attributes tell images
    apart, so these batches make the attributes the thing to learn."""
    by_scene: dict = {}
    for n, scene in enumerate(scenes):
        by_scene.setdefault(scene, []).append(n)
    pools = [torch.tensor(v) for v in by_scene.values() if len(v) >= config.same_scene]
    per_step = max(1, config.batch // config.same_scene)
    while True:
        chosen = torch.randperm(len(pools), generator=generator)[:per_step]
        yield torch.cat([pools[c][torch.randperm(len(pools[c]), generator=generator)[:config.same_scene]]
                         for c in chosen.tolist()])


def _info_nce(logit_scale, image_embeds: torch.Tensor, text_embeds: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """CLIP's symmetric InfoNCE of normalised image embeddings against a batch of text embeddings."""
    logits = logit_scale.exp().clamp(max=100) * (image_embeds @ F.normalize(text_embeds.float(), dim=-1).T)
    return (F.cross_entropy(logits, targets) + F.cross_entropy(logits.T, targets)) / 2


def train_clip(images: np.ndarray, captions: list[str], scenes: list, vocabulary: list[str], config: ClipTrainConfig,
               progress=None, look_captions: list[str] | None = None) -> tuple[object, dict, list[float]]:
    """Train both towers from a seeded init on ``images`` with their ``captions`` and ``scenes`` (any
    hashable per image, for ``scene_batches``). Returns (CLIP vision tower, text encoder state dict
    with ``clip_l.*`` keys and words outside ``vocabulary`` zeroed, losses).

    ``look_captions`` (required with ``config.look_term``): each image's caption naming its look too. The
    loss is then the mean of two InfoNCE terms on the same images: captions without the look (the
    look would tell a batch's images apart without the identity, so this term keeps the identity the
    thing to learn) and captions with it (the text tower learns the look's words, "orange shirt", "top
    hat", as a real CLIP knows them; trained without them, the base UNet read them as noise, or
    read the colour of a shirt as the background's)."""
    if config.look_term and (look_captions is None or len(look_captions) != len(captions)):
        have = "none" if look_captions is None else len(look_captions)
        raise ValueError(f"look_term needs one caption naming the look per image ({have} given for {len(captions)} "
                         "images): pass look_captions=, or set look_term=False")
    tower = new_clip_vision(config.seed)
    vision = tower.model.float().train().requires_grad_(True)
    initial = new_text_encoder_state(vocabulary, config.seed)  # words outside the world: zero rows
    text_encoder = toy_text_encoder(initial)
    text = text_encoder.clip_l.transformer.float().train().requires_grad_(True)
    sets = [captions, look_captions] if config.look_term else [captions]
    unique = sorted({c for texts in sets for c in texts})
    tokens = caption_tokens(unique)
    row = {c: i for i, c in enumerate(unique)}
    caption_ids = [torch.tensor([row[c] for c in texts]) for texts in sets]
    logit_scale = torch.nn.Parameter(torch.tensor(math.log(1 / 0.07)))
    params = [*vision.parameters(), *text.parameters()]
    decay = [p for p in params if p.ndim >= 2]
    no_decay = [p for p in params if p.ndim < 2] + [logit_scale]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": config.weight_decay},
                             {"params": no_decay, "weight_decay": 0.0}], lr=config.lr, betas=(0.9, 0.98))
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: _lr(s, config))
    gen = torch.Generator().manual_seed(config.seed)
    targets = torch.arange(config.batch)
    losses = []
    batches = scene_batches(scenes, config, gen)
    for _ in range(config.steps):
        idx = next(batches)
        pixels = pixel_values(tower, images[idx.numpy()])
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=config.bf16), _snapshots():
            image_embeds = F.normalize(vision(pixel_values=pixels)[2].float(), dim=-1)
            text_embeds = [text(input_tokens=tokens[ids[idx]])[2] for ids in caption_ids]
        loss = sum(_info_nce(logit_scale, image_embeds, t, targets[:len(idx)]) for t in text_embeds) / len(text_embeds)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        sched.step()
        losses.append(float(loss.detach()))
        if progress is not None:
            progress.update(1)
            progress.set_postfix(loss=f"{np.mean(losses[-20:]):.3f}")
    vision.eval().requires_grad_(False)
    text.eval().requires_grad_(False)
    state = text_encoder.state_dict()
    table = "clip_l.transformer.text_model.embeddings.token_embedding.weight"
    keep = initial[table] != 0
    state[table] = state[table] * keep.any(dim=1, keepdim=True)  # words outside the world's stay "no word"
    return tower, state, losses


# ---- what the towers carry, on held-out identities ------------------------------------------------

@torch.no_grad()
def tower_features(tower, images: np.ndarray) -> dict[str, torch.Tensor]:
    """Through the Subject node's path (``host.reference_features``): the penultimate states the
    encoders read, mean-pooled; and the tower's own projected embedding."""
    from ..nodes import host

    x = torch.from_numpy(np.ascontiguousarray(images)).float() / 255
    pooled = torch.cat([host.reference_features(tower, x[i:i + 256]).float().mean(1) for i in range(0, len(x), 256)])
    embeds = torch.cat([tower.encode_image(x[i:i + 256])["image_embeds"].float() for i in range(0, len(x), 256)])
    return {"penultimate_mean": pooled, "image_embeds": embeds}


def _renders(domain: str, ids, seed: int, per_identity: int = 1) -> np.ndarray:
    from .dataset import make_samples, render_array

    return render_array(make_samples([domain], ids, per_identity, seed))


def linear_probe(train_x: torch.Tensor, train_y: torch.Tensor, test_x: torch.Tensor, test_y: torch.Tensor,
                 classes: int, steps: int = 300) -> float:
    """Held-out accuracy of a logistic regression (standardised features, L2, full-batch L-BFGS)."""
    mean, std = train_x.mean(0), train_x.std(0) + 1e-6
    a, b = (train_x - mean) / std, (test_x - mean) / std
    layer = torch.nn.Linear(a.shape[1], classes)
    opt = torch.optim.LBFGS(layer.parameters(), max_iter=steps, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = F.cross_entropy(layer(a), train_y) + 1e-3 * layer.weight.square().sum()
        loss.backward()
        return loss

    with torch.enable_grad():
        opt.step(closure)
    return float((layer(b).argmax(1) == test_y).double().mean())


def tower_report(tower, probe_train_ids: int = 1000, retrieval_ids: int = 200, seed: int = 11) -> dict:
    """Held-out retrieval top-1 (an identity's second render among ``retrieval_ids``; chance 1/n) and
    linear-probe accuracy of every discrete attribute (trained on training ids, tested on held-out ones)."""
    from .metrics import retrieval_top1

    report: dict = {}
    for domain in DOMAINS:
        held = list(heldout_ids())[:retrieval_ids]
        pairs = _renders(domain, held, seed, per_identity=2)  # make_samples: identity-major order
        features = tower_features(tower, pairs)
        targets = torch.arange(len(held))
        retrieval = {kind: retrieval_top1(f[0::2], f[1::2], targets) for kind, f in features.items()}
        train = list(train_ids())[:probe_train_ids]
        train_features = tower_features(tower, _renders(domain, train, seed + 1))["penultimate_mean"]
        test_features = features["penultimate_mean"]
        probes = {}
        for k, (name, values) in enumerate(ATTRIBUTES[domain]):
            train_y = torch.tensor([attribute_labels(sample_identity(domain, i))[name] for i in train])
            test_y = torch.tensor([attribute_labels(sample_identity(domain, i))[name] for i in held for _ in (0, 1)])
            probes[name] = round(linear_probe(train_features, train_y, test_features, test_y, len(values)), 3)
        report[domain] = {"retrieval_top1": {k: round(v, 3) for k, v in retrieval.items()},
                          "retrieval_chance": round(1 / len(held), 4), "attribute_probes": probes}
    return report


def first_edition_tower():
    """The first edition's frozen random tower (4 px patches, seed 0), the row the trained one is compared with."""
    from .comfy_runtime import toy_models

    return new_clip_vision(0, toy_models().FIRST_EDITION_CLIP_VISION_CONFIG)


def build_clip(images: np.ndarray, captions: list[str], scenes: list, vocabulary: list[str], out_dir,
               config: ClipTrainConfig, bar=None, report_sizes: dict | None = None,
               look_captions: list[str] | None = None) -> dict:
    """Train the toy CLIP and write ``out_dir/clip_vision.safetensors`` (ComfyUI CLIP vision layout) and
    ``out_dir/text_encoder.safetensors`` (``clip_l.*``), fp32; returns the report (random vs trained tower)."""
    import json
    from pathlib import Path

    from .base_model import save_file
    from .progress import progress_bar

    out_dir = Path(out_dir)
    started = time.perf_counter()
    with progress_bar(bar, config.steps, "clip") as progress:
        tower, text_state, losses = train_clip(images, captions, scenes, vocabulary, config, progress, look_captions)
    seconds = time.perf_counter() - started
    save_file(tower.model.state_dict(), out_dir / "clip_vision.safetensors", {"toyworld": "clip_vision"}, torch.float32)
    save_file(text_state, out_dir / "text_encoder.safetensors", {"toyworld": "text_encoder"}, torch.float32)
    sizes = report_sizes or {}
    report = {"config": asdict(config), "images": int(len(images)), "seconds": round(seconds, 1),
              "loss_first_50": round(float(np.mean(losses[:50])), 4), "loss_last_50": round(float(np.mean(losses[-50:])), 4),
              "trained_tower": tower_report(tower, **sizes),
              "random_tower": tower_report(first_edition_tower(), **sizes)}
    (out_dir / "clip_report.json").write_text(json.dumps(report, indent=1) + "\n")
    return report

"""Scoring with the two toy-world CNNs: identity similarity and prompt (scene) alignment; their file format.

Identity similarity is the cosine of identity embeddings (the toy analogue of ArcFace ID similarity);
prompt alignment is the scene model's accuracy on the scene the prompt asked for, look factors
included where the scene names them (``look.py``; of one subject's domain). Models are saved
as safetensors with ``{"toyworld_kind": "identity"|"scene", "config": <json>}`` in the metadata.
"""
from __future__ import annotations

import json
import logging
from dataclasses import asdict, fields
from pathlib import Path
from typing import Optional, Sequence, Union

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from .errors import ScorerError
from .identity import ATTRIBUTES, DOMAINS
from .look import LOOK_FACTORS, LOOK_FIELDS
from .nets import IdentityNet, IdentityNetConfig, SceneNet, SceneNetConfig, scene_heads
from .scene import FACTORS, Scene

log = logging.getLogger(__name__)

Images = Union[Sequence[Image.Image], np.ndarray, torch.Tensor]
KINDS = {"identity": (IdentityNet, IdentityNetConfig), "scene": (SceneNet, SceneNetConfig)}
BATCH = 256


def to_batch(images: Images, size: int = 64) -> torch.Tensor:
    """Images as ``[n, 3, size, size]`` floats in 0..1. Accepts PIL images, uint8 arrays
    ``[n, h, w, 3]``, or float tensors ``[n, h, w, 3]`` (ComfyUI IMAGE) / ``[n, 3, h, w]`` in 0..1."""
    if isinstance(images, Image.Image):
        images = [images]
    if isinstance(images, (list, tuple)):
        if not images:
            raise ScorerError("no images given: pass at least one image")
        images = np.stack([np.asarray(im.convert("RGB")) for im in images])
    if isinstance(images, np.ndarray):
        if images.dtype != np.uint8:
            raise ScorerError(f"numpy images must be uint8 [n, h, w, 3], got {images.dtype}: convert with .astype(np.uint8)")
        images = torch.from_numpy(np.ascontiguousarray(images)).float() / 255.0
    if not isinstance(images, torch.Tensor):
        raise ScorerError(f"images of type {type(images).__name__} are not supported: pass PIL images, a uint8 "
                          "array [n, h, w, 3] or a float tensor [n, h, w, 3] in 0..1")
    x = images.float()
    if x.dim() == 3:
        x = x[None]
    if x.dim() != 4 or 3 not in (x.shape[1], x.shape[-1]):
        raise ScorerError(f"images of shape {tuple(images.shape)} are not [n, h, w, 3] or [n, 3, h, w]")
    if x.shape[-1] == 3 and x.shape[1] != 3:
        x = x.permute(0, 3, 1, 2)
    if x.shape[-2:] != (size, size):
        x = F.interpolate(x, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
    return x.contiguous()


@torch.no_grad()
def embed(model: IdentityNet, images: Images) -> torch.Tensor:
    """Identity embeddings [n, d], unit length."""
    model.eval()
    x = to_batch(images, model.config.image_size)
    return torch.cat([model(x[i:i + BATCH]) for i in range(0, len(x), BATCH)])


def identity_similarity(model: IdentityNet, images_a: Images, images_b: Images) -> torch.Tensor:
    """Cosine similarity of every image of ``a`` with every image of ``b``: [len(a), len(b)]."""
    return embed(model, images_a) @ embed(model, images_b).T


def reference_similarity(model: IdentityNet, generated: Images, references: Images) -> torch.Tensor:
    """For each generated image, its mean cosine to the reference identity's (held-out) renders: [n]."""
    return identity_similarity(model, generated, references).mean(dim=1)


@torch.no_grad()
def predict_attributes(model: IdentityNet, images: Images, domain: str) -> dict[str, torch.Tensor]:
    """What the identity net's attribute heads read in images of ``domain``: {attribute: [n] value index
    into ``identity.ATTRIBUTES[domain]``} (the heads the net was trained through)."""
    if domain not in ATTRIBUTES:
        raise ScorerError(f"unknown domain {domain!r}: use one of {DOMAINS}")
    model.eval()
    x = to_batch(images, model.config.image_size)
    logits = [model.head_logits(model.features(x[i:i + BATCH])) for i in range(0, len(x), BATCH)]
    return {name: torch.cat([part[f"{domain}_{name}"] for part in logits]).argmax(dim=1)
            for name, _ in ATTRIBUTES[domain]}


@torch.no_grad()
def predict_scenes(model: SceneNet, images: Images) -> dict[str, torch.Tensor]:
    """The predicted value index of every factor: {factor: [n]}."""
    model.eval()
    x = to_batch(images, model.config.image_size)
    outs = [model(x[i:i + BATCH]) for i in range(0, len(x), BATCH)]
    return {name: torch.cat([o[name] for o in outs]).argmax(dim=1) for name in outs[0]}


Domains = Union[str, Sequence[Optional[str]], None]


def scene_hits(model: SceneNet, images: Images, scenes: Sequence[Scene], domain: Domains = None) -> dict[str, torch.Tensor]:
    """Per factor, whether each image's predicted value is its scene's: {factor: bool [n]}; ``all``: every
    factor right. Look factors are scored for the subject of ``domain`` ("person"/"pet", or one per
    image; None: the one domain whose look each scene names), when every scene names the factor
    (non-None); a two-subject scene names both subjects' looks, so it needs ``domain``."""
    scored = scored_factors(model, images, scenes, domain)
    hits, all_right = {}, torch.ones(len(scenes), dtype=torch.bool)
    for factor, (right, named) in scored.items():
        if not bool(named.all()):
            raise ScorerError(f"look factor {factor!r} is named by {int(named.sum())} of {len(scenes)} scenes: score the "
                              "scenes that name it apart from those that do not, or use scene_accuracy (which averages "
                              "a look factor over the scenes that name it)")
        hits[factor] = right
        all_right &= right
    hits["all"] = all_right
    return hits


def scene_accuracy(model: SceneNet, images: Images, scenes: Sequence[Scene], domain: Domains = None) -> dict[str, float]:
    """Per factor, the fraction of images whose predicted value is the scene's (a look factor: of the
    images whose scene names it, see ``scene_hits``); ``all``: every factor its scene names right."""
    scored = scored_factors(model, images, scenes, domain)
    out = {factor: float(right[named].double().mean()) for factor, (right, named) in scored.items()}
    out["all"] = float(every_right(scored.values(), len(scenes)).double().mean())
    return out


def every_right(scored, count: int) -> torch.Tensor:
    """bool [count]: every (right, named) factor of ``scored_factors`` right where its scene names it."""
    out = torch.ones(count, dtype=torch.bool)
    for right, named in scored:
        out &= right | ~named
    return out


def share_right(scored, count: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(the share of each image's named factors that are right, float64 [count] (0 where none is named);
    whether any is named, bool [count]) of ``scored_factors``' (right, named) pairs."""
    right = torch.zeros(count, dtype=torch.float64)
    named = torch.zeros(count, dtype=torch.float64)
    for hit, asked in scored:
        right += (hit & asked).double()
        named += asked.double()
    return right / named.clamp_min(1), named > 0


def scored_factors(model: SceneNet, images: Images, scenes: Sequence[Scene], domain: Domains):
    """{factor: (right bool [n], named bool [n])}: scene factors always named; look factors of each
    image's domain where its scene names them (only factors some scene names)."""
    predicted = predict_scenes(model, images)
    count = len(next(iter(predicted.values())))
    if len(scenes) != count:
        raise ScorerError(f"{len(scenes)} scenes for {count} images: give one scene per image")
    domains = _domains(scenes, domain)
    scored = {}
    for factor, values in FACTORS.items():
        target = torch.tensor([values.index(getattr(s, factor)) for s in scenes])
        scored[factor] = (predicted[factor] == target, torch.ones(count, dtype=torch.bool))
    for factor in LOOK_FIELDS:
        target = torch.tensor([LOOK_FACTORS[d][factor].index(getattr(s, factor))
                               if d is not None and factor in LOOK_FACTORS[d] and getattr(s, factor) is not None else -1
                               for s, d in zip(scenes, domains)])
        named = target >= 0
        if not bool(named.any()):
            continue
        if factor not in predicted:
            raise ScorerError(f"the scene model has no head for the look factor {factor!r}: it is a second-edition "
                              "model; retrain it (`python -m nested_attention.toyworld train-scorers OUT_DIR`)")
        scored[factor] = (predicted[factor] == target, named)
    return scored


def _domains(scenes: Sequence[Scene], domain: Domains) -> list[Optional[str]]:
    if domain is None:
        out = []
        for scene in scenes:
            named = [d for d, factors in LOOK_FACTORS.items() if any(getattr(scene, f) is not None for f in factors)]
            if len(named) > 1:
                raise ScorerError(f"scene {scene} names the look of both a person and a dog: say whose look to score "
                                  "with domain='person' or domain='pet'")
            out.append(named[0] if named else None)
        return out
    domains = [domain] * len(scenes) if isinstance(domain, str) else list(domain)
    if len(domains) != len(scenes):
        raise ScorerError(f"{len(domains)} domains for {len(scenes)} scenes: give one domain, or one per scene")
    for d in domains:
        if d is not None and d not in LOOK_FACTORS:
            raise ScorerError(f"unknown domain {d!r}: use one of {DOMAINS}")
    return domains


def save_scorer(model: Union[IdentityNet, SceneNet], path) -> Path:
    kind = "identity" if isinstance(model, IdentityNet) else "scene"
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().contiguous() for k, v in model.state_dict().items()}
    save_file(state, str(path), metadata={"toyworld_kind": kind, "config": json.dumps(asdict(model.config))})
    return path


def load_scorer(path) -> Union[IdentityNet, SceneNet]:
    """A saved scoring model, in eval mode."""
    path = Path(path)
    try:
        with safe_open(str(path), framework="pt") as f:
            metadata = f.metadata() or {}
            state = {k: f.get_tensor(k) for k in f.keys()}
    except (OSError, ValueError, RuntimeError, SafetensorError) as err:
        raise ScorerError(f"scoring model {path} cannot be read ({err}): train one with "
                          "`python toyworld/cli.py train-scorers OUT_DIR`") from None
    kind = metadata.get("toyworld_kind")
    if kind not in KINDS:
        raise ScorerError(f"{path} is not a toy-world scoring model (metadata toyworld_kind={kind!r})")
    net_class, config_class = KINDS[kind]
    config = _config_from_json(config_class, metadata.get("config", "{}"))
    if kind == "scene" and tuple(config.heads) != scene_heads():
        raise ScorerError(f"{path} is a scene model of another head layout ({_head_difference(dict(config.heads))}). "
                          "Retrain it: `python -m nested_attention.toyworld experiment OUT_DIR --stages scorers` "
                          "(or `train-scorers OUT_DIR`)")
    model = net_class(config)
    try:
        model.load_state_dict(state)
    except RuntimeError as err:
        raise ScorerError(f"{path}: weights do not match their config ({err})") from None
    return model.eval()


def _head_difference(saved: dict) -> str:
    """How a saved scene model's heads {factor: values} differ from this code's."""
    wanted = dict(scene_heads())
    missing = [name for name in wanted if name not in saved]
    if missing:
        return f"no heads for {missing}: the second edition's scene model has no look heads"
    changed = [f"{name}: {saved[name]} values in the file, {count} in this code" for name, count in wanted.items()
               if saved[name] != count]
    changed += [f"{name}: a head this code does not score" for name in saved if name not in wanted]
    changed = changed or [f"heads in another order: {list(saved)}"]
    return "; ".join(changed) + "; a model trained before the world's values changed"


def _config_from_json(config_class, text: str):
    raw = json.loads(text)
    known = {f.name for f in fields(config_class)}
    return config_class(**{k: _tuples(v) for k, v in raw.items() if k in known})


def _tuples(value):
    return tuple(_tuples(v) for v in value) if isinstance(value, list) else value

"""The experiment's measurement: identities never seen in training, a fixed prompt set, fixed seeds.

For each held-out identity of each domain (ids 1800.. in order; the per-identity oracles, when
published, are fitted for the first of them): one reference render with its subject mask and a
gallery of other renders (``evaluation_inputs``). For each row and each prompt of
``EVAL_SCENES[:prompts]``, one image with a fixed seed per (identity, prompt), the same seed in
every row, so rows differ only by what they add to the base:

* ``renders (upper bound)``: the world's own render of the identity in the prompt's scene;
* ``renders, VAE round trip``: those renders encoded and decoded by the base's VAE (what a
  generated image can hold at all);
* ``base + attribute caption (oracle text)``: the base with the prompt whose class word is replaced
  by the identity's every attribute in words (``description.described_caption``): what words alone achieve;
* ``base (no subject)``: the prompt alone (the identity score of a random person or dog);
* each method (nested attention = ours, single token, decoupled cross-attention) at strength 1, its
  reference encoded twice by the one preparation ``host.reference_features``: whole, as users give
  it, and ``masked reference`` (background blanked by the render's subject mask);
* ``optimised per identity (oracle)``: nested and decoupled with subjects fitted per identity
  (``oracle.py``): what the attention rule itself can reach on this base, for the identities that have one.

The trade-off sweep: each method at the strengths of ``EvalConfig.sweeps`` (nested: lambda,
decoupled: scale, single token: value scale; ``nested_attention_core/baselines.py``), whole
references, on the first ``sweep_ids_per_domain`` identities and ``sweep_prompts`` prompts; strength 1
is the main row's images on those keys, and the base, oracle text and renders points are too.

Two subjects: a held-out person (left half) and dog (right half) in one image, one Apply per subject
with a region mask, each half scored against halves of two-subject renders; base, and ours with
whole and with masked references.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from ..nested_attention_core.methods import DECOUPLED, NESTED, SINGLE_TOKEN
from .description import described_caption
from .errors import ExperimentError
from .evaluation_inputs import (gallery_renders, half, pair_gallery, reference, reference_render, region_masks,
                                scene_render)
from .evaluation_scores import Collected
from .generation import SamplerSettings, ToyHost
from .identity import CLASS_WORDS, DOMAINS, PERSON, PET, heldout_ids, sample_identity
from .rng import key_seed
from .scene import Scene, caption, caption_two

__all__ = ["EVAL_SCENES", "TWO_SUBJECT_SCENES", "EvalConfig", "evaluate", "evaluation_size", "reference_render",
           "gallery_renders", "scene_render", "half", "pair_gallery", "region_masks"]

EVAL_SCENES = (  # the first three (the sweep's and the grid's) differ in every factor but background
    Scene("snow", "left", "full", "photo"),
    Scene("night", "right", "close-up", "photo"),
    Scene("beach", "center", "full", "watercolor"),
    Scene("red", "center", "full", "photo"),
    Scene("forest", "right", "full", "pencil"),
    Scene("blue", "left", "close-up", "photo"),
)
TWO_SUBJECT_SCENES = (Scene("yellow", "center", "full", "photo"), Scene("snow", "center", "full", "photo"),
                      Scene("green", "center", "full", "watercolor"))

RENDERS = "renders (upper bound)"
ROUND_TRIP = "renders, VAE round trip"
ORACLE_TEXT = "base + attribute caption (oracle text)"
BASE = "base (no subject)"


def method_row(method) -> str:
    """A method's row (and curve) in the tables: its display name, ours marked."""
    return method.display_name + (" (ours)" if method == NESTED else "")


OURS = method_row(NESTED)
WHOLE, MASKED = "whole", "masked"  # how a reference reaches the encoder: as users give it, or masked
DEFAULT_SWEEPS = ((OURS, (0.5, 1.0, 2.0, 3.0)), (method_row(SINGLE_TOKEN), (0.5, 1.0, 2.0)),
                  (method_row(DECOUPLED), (0.25, 0.5, 1.0)))


def masked_row(method: str) -> str:
    return f"{method}, masked reference"


def oracle_row(method: str) -> str:
    return f"{method}, optimised per identity (oracle)"


@dataclass(frozen=True)
class EvalConfig:
    ids_per_domain: int = 12  # held-out identities 1800.. of each domain
    gallery: int = 4  # renders of each identity its images are compared with
    pairs: int = 12  # two-subject evaluations (person 1800+i with dog 1999-i)
    prompts: int = 4  # the first prompts of EVAL_SCENES (4 x 24 identities: within make toyworld-eval's 15 min)
    sweep_ids_per_domain: int = 6  # the sweep's identities: the first of the evaluation's (at most ids_per_domain)
    sweep_prompts: int = 3  # the sweep's prompts: the first of the evaluation's
    sweeps: tuple = DEFAULT_SWEEPS  # (method, strengths) of the trade-off curves
    sampler: SamplerSettings = field(default_factory=SamplerSettings)
    seed: int = 0

    def __post_init__(self) -> None:
        limits = {"ids_per_domain": (1, len(heldout_ids())), "gallery": (1, 64), "pairs": (0, len(heldout_ids())),
                  "prompts": (1, len(EVAL_SCENES)), "sweep_ids_per_domain": (0, len(heldout_ids())),
                  "sweep_prompts": (0, self.prompts)}
        for name, (low, high) in limits.items():
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
                raise ExperimentError(f"EvalConfig.{name} is {value!r}; give an integer in {low}..{high}")
        for method, strengths in self.sweeps:
            if not strengths or not all(isinstance(s, (int, float)) and math.isfinite(s) for s in strengths):
                raise ExperimentError(f"EvalConfig.sweeps: the strengths of {method!r} are {strengths!r}; give a "
                                      "non-empty tuple of finite numbers (1.0 is the main table's strength)")

    def ids(self) -> list[int]:
        return list(heldout_ids())[:self.ids_per_domain]

    def scenes(self) -> tuple[Scene, ...]:
        return EVAL_SCENES[:self.prompts]

    def sweep_keys(self) -> list:
        """(domain, id, scene) of the sweep's images."""
        ids = self.ids()[:self.sweep_ids_per_domain]
        return [(d, i, s) for d in DOMAINS for i in ids for s in self.scenes()[:self.sweep_prompts]]

    def extra_strengths(self, methods) -> dict[str, tuple[float, ...]]:
        """The sweep's strengths other than 1 (strength 1 is the main row), of the methods evaluated."""
        return {m: tuple(float(s) for s in strengths if s != 1.0) for m, strengths in self.sweeps if m in methods}

    def pair_ids(self) -> list[tuple[int, int]]:
        ids = list(heldout_ids())
        return list(zip(ids[:self.pairs], ids[::-1]))


def single_rows(methods, oracle_methods) -> list[str]:
    """The one-subject rows in table order: ceilings, the floor, the methods (whole, then masked), oracles."""
    return [RENDERS, ROUND_TRIP, ORACLE_TEXT, BASE, *methods, *map(masked_row, methods),
            *(oracle_row(m) for m in methods if m in oracle_methods)]


def evaluate(host: ToyHost, methods: dict, identity_net, scene_net, config: EvalConfig, oracles: dict | None = None,
             progress=None) -> dict:
    """``methods``: {name: (training method, encoder)}; ``oracles``: {(method name, domain, id): NestedSubject}.
    Returns the scores and the images (for the grid and the plot)."""
    oracles = {k: v for k, v in (oracles or {}).items() if k[0] in methods}
    rows = {name: Collected() for name in single_rows(methods, {k[0] for k in oracles})}
    sweep = {(m, s): Collected() for m, strengths in config.extra_strengths(methods).items() for s in strengths}
    for domain in DOMAINS:
        for identity_id in config.ids():
            _one_identity(host, methods, oracles, config, domain, identity_id, rows, sweep, progress)
    two = two_subjects(host, methods, config, progress)
    single = {name: rows[name].scores(identity_net, scene_net, attributes=True) for name in rows}
    for method in methods:
        if oracle_row(method) in single:
            keys = rows[oracle_row(method)].keys
            single[oracle_row(method)]["same_images"] = {
                name: rows[name].subset(keys).scores(identity_net, scene_net)["identity"] for name in (BASE, method)}
    return {"single": single, "sweep": sweep_scores(rows, sweep, methods, identity_net, scene_net, config),
            "two": {name: {side: c.scores(identity_net, scene_net, ("background", "style"))
                           for side, c in parts.items()} for name, parts in two.items()},
            "rows": rows, "sweep_rows": sweep, "two_rows": two}


def _one_identity(host, methods, oracles, config, domain, identity_id, rows, sweep, progress) -> None:
    word, settings = CLASS_WORDS[domain], config.sampler
    ref = reference(domain, identity_id)
    image, mask = np.asarray(ref.image)[None], np.asarray(ref.mask)[None]
    gallery = gallery_renders(domain, identity_id, config.gallery)
    models, subjects = {BASE: host.model}, {}
    for name, (method, encoder) in methods.items():
        subjects[name] = host.subject(method, encoder, image, word)
        models[name] = host.apply(host.model, subjects[name], method.rule)
        models[masked_row(name)] = host.with_subject(host.model, method, encoder, image, word, masks=mask)
        if (name, domain, identity_id) in oracles:
            models[oracle_row(name)] = host.apply(host.model, oracles[name, domain, identity_id], method.rule)
    sweep_keys = set(config.sweep_keys())
    sweep_models = {(name, strength): host.apply(host.model, subjects[name], methods[name][0].rule, strength)
                    for name, strength in sweep} if any(k[:2] == (domain, identity_id) for k in sweep_keys) else {}
    scenes = config.scenes()
    renders = np.stack([scene_render(domain, identity_id, scene) for scene in scenes])
    round_trips = host.round_trip(renders)
    for n, scene in enumerate(scenes):
        key = (domain, identity_id, scene)
        seed = key_seed("toyworld-eval-seed", config.seed, domain, identity_id, scene) & 0x7FFFFFFF
        text = caption(domain, scene)
        rows[RENDERS].add(renders[n], gallery, scene, key)
        rows[ROUND_TRIP].add(round_trips[n], gallery, scene, key)
        rows[ORACLE_TEXT].add(host.sample(host.model, described_caption(sample_identity(domain, identity_id), scene),
                                          seed, settings), gallery, scene, key)
        _tick(progress)
        for name, model in models.items():
            rows[name].add(host.sample(model, text, seed, settings), gallery, scene, key)
            _tick(progress)
        if key in sweep_keys:
            for point, model in sweep_models.items():
                sweep[point].add(host.sample(model, text, seed, settings), gallery, scene, key)
                _tick(progress)


def sweep_scores(rows: dict, sweep: dict, methods: dict, identity_net, scene_net, config: EvalConfig) -> dict:
    """The trade-off: every point on the same (identity, prompt) keys. {"points": {row: scores},
    "curves": {method: {strength: scores}}}; every image's score only where it is not a main-row image."""
    keys = config.sweep_keys()
    if not keys:
        return {"points": {}, "curves": {}}

    def on_keys(name):
        s = rows[name].subset(keys).scores(identity_net, scene_net)
        del s["per_image"]  # the main row's images: their scores are there
        return s

    curves = {}
    for method, strengths in config.sweeps:
        if method in methods:
            curves[method] = {f"{float(s):g}": on_keys(method) if s == 1.0
                              else sweep[method, float(s)].scores(identity_net, scene_net) for s in strengths}
    return {"points": {name: on_keys(name) for name in (RENDERS, ORACLE_TEXT, BASE)}, "curves": curves}


def two_subjects(host: ToyHost, methods: dict, config: EvalConfig, progress=None) -> dict:
    """Ours with a person (left region) and a dog (right region), references whole and masked; the base as the floor."""
    if OURS not in methods or not config.pairs:
        return {}
    method, encoder = methods[OURS]
    regions = region_masks()
    out = {name: {"person": Collected(), "dog": Collected()} for name in (BASE, OURS, masked_row(OURS))}
    for person_id, pet_id in config.pair_ids():
        refs = {PERSON: reference(PERSON, person_id), PET: reference(PET, pet_id)}
        person_gallery, pet_gallery = pair_gallery(person_id, pet_id, config.gallery)
        models = {BASE: host.model}
        for name, preparation in ((OURS, WHOLE), (masked_row(OURS), MASKED)):
            model = host.model
            for domain, side in ((PERSON, "left"), (PET, "right")):
                masks = np.asarray(refs[domain].mask)[None] if preparation == MASKED else None
                model = host.with_subject(model, method, encoder, np.asarray(refs[domain].image)[None],
                                          CLASS_WORDS[domain], regions[side], masks=masks)
            models[name] = model
        for scene in TWO_SUBJECT_SCENES:
            text = caption_two(scene, "left")
            seed = key_seed("toyworld-eval-pair-seed", config.seed, person_id, pet_id, scene) & 0x7FFFFFFF
            key = (person_id, pet_id, scene)
            for name, model in models.items():
                image = host.sample(model, text, seed, config.sampler)[None]
                out[name]["person"].add(half(image, "left")[0], person_gallery, scene, key)
                out[name]["dog"].add(half(image, "right")[0], pet_gallery, scene, key)
                _tick(progress)
    return out


def evaluation_size(config: EvalConfig, methods, oracles=()) -> int:
    """KSampler calls of ``evaluate`` (``methods``: names; ``oracles``: (method, domain, id) keys)."""
    ids = set(config.ids())
    oracle_count = sum(1 for m, _, i in oracles if m in methods and i in ids)
    single = (len(DOMAINS) * len(ids) * (2 + 2 * len(methods)) + oracle_count) * config.prompts
    sweep = len(config.sweep_keys()) * sum(map(len, config.extra_strengths(methods).values()))
    two = config.pairs * len(TWO_SUBJECT_SCENES) * 3 if OURS in methods else 0
    return single + sweep + two


def _tick(progress) -> None:
    if progress is not None:
        progress.update(1)

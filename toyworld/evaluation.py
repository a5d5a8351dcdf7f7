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
* ``IP_ADAPTER_ROW``: the decoupled baseline's weights written as an IP-Adapter Plus file, read by the
  Loader's function and applied by the nested rule without training (``ipadapter_file.py``; whole
  references only);
* ``optimised per identity (oracle)``: nested and decoupled with subjects fitted per identity
  (``oracle.py``): what the attention rule itself can reach on this base, for the identities that have one.

``paired``: ours minus each other method on the same (identity, prompt, seed) keys, identity and
prompt alignment, ± clustered by identity (``evaluation_scores.paired_difference``).

The trade-off sweep: each method at the strengths of ``EvalConfig.sweeps`` (nested and the IP-Adapter
file's row: lambda, decoupled: scale, single token: value scale; ``nested_attention_core/baselines.py``),
whole references, on the first ``sweep_ids_per_domain`` identities and ``sweep_prompts`` prompts;
strength 1 is the main row's images on those keys, and the base, oracle text and renders points are too.

Two subjects (with and without region masks, leakage) and the demo's own scores: ``evaluation_two.py``.
The prompts of an identity come from one function, ``EvalConfig.scenes_for``.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from ..nested_attention_core.methods import DECOUPLED, SINGLE_TOKEN
from .description import described_caption
from .errors import ExperimentError
from .evaluation_inputs import (gallery_renders, half, pair_gallery, reference, reference_render, region_masks,
                                scene_render)
from .evaluation_prompts import identity_prompts
from .evaluation_rows import (BASE, IP_ADAPTER_ROW, MASKED, NO_REGIONS, ORACLE_TEXT, OURS, RENDERS, ROUND_TRIP, WHOLE,
                              masked_methods, masked_row, method_row, oracle_row, tick)
from .evaluation_scores import Collected, paired_difference
from .evaluation_two import (TWO_SUBJECT_SCENES, demo_scores, pair, two_subject_scores, two_subject_size,
                             two_subjects)
from .generation import SamplerSettings, ToyHost
from .identity import CLASS_WORDS, DOMAINS, heldout_ids, sample_identity
from .rng import key_seed
from .scene import Scene, caption

__all__ = ["EVAL_SCENES", "TWO_SUBJECT_SCENES", "EvalConfig", "evaluate", "evaluation_size", "reference_render",
           "gallery_renders", "scene_render", "half", "pair_gallery", "region_masks", "BASE", "IP_ADAPTER_ROW",
           "MASKED", "NO_REGIONS", "ORACLE_TEXT", "OURS", "RENDERS", "ROUND_TRIP", "WHOLE", "masked_row", "method_row",
           "oracle_row"]

EVAL_SCENES = (  # the first three (the sweep's and the grid's) differ in every factor but background
    Scene("snow", "left", "full", "photo"),
    Scene("night", "right", "close-up", "photo"),
    Scene("beach", "center", "full", "watercolor"),
    Scene("red", "center", "full", "photo"),
    Scene("forest", "right", "full", "pencil"),
    Scene("blue", "left", "close-up", "photo"),
)
DEFAULT_SWEEPS = ((OURS, (0.5, 1.0, 2.0, 3.0)), (method_row(SINGLE_TOKEN), (0.5, 1.0, 2.0)),
                  (method_row(DECOUPLED), (0.25, 0.5, 1.0, 2.0, 4.0)),  # up to where its prompt alignment collapses
                  (IP_ADAPTER_ROW, (0.5, 1.0, 2.0, 4.0, 8.0)))


@dataclass(frozen=True)
class EvalConfig:
    # sized for make toyworld-eval's 15 min on 2 cores: 916 KSampler calls with the oracles of every identity
    # (evaluation_size); measured 0.69 s per call overall (the second edition's full run, 908 s / 1,320), 0.88
    # with the CPUs shared by other jobs: 630..810 s (README, "The experiment", evaluate)
    ids_per_domain: int = 9  # held-out identities 1800.. of each domain
    gallery: int = 4  # renders of each identity its images are compared with
    pairs: int = 8  # two-subject evaluations (person 1800+i with dog 1800+i, evaluation_two.pair)
    prompts: int = 3  # the first prompts of EVAL_SCENES
    sweep_ids_per_domain: int = 4  # the sweep's identities: the first of the evaluation's (at most ids_per_domain)
    sweep_prompts: int = 2  # the sweep's prompts: the first of the evaluation's
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

    def scenes_for(self, domain: str, identity_id: int) -> tuple[Scene, ...]:
        """The prompts of one identity, in order (every row, the sweep and the grid take them from here):
        the first ``prompts`` of EVAL_SCENES, each asking for look values its reference does not show
        (``evaluation_prompts``)."""
        return identity_prompts(domain, identity_id, self.scenes(), self.seed)

    def sweep_keys(self) -> list:
        """(domain, id, scene) of the sweep's images."""
        ids = self.ids()[:self.sweep_ids_per_domain]
        return [(d, i, s) for d in DOMAINS for i in ids for s in self.scenes_for(d, i)[:self.sweep_prompts]]

    def extra_strengths(self, methods) -> dict[str, tuple[float, ...]]:
        """The sweep's strengths other than 1 (strength 1 is the main row), of the methods evaluated."""
        return {m: tuple(float(s) for s in strengths if s != 1.0) for m, strengths in self.sweeps if m in methods}

    def pair_ids(self) -> list[tuple[int, int]]:
        return [pair(n) for n in range(self.pairs)]


def single_rows(methods, oracle_methods) -> list[str]:
    """The one-subject rows in table order: ceilings, the floor, the methods (whole, then masked), oracles."""
    return [RENDERS, ROUND_TRIP, ORACLE_TEXT, BASE, *methods, *map(masked_row, masked_methods(methods)),
            *(oracle_row(m) for m in methods if m in oracle_methods)]


def evaluate(host: ToyHost, methods: dict, identity_net, scene_net, config: EvalConfig, oracles: dict | None = None,
             progress=None, elsewhere: dict | None = None) -> dict:
    """``methods``: {name: (training method, encoder)}; ``oracles``: {(method name, domain, id): NestedSubject};
    ``elsewhere``: {domain: a job whose ``result()`` is ``collect_domain``'s for that domain, computed in
    another process with the same files} (the images are the same wherever they are made: one thread,
    fixed seeds). Returns the scores and the images (for the grid and the plot)."""
    elsewhere = elsewhere or {}
    parts = {domain: collect_domain(host, methods, oracles, config, domain, progress)
             for domain in DOMAINS if domain not in elsewhere}
    two = two_subjects(host, methods, config, progress)
    demo = demo_scores(host, methods, config, identity_net, scene_net, progress)
    for domain, job in elsewhere.items():
        parts[domain] = job.result()
        if progress is not None:
            progress.update(sampled(*parts[domain]))
    rows, sweep = parts[DOMAINS[0]]
    for domain in DOMAINS[1:]:
        for merged, part in zip((rows, sweep), parts[domain]):
            for name, collected in part.items():
                merged[name].extend(collected)
    single = {name: rows[name].scores(identity_net, scene_net, attributes=True) for name in rows}
    for method in methods:
        if oracle_row(method) in single:
            keys = rows[oracle_row(method)].keys
            single[oracle_row(method)]["same_images"] = {
                name: rows[name].subset(keys).scores(identity_net, scene_net)["identity"] for name in (BASE, method)}
    paired = {f"{OURS} - {other}": paired_difference(rows[OURS], rows[other], identity_net, scene_net)
              for other in methods if other != OURS and OURS in methods}
    return {"single": single, "paired": paired,
            "sweep": sweep_scores(rows, sweep, methods, identity_net, scene_net, config),
            "two": two_subject_scores(two, identity_net, scene_net), "demo": demo,
            "rows": rows, "sweep_rows": sweep, "two_rows": two}


def collect_domain(host: ToyHost, methods: dict, oracles: dict | None, config: EvalConfig, domain: str,
                   progress=None) -> tuple[dict, dict]:
    """The images of ``domain``'s held-out identities: ({row: Collected}, {(method, strength): Collected} of
    the sweep's other strengths)."""
    oracles = {k: v for k, v in (oracles or {}).items() if k[0] in methods}
    rows = {name: Collected() for name in single_rows(methods, {k[0] for k in oracles})}
    sweep = {(m, s): Collected() for m, strengths in config.extra_strengths(methods).items() for s in strengths}
    for identity_id in config.ids():
        _one_identity(host, methods, oracles, config, domain, identity_id, rows, sweep, progress)
    return rows, sweep


def sampled(rows: dict, sweep: dict) -> int:
    """KSampler calls behind ``collect_domain``'s images (the renders and their round trips are not sampled)."""
    return sum(len(c.images) for name, c in rows.items() if name not in (RENDERS, ROUND_TRIP)) + \
        sum(len(c.images) for c in sweep.values())


def _one_identity(host, methods, oracles, config, domain, identity_id, rows, sweep, progress) -> None:
    word, settings = CLASS_WORDS[domain], config.sampler
    ref = reference(domain, identity_id)
    image, mask = np.asarray(ref.image)[None], np.asarray(ref.mask)[None]
    gallery = gallery_renders(domain, identity_id, config.gallery)
    models, subjects = {BASE: host.model}, {}
    for name, (method, encoder) in methods.items():
        subjects[name] = host.subject(method, encoder, image, word)
        models[name] = host.apply(host.model, subjects[name], method.rule)
        if name in masked_methods(methods):
            models[masked_row(name)] = host.with_subject(host.model, method, encoder, image, word, masks=mask)
        if (name, domain, identity_id) in oracles:
            models[oracle_row(name)] = host.apply(host.model, oracles[name, domain, identity_id], method.rule)
    sweep_keys = set(config.sweep_keys())
    sweep_models = {(name, strength): host.apply(host.model, subjects[name], methods[name][0].rule, strength)
                    for name, strength in sweep} if any(k[:2] == (domain, identity_id) for k in sweep_keys) else {}
    scenes = config.scenes_for(domain, identity_id)
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
        tick(progress)
        for name, model in models.items():
            rows[name].add(host.sample(model, text, seed, settings), gallery, scene, key)
            tick(progress)
        if key in sweep_keys:
            for point, model in sweep_models.items():
                sweep[point].add(host.sample(model, text, seed, settings), gallery, scene, key)
                tick(progress)


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


def evaluation_size(config: EvalConfig, methods, oracles=()) -> int:
    """KSampler calls of ``evaluate`` (``methods``: names; ``oracles``: (method, domain, id) keys)."""
    ids = set(config.ids())
    oracle_count = sum(1 for m, _, i in oracles if m in methods and i in ids)
    per_key = 2 + len(methods) + len(masked_methods(methods))  # oracle text, base, every method whole and masked
    single = (len(DOMAINS) * len(ids) * per_key + oracle_count) * config.prompts
    sweep = len(config.sweep_keys()) * sum(map(len, config.extra_strengths(methods).values()))
    return single + sweep + two_subject_size(config, methods)

"""Oracle subjects: what each attention rule can reach when its subject is fitted directly.

An encoder maps reference images to a subject: tokens and, for every cross-attention layer, nested
keys K~ and values V~ [M, width]. An *oracle* skips the encoder's limits: for one held-out identity
it starts from the subject the trained encoder gives for the identity's evaluation reference, then
treats every layer's K~ and V~ as free parameters and fits them with Adam to the training objective
(the denoising loss, subject mask weighting included) on other renders of that identity. The
encoder takes no part after the start. What an oracle achieves estimates what the rule itself
(nested attention, or decoupled cross-attention) can carry of one identity into the same frozen
base, whatever the encoder: an estimate from below (finite steps, a local optimum from the
encoder's start), not a bound.

All subjects of a method are fitted together, one UNet call per step (``optimise_subjects``): the
full setting (2 methods x 2 domains x 12 ids, 150 steps) takes about 3 minutes on one CPU thread.

Everything that touches the model is the trainer's: the rule is ``method.rule``, installed by
``training.step.Denoiser`` (``host.apply_binding`` with a ``TrainingBinding``, the code path of
training); rows are assembled by ``training.batch.assemble`` (noise and timestep per row from
``row_generator``, background weight from the mask, the subject word's prompt positions), and the
loss is ``Denoiser.losses``. Only the features come from in-memory renders (``_RenderStore``)
instead of a training folder: the host's VAE and text encoder, rounded as the feature cache rounds.

The renders are ``dataset.make_samples`` of the identity (never the evaluation's reference, gallery
or scene renders, which have their own keys), with scenes outside the evaluation's prompt set; the
loss before/after is measured on a second, disjoint set of renders with fixed noise and timesteps.
Captions are the full class-word captions (no classifier-free-guidance drops: a dropped subject
gives no gradient, and the evaluation prompts are full captions).

Files: ``out_dir/<method key>/<domain>_<id>.safetensors`` (``save_subject``), the method key being
the method's ``file_key`` (``nested_attention_core.methods``); ``load_oracles`` reads them back. Apply one as the evaluation
applies a subject: ``host.apply_subject(model, subject, 1.0, rule=method.rule)``.
"""
from __future__ import annotations

import logging
import re
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from ..nested_attention_core.methods import DECOUPLED, METHODS, NESTED
from ..nested_attention_core.subject import NestedSubject, load_subject, save_subject
from .dataset import Sample, make_samples
from .errors import ExperimentError
from .identity import CLASS_WORDS, DOMAINS, HELDOUT_START, IDENTITY_COUNT, sample_identity
from .progress import progress_bar
from .render import render_with_mask
from .rng import key_seed
from .scene import caption

log = logging.getLogger(__name__)

ORACLE_METHODS = (NESTED, DECOUPLED)  # single token has one pooled token: its oracle is not defined here
FILE_PATTERN = re.compile(r"^(person|pet)_(\d+)\.safetensors$")


@dataclass(frozen=True)
class OracleConfig:
    renders: int = 16  # training renders per identity
    steps: int = 150  # Adam steps (every subject of a method in each)
    batch: int = 4  # rows of each subject per step (all subjects of a method share one UNet call)
    lr: float = 3e-2  # Adam; decoupled overfits its 16 renders from 1e-1 on, nested gains a little more there
    seed: int = 0
    ids_per_domain: int = 12  # held-out ids 1800.. of each domain
    methods: tuple[str, ...] = ("nested", "decoupled")
    heldout_renders: int = 8  # other renders of the identity for the before/after loss
    heldout_draws: int = 4  # fixed (noise, timestep) draws per held-out render
    background_loss_weight: float = 0.25  # as the encoders were trained (EncoderStageConfig)
    size: int = 64


# ---- features of in-memory renders, in the shape training.batch.assemble reads ------------------

@dataclass(frozen=True)
class _Render:
    """What ``assemble`` reads of a training image: its caption, its subject word and its features."""
    caption: str
    word: str
    latent: object  # training.features.LatentFeatures


class _RenderStore:
    """The three ``FeatureStore`` calls ``assemble`` makes, on in-memory renders. Text goes through
    the trainer's own ``FeatureStore.text`` (no cache folder; memoised here). An oracle has no
    reference image (its subject is the parameters): ``reference`` is a placeholder."""

    def __init__(self, host):
        from ..training.cache import FeatureCache
        from ..training.features import FeatureStore, HostEncoders

        self.encoders = HostEncoders(host.clip, host.vae, host.clip_vision)
        self._store = FeatureStore(self.encoders, FeatureCache(None), "", "", 0)
        self._texts = {}

    def latent(self, image: _Render):
        return image.latent

    def text(self, text: str):
        if text not in self._texts:
            self._texts[text] = self._store.text(text)
        return self._texts[text]

    def reference(self, image, view, masked=True) -> torch.Tensor:
        return torch.zeros(1, 1, 1)

    @torch.no_grad()
    def render(self, sample: Sample, size: int) -> _Render:
        """One render as the trainer's features: VAE latent and the subject mask at latent size
        (area-averaged), both rounded to the cache's float16 (``FeatureStore.latent``)."""
        from ..training.cache import as_stored
        from ..training.data import target_crop, to_tensor
        from ..training.features import FEATURE_DTYPE, LatentFeatures

        rendered = render_with_mask(sample_identity(sample.domain, sample.identity_id), sample.scene,
                                    sample.variation_seed, size)
        latent = as_stored(self.encoders.latent(to_tensor(rendered.image)), FEATURE_DTYPE)
        mask = F.interpolate(to_tensor(rendered.mask)[:, None], size=latent.shape[-2:], mode="area")
        features = LatentFeatures(latent.float(), as_stored(mask, FEATURE_DTYPE).float(),
                                  target_crop((size, size), size)[1])
        return _Render(caption(sample.domain, sample.scene), CLASS_WORDS[sample.domain], features)


def identity_samples(domain: str, identity_id: int, count: int, seed: int, purpose: str) -> list[Sample]:
    """``count`` renders of one identity from ``make_samples``, skipping the evaluation's prompt scenes;
    ``purpose`` ("train", "heldout") keys the draw, so the two sets never share a render."""
    from .evaluation import EVAL_SCENES

    draw = key_seed("toyworld-oracle", purpose, seed) & 0x7FFFFFFF
    samples = [s for s in make_samples([domain], [identity_id], count + 8, draw) if s.scene not in EVAL_SCENES]
    if len(samples) < count:  # 6 of 144 scenes are excluded: 8 spare draws almost always suffice
        samples = [s for s in make_samples([domain], [identity_id], 4 * count + 8, draw)
                   if s.scene not in EVAL_SCENES]
    return samples[:count]


# ---- the loss of subjects' keys/values, through the trainer's denoiser --------------------------

@dataclass(frozen=True)
class _Images:
    images: tuple  # what assemble reads of TrainingData


def make_batch(denoiser, store: _RenderStore, renders: Sequence[Sequence[_Render]], rows_each: int, epoch: int,
               seed: int, background_loss_weight: float):
    """``rows_each`` rows of every subject (subject s: rows s*rows_each ...), cycling through its renders
    (``renders[s]``) from ``epoch * rows_each`` on, as one training batch: ``assemble`` with full captions;
    row j draws its noise and timestep from ``row_generator(seed, epoch, j)``."""
    from ..training.batch import RowPlan, assemble
    from ..training.data import ReferenceChoice

    images, plans = [], []
    for own in renders:
        offset = len(images)
        images.extend(own)
        for j in range(rows_each):
            image = offset + (epoch * rows_each + j) % len(own)
            plans.append(RowPlan(image, epoch, len(plans), ReferenceChoice(image, None), "none"))
    return assemble(store, _Images(tuple(images)), plans, denoiser.model_sampling, denoiser.process_latent_in, seed,
                    background_loss_weight)


def stacked(subjects: Sequence[NestedSubject]) -> dict:
    """{layer id: (keys, values) [S, M, width]} of S subjects (float32 copies)."""
    return {layer: tuple(torch.stack([s.nested[layer][i].detach().float() for s in subjects]).clone() for i in (0, 1))
            for layer in subjects[0].nested}


def subject_losses(denoiser, batch, nested: Optional[dict], rows_each: int, autocast_dtype=None) -> torch.Tensor:
    """Mean denoising loss of each subject's ``rows_each`` rows: [S]. ``nested``: {layer id: (keys,
    values) [S, M, width]} handed to row j of subject s = j // rows_each; None: no subject."""
    if nested is not None:
        index = torch.arange(next(iter(nested.values()))[0].shape[0]).repeat_interleave(rows_each)
        nested = {layer: (k[index], v[index]) for layer, (k, v) in nested.items()}
    return denoiser.losses(batch, nested, autocast_dtype).view(-1, rows_each).mean(1)


def optimise_subjects(denoiser, store: _RenderStore, starts: Sequence[NestedSubject],
                      renders: Sequence[Sequence[_Render]], config: OracleConfig, seed: int,
                      autocast_dtype=None, progress=None) -> tuple[list[NestedSubject], list[float]]:
    """Adam on every layer's nested keys and values of each subject in ``starts`` (fitted on its own
    ``renders[s]``), ``config.steps`` steps of ``config.batch`` rows per subject. All subjects share one
    UNet call per step; the loss is the sum of the subjects' own mean losses, so each subject's keys
    and values get exactly the gradient of its own loss (Adam is elementwise: the same as fitting them
    one by one, at a fraction of the cost). fp32, as the encoders were trained.
    Returns the subjects (same word, tokens and family) and the mean loss of every step;
    ``progress.update(1)`` after each step."""
    params = {layer: tuple(torch.nn.Parameter(t) for t in kv) for layer, kv in stacked(starts).items()}
    optimizer = torch.optim.Adam([p for kv in params.values() for p in kv], lr=config.lr)
    history = []
    for step in range(config.steps):
        batch = make_batch(denoiser, store, renders, config.batch, step, seed, config.background_loss_weight)
        losses = subject_losses(denoiser, batch, params, config.batch, autocast_dtype)
        optimizer.zero_grad(set_to_none=True)
        losses.sum().backward()
        optimizer.step()
        history.append(float(losses.detach().mean()))
        if progress is not None:
            progress.update(1)
    oracles = [replace(start, nested={layer: (k[s].detach().clone(), v[s].detach().clone())
                                      for layer, (k, v) in params.items()}) for s, start in enumerate(starts)]
    return oracles, history


@torch.no_grad()
def heldout_losses(denoiser, store: _RenderStore, renders: Sequence[Sequence[_Render]],
                   subjects: Optional[Sequence[NestedSubject]], config: OracleConfig,
                   seeds: Sequence[int]) -> list[float]:
    """Each subject's mean loss (fp32) on its own held-out renders ``renders[s]``, every render with
    ``config.heldout_draws`` fixed (noise, timestep) draws keyed by ``seeds[s]``: the same batch
    whichever subject is measured on it (``subjects`` None: no subject, the base model alone)."""
    rows = len(renders[0]) * config.heldout_draws
    out = []
    for s, own in enumerate(renders):
        batch = make_batch(denoiser, store, [own], rows, 0, seeds[s] & 0x7FFFFFFF, config.background_loss_weight)
        nested = None if subjects is None else stacked([subjects[s]])
        out.append(float(subject_losses(denoiser, batch, nested, rows)[0]))
    return out


# ---- all oracles of a weights folder --------------------------------------------------------------

def _method_key(name: str) -> str:
    """The file key of an oracle method given by name."""
    method = METHODS.get(name)
    if method not in ORACLE_METHODS:
        raise ExperimentError(f"oracle method {name!r}: choose from {[m.name for m in ORACLE_METHODS]} (single token "
                              "has one pooled token; its oracle is not defined here)")
    return method.file_key


def _check_weights(weights_dir: Path, keys: Sequence[str]) -> None:
    from .publish import BASE_FILES, ENCODER_FILES

    if not weights_dir.is_dir():
        raise ExperimentError(f"weights folder {weights_dir} does not exist: give the folder the experiment's publish "
                              "stage wrote (OUT_DIR/weights), or the committed toyworld/weights")
    for rel in (*BASE_FILES.values(), *(ENCODER_FILES[k] for k in keys)):
        if not (weights_dir / rel).is_file():
            raise ExperimentError(f"weights folder {weights_dir} has no {rel}: give the folder the experiment's "
                                  "publish stage wrote (OUT_DIR/weights), or restore the committed ones with "
                                  "`git checkout -- toyworld/weights`")


def train_oracles(weights_dir: Path, out_dir: Path, config: OracleConfig, bar=None) -> dict:
    """One oracle subject per (method, domain, held-out id), written under ``out_dir``. Returns, per
    method key, the mean loss on the held-out renders (fixed noise and timesteps, fp32) without a
    subject, with the encoder's subject and with the oracle, the relative drop (%) from the encoder's
    subject to the oracle (and from no subject to the oracle), how many subjects improved, and the
    seconds spent (shared preparation split evenly); the whole run's wall and CPU seconds. (The
    per-step training loss is not reported: each step draws new timesteps, so it is mostly noise.)"""
    from ..nested_attention_core.weights import load_weights
    from ..training.method import method_named
    from ..training.step import Denoiser
    from .evaluation import reference_render
    from .generation import ToyHost
    from .publish import BASE_FILES, ENCODER_FILES

    weights_dir, out_dir = Path(weights_dir), Path(out_dir)
    keys = [_method_key(name) for name in config.methods]
    _check_weights(weights_dir, keys)
    begun = started = time.perf_counter()
    cpu_begun = time.process_time()
    host = ToyHost.load(weights_dir / BASE_FILES["checkpoint"], weights_dir / BASE_FILES["clip_vision"])
    host.model.model.eval().requires_grad_(False)  # frozen: only the subjects' keys/values get gradients
    store = _RenderStore(host)
    ids = range(HELDOUT_START, min(IDENTITY_COUNT, HELDOUT_START + config.ids_per_domain))
    subjects = [(domain, identity_id) for domain in DOMAINS for identity_id in ids]
    with progress_bar(bar, len(subjects) + len(keys) * config.steps, "oracles") as progress:
        train, heldout, features = [], [], []
        for domain, identity_id in subjects:
            train.append([store.render(s, config.size) for s in
                          identity_samples(domain, identity_id, config.renders, config.seed, "train")])
            heldout.append([store.render(s, config.size) for s in
                            identity_samples(domain, identity_id, config.heldout_renders, config.seed, "heldout")])
            features.append(host.features(reference_render(domain, identity_id)[None]))
            progress.update(1)
        shared = (time.perf_counter() - started) / len(keys)
        report = {}
        for name, key in zip(config.methods, keys):
            started = time.perf_counter()
            method = method_named(name)
            encoder = load_weights(weights_dir / ENCODER_FILES[key], accept=[name]).encoder.float().eval()
            denoiser = Denoiser(host.model, method.rule)
            denoiser.load()
            with torch.no_grad():
                starts = [method.subject(encoder, f, CLASS_WORDS[domain], host.family)
                          for f, (domain, _) in zip(features, subjects)]
            oracles, _ = optimise_subjects(denoiser, store, starts, train, config,
                                                 key_seed("toyworld-oracle-train", config.seed) & 0x7FFFFFFF,
                                                 progress=progress)
            losses = {what: heldout_losses(denoiser, store, heldout, found, config,
                                           [key_seed("toyworld-oracle-heldout", config.seed, *x) for x in subjects])
                      for what, found in (("none", None), ("encoder", starts), ("oracle", oracles))}
            (out_dir / key).mkdir(parents=True, exist_ok=True)
            for (domain, identity_id), oracle in zip(subjects, oracles):
                oracle = replace(oracle, source=f"oracle ({key}, {domain} {identity_id}; toyworld/oracle.py)")
                save_subject(out_dir / key / f"{domain}_{identity_id}.safetensors", oracle)
            none, before, after = (float(np.mean(losses[w])) for w in ("none", "encoder", "oracle"))
            report[key] = {
                "method": name, "subjects": len(subjects), "loss_no_subject": none, "loss_encoder": before,
                "loss_oracle": after, "loss_drop_pct": 100.0 * (before - after) / before,
                "subjects_improved": int(sum(a < b for a, b in zip(losses["oracle"], losses["encoder"]))),
                "oracle_drop_vs_no_subject_pct": 100.0 * (none - after) / none,
                "seconds": round(shared + time.perf_counter() - started, 2)}
            log.info("oracles %s: held-out loss %.5f (no subject %.5f) -> %.5f (%.1f%%), %.0f s", key, before, none,
                     after, report[key]["loss_drop_pct"], report[key]["seconds"])
    report["config"] = {k: (list(v) if isinstance(v, tuple) else v) for k, v in config.__dict__.items()}
    report["threads"] = torch.get_num_threads()
    report["total_seconds"] = round(time.perf_counter() - begun, 2)
    report["cpu_seconds"] = round(time.process_time() - cpu_begun, 2)  # of all threads: the cost on a busy machine
    return report


def load_oracles(folder: Path) -> dict:
    """{(method key, domain, identity id): NestedSubject} of every oracle file under ``folder``."""
    folder = Path(folder)
    if not folder.is_dir():
        raise ExperimentError(f"oracle folder {folder} does not exist: give the out_dir train_oracles wrote")
    found = {}
    keys = sorted(m.file_key for m in ORACLE_METHODS)
    for method in sorted(ORACLE_METHODS, key=lambda m: m.file_key):
        key = method.file_key
        for path in sorted((folder / key).glob("*.safetensors")) if (folder / key).is_dir() else ():
            match = FILE_PATTERN.match(path.name)
            if match is None:
                raise ExperimentError(f"oracle folder {folder}: unexpected file {key}/{path.name}; oracle files are "
                                      "named <domain>_<id>.safetensors (domain person or pet)")
            found[(key, match[1], int(match[2]))] = load_subject(path, accept=[method.name])
    if not found:
        raise ExperimentError(f"oracle folder {folder} holds no oracle subjects (expected "
                              f"{'/ or '.join(keys)}/<domain>_<id>.safetensors): give "
                              "the out_dir train_oracles wrote")
    return found

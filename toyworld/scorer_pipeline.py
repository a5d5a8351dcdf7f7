"""The scorer pipeline: render, train both scoring models, measure them on held-out identities, save.

``train_scorers(out_dir)`` writes ``identity.safetensors``, ``scene.safetensors`` and
``scorer_report.json`` (the held-out numbers and the timings).
"""
from __future__ import annotations

import json
import logging
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from .dataset import Sample, make_samples, render_array
from .progress import progress_bar
from .errors import ScorerError
from .identity import DOMAINS, HELDOUT_START, IDENTITY_COUNT, heldout_ids, train_ids
from .metrics import retrieval_top1, verification
from .nets import IdentityNet, SceneNet, parameter_count
from .scene import STYLES
from .scorer_training import (FitConfig, attribute_targets, fit_steps, identity_labels, scene_labels,
                              train_identity_net, train_scene_net)
from .scoring import embed, save_scorer, scene_accuracy

log = logging.getLogger(__name__)

IDENTITY_FILE, SCENE_FILE, REPORT_FILE = "identity.safetensors", "scene.safetensors", "scorer_report.json"


@dataclass(frozen=True)
class ScorerPipelineConfig:
    train_ids_per_domain: int = HELDOUT_START  # training identities 0..n-1 of each domain (all of them)
    renders_per_identity: int = 4  # many identities beat many renders: attributes generalize from variety
    eval_ids_per_domain: int = 200  # held-out identities 1800.. of each domain
    eval_renders_per_identity: int = 4
    identity_fit: FitConfig = field(default_factory=lambda: FitConfig(epochs=6))
    identity_weight: float = 0.5  # weight of the CosFace loss over training identities (0: attribute heads only)
    scene_fit: FitConfig = field(default_factory=lambda: FitConfig(epochs=3))
    seed: int = 0
    threads: int = 1

    def __post_init__(self) -> None:
        if not 1 <= self.train_ids_per_domain <= HELDOUT_START:
            raise ScorerError(f"train_ids_per_domain {self.train_ids_per_domain} must be in 1..{HELDOUT_START}")
        if not 2 <= self.eval_ids_per_domain <= IDENTITY_COUNT - HELDOUT_START:
            raise ScorerError(f"eval_ids_per_domain {self.eval_ids_per_domain} must be in 2..{IDENTITY_COUNT - HELDOUT_START}")
        if self.eval_renders_per_identity < 2:
            raise ScorerError("eval_renders_per_identity must be at least 2 (a gallery render and a probe)")


def train_scorers(out_dir, config: ScorerPipelineConfig = ScorerPipelineConfig(), bar=None) -> dict:
    """``bar(total, desc)``: a progress bar (tqdm-like context manager) per step, or None."""
    torch.set_num_threads(config.threads)
    out_dir = Path(out_dir)
    timings = {}
    t = time.perf_counter()
    samples = make_samples(DOMAINS, train_ids()[:config.train_ids_per_domain], config.renders_per_identity, config.seed)
    with progress_bar(bar, len(samples), "scorers: renders") as progress:
        images = render_array(samples, progress=progress.update)
    timings["render_train_s"] = time.perf_counter() - t
    log.info("rendered %d training images in %.0f s", len(images), timings["render_train_s"])

    t = time.perf_counter()
    labels = identity_labels(samples)[0] if config.identity_weight > 0 else None
    with progress_bar(bar, fit_steps(len(images), config.identity_fit), "scorers: identity net") as progress:
        identity_net = train_identity_net(images, attribute_targets(samples), config.identity_fit, labels=labels,
                                          identity_weight=config.identity_weight, progress=progress.update)
    timings["train_identity_s"] = time.perf_counter() - t
    t = time.perf_counter()
    with progress_bar(bar, fit_steps(len(images), config.scene_fit), "scorers: scene net") as progress:
        scene_net = train_scene_net(images, scene_labels(samples), config.scene_fit, progress=progress.update)
    timings["train_scene_s"] = time.perf_counter() - t

    t = time.perf_counter()
    eval_samples = make_samples(DOMAINS, heldout_ids()[:config.eval_ids_per_domain], config.eval_renders_per_identity,
                                config.seed + 1_000_003)
    eval_images = render_array(eval_samples)
    report = evaluate_scorers(identity_net, scene_net, eval_samples, eval_images)
    timings["evaluate_s"] = time.perf_counter() - t

    save_scorer(identity_net, out_dir / IDENTITY_FILE)
    save_scorer(scene_net, out_dir / SCENE_FILE)
    report.update(timings=timings, config=asdict(config), train_images=len(images),
                  parameters={"identity": parameter_count(identity_net), "scene": parameter_count(scene_net)})
    (out_dir / REPORT_FILE).write_text(json.dumps(report, indent=1) + "\n", encoding="utf-8")
    log.info("scorers saved to %s: %s", out_dir, json.dumps({k: report[k] for k in ("identity", "scene")}))
    return report


def shown_scene(sample: Sample):
    """What a render shows, as a scene: its scene factors and ``Sample.shown_look`` (a factor its framing
    hides is None, not scored, as the evaluation's prompts leave it unnamed)."""
    return replace(sample.scene, **sample.shown_look)


def evaluate_scorers(identity_net: IdentityNet, scene_net: SceneNet, samples: Sequence[Sample],
                     images: np.ndarray) -> dict:
    """Identity verification/retrieval and scene accuracy on renders of (held-out) identities: every
    scene factor, and every look factor of each image's domain that its framing shows (``shown_scene``).

    Retrieval: the gallery holds one entry per identity (the mean embedding of its first half of
    renders); every other render is a probe that must find its own identity among all gallery entries."""
    embeddings = embed(identity_net, images)
    keys = [s.key for s in samples]
    identity = verification(embeddings, keys, [s.domain for s in samples])
    by_key: dict[str, list[int]] = {}
    for i, key in enumerate(keys):
        by_key.setdefault(key, []).append(i)
    gallery, probe_rows, probe_targets = [], [], []
    for row, indices in enumerate(by_key.values()):
        half = max(1, len(indices) // 2)
        gallery.append(embeddings[indices[:half]].mean(dim=0))
        probe_rows += indices[half:]
        probe_targets += [row] * (len(indices) - half)
    gallery_t, targets = torch.stack(gallery), torch.tensor(probe_targets)
    identity["gallery_size"] = len(gallery)
    identity["top1_retrieval"] = retrieval_top1(gallery_t, embeddings[probe_rows], targets)
    identity["top1_retrieval_by_probe_style"] = {}
    for style in STYLES:
        pick = [k for k, r in enumerate(probe_rows) if samples[r].scene.style == style]
        if pick:
            identity["top1_retrieval_by_probe_style"][style] = retrieval_top1(
                gallery_t, embeddings[[probe_rows[k] for k in pick]], targets[pick])
    scene = scene_accuracy(scene_net, images, [shown_scene(s) for s in samples], [s.domain for s in samples])
    return {"identity": identity, "scene": scene, "eval_images": len(samples), "eval_identities": len(gallery)}

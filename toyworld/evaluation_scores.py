"""A row of the evaluation (generated images with what they are scored against) and its scores.

* identity: mean cosine between an image's identity embedding and its identity's gallery
  (``scoring.reference_similarity``, the toy ArcFace score);
* prompt alignment: the scene model's hits on the scene the prompt asked for, per factor; per image the
  share of the factors its prompt names that are right (``share``, the headline and the trade-off's
  axis), and whether all are (``all``). An image is one draw of many factors: with looks that a 64 px
  image barely holds, ``all`` is near 0 even for the VAE round trip of a render (0.07 in the first
  full third-edition run), so it cannot show a trade-off; the share can;
* attributes (one subject): per discrete attribute, whether the identity net's head reads the
  reference identity's value in the image (``scoring.predict_attributes``).

Images of one identity share its reference, its gallery and often its failure, so they are not
independent draws: every standard error here is clustered by identity (a pair, for two subjects):
the mean of each identity's images first, then the standard error of those means.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional, Sequence

import numpy as np
import torch

from .identity import ATTRIBUTES, CLASS_WORDS, attribute_labels, sample_identity
from .look import LOOK_FIELDS
from .scene import FACTORS
from .scoring import every_right, predict_attributes, reference_similarity, scored_factors, share_right


def clustered_se(values: Sequence[float], clusters: Sequence) -> Optional[float]:
    """Standard error of the mean of ``values`` clustered by ``clusters`` (one label per value): the
    mean of each cluster, then the standard error over cluster means; None with fewer than two clusters."""
    means: dict = {}
    for value, cluster in zip(values, clusters):
        means.setdefault(cluster, []).append(float(value))
    if len(means) < 2:
        return None
    per_cluster = np.array([np.mean(v) for v in means.values()])
    return float(per_cluster.std(ddof=1) / np.sqrt(len(per_cluster)))


def key_text(key) -> str:
    """'person 1800 | red/center/full/photo' (one subject) or 'pair 1800+1999 | ...' (two subjects)."""
    first, second, scene = key
    scene_text = f"{scene.background}/{scene.placement}/{scene.framing}/{scene.style}"
    return f"{first} {second} | {scene_text}" if isinstance(first, str) else f"pair {first}+{second} | {scene_text}"


@dataclass
class Collected:
    """Generated images of one row with what they are scored against. A key is (domain, identity id,
    scene) for one subject and (person id, dog id, scene) for two; its first two parts are the cluster."""
    images: list = field(default_factory=list)
    scenes: list = field(default_factory=list)
    keys: list = field(default_factory=list)
    galleries: dict = field(default_factory=dict)  # cluster -> renders [g, h, w, 3] its images are compared with

    def add(self, image: np.ndarray, gallery: np.ndarray, scene, key) -> None:
        self.images.append(image)
        self.scenes.append(scene)
        self.keys.append(key)
        self.galleries.setdefault(key[:2], gallery)

    def extend(self, other: "Collected") -> None:
        """``other``'s images after this row's (the same row's images of other identities)."""
        self.images += other.images
        self.scenes += other.scenes
        self.keys += other.keys
        for cluster, gallery in other.galleries.items():
            self.galleries.setdefault(cluster, gallery)

    def image(self, key) -> np.ndarray:
        return self.images[self.keys.index(key)]

    def subset(self, keys) -> "Collected":
        """The images of ``keys`` that this row has, in this row's order."""
        wanted, out = set(keys), Collected()
        for image, scene, key in zip(self.images, self.scenes, self.keys):
            if key in wanted:
                out.add(image, self.galleries[key[:2]], scene, key)
        return out

    def scores(self, identity_net, scene_net, factors: Optional[Sequence[str]] = None,
               attributes: bool = False) -> dict:
        """identity (± clustered SE), prompt accuracy per factor (``factors``: those reported; default
        all; a look factor over the images whose prompt names it), ``share`` (the mean share of the
        factors its prompt names that an image gets right, ± clustered SE as ``prompt_se``), ``all`` (every
        factor right), and over the images whose prompt names a look: ``subject`` (the share of the look
        factors right, ± ``subject_se``), ``subject: all`` and ``scene: all``; n, identities, every image's
        identity score; with ``attributes``, the per-attribute accuracy of each domain (one subject)."""
        clusters = [key[:2] for key in self.keys]
        sims = self._similarities(identity_net)
        hits = self._hits(scene_net, factors)
        count = len(self.images)
        prompt = {name: float(right[named].double().mean()) for name, (right, named) in hits.items()}
        share, _ = share_right(hits.values(), count)
        prompt["share"] = float(share.mean())
        prompt["all"] = float(every_right(hits.values(), count).double().mean())
        out = {"identity": float(sims.mean()), "identity_se": clustered_se(sims.tolist(), clusters),
               "prompt": prompt, "prompt_se": clustered_se(share.tolist(), clusters),
               "n": count, "identities": len(set(clusters))}
        subject, subject_all, asked = _subject(hits, count)
        if asked.any():
            scene = [hits[f] for f in FACTORS if f in hits]
            prompt["scene: all"] = float(every_right(scene, count).double().mean())
            prompt["subject"] = float(subject[asked].mean())
            prompt["subject: all"] = float(subject_all[asked].double().mean())
            out["subject_se"] = clustered_se(subject[asked].tolist(), [c for c, a in zip(clusters, asked) if a])
        if attributes:
            out["attributes"] = self._attribute_accuracy(identity_net)
        out["per_image"] = {key_text(k): round(float(s), 5) for k, s in zip(self.keys, sims)}
        return out

    def _hits(self, scene_net, factors: Optional[Sequence[str]] = None) -> dict:
        """{factor: (right, named), bool per image each} of the reported factors (a look factor is named
        only by the prompts of its domain)."""
        hits = scored_factors(scene_net, np.stack(self.images), self.scenes, None)
        return hits if factors is None else {name: hits[name] for name in factors if name in hits}

    def per_image(self, identity_net, scene_net, factors: Optional[Sequence[str]] = None) -> dict:
        """{key: (identity, the share of the prompt's factors right, the share of its look factors right
        or None where the prompt names none)} of every image."""
        sims, hits = self._similarities(identity_net), self._hits(scene_net, factors)
        share, _ = share_right(hits.values(), len(self.images))
        subject, _, asked = _subject(hits, len(self.images))
        return {key: (float(s), float(h), float(r) if a else None)
                for key, s, h, r, a in zip(self.keys, sims, share.tolist(), subject.tolist(), asked.tolist())}

    def _similarities(self, identity_net) -> torch.Tensor:
        """Each image's mean cosine to its cluster's gallery, one gallery embedding per cluster."""
        sims = torch.empty(len(self.images), dtype=torch.float64)
        for cluster, gallery in self.galleries.items():
            rows = [i for i, key in enumerate(self.keys) if key[:2] == cluster]
            sims[rows] = reference_similarity(identity_net, np.stack([self.images[i] for i in rows]), gallery).double()
        return sims

    def _attribute_accuracy(self, identity_net) -> dict:
        """{class word: {attribute: {"accuracy", "se"}}}: how often the image shows the reference's value."""
        out = {}
        for domain in ATTRIBUTES:
            rows = [i for i, key in enumerate(self.keys) if key[0] == domain]
            if not rows:
                continue
            predicted = predict_attributes(identity_net, np.stack([self.images[i] for i in rows]), domain)
            truth = [attribute_labels(sample_identity(domain, self.keys[i][1])) for i in rows]
            clusters = [self.keys[i][:2] for i in rows]
            out[CLASS_WORDS[domain]] = {}
            for name, _ in ATTRIBUTES[domain]:
                hit = (predicted[name] == torch.tensor([t[name] for t in truth])).double().tolist()
                out[CLASS_WORDS[domain]][name] = {"accuracy": float(np.mean(hit)), "se": clustered_se(hit, clusters)}
        return out


def paired_difference(first: Collected, second: Collected, identity_net, scene_net,
                      factors: Optional[Sequence[str]] = None) -> dict:
    """``first`` minus ``second`` on the keys (identity, prompt, seed) both rows have: the mean of the
    per-image differences of identity, of prompt alignment and of the subject's look (shares of the
    factors right), each ± its standard error clustered
    by the key's cluster (identity, pair or seed), n and the clusters. Rows with the same seeds on the same
    keys differ only by what they add, so the paired difference is sharper than the two means' SEs say."""
    ours, theirs = first.per_image(identity_net, scene_net, factors), second.per_image(identity_net, scene_net, factors)
    keys = [key for key in ours if key in theirs]
    if not keys:
        return {"identity": None, "identity_se": None, "prompt": None, "prompt_se": None, "n": 0, "identities": 0}
    clusters = [key[:2] for key in keys]
    identity = [ours[k][0] - theirs[k][0] for k in keys]
    prompt = [ours[k][1] - theirs[k][1] for k in keys]
    looked = [k for k in keys if ours[k][2] is not None]
    subject = [ours[k][2] - theirs[k][2] for k in looked]
    return {"identity": float(np.mean(identity)), "identity_se": clustered_se(identity, clusters),
            "prompt": float(np.mean(prompt)), "prompt_se": clustered_se(prompt, clusters),
            "subject": float(np.mean(subject)) if subject else None,
            "subject_se": clustered_se(subject, [k[:2] for k in looked]) if subject else None,
            "n": len(keys), "identities": len(set(clusters))}


def _subject(hits: dict, count: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(the share of the named look factors right, float64; every named look factor right, bool; the
    prompt names one, bool), [count] each."""
    look = [hits[f] for f in LOOK_FIELDS if f in hits]
    share, asked = share_right(look, count)
    return share, every_right(look, count), asked

"""The experiment's measurement: identities never seen in training, a fixed prompt set, fixed seeds.

For each held-out identity of each domain: one reference render (in a random scene, so a method
that copies the reference instead of following the prompt loses prompt alignment) and a gallery of
other renders of the same identity. For each method and each prompt of ``EVAL_SCENES``, one image
with a fixed seed per (identity, prompt):

* identity similarity: mean cosine between the image's identity embedding and the gallery's
  (``scoring.reference_similarity``, the toy ArcFace score);
* prompt alignment: the scene model's accuracy on the scene the prompt asked for, per factor.

Two rows frame the methods: the base model with the prompt alone (no subject: the identity score
of a random person or dog) and the world's own renders of the identity in the prompt's scene (what
a perfect method would score). Two subjects: a held-out person and dog in one image, the person's
region the left half and the dog's the right half (ours, one ApplyNestedAttention each with a
region mask), each scored against a gallery of the same half of two-subject renders.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from .generation import SamplerSettings, ToyHost
from .identity import CLASS_WORDS, DOMAINS, PERSON, PET, heldout_ids, sample_identity
from .render import render, render_two
from .rng import key_seed
from .scene import Scene, caption, caption_two, sample_scene
from .scoring import reference_similarity, scene_accuracy

EVAL_SCENES = (
    Scene("red", "center", "full", "photo"),
    Scene("snow", "left", "full", "photo"),
    Scene("night", "right", "close-up", "photo"),
    Scene("beach", "center", "full", "watercolor"),
    Scene("forest", "right", "full", "pencil"),
    Scene("blue", "left", "close-up", "photo"),
)
TWO_SUBJECT_SCENES = (Scene("yellow", "center", "full", "photo"), Scene("snow", "center", "full", "photo"),
                      Scene("green", "center", "full", "watercolor"))


@dataclass(frozen=True)
class EvalConfig:
    ids_per_domain: int = 24  # held-out identities 1800.. of each domain
    gallery: int = 4  # renders of each identity its images are compared with
    pairs: int = 16  # two-subject evaluations (person i with dog i)
    sampler: SamplerSettings = field(default_factory=SamplerSettings)
    seed: int = 0


def reference_render(domain: str, identity_id: int) -> np.ndarray:
    key = ("toyworld-eval-reference", domain, identity_id)
    return np.asarray(render(sample_identity(domain, identity_id), sample_scene(*key), key_seed(*key) & 0x7FFFFFFF))


def gallery_renders(domain: str, identity_id: int, count: int) -> np.ndarray:
    renders = []
    for n in range(count):
        key = ("toyworld-eval-gallery", domain, identity_id, n)
        renders.append(np.asarray(render(sample_identity(domain, identity_id), sample_scene(*key),
                                         key_seed(*key) & 0x7FFFFFFF)))
    return np.stack(renders)


def scene_render(domain: str, identity_id: int, scene: Scene) -> np.ndarray:
    key = ("toyworld-eval-scene", domain, identity_id, scene)
    return np.asarray(render(sample_identity(domain, identity_id), scene, key_seed(*key) & 0x7FFFFFFF))


def half(images: np.ndarray, side: str) -> np.ndarray:
    """The left or right half of images [n, h, w, 3] (a subject's region in two-subject images)."""
    w = images.shape[2]
    return images[:, :, : w // 2] if side == "left" else images[:, :, w // 2:]


def pair_gallery(person_id: int, pet_id: int, count: int) -> tuple[np.ndarray, np.ndarray]:
    """Halves of two-subject renders: the person (left) with other dogs, the dog (right) with other people."""
    persons, pets = [], []
    others = list(heldout_ids())
    for n in range(count):
        key = ("toyworld-eval-pair-gallery", person_id, pet_id, n)
        scene = sample_scene(*key)
        other = others[key_seed(*key, "other") % len(others)]
        seed = key_seed(*key) & 0x7FFFFFFF
        persons.append(np.asarray(render_two(sample_identity(PERSON, person_id), sample_identity(PET, other), scene,
                                             seed, 64, person_side="left").image))
        pets.append(np.asarray(render_two(sample_identity(PERSON, other), sample_identity(PET, pet_id), scene,
                                          seed + 1, 64, person_side="left").image))
    return half(np.stack(persons), "left"), half(np.stack(pets), "right")


def region_masks(size: int = 64) -> dict[str, torch.Tensor]:
    left = torch.zeros(1, size, size)
    left[:, :, : size // 2] = 1
    return {"left": left, "right": 1 - left}


@dataclass
class Collected:
    """Generated images with what they are scored against."""
    images: list = field(default_factory=list)
    galleries: list = field(default_factory=list)
    scenes: list = field(default_factory=list)
    keys: list = field(default_factory=list)

    def add(self, image, gallery, scene, key):
        self.images.append(image)
        self.galleries.append(gallery)
        self.scenes.append(scene)
        self.keys.append(key)

    def scores(self, identity_net, scene_net, factors=None) -> dict:
        sims = torch.stack([reference_similarity(identity_net, image[None], gallery)[0]
                            for image, gallery in zip(self.images, self.galleries)])
        accuracy = scene_accuracy(scene_net, np.stack(self.images), self.scenes)
        if factors is not None:
            accuracy = {k: v for k, v in accuracy.items() if k in factors}
        return {"identity": float(sims.mean()), "identity_se": float(sims.std() / max(1, len(sims) - 1) ** 0.5),
                "prompt": accuracy, "n": len(self.images),
                "per_image": {_key_text(k): round(float(s), 5) for k, s in zip(self.keys, sims)}}


def evaluate(host: ToyHost, methods: dict, identity_net, scene_net, config: EvalConfig, progress=None) -> dict:
    """``methods``: {name: (training method, encoder)}. Returns scores and the images for the grid."""
    ids = list(heldout_ids())[:config.ids_per_domain]
    settings = config.sampler
    rows = {name: Collected() for name in ("base (no subject)", *methods, "renders (upper bound)")}
    for domain in DOMAINS:
        word = CLASS_WORDS[domain]
        for identity_id in ids:
            reference = reference_render(domain, identity_id)
            gallery = gallery_renders(domain, identity_id, config.gallery)
            models = {name: host.with_subject(host.model, method, encoder, reference[None], word)
                      for name, (method, encoder) in methods.items()}
            models["base (no subject)"] = host.model
            for scene in EVAL_SCENES:
                text = caption(domain, scene)
                seed = key_seed("toyworld-eval-seed", config.seed, domain, identity_id, scene) & 0x7FFFFFFF
                key = (domain, identity_id, scene)
                for name, model in models.items():
                    rows[name].add(host.sample(model, text, seed, settings), gallery, scene, key)
                    _tick(progress)
                rows["renders (upper bound)"].add(scene_render(domain, identity_id, scene), gallery, scene, key)
    two = two_subjects(host, methods, config, progress)
    scores = {name: rows[name].scores(identity_net, scene_net) for name in rows}
    two_scores = {name: {side: c.scores(identity_net, scene_net, ("background", "style")) for side, c in parts.items()}
                  for name, parts in two.items()}
    return {"single": scores, "two": two_scores, "rows": rows, "two_rows": two}


def two_subjects(host: ToyHost, methods: dict, config: EvalConfig, progress=None) -> dict:
    """Ours with a person (left region) and a dog (right region); the base model as the floor."""
    ours = methods.get("nested attention (ours)")
    regions = region_masks()
    out = {name: {"person": Collected(), "dog": Collected()} for name in ("base (no subject)", "nested attention (ours)")}
    if ours is None:
        return {}
    method, encoder = ours
    for n, (person_id, pet_id) in enumerate(zip(list(heldout_ids())[:config.pairs], list(heldout_ids())[::-1])):
        person_ref, pet_ref = reference_render(PERSON, person_id), reference_render(PET, pet_id)
        person_gallery, pet_gallery = pair_gallery(person_id, pet_id, config.gallery)
        model = host.with_subject(host.model, method, encoder, person_ref[None], CLASS_WORDS[PERSON], regions["left"])
        model = host.with_subject(model, method, encoder, pet_ref[None], CLASS_WORDS[PET], regions["right"])
        for scene in TWO_SUBJECT_SCENES:
            text = caption_two(scene, "left")
            seed = key_seed("toyworld-eval-pair-seed", config.seed, person_id, pet_id, scene) & 0x7FFFFFFF
            for name, m in (("nested attention (ours)", model), ("base (no subject)", host.model)):
                image = host.sample(m, text, seed, config.sampler)
                out[name]["person"].add(half(image[None], "left")[0], person_gallery, scene, (person_id, pet_id, scene))
                out[name]["dog"].add(half(image[None], "right")[0], pet_gallery, scene, (person_id, pet_id, scene))
                _tick(progress)
    return out


def _key_text(key) -> str:
    """'person 1800 | red/center/full/photo' (one subject) or 'pair 1800+1999 | ...' (two subjects)."""
    first, second, scene = key
    scene_text = f"{scene.background}/{scene.placement}/{scene.framing}/{scene.style}"
    return f"{first} {second} | {scene_text}" if isinstance(first, str) else f"pair {first}+{second} | {scene_text}"


def evaluation_size(config: EvalConfig, n_methods: int) -> int:
    """KSampler calls of ``evaluate`` (for a progress bar)."""
    return (len(DOMAINS) * config.ids_per_domain * len(EVAL_SCENES) * (n_methods + 1)
            + config.pairs * len(TWO_SUBJECT_SCENES) * 2)


def _tick(progress) -> None:
    if progress is not None:
        progress.update(1)

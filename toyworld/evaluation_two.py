"""Two subjects in one image: a held-out person (left half) and dog (right half), and the demo's own scores.

Rows (each image the same seed in every row):

* ``base (no subject)``: the two-subject prompt alone;
* ours with one Apply per subject and a **region mask** (left / right half), references whole and masked;
* ours **without region masks** (``NO_REGIONS``): both subjects applied to the whole image, the subject
  words alone bind each subject to its half.

Each half is scored against halves of two-subject renders of its own identity (``pair_gallery``).
**Leakage** is measured inside a domain's identity model: the *other* half scored against the subject's
gallery, i.e. ``person_in_dog_half`` = the right (dog) half's identity score towards the person, and
``dog_in_person_half`` = the left (person) half's score towards the dog. The level of no leakage is the
row with region masks (same seeds, same subjects, each confined to its half): without regions a subject
leaks by how much the other half's score towards it exceeds that row's. (Not the base's: a half that shows
its own subject moves towards or away from the other subject's gallery by itself.)

**The demo** (``demo_choice``): a rule written before looking at any image: the evaluation's first
pair, its first two-subject prompt, the evaluation's seed of that image, strength 1, regions and whole
references (the toy workflow's graph). ``demo_scores`` scores ours against the base over
``DEMO_SEEDS`` seeds (the rule's seed first): each subject's identity, ours minus base per seed, ±
the standard error over seeds.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .evaluation_inputs import half, pair_gallery, reference, region_masks
from .evaluation_rows import BASE, MASKED, NO_REGIONS, OURS, WHOLE, masked_row, tick
from .evaluation_scores import Collected, paired_difference
from .identity import CLASS_WORDS, PERSON, PET, heldout_ids
from .rng import key_seed
from .scene import Scene, caption_two

TWO_SUBJECT_SCENES = (Scene("yellow", "center", "full", "photo"), Scene("snow", "center", "full", "photo"),
                      Scene("green", "center", "full", "watercolor"))
TWO_ROWS = (BASE, OURS, masked_row(OURS), NO_REGIONS)
PARTS = ("person", "dog", "person_in_dog_half", "dog_in_person_half")  # the halves' scores, then the leakage
DEMO_SEEDS = 9
FACTORS = ("background", "style")  # what a two-subject prompt asks that a half can show


def pair(n: int) -> tuple[int, int]:
    """The n-th two-subject pair: held-out person and dog of the same id (person 1800 + dog 1800 first)."""
    ids = list(heldout_ids())
    return ids[n], ids[n]


def pair_seed(seed: int, person_id: int, pet_id: int, scene: Scene) -> int:
    """The seed of a two-subject image, the same in every row."""
    return key_seed("toyworld-eval-pair-seed", seed, person_id, pet_id, scene) & 0x7FFFFFFF


@dataclass(frozen=True)
class DemoChoice:
    person_id: int
    pet_id: int
    scene: Scene
    seed: int
    strength: float = 1.0

    @property
    def text(self) -> str:
        return caption_two(self.scene, "left")


def demo_choice(config) -> DemoChoice:
    """The demo's pair, prompt, seed and strength by the rule (module text); ``config``: the EvalConfig."""
    person_id, pet_id = pair(0)
    scene = TWO_SUBJECT_SCENES[0]
    return DemoChoice(person_id, pet_id, scene, pair_seed(config.seed, person_id, pet_id, scene))


def demo_seeds(choice: DemoChoice) -> list[int]:
    """The rule's seed, then DEMO_SEEDS - 1 more (fixed)."""
    return [choice.seed] + [key_seed("toyworld-demo-seed", n) & 0x7FFFFFFF for n in range(1, DEMO_SEEDS)]


def two_subject_model(host, method, encoder, person_id: int, pet_id: int, preparation: str = WHOLE,
                      regions: bool = True, strength: float = 1.0):
    """The base with the person and the dog applied by ``method``, each to its half (``regions``) or to the
    whole image; references whole or masked (``preparation``)."""
    refs = {PERSON: reference(PERSON, person_id), PET: reference(PET, pet_id)}
    halves = region_masks()
    model = host.model
    for domain, side in ((PERSON, "left"), (PET, "right")):
        masks = np.asarray(refs[domain].mask)[None] if preparation == MASKED else None
        model = host.with_subject(model, method, encoder, np.asarray(refs[domain].image)[None], CLASS_WORDS[domain],
                                  halves[side] if regions else None, strength, masks=masks)
    return model


def add_halves(parts: dict, image: np.ndarray, galleries: tuple, scene, key) -> None:
    """Each half against its own subject's gallery, and against the other subject's (leakage)."""
    person_gallery, pet_gallery = galleries
    left, right = half(image[None], "left")[0], half(image[None], "right")[0]
    parts["person"].add(left, person_gallery, scene, key)
    parts["dog"].add(right, pet_gallery, scene, key)
    parts["person_in_dog_half"].add(right, person_gallery, scene, key)
    parts["dog_in_person_half"].add(left, pet_gallery, scene, key)


def two_subjects(host, methods: dict, config, progress=None) -> dict:
    """{row: {part: Collected}} of ``TWO_ROWS`` on ``config.pair_ids()`` x ``TWO_SUBJECT_SCENES``."""
    if OURS not in methods or not config.pairs:
        return {}
    method, encoder = methods[OURS]
    out = {name: {part: Collected() for part in PARTS} for name in TWO_ROWS}
    for person_id, pet_id in config.pair_ids():
        galleries = pair_gallery(person_id, pet_id, config.gallery)
        models = {BASE: host.model,
                  OURS: two_subject_model(host, method, encoder, person_id, pet_id, WHOLE),
                  masked_row(OURS): two_subject_model(host, method, encoder, person_id, pet_id, MASKED),
                  NO_REGIONS: two_subject_model(host, method, encoder, person_id, pet_id, WHOLE, regions=False)}
        for scene in TWO_SUBJECT_SCENES:
            seed = pair_seed(config.seed, person_id, pet_id, scene)
            for name, model in models.items():
                add_halves(out[name], host.sample(model, caption_two(scene, "left"), seed, config.sampler), galleries,
                           scene, (person_id, pet_id, scene))
                tick(progress)
    return out


def two_subject_scores(two: dict, identity_net, scene_net) -> dict:
    return {name: {part: c.scores(identity_net, scene_net, FACTORS) for part, c in parts.items()}
            for name, parts in two.items()}


def demo_scores(host, methods: dict, config, identity_net, scene_net, progress=None) -> dict:
    """The demo by the rule: ours and the base over ``demo_seeds``; per subject their scores and ours - base."""
    if OURS not in methods:
        return {}
    choice = demo_choice(config)
    method, encoder = methods[OURS]
    models = {BASE: host.model, OURS: two_subject_model(host, method, encoder, choice.person_id, choice.pet_id,
                                                        WHOLE, strength=choice.strength)}
    galleries = pair_gallery(choice.person_id, choice.pet_id, config.gallery)
    rows = {name: {part: Collected() for part in PARTS} for name in models}
    for seed in demo_seeds(choice):
        for name, model in models.items():
            add_halves(rows[name], host.sample(model, choice.text, seed, config.sampler), galleries, choice.scene,
                       ("seed", seed, choice.scene))
            tick(progress)
    out = {"rule": {"person": choice.person_id, "dog": choice.pet_id, "prompt": choice.text, "seed": choice.seed,
                    "strength": choice.strength, "seeds": demo_seeds(choice)}}
    for part in ("person", "dog"):
        out[part] = {name: rows[name][part].scores(identity_net, scene_net, FACTORS) for name in models}
        out[part]["ours - base"] = paired_difference(rows[OURS][part], rows[BASE][part], identity_net, scene_net,
                                                     FACTORS)
    return out


def two_subject_size(config, methods) -> int:
    """KSampler calls of ``two_subjects`` and ``demo_scores``."""
    if OURS not in methods:
        return 0
    return config.pairs * len(TWO_SUBJECT_SCENES) * len(TWO_ROWS) + DEMO_SEEDS * 2

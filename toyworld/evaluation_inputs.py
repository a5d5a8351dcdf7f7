"""What the evaluation shows the methods and what it scores their images against: renders only.

* the **reference** of a held-out identity: one render in a random scene (so a method that copies
  the reference instead of following the prompt loses prompt alignment), with its subject mask;
* its **gallery**: other renders of the same identity in random scenes (identity is scored against it);
* **scene renders**: the identity in each prompt's scene (the world's own answer to the prompt);
* for two subjects: halves of two-subject renders (each subject's side) and the two region masks.

Every render is keyed by what it is for (``rng.key_seed``), so the same call gives the same bytes on
every machine, whatever else the evaluation draws.
"""
from __future__ import annotations

import numpy as np
import torch

from .identity import PERSON, PET, heldout_ids, sample_identity
from .render import Rendered, render, render_two, render_with_mask
from .rng import key_seed
from .look import realised_look
from .scene import Scene, reference_scene, sample_scene


def _reference_source(domain: str, identity_id: int) -> tuple[Scene, int]:
    """The reference's scene (no hat, no accessory: ``reference_scene``) and variation seed."""
    key = ("toyworld-eval-reference", domain, identity_id)
    return reference_scene(*key).for_domain(domain), key_seed(*key) & 0x7FFFFFFF


def reference(domain: str, identity_id: int) -> Rendered:
    """The identity's evaluation reference: image and subject mask (``render_with_mask``)."""
    return render_with_mask(sample_identity(domain, identity_id), *_reference_source(domain, identity_id))


def reference_look(domain: str, identity_id: int) -> dict[str, str]:
    """What the reference shows of each look factor (``look.realised_look``): the values a prompt avoids."""
    return realised_look(domain, *_reference_source(domain, identity_id), sample_identity(domain, identity_id).key)


def reference_render(domain: str, identity_id: int) -> np.ndarray:
    """The reference's image, uint8 [64, 64, 3]."""
    return np.asarray(reference(domain, identity_id).image)


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

"""Rendering: same inputs -> same bytes (also across processes), identities and scenes visibly differ,
masks and boxes where the subjects are."""
from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from nested_attention.toyworld.errors import RenderError
from nested_attention.toyworld.identity import PERSON, PET, sample_identity
from nested_attention.toyworld.render import render, render_two, render_with_mask
from nested_attention.toyworld.scene import STYLES, Scene

REPO_ROOT = Path(__file__).resolve().parents[2]
SCENES = [Scene("red", "left", "full", "photo"), Scene("snow", "right", "close-up", "pencil"),
          Scene("night", "center", "full", "watercolor"), Scene("beach", "center", "close-up", "photo")]


def pixels(image) -> np.ndarray:
    return np.asarray(image, np.float32)


def digest(image) -> str:
    return hashlib.sha256(image.tobytes()).hexdigest()


@pytest.mark.parametrize("domain", [PERSON, PET])
@pytest.mark.parametrize("scene", SCENES, ids=lambda s: f"{s.background}-{s.style}")
def test_the_same_inputs_give_the_same_bytes(domain, scene):
    identity = sample_identity(domain, 11)
    first, second = render(identity, scene, 5), render(identity, scene, 5)
    assert first.size == (64, 64) and first.mode == "RGB"
    assert first.tobytes() == second.tobytes()


def test_renders_are_the_same_in_another_process_with_another_hash_seed():
    scene = Scene("forest", "left", "close-up", "watercolor")
    here = digest(render(sample_identity(PET, 42), scene, 9))
    code = ("import hashlib; from nested_attention.toyworld.identity import sample_identity; "
            "from nested_attention.toyworld.render import render; from nested_attention.toyworld.scene import Scene; "
            "im = render(sample_identity('pet', 42), Scene('forest', 'left', 'close-up', 'watercolor'), 9); "
            "print(hashlib.sha256(im.tobytes()).hexdigest())")
    env = {**os.environ, "PYTHONHASHSEED": "12345"}
    there = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert there.stdout.strip() == here


@pytest.mark.parametrize("domain", [PERSON, PET])
def test_different_identities_seeds_and_scenes_give_different_images(domain):
    scene = SCENES[0]
    base = pixels(render(sample_identity(domain, 1), scene, 0))
    for other in (render(sample_identity(domain, 2), scene, 0), render(sample_identity(domain, 1), scene, 1),
                  render(sample_identity(domain, 1), Scene("blue", "left", "full", "photo"), 0)):
        assert np.abs(base - pixels(other)).mean() > 1.0


def test_scene_factors_show_in_the_pixels():
    person = sample_identity(PERSON, 7)

    def mean(scene):
        return np.mean([pixels(render(person, scene, seed)).mean() for seed in range(4)])

    assert mean(Scene("night")) < 0.5 * mean(Scene("snow"))
    photo, pencil = (pixels(render(person, Scene(style=s), 3)) for s in ("photo", "pencil"))
    saturation = lambda im: (im.max(axis=2) - im.min(axis=2)).mean()  # noqa: E731
    assert saturation(pencil) < 0.7 * saturation(photo)


@pytest.mark.parametrize("domain", [PERSON, PET])
def test_placement_and_framing_move_and_grow_the_subject_box(domain):
    identity = sample_identity(domain, 3)
    renders = {(p, f): render_with_mask(identity, Scene("green", p, f), 2)
               for p in ("left", "center", "right") for f in ("full", "close-up")}
    centre = {k: np.nonzero(np.asarray(r.mask) >= 128)[1].mean() for k, r in renders.items()}  # mask centroid x
    coverage = {k: (np.asarray(r.mask) >= 128).mean() for k, r in renders.items()}
    for framing in ("full", "close-up"):
        assert centre[("left", framing)] < centre[("center", framing)] < centre[("right", framing)]
    for placement in ("left", "center", "right"):
        assert coverage[(placement, "close-up")] > 1.6 * coverage[(placement, "full")]


def test_masks_cover_the_subject_and_not_the_background():
    rendered = render_with_mask(sample_identity(PET, 5), Scene("yellow", "right", "full", "photo"), 4)
    mask = np.asarray(rendered.mask)
    assert rendered.mask.size == (64, 64) and rendered.mask.mode == "L"
    x0, y0, x1, y1 = rendered.box
    assert 0.05 < (mask >= 128).mean() < 0.6
    assert mask[:, : max(1, x0 - 1)].max(initial=0) < 128 and x1 > 32  # a right-placed subject
    again = render_with_mask(sample_identity(PET, 5), Scene("yellow", "right", "full", "photo"), 4)
    assert again.image.tobytes() == rendered.image.tobytes() and again.mask.tobytes() == rendered.mask.tobytes()


def test_two_subjects_sit_on_their_sides_with_their_own_masks():
    person, pet = sample_identity(PERSON, 8), sample_identity(PET, 8)
    for side in ("left", "right"):
        pair = render_two(person, pet, Scene("beach", "center", "full", "photo"), 3, person_side=side)
        assert pair.person_side == side and pair.image.size == (64, 64)
        person_mask, pet_mask = np.asarray(pair.person_mask) >= 128, np.asarray(pair.pet_mask) >= 128
        assert person_mask.sum() > 150 and pet_mask.sum() > 150
        assert (person_mask & pet_mask).sum() == 0
        person_x = (pair.person_box[0] + pair.person_box[2]) / 2
        pet_x = (pair.pet_box[0] + pair.pet_box[2]) / 2
        assert (person_x < 32 < pet_x) if side == "left" else (pet_x < 32 < person_x)
    again = render_two(person, pet, Scene("beach", "center", "full", "photo"), 3, person_side="right")
    assert again.image.tobytes() == pair.image.tobytes()


@pytest.mark.parametrize("style", STYLES)
def test_two_subject_renders_in_every_style_and_framing(style):
    pair = render_two(sample_identity(PERSON, 1), sample_identity(PET, 1), Scene("snow", "right", "close-up", style), 0)
    assert pair.person_side == "right" and pair.image.size == (64, 64)


def test_render_two_takes_a_person_then_a_pet():
    with pytest.raises(RenderError, match="PersonIdentity"):
        render_two(sample_identity(PET, 1), sample_identity(PERSON, 1), Scene(), 0)
    with pytest.raises(RenderError, match="person_side"):
        render_two(sample_identity(PERSON, 1), sample_identity(PET, 1), Scene(), 0, person_side="top")


def test_other_sizes_render_and_bad_sizes_are_errors():
    identity = sample_identity(PERSON, 2)
    assert render(identity, Scene(), 0, size=128).size == (128, 128)
    small = render(identity, Scene(), 0, size=32)
    big_down = render(identity, Scene(), 0, size=128).resize((32, 32))
    assert np.abs(pixels(small) - pixels(big_down)).mean() < 20  # the same picture at another size
    for size in (0, 15, 63, 1024, 64.0):
        with pytest.raises(RenderError, match="size"):
            render(identity, Scene(), 0, size=size)


def _diff_rows(a, b):
    changed = (np.abs(np.asarray(a, np.int16) - np.asarray(b, np.int16)).sum(axis=2) > 0)
    return np.nonzero(changed.any(axis=1))[0]


@pytest.mark.parametrize("hat", ["cap", "top_hat", "crown"])
def test_a_hat_changes_only_the_head_region(hat):
    from nested_attention.toyworld.person import HEAD_Y

    person = sample_identity(PERSON, 7)
    bare = render_with_mask(person, Scene("blue", "center", "full", "photo", hat="none"), 3)
    hatted = render_with_mask(person, Scene("blue", "center", "full", "photo", hat=hat), 3)
    rows = _diff_rows(bare.image, hatted.image)
    assert len(rows) >= 3  # visible at 64 px
    chin = 0.5 * 64 + 0.05 * 64  # head centre row (HEAD_AT) + a margin: the hat sits above the brows
    assert rows.max() < chin and rows.min() < bare.box[1] + 2, rows
    assert np.asarray(hatted.mask).sum() > np.asarray(bare.mask).sum()  # the hat is part of the subject


@pytest.mark.parametrize("accessory", ["bandana", "party_hat", "bow"])
def test_a_dog_accessory_is_visible(accessory):
    pet = sample_identity(PET, 7)
    plain = render(pet, Scene("blue", "center", "full", "photo", accessory="none", pose="sitting"), 3)
    worn = render(pet, Scene("blue", "center", "full", "photo", accessory=accessory, pose="sitting"), 3)
    changed = (np.abs(np.asarray(plain, np.int16) - np.asarray(worn, np.int16)).sum(axis=2) > 60).sum()
    assert changed >= 12, changed


def test_dog_poses_have_different_silhouettes():
    pet = sample_identity(PET, 7)
    masks = {pose: np.asarray(render_with_mask(pet, Scene("blue", "center", "full", "photo", pose=pose), 3).mask) >= 128
             for pose in ("sitting", "standing", "lying")}
    boxes = {pose: render_with_mask(pet, Scene("blue", "center", "full", "photo", pose=pose), 3).box for pose in masks}
    for a, b in (("sitting", "standing"), ("sitting", "lying"), ("standing", "lying")):
        assert (masks[a] ^ masks[b]).sum() > 60, (a, b)
    assert boxes["lying"][3] < boxes["sitting"][3] - 5  # lying is lower to the ground: its paws end higher
    assert boxes["standing"][2] - boxes["standing"][0] > boxes["sitting"][2] - boxes["sitting"][0] + 5  # longer


def test_shirt_and_expression_named_by_the_scene_override_the_variation():
    person = sample_identity(PERSON, 2)
    shirts = {shirt: np.asarray(render(person, Scene(shirt=shirt), 5)) for shirt in ("orange", "purple")}
    assert not np.array_equal(shirts["orange"], shirts["purple"])
    bottom = shirts["orange"][-6:, 24:40].reshape(-1, 3).mean(axis=0)
    assert bottom[0] > bottom[1] + 40 and bottom[0] > bottom[2] + 40  # an orange shirt reads orange
    faces = {e: render(person, Scene(expression=e), 5) for e in ("smile", "neutral", "open")}
    assert len({im.tobytes() for im in faces.values()}) == 3


def test_realised_look_agrees_with_the_render():
    from dataclasses import replace

    from nested_attention.toyworld.look import realised_look

    for domain in (PERSON, PET):
        for i in range(8):
            identity, scene = sample_identity(domain, i), Scene("green", "left", "full", "photo")
            look = realised_look(domain, scene, 100 + i, identity.key)
            assert np.array_equal(np.asarray(render(identity, scene, 100 + i)),
                                  np.asarray(render(identity, replace(scene, **look), 100 + i)))

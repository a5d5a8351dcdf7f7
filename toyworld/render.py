"""Rendering: an identity in a scene, with the jitter of a variation seed; and two subjects side by side.

Everything is drawn at ``SUPERSAMPLE`` times the output size and box-filtered down (anti-aliasing);
styles are applied at twice the output size. Pure PIL/numpy: the same inputs give the same bytes.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Optional

import numpy as np
from PIL import Image

from .backgrounds import draw_background
from .errors import RenderError
from .identity import PET, PERSON, Identity, PersonIdentity, PetIdentity
from .look import looked_variation
from .pen import Pen
from .person import HEAD_X as PERSON_HEAD_X, HEAD_Y as PERSON_HEAD_Y, draw_person
from .pet import HEAD_X as PET_HEAD_X, HEAD_Y as PET_HEAD_Y, draw_pet
from .scene import Scene
from .styles import apply_style
from .variation import Variation, sample_variation

SUPERSAMPLE = 4
MIN_SIZE, MAX_SIZE = 16, 512
PLACEMENT_X = {"full": {"left": 0.28, "center": 0.5, "right": 0.72},
               "close-up": {"left": 0.37, "center": 0.5, "right": 0.63}}
UNIT = {PERSON: {"full": 0.95, "close-up": 1.7}, PET: {"full": 0.8, "close-up": 1.7}}  # unit square / image side
HEAD_AT = {PERSON: {"full": 0.5, "close-up": 0.5}, PET: {"full": 0.43, "close-up": 0.56}}  # head centre y
TWO_UNIT = {"full": 0.62, "close-up": 0.95}
TWO_X = {"left": 0.27, "right": 0.73}
NIGHT_LIGHT = np.array([0.62, 0.66, 0.88], np.float32)


@dataclass(frozen=True)
class Rendered:
    image: Image.Image  # RGB, size x size
    mask: Image.Image  # L, the subject's visible coverage (255 = subject)
    box: tuple[int, int, int, int]  # (x0, y0, x1, y1) of mask >= 128, exclusive ends


@dataclass(frozen=True)
class RenderedPair:
    image: Image.Image
    person_mask: Image.Image
    pet_mask: Image.Image
    person_box: tuple[int, int, int, int]
    pet_box: tuple[int, int, int, int]
    person_side: str  # "left" or "right"


def render(identity: Identity, scene: Scene, variation_seed: int, size: int = 64) -> Image.Image:
    """The identity in the scene, posed and lit by ``variation_seed``: an RGB image ``size`` x ``size``.
    The look factors the scene names replace the variation's draws (``look.looked_variation``)."""
    return render_with_mask(identity, scene, variation_seed, size).image


def render_with_mask(identity: Identity, scene: Scene, variation_seed: int, size: int = 64) -> Rendered:
    side = _working_side(size)
    variation = looked_variation(identity.domain, scene, variation_seed, identity.key)
    head_x = PLACEMENT_X[scene.framing][scene.placement] + variation.dx
    head_y = HEAD_AT[identity.domain][scene.framing] + variation.dy
    layer = _subject_on_canvas(identity, variation, side, UNIT[identity.domain][scene.framing], head_x, head_y, scene.background)
    background = draw_background(scene.background, side, variation.texture_seed)
    image, (mask,) = _finish(background, [layer], scene.style, variation.texture_seed, size)
    return Rendered(image, mask, _box(mask))


def render_two(person: PersonIdentity, pet: PetIdentity, scene: Scene, variation_seed: int, size: int = 64,
               person_side: Optional[str] = None) -> RenderedPair:
    """A person on one side and a dog on the other. ``person_side`` defaults to the scene's
    placement ("left"/"right"; "center" means left). Each subject's mask is its visible part. The
    dog's tail side (where a standing or lying body reaches) points away from the person."""
    if not isinstance(person, PersonIdentity) or not isinstance(pet, PetIdentity):
        raise RenderError("render_two takes a PersonIdentity and a PetIdentity, in that order")
    side_name = person_side or ("right" if scene.placement == "right" else "left")
    if side_name not in TWO_X:
        raise RenderError(f"person_side {side_name!r} must be 'left' or 'right'")
    pet_side = "right" if side_name == "left" else "left"
    side = _working_side(size)
    layers = []
    for identity, where in ((person, side_name), (pet, pet_side)):
        variation = looked_variation(identity.domain, scene, variation_seed, identity.key)
        if identity.domain == PET:  # a standing or lying dog's body and tail reach away from the person
            variation = replace(variation, tail_side=1 if where == "right" else -1)
        head_y = HEAD_AT[identity.domain][scene.framing] + variation.dy
        layers.append(_subject_on_canvas(identity, variation, side, TWO_UNIT[scene.framing],
                                         TWO_X[where] + 0.5 * variation.dx, head_y, scene.background))
    texture_seed = sample_variation(variation_seed, "pair").texture_seed
    background = draw_background(scene.background, side, texture_seed)
    image, (person_mask, pet_mask) = _finish(background, layers, scene.style, texture_seed, size)
    return RenderedPair(image, person_mask, pet_mask, _box(person_mask), _box(pet_mask), side_name)


def _working_side(size: int) -> int:
    if isinstance(size, bool) or not isinstance(size, int) or not MIN_SIZE <= size <= MAX_SIZE or size % 2:
        raise RenderError(f"size {size!r} must be an even integer in {MIN_SIZE}..{MAX_SIZE}, e.g. 64")
    return size * SUPERSAMPLE


@dataclass(frozen=True)
class _Layer:
    box: tuple[int, int, int, int]  # where the subject's pixels are on the canvas (x0, y0, x1, y1)
    rgba: np.ndarray  # [y1-y0, x1-x0, 4] floats in 0..1, lit


def _subject_on_canvas(identity: Identity, variation: Variation, side: int, unit: float, head_x: float,
                       head_y: float, background: str) -> _Layer:
    head = (PERSON_HEAD_X, PERSON_HEAD_Y) if identity.domain == PERSON else (PET_HEAD_X, PET_HEAD_Y)
    pen = Pen(side, unit * variation.scale * side, head, (head_x * side, head_y * side), variation.tilt_deg)
    if identity.domain == PERSON:
        draw_person(pen, identity, variation)
    else:
        draw_pet(pen, identity, variation)
    box = pen.image.getbbox() or (0, 0, 1, 1)
    rgba = np.asarray(pen.image.crop(box), np.float32) / 255.0
    return _Layer(box, _light(rgba, box, side, variation, background == "night"))


def _light(rgba: np.ndarray, box, side: int, variation: Variation, night: bool) -> np.ndarray:
    """Brightness and a side-to-side shading ramp in image space (the light does not roll with the subject)."""
    coords = np.linspace(-1.0, 1.0, side, dtype=np.float32)
    angle = math.radians(variation.light_angle_deg)
    ramp = math.cos(angle) * coords[None, box[0]:box[2]] + math.sin(angle) * coords[box[1]:box[3], None]
    gain = variation.brightness * (1.0 + variation.light_strength * ramp)
    rgb = rgba[..., :3] * gain[..., None]
    if night:
        rgb = rgb * NIGHT_LIGHT
    return np.concatenate([np.clip(rgb, 0.0, 1.0), rgba[..., 3:]], axis=-1)


def _finish(background: Image.Image, layers: list[_Layer], style: str, texture_seed: int,
            size: int) -> tuple[Image.Image, list[Image.Image]]:
    """Composite the layers (later ones in front), style the image, downsample; visible masks."""
    rgb = np.asarray(background, np.float32) / 255.0
    visible = []
    for layer in layers:
        x0, y0, x1, y1 = layer.box
        alpha = layer.rgba[..., 3:]
        rgb[y0:y1, x0:x1] = rgb[y0:y1, x0:x1] * (1.0 - alpha) + layer.rgba[..., :3] * alpha
        for v in visible:
            v[y0:y1, x0:x1] *= 1.0 - alpha[..., 0]
        coverage = np.zeros(rgb.shape[:2], np.float32)
        coverage[y0:y1, x0:x1] = alpha[..., 0]
        visible.append(coverage)
    image = Image.fromarray((rgb * 255.0).round().astype(np.uint8), "RGB")
    if style != "photo":
        image = apply_style(image.resize((size * 2, size * 2), Image.BOX), style, texture_seed)
    image = image.resize((size, size), Image.BOX)
    masks = [Image.fromarray((v * 255.0).round().astype(np.uint8), "L").resize((size, size), Image.BOX)
             for v in visible]
    return image, masks


def _box(mask: Image.Image) -> tuple[int, int, int, int]:
    box = mask.point(lambda v: 255 if v >= 128 else 0).getbbox()
    return box if box is not None else (0, 0, 0, 0)

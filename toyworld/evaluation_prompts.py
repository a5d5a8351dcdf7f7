"""The evaluation's prompts: each asks the subject to differ from its reference without changing who it is.

An identity's prompt ``n`` is ``EVAL_SCENES[n]`` (background, placement, framing, style) with every
look factor of its domain named (``look.LOOK_FACTORS``) at a value the reference does not show: a hat
or accessory (the reference shows none), another shirt colour, expression or pose. The value is drawn
from the others by a seeded key, the same on every machine. Close-ups crop the shirt and most of a
dog's body, so a close-up prompt does not name those (``look.visible``).
"""
from __future__ import annotations

from dataclasses import replace

from .evaluation_inputs import reference_look
from .look import LOOK_FACTORS, visible
from .rng import key_seed
from .scene import Scene


def asked_look(domain: str, identity_id: int, scene: Scene, prompt: int, seed: int = 0) -> Scene:
    """``scene`` (scene factors only) for ``domain``'s identity with each visible look factor named at a
    value its reference does not show."""
    shown = reference_look(domain, identity_id)
    look = {}
    for factor, values in LOOK_FACTORS[domain].items():
        if not visible(factor, scene.framing):
            continue
        others = [v for v in values if v != shown[factor] and v != "none"]
        look[factor] = others[key_seed("toyworld-eval-look", seed, domain, identity_id, prompt, factor) % len(others)]
    return replace(scene, **look)


def identity_prompts(domain: str, identity_id: int, scenes, seed: int = 0) -> tuple[Scene, ...]:
    """The prompts (scenes) of one identity: ``asked_look`` of each of ``scenes`` in order."""
    return tuple(asked_look(domain, identity_id, scene, n, seed) for n, scene in enumerate(scenes))

"""Scenes: four factors a prompt controls by words, and the captions that name them.

A caption names the subject by its domain's class word and every scene factor by a fixed phrase:
"a close-up pencil drawing of a dog in the snow, on the left". Each factor value has exactly one
phrase (``BACKGROUND_WORDS`` ...), so a caption can be parsed back into its scene.
"""
from __future__ import annotations

from dataclasses import dataclass

from .errors import SceneError
from .identity import CLASS_WORDS, DOMAINS
from .rng import Rng

BACKGROUND_WORDS = {
    "red": "on a red background",
    "blue": "on a blue background",
    "green": "on a green background",
    "yellow": "on a yellow background",
    "snow": "in the snow",
    "night": "at night",
    "beach": "on the beach",
    "forest": "in a forest",
}
PLACEMENT_WORDS = {"left": "on the left", "center": "in the center", "right": "on the right"}
FRAMING_WORDS = {"full": "", "close-up": "close-up"}
STYLE_WORDS = {"photo": "photo", "pencil": "pencil drawing", "watercolor": "watercolor painting"}

BACKGROUNDS = tuple(BACKGROUND_WORDS)
PLACEMENTS = tuple(PLACEMENT_WORDS)
FRAMINGS = tuple(FRAMING_WORDS)
STYLES = tuple(STYLE_WORDS)
FACTORS = {"background": BACKGROUNDS, "placement": PLACEMENTS, "framing": FRAMINGS, "style": STYLES}


@dataclass(frozen=True)
class Scene:
    background: str = "blue"
    placement: str = "center"
    framing: str = "full"
    style: str = "photo"

    def __post_init__(self) -> None:
        for factor, values in FACTORS.items():
            value = getattr(self, factor)
            if value not in values:
                raise SceneError(f"scene {factor} {value!r} is unknown: use one of {values}")

    def labels(self) -> dict[str, int]:
        """Each factor's value as its index in ``FACTORS`` (the scene model's targets)."""
        return {factor: values.index(getattr(self, factor)) for factor, values in FACTORS.items()}


def sample_scene(*key) -> Scene:
    """A uniformly random scene, the same for the same key."""
    rng = Rng("toyworld-scene", *key)
    return Scene(**{factor: rng.choice(values) for factor, values in FACTORS.items()})


def all_scenes() -> list[Scene]:
    """Every scene of the world (8 x 3 x 2 x 3 = 144), in a fixed order."""
    return [Scene(b, p, f, s) for b in BACKGROUNDS for p in PLACEMENTS for f in FRAMINGS for s in STYLES]


def medium_phrase(scene: Scene) -> str:
    """'a photo of', 'a close-up pencil drawing of', ..."""
    words = " ".join(w for w in (FRAMING_WORDS[scene.framing], STYLE_WORDS[scene.style]) if w)
    return f"a {words} of"


def class_word(domain: str) -> str:
    if domain not in CLASS_WORDS:
        raise SceneError(f"unknown domain {domain!r}: use one of {DOMAINS}")
    return CLASS_WORDS[domain]


def caption(domain: str, scene: Scene) -> str:
    """The caption of one subject of ``domain`` in ``scene``."""
    return (f"{medium_phrase(scene)} a {class_word(domain)} {BACKGROUND_WORDS[scene.background]}, "
            f"{PLACEMENT_WORDS[scene.placement]}")


def caption_two(scene: Scene, person_side: str) -> str:
    """The caption of a person and a dog side by side; ``person_side`` is "left" or "right"."""
    if person_side not in ("left", "right"):
        raise SceneError(f"person_side {person_side!r} must be 'left' or 'right'")
    pet_side = "right" if person_side == "left" else "left"
    return (f"{medium_phrase(scene)} a {CLASS_WORDS['person']} on the {person_side} and a {CLASS_WORDS['pet']} "
            f"on the {pet_side}, {BACKGROUND_WORDS[scene.background]}")

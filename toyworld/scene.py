"""Scenes: four factors a prompt controls by words, the subject's optional look, and the captions.

A caption names the subject by its domain's class word and every scene factor by a fixed phrase:
"a close-up pencil drawing of a dog in the snow, on the left"; a look factor the scene names
(``look.py``) is phrased around the class word: "a photo of a smiling person in an orange shirt wearing
a cap in the snow, on the left". Each value has exactly one phrase (``BACKGROUND_WORDS`` ...,
``look.LOOK_WORDS``), so a caption parses back into its scene (``parse_caption``).
"""
from __future__ import annotations

import re
from dataclasses import dataclass, replace
from typing import Optional

from .errors import SceneError
from .identity import CLASS_WORDS, DOMAINS
from .look import (LOOK_FACTORS, LOOK_FIELDS, LOOK_WORDS, NO_EXTRAS, PREFIX_FACTORS, SUFFIX_FACTORS, sample_look,
                   subject_phrase, visible)
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
    # the look (look.LOOK_FACTORS); None: not named by the caption, the render draws it from the variation seed
    shirt: Optional[str] = None  # person
    expression: Optional[str] = None  # person
    hat: Optional[str] = None  # person
    accessory: Optional[str] = None  # dog
    pose: Optional[str] = None  # dog

    def __post_init__(self) -> None:
        for factor, values in FACTORS.items():
            value = getattr(self, factor)
            if value not in values:
                raise SceneError(f"scene {factor} {value!r} is unknown: use one of {values}")
        for domain, factors in LOOK_FACTORS.items():
            for factor, values in factors.items():
                value = getattr(self, factor)
                if value is not None and value not in values:
                    raise SceneError(f"scene {factor} {value!r} ({domain} look) is unknown: use one of {values}, "
                                     "or None to leave it to the variation seed")

    def for_domain(self, domain: str) -> "Scene":
        """This scene with only ``domain``'s look named (what a one-subject caption of it says)."""
        class_word(domain)
        return replace(self, **{f: None for d, factors in LOOK_FACTORS.items() if d != domain for f in factors})

    def without_look(self) -> "Scene":
        """This scene with no look named: the four scene factors only."""
        return replace(self, **{f: None for f in LOOK_FIELDS})

    def labels(self) -> dict[str, int]:
        """Each factor's value as its index in ``FACTORS`` (the scene model's targets)."""
        return {factor: values.index(getattr(self, factor)) for factor, values in FACTORS.items()}


def sample_scene(*key) -> Scene:
    """A uniformly random scene, the same for the same key; each look factor of both domains named
    with probability 0.5 (``look.sample_look``; the scene factors are drawn first, as before looks),
    except that a close-up never names a factor it crops out (``look.visible``): a caption names
    only what its render shows."""
    rng = Rng("toyworld-scene", *key)
    scene = {factor: rng.choice(values) for factor, values in FACTORS.items()}
    look = {f: v if visible(f, scene["framing"]) else None for f, v in sample_look(rng).items()}
    return Scene(**scene, **look)


def reference_scene(*key) -> Scene:
    """``sample_scene(*key)`` with no hat and no accessory named as "none": what an evaluation's
    reference shows (prompts then ask for a hat or accessory the reference does not carry)."""
    return replace(sample_scene(*key), **NO_EXTRAS)


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
    """The caption of one subject of ``domain`` in ``scene``, naming the domain's look factors the scene names."""
    return (f"{medium_phrase(scene)} a {subject_phrase(domain, scene, class_word(domain))} "
            f"{BACKGROUND_WORDS[scene.background]}, {PLACEMENT_WORDS[scene.placement]}")


def caption_two(scene: Scene, person_side: str) -> str:
    """The caption of a person and a dog side by side; ``person_side`` is "left" or "right". Each
    subject is named with its domain's look factors that the scene names."""
    if person_side not in ("left", "right"):
        raise SceneError(f"person_side {person_side!r} must be 'left' or 'right'")
    pet_side = "right" if person_side == "left" else "left"
    person = subject_phrase("person", scene, CLASS_WORDS["person"])
    pet = subject_phrase("pet", scene, CLASS_WORDS["pet"])
    return (f"{medium_phrase(scene)} a {person} on the {person_side} and a {pet} "
            f"on the {pet_side}, {BACKGROUND_WORDS[scene.background]}")


def parse_caption(text: str) -> tuple[str, Scene]:
    """The domain and scene of a one-subject caption (``caption``'s inverse)."""
    match = _CAPTION.fullmatch(text.strip())
    if match is None:
        raise SceneError(f"caption {text!r} is not a toy-world one-subject caption, e.g. "
                         f"{caption('person', Scene(shirt=LOOK_FACTORS['person']['shirt'][0]))!r}")
    groups = match.groupdict()
    subject = groups.pop("subject")
    domain = next(d for d, word in CLASS_WORDS.items() if word == subject)
    medium = groups.pop("medium")
    framing, style = next((f, s) for f in FRAMINGS for s in STYLES if medium_phrase(Scene(framing=f, style=s)) == medium)
    values = {name: next(v for v, p in table.items() if p == groups[name])
              for name, table in _PHRASES.items() if groups.get(name) is not None}
    scene = Scene(framing=framing, style=style, **values)
    if scene.for_domain(domain) != scene:
        raise SceneError(f"caption {text!r} names a look of the other domain's subject")
    return domain, scene


_PHRASES = {"background": BACKGROUND_WORDS, "placement": PLACEMENT_WORDS,
            **{f: words for factors in LOOK_WORDS.values() for f, words in factors.items()}}


def _alternatives(name: str, phrases) -> str:
    return f"(?P<{name}>" + "|".join(re.escape(p) for p in sorted(phrases, key=len, reverse=True)) + ")"


_CAPTION = re.compile(
    _alternatives("medium", {medium_phrase(Scene(framing=f, style=s)) for f in FRAMINGS for s in STYLES}) + " a "
    + "".join(f"(?:{_alternatives(f, _PHRASES[f].values())} )?" for f in PREFIX_FACTORS)
    + _alternatives("subject", CLASS_WORDS.values())
    + "".join(f"(?: {_alternatives(f, _PHRASES[f].values())})?" for f in SUFFIX_FACTORS)
    + " " + _alternatives("background", BACKGROUND_WORDS.values()) + ", "
    + _alternatives("placement", PLACEMENT_WORDS.values()))

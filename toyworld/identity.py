"""Parametric identities: a person or a pet (a dog), fixed by an integer id.

Every identity is a point in a discrete attribute space (big shapes and colours, readable at 64 px)
plus a few continuous offsets (exact tones, proportions). The discrete part of id ``i`` is
``permute(i)`` written in mixed radix over the attribute lists, so within a domain no two ids share
all discrete attributes; the continuous part comes from a stream keyed by (domain, id).

Ids run ``0 .. IDENTITY_COUNT - 1`` in each domain. The last 10% (``HELDOUT_START`` and up,
1800..1999) are HELD OUT: never written by the training-data writer, never seen by the scoring
models; they are the reference identities of evaluations.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Union

from .errors import IdentityError
from .rng import Rng, permute

PERSON, PET = "person", "pet"
DOMAINS = (PERSON, PET)
CLASS_WORDS = {PERSON: "person", PET: "dog"}  # one class word per domain, each one CLIP BPE token
IDENTITY_COUNT = 2000
HELDOUT_FRACTION = 0.1
HELDOUT_START = int(IDENTITY_COUNT * (1 - HELDOUT_FRACTION))  # 1800

RGB = tuple[int, int, int]

# ---- person attributes ---------------------------------------------------------------------------
FACE_SHAPES = ("round", "oval", "long", "square")
SKIN_TONES: dict[str, RGB] = {"porcelain": (246, 220, 200), "light": (234, 192, 160), "tan": (206, 156, 112),
                              "olive": (184, 140, 94), "brown": (140, 96, 62), "dark": (92, 60, 40)}
EYE_SHAPES = ("round", "almond", "narrow")
EYE_COLOURS: dict[str, RGB] = {"brown": (110, 62, 24), "blue": (40, 110, 220), "green": (40, 150, 60),
                               "grey": (120, 126, 134)}
EYE_SPACINGS: dict[str, float] = {"close": 0.062, "medium": 0.08, "wide": 0.098}  # eye centre to face centre, units
HAIR_STYLES = ("bald", "short", "long", "afro", "bun", "spiky")
HAIR_COLOURS: dict[str, RGB] = {"black": (30, 26, 24), "brown": (100, 60, 30), "blonde": (232, 200, 96),
                                "red": (196, 70, 30), "grey": (170, 170, 170), "blue": (40, 80, 210),
                                "pink": (236, 110, 180)}
MARKS = ("none", "freckles", "scar", "mole")
GLASSES = ("none", "round", "square", "sunglasses")

# ---- pet (dog) attributes ------------------------------------------------------------------------
HEAD_SHAPES = ("round", "wide", "narrow")
EAR_SHAPES = ("pointy", "floppy", "bat", "folded")
FUR_COLOURS: dict[str, RGB] = {"white": (238, 236, 228), "black": (40, 38, 36), "brown": (120, 72, 36),
                               "golden": (218, 166, 70), "grey": (140, 140, 146), "ginger": (210, 110, 40),
                               "cream": (236, 214, 170)}
PATTERNS = ("solid", "spots", "eye_patch", "blaze", "saddle")
PATTERN_COLOURS: dict[str, RGB] = {"black": (30, 28, 26), "brown": (96, 56, 26), "white": (248, 248, 244),
                                   "ginger": (200, 96, 30)}
TONE_ON_TONE: dict[str, tuple[str, RGB]] = {"black": ("grey", (120, 120, 124)), "brown": ("dark_brown", (66, 38, 16)),
                                            "white": ("light_grey", (196, 196, 200)), "ginger": ("dark_ginger", (140, 60, 20))}
SNOUTS = ("short", "medium", "long")
PET_EYE_COLOURS: dict[str, RGB] = {"brown": (90, 50, 20), "amber": (200, 140, 30), "blue": (60, 130, 230)}
COLLARS: dict[str, RGB | None] = {"none": None, "red": (220, 30, 40), "blue": (30, 70, 220),
                                  "green": (30, 170, 60), "yellow": (240, 210, 30)}
NOSE_COLOURS: dict[str, RGB] = {"black": (24, 22, 22), "pink": (224, 130, 140)}


@dataclass(frozen=True)
class PersonIdentity:
    identity_id: int
    face_shape: str
    skin_tone: str
    skin_rgb: RGB  # the tone's colour with this identity's own offset
    face_aspect: float  # multiplies the face shape's height/width ratio, ~0.95..1.05
    eye_shape: str
    eye_colour: str
    eye_spacing: str
    eye_spacing_value: float  # exact distance of each eye from the face's centre line, unit-square units
    hair_style: str
    hair_colour: str
    hair_rgb: RGB
    mark: str
    glasses: str
    domain: str = PERSON

    @property
    def key(self) -> str:
        return subject_key(self.domain, self.identity_id)


@dataclass(frozen=True)
class PetIdentity:
    identity_id: int
    head_shape: str
    ear_shape: str
    fur_colour: str
    fur_rgb: RGB
    pattern: str
    pattern_colour: str
    pattern_rgb: RGB
    snout: str
    eye_colour: str
    collar: str
    nose_colour: str
    ear_size: float  # ~0.9..1.1
    domain: str = PET

    @property
    def key(self) -> str:
        return subject_key(self.domain, self.identity_id)


Identity = Union[PersonIdentity, PetIdentity]

_PERSON_AXES = (FACE_SHAPES, tuple(SKIN_TONES), EYE_SHAPES, tuple(EYE_COLOURS), tuple(EYE_SPACINGS),
                HAIR_STYLES, tuple(HAIR_COLOURS), MARKS, GLASSES)
_PET_AXES = (HEAD_SHAPES, EAR_SHAPES, tuple(FUR_COLOURS), PATTERNS, tuple(PATTERN_COLOURS), SNOUTS,
             tuple(PET_EYE_COLOURS), tuple(COLLARS), tuple(NOSE_COLOURS))


ATTRIBUTES: dict[str, tuple[tuple[str, tuple[str, ...]], ...]] = {
    PERSON: (("face_shape", FACE_SHAPES), ("skin_tone", tuple(SKIN_TONES)), ("eye_shape", EYE_SHAPES),
             ("eye_colour", tuple(EYE_COLOURS)), ("eye_spacing", tuple(EYE_SPACINGS)), ("hair_style", HAIR_STYLES),
             ("hair_colour", tuple(HAIR_COLOURS)), ("mark", MARKS), ("glasses", GLASSES)),
    PET: (("head_shape", HEAD_SHAPES), ("ear_shape", EAR_SHAPES), ("fur_colour", tuple(FUR_COLOURS)),
          ("pattern", PATTERNS), ("pattern_colour", tuple(PATTERN_COLOURS) + tuple(n for n, _ in TONE_ON_TONE.values())),
          ("snout", SNOUTS), ("eye_colour", tuple(PET_EYE_COLOURS)), ("collar", tuple(COLLARS)),
          ("nose_colour", tuple(NOSE_COLOURS))),
}  # the discrete attributes of each domain, with every value they take (the scorers' labels)


def attribute_labels(identity: "Identity") -> dict[str, int]:
    """Each discrete attribute's value as an index into ``ATTRIBUTES[domain]``."""
    return {name: values.index(getattr(identity, name)) for name, values in ATTRIBUTES[identity.domain]}


def combination_count(domain: str) -> int:
    """How many distinct discrete attribute combinations the domain has."""
    count = 1
    for axis in _axes(domain):
        count *= len(axis)
    return count


def sample_identity(domain: str, identity_id: int) -> Identity:
    """The identity ``identity_id`` (0 .. IDENTITY_COUNT-1) of ``domain`` ("person" or "pet")."""
    _check(domain, identity_id)
    values = _mixed_radix(permute(identity_id, combination_count(domain), "toyworld-identity", domain), _axes(domain))
    rng = Rng("toyworld-identity-continuous", domain, identity_id)
    if domain == PERSON:
        face, skin, eye_shape, eye_colour, spacing, hair_style, hair_colour, mark, glasses = values
        return PersonIdentity(
            identity_id=identity_id, face_shape=face, skin_tone=skin, skin_rgb=_jitter(SKIN_TONES[skin], rng, 8),
            face_aspect=rng.uniform(0.95, 1.05), eye_shape=eye_shape, eye_colour=eye_colour, eye_spacing=spacing,
            eye_spacing_value=EYE_SPACINGS[spacing] + rng.uniform(-0.004, 0.004), hair_style=hair_style,
            hair_colour=hair_colour, hair_rgb=_jitter(HAIR_COLOURS[hair_colour], rng, 14), mark=mark, glasses=glasses)
    head, ears, fur, pattern, pattern_colour, snout, eye_colour, collar, nose = values
    pattern_rgb = PATTERN_COLOURS[pattern_colour]
    if pattern_colour == fur:  # tone on tone: a shade of the fur no other pattern colour has
        pattern_colour, pattern_rgb = TONE_ON_TONE[fur]
    return PetIdentity(
        identity_id=identity_id, head_shape=head, ear_shape=ears, fur_colour=fur,
        fur_rgb=_jitter(FUR_COLOURS[fur], rng, 10), pattern=pattern, pattern_colour=pattern_colour,
        pattern_rgb=_jitter(pattern_rgb, rng, 8), snout=snout, eye_colour=eye_colour,
        collar=collar, nose_colour=nose, ear_size=rng.uniform(0.9, 1.1))


def subject_key(domain: str, identity_id: int) -> str:
    """The identity's folder name and label, e.g. ``person_0042``."""
    return f"{domain}_{identity_id:04d}"


def is_heldout(identity_id: int) -> bool:
    return identity_id >= HELDOUT_START


def train_ids() -> range:
    return range(0, HELDOUT_START)


def heldout_ids() -> range:
    return range(HELDOUT_START, IDENTITY_COUNT)


def _axes(domain: str) -> tuple[tuple[str, ...], ...]:
    if domain == PERSON:
        return _PERSON_AXES
    if domain == PET:
        return _PET_AXES
    raise IdentityError(f"unknown domain {domain!r}: use one of {DOMAINS}")


def _check(domain: str, identity_id: int) -> None:
    _axes(domain)
    if isinstance(identity_id, bool) or not isinstance(identity_id, int) or not 0 <= identity_id < IDENTITY_COUNT:
        raise IdentityError(f"identity id {identity_id!r} of domain {domain!r} is outside 0..{IDENTITY_COUNT - 1}: "
                            f"use ids 0..{HELDOUT_START - 1} for training, {HELDOUT_START}..{IDENTITY_COUNT - 1} held out")


def _mixed_radix(index: int, axes) -> tuple[str, ...]:
    values = []
    for axis in axes:
        index, digit = divmod(index, len(axis))
        values.append(axis[digit])
    return tuple(values)


def _jitter(colour: RGB, rng: Rng, amount: int) -> RGB:
    return tuple(int(min(255, max(0, c + round(rng.uniform(-amount, amount))))) for c in colour)

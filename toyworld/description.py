"""Words for what a subject looks like: the attribute phrase of an identity and the captions that use it.

CLIP learns from captions that say what is seen; the toy world's captions can say it exactly, since
every identity is a point in a discrete attribute space (``identity.ATTRIBUTES``). ``appearance``
names every discrete attribute the render shows ("a person with a round face, dark skin, almond blue
eyes, long red hair, freckles and round glasses"); ``described_caption`` puts it where the class word
stands in a scene caption, so the class word (the subject word of nested attention) is still there:

    "a watercolor painting of a person with ..., in the snow, on the left"

The look factors the scene names (``look.py``) stand as in ``scene.caption``, the suffix phrases
after the attributes: "a photo of a smiling person with ..., in an orange shirt wearing a cap, in the snow, on the left".
"""
from __future__ import annotations

from .identity import ATTRIBUTES, CLASS_WORDS, PERSON, Identity
from .look import LOOK_WORDS, PREFIX_FACTORS, SUFFIX_FACTORS, look_words, named_look
from .scene import BACKGROUND_WORDS, PLACEMENT_WORDS, Scene, medium_phrase

SPACING_WORDS = {"close": "close-set ", "medium": "", "wide": "wide-set "}
PATTERN_WORDS = {"spots": "{colour} spots", "eye_patch": "a {colour} eye patch", "blaze": "a {colour} blaze",
                 "saddle": "a {colour} saddle"}


def _words(value: str) -> str:
    return value.replace("_", " ")


def _listing(parts: list[str]) -> str:
    return parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]


def appearance(identity: Identity) -> str:
    """'person with ...' / 'dog with ...': the class word and every discrete attribute, in words."""
    if identity.domain == PERSON:
        hair = "a bald head" if identity.hair_style == "bald" else \
            f"{identity.hair_style} {identity.hair_colour} hair"
        parts = [f"a {identity.face_shape} face", f"{identity.skin_tone} skin",
                 f"{SPACING_WORDS[identity.eye_spacing]}{identity.eye_shape} {identity.eye_colour} eyes", hair]
        if identity.mark != "none":
            parts.append({"freckles": "freckles", "scar": "a scar", "mole": "a mole"}[identity.mark])
        if identity.glasses != "none":
            parts.append("sunglasses" if identity.glasses == "sunglasses" else f"{identity.glasses} glasses")
    else:
        fur = f"{identity.fur_colour} fur"
        if identity.pattern == "solid":
            fur = f"solid {fur}"
        else:
            fur += " with " + PATTERN_WORDS[identity.pattern].format(colour=_words(identity.pattern_colour))
        parts = [f"a {identity.head_shape} head", f"{identity.ear_shape} ears", fur, f"a {identity.snout} snout",
                 f"{identity.eye_colour} eyes", f"a {identity.nose_colour} nose"]
        if identity.collar != "none":
            parts.append(f"a {identity.collar} collar")
    return f"{CLASS_WORDS[identity.domain]} with {_listing(parts)}"


def described_caption(identity: Identity, scene: Scene) -> str:
    """The scene caption with the subject described: 'a photo of a dog with ..., on the beach, in the center';
    the scene's look of the identity's domain named around it."""
    named = named_look(identity.domain, scene)
    words = LOOK_WORDS[identity.domain]
    before = "".join(f"{words[f][named[f]]} " for f in PREFIX_FACTORS if f in named)
    after = "".join(f"{words[f][named[f]]} " for f in SUFFIX_FACTORS if f in named).strip()
    return (f"{medium_phrase(scene)} a {before}{appearance(identity)}, {after + ', ' if after else ''}"
            f"{BACKGROUND_WORDS[scene.background]}, {PLACEMENT_WORDS[scene.placement]}")


def attribute_words() -> list[str]:
    """Every word an appearance phrase can use (for the text encoder's vocabulary)."""
    words = set(SPACING_WORDS.values()) | {"with", "and", "a", "face", "skin", "eyes", "hair", "bald", "head",
                                          "freckles", "scar", "mole", "glasses", "sunglasses", "ears", "fur",
                                          "solid", "spots", "eye", "patch", "blaze", "saddle", "snout", "nose",
                                          "collar", *CLASS_WORDS.values(), *look_words()}
    for domain in ATTRIBUTES:
        for _, values in ATTRIBUTES[domain]:
            words.update(_words(v) for v in values)
    return sorted(w.strip() for w in words if w.strip())

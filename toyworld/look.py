"""The subject's look: what a prompt can ask of a subject that its reference need not show.

Look factors are not identity: a person's shirt colour, expression and hat (an identity never
carries one), a dog's accessory and pose. Each value has exactly one caption phrase (like
``scene.BACKGROUND_WORDS``); a prefix phrase stands before the class word ("a smiling person"),
a suffix phrase after it ("a person in an orange shirt wearing a cap"). A scene that does not name a
factor (None) leaves it to the variation seed; ``realised_look`` says what a render shows.
"""
from __future__ import annotations

from dataclasses import replace

from .identity import PERSON, PET
from .variation import ACCESSORIES, EXPRESSIONS, HATS, POSES, SHIRT_COLOURS, Variation, sample_variation

SHIRT_WORDS = {name: f"in {'an' if name[0] in 'aeiou' else 'a'} {name.replace('_', ' ')} shirt" for name in SHIRT_COLOURS}
EXPRESSION_WORDS = {"smile": "smiling", "neutral": "serious", "open": "laughing"}
HAT_WORDS = {"none": "without a hat", "cap": "wearing a cap", "top_hat": "wearing a top hat",
             "crown": "wearing a crown"}
ACCESSORY_WORDS = {"none": "without accessories", "bandana": "wearing a bandana",
                   "party_hat": "wearing a party hat", "bow": "wearing a bow"}
POSE_WORDS = {"sitting": "sitting", "standing": "standing", "lying": "lying"}

LOOK_WORDS = {PERSON: {"shirt": SHIRT_WORDS, "expression": EXPRESSION_WORDS, "hat": HAT_WORDS},
              PET: {"accessory": ACCESSORY_WORDS, "pose": POSE_WORDS}}  # each value's one phrase
LOOK_FACTORS = {domain: {factor: tuple(words) for factor, words in factors.items()}
                for domain, factors in LOOK_WORDS.items()}
PREFIX_FACTORS = ("expression", "pose")  # phrased before the class word; the others after it, in this order
SUFFIX_FACTORS = ("shirt", "hat", "accessory")
LOOK_FIELDS = tuple(f for factors in LOOK_FACTORS.values() for f in factors)  # Scene's look fields
NO_EXTRAS = {"hat": "none", "accessory": "none"}  # what a reference shows
HIDDEN_IN_CLOSE_UP = frozenset({"shirt", "pose"})  # a close-up crops the shirt and most of a dog's body

assert tuple(LOOK_FACTORS[PERSON]["expression"]) == EXPRESSIONS and LOOK_FACTORS[PERSON]["hat"] == HATS
assert LOOK_FACTORS[PET]["accessory"] == ACCESSORIES and LOOK_FACTORS[PET]["pose"] == POSES
assert set(PREFIX_FACTORS + SUFFIX_FACTORS) == set(LOOK_FIELDS)


def look_domain(factor: str) -> str:
    """The domain whose subjects a look factor belongs to."""
    return next(domain for domain, factors in LOOK_FACTORS.items() if factor in factors)


def visible(factor: str, framing: str) -> bool:
    """Whether a render of ``framing`` shows the look factor (a close-up hides ``HIDDEN_IN_CLOSE_UP``)."""
    return not (framing == "close-up" and factor in HIDDEN_IN_CLOSE_UP)


def named_look(domain: str, scene) -> dict[str, str]:
    """The look factors of ``domain`` that ``scene`` names (non-None), in LOOK_FACTORS order."""
    return {f: getattr(scene, f) for f in LOOK_FACTORS[domain] if getattr(scene, f) is not None}


def subject_phrase(domain: str, scene, class_word: str) -> str:
    """'smiling person in an orange shirt wearing a cap', 'standing dog wearing a bow', 'person' ..."""
    named = named_look(domain, scene)
    before = [LOOK_WORDS[domain][f][named[f]] for f in PREFIX_FACTORS if f in named]
    after = [LOOK_WORDS[domain][f][named[f]] for f in SUFFIX_FACTORS if f in named]
    return " ".join(before + [class_word] + after)


def looked_variation(domain: str, scene, variation_seed: int, identity_key: str) -> Variation:
    """The subject's variation with every look factor the scene names put in place of its draw:
    what the renderer draws."""
    return replace(sample_variation(variation_seed, identity_key), **named_look(domain, scene))


def realised_look(domain: str, scene, variation_seed: int, identity_key: str) -> dict[str, str]:
    """What a render of this subject shows, per look factor of ``domain``: the value the scene names,
    else the variation's draw (the scene model's labels)."""
    variation = looked_variation(domain, scene, variation_seed, identity_key)
    return {f: getattr(variation, f) for f in LOOK_FACTORS[domain]}


def sample_look(rng) -> dict[str, str | None]:
    """Every look factor of both domains named with probability 0.5 (else None); a named hat or
    accessory is "none" half the time."""
    look = {}
    for factors in LOOK_FACTORS.values():
        for factor, values in factors.items():
            named = rng.random() < 0.5
            if factor in NO_EXTRAS:
                kind = rng.choice(values[1:])
                value = values[0] if rng.random() < 0.5 else kind
            else:
                value = rng.choice(values)
            look[factor] = value if named else None
    return look


def look_words() -> list[str]:
    """Every word a look phrase uses (for the text encoder's vocabulary)."""
    return sorted({w for factors in LOOK_WORDS.values() for words in factors.values() for p in words.values()
                   for w in p.split()})

"""Which words of a caption have a place in its image, and where: the words -> regions map and its token masks.

A caption is written from a structured source (the domain(s) it shows and its ``Scene``); the same
source says which of its words name a region of the image:

* the class word of each subject ("person", "dog") -> that subject's mask: region ``subject`` in a
  one-subject image, ``person`` / ``pet`` in a two-subject one;
* the content words of each look value the caption names ("orange shirt", "top hat", "smiling",
  "party hat", "sitting") -> that subject's mask (a named absence, "without a hat", draws nothing);
* the background phrase's content words ("snow", "night", "beach", "forest"; "red background" ...)
  -> region ``background``: everything outside every subject's mask.

Style, framing and placement words name the whole image (or a relation) and get no region. A colour
word is grounded as its phrase ("red background"), so that "red" of "long red hair" in a described
caption is never taken for the background's.

Token positions come from the pack's own word matching (``host.prompt_words`` + ``PromptWords.token_mask``):
``phrase_masks`` is the one place for it, used by the base's grounding loss (``grounding_loss.py``) and
the attention measurement (``attention_share.py``).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch

from .errors import GroundingError
from .identity import DOMAINS
from .look import LOOK_WORDS, named_look
from .scene import BACKGROUND_WORDS, Scene, class_word

SUBJECT_REGIONS = ("subject", "person", "pet")  # a subject mask each (what the data stores)
REGIONS = SUBJECT_REGIONS + ("background",)  # background: outside every subject mask
STOP_WORDS = frozenset({"a", "an", "the", "on", "in", "at", "of"})
LEADING_WORDS = STOP_WORDS | {"wearing"}  # what a look phrase holds before its content words


def background_phrase(background: str) -> str:
    """The content words of a background's phrase, as one phrase: "in the snow" -> "snow",
    "on a red background" -> "red background"."""
    return " ".join(w for w in BACKGROUND_WORDS[background].split() if w not in STOP_WORDS)


def look_phrases(domain: str, scene: Scene) -> list[str]:
    """The content words of each look value the caption names for ``domain``'s subject ("in an orange shirt"
    -> "orange shirt", "wearing a top hat" -> "top hat", "smiling"), grounded to that subject's mask. A
    named absence ("without a hat") draws nothing and is not grounded."""
    return [" ".join(_content_words(LOOK_WORDS[domain][factor][value]))
            for factor, value in named_look(domain, scene).items() if value != "none"]


def _content_words(phrase: str) -> list[str]:
    words = phrase.split()
    while words and words[0] in LEADING_WORDS:
        words = words[1:]
    return words


def grounded_phrases(domains: Sequence[str], scene: Scene) -> list[tuple[str, str]]:
    """[(phrase, region)] of a caption of ``domains`` (one domain: ``caption`` / ``described_caption``;
    ("person", "pet"): ``caption_two``) in ``scene``; regions are ``REGIONS``. Each subject's class word
    comes first for its region, then the look phrases grounded to the same region; the background last."""
    domains = tuple(domains)
    if domains not in ((d,) for d in DOMAINS) and sorted(domains) != sorted(DOMAINS):
        raise GroundingError(f"domains {domains} are neither one domain of {DOMAINS} nor the pair {DOMAINS}: "
                         "ground a one-subject or a person-and-dog caption")
    out = []
    for domain in domains:
        region = "subject" if len(domains) == 1 else domain
        out.append((class_word(domain), region))
        out.extend((phrase, region) for phrase in look_phrases(domain, scene))
    out.append((background_phrase(scene.background), "background"))
    return out


def phrase_masks(words, phrases: Sequence[str], length: int | None = None) -> torch.Tensor:
    """Bool [len(phrases), length] of each phrase's context positions in a prompt's ``PromptWords``
    (``host.prompt_words``): every occurrence of the phrase's run of words, nowhere inside other words."""
    length = words.length if length is None else length
    if not phrases:
        return torch.zeros(0, length, dtype=torch.bool)
    return torch.stack([words.token_mask(phrase, length) for phrase in phrases])


def caption_phrase_masks(clip, text: str, phrases: Sequence[str]) -> torch.Tensor:
    """``phrase_masks`` of ``text`` as the host CLIP tokenizes it; a phrase missing from the text is an error."""
    from ..nodes import host

    _, words = host.prompt_words(clip, text)
    masks = phrase_masks(words, phrases)
    missing = [p for p, m in zip(phrases, masks) if not m.any()]
    if missing:
        raise GroundingError(f"caption {text!r} does not hold the grounded phrase(s) {missing}: the caption and its "
                             "grounding source (domains, scene) disagree; ground the scene it was written from")
    return masks


def region_masks(masks: np.ndarray) -> np.ndarray:
    """uint8 [N, 3, H, W] subject masks in ``SUBJECT_REGIONS`` order (zeros where an image has none)
    -> float32 [N, 4, H, W] in [0, 1] in ``REGIONS`` order, background = 1 - the union of the subjects."""
    subjects = masks.astype(np.float32) / 255
    background = 1 - subjects.max(axis=1, keepdims=True)
    return np.concatenate([subjects, background], axis=1)


@dataclass(frozen=True)
class GroundedImages:
    """What the grounding loss needs of the training images, in the images' order: each image's
    ``grounded_phrases`` (of the source its caption was written from) and its subject masks,
    uint8 [N, 3, H, W] in ``SUBJECT_REGIONS`` order (zeros where the image has no such subject)."""
    phrases: list
    masks: np.ndarray

    def __post_init__(self) -> None:
        if len(self.phrases) != len(self.masks):
            raise GroundingError(f"{len(self.phrases)} grounded captions for {len(self.masks)} mask sets: give "
                                 "one of each per training image, in the images' order")


def caption_slots(clip, captions: Sequence[str], phrases: Sequence[Sequence[tuple[str, str]]]
                  ) -> tuple[torch.Tensor, torch.Tensor]:
    """Token masks and regions of each caption's grounded phrases: (bool [U, K, n_text], long [U, K]
    region index in ``REGIONS``, -1 for an unused slot); K = the most phrases of a caption. A caption
    with no phrases ("", caption dropout) has only unused slots."""
    width = max([len(p) for p in phrases] + [1])
    masks = [caption_phrase_masks(clip, text, [p for p, _ in grounded]) if grounded else None
             for text, grounded in zip(captions, phrases)]
    length = max([m.shape[1] for m in masks if m is not None] + [77])
    tokens = torch.zeros(len(captions), width, length, dtype=torch.bool)
    regions = torch.full((len(captions), width), -1, dtype=torch.long)
    for u, (mask, grounded) in enumerate(zip(masks, phrases)):
        if mask is not None:
            tokens[u, :len(grounded), :mask.shape[1]] = mask
            regions[u, :len(grounded)] = torch.tensor([REGIONS.index(region) for _, region in grounded])
    return tokens, regions

"""One sampling step as the patches see it: which prompt and which latent area each batch chunk
carries, the current sigma, and the check that every subject word is in a positive prompt.

``NestedAttentionTextEncode`` puts the prompt's words and positions (``PromptWords``) under
``PROMPT_KEY`` in each conditioning dict; the host keeps such keys and gives each cond a uuid, and
``transformer_options["uuids"]`` names the cond of each chunk of the batch at attention time.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Optional

import torch

from ...nested_attention_core.errors import SubjectWordError
from ...nested_attention_core.prompt import trimmed_pieces, word_pieces
from .binding import Area

PROMPT_KEY = "nested_attention_prompt"  # conditioning dict: PromptWords of the encoded prompt
STEP_KEY = "nested_attention_step"  # transformer options: StepPrompts of the current step
POSITIVE = 0  # cond_or_uncond value of positive-prompt chunks

log = logging.getLogger(__name__)
_WARNED: set = set()  # (word, prompt text) said once per process, not at every step


@dataclass
class StepPrompts:
    """Per sampling step: the prompt and latent area of each cond uuid, the sigma, and a mask cache."""

    prompts: dict  # uuid -> PromptWords
    sigma: float
    areas: dict = field(default_factory=dict)  # uuid -> Area of a cond that samples part of the latent
    latent_size: Optional[tuple[int, int]] = None  # (H, W) of the whole latent
    _masks: dict = field(default_factory=dict)

    def __deepcopy__(self, memo):
        return self

    def token_mask(self, word: str, uuids, cond_or_uncond, rows: int, length: int, device) -> torch.Tensor | None:
        """Bool [rows, length]: the word's positions in each positive row; None if in no row."""
        key = (word, tuple(uuids), tuple(cond_or_uncond), rows, length, device)
        if key not in self._masks:
            mask = torch.zeros(rows, length, dtype=torch.bool)
            per_chunk = rows // len(cond_or_uncond)
            for chunk, (uuid, kind) in enumerate(zip(uuids, cond_or_uncond)):
                prompt = self.prompts.get(uuid)
                if kind == POSITIVE and prompt is not None:
                    mask[chunk * per_chunk:(chunk + 1) * per_chunk] = prompt.token_mask(word, length)
            self._masks[key] = mask.to(device) if mask.any() else None
        return self._masks[key]

    def chunk_areas(self, uuids) -> list[Optional[Area]]:
        return [self.areas.get(uuid) for uuid in uuids]


def cond_area(cond: dict, latent_size: tuple[int, int]) -> Optional[Area]:
    """The latent area a conditioning samples, as the host computes it (samplers.get_area_and_mult):
    ``area`` is (sizes..., offsets...); the last two of each are height and width, clipped to the latent."""
    area = cond.get("area")
    if area is None:
        return None
    half = len(area) // 2
    (height, width), (top, left) = area[:half][-2:], area[half:][-2:]
    return (min(int(height), latent_size[0] - int(top)), min(int(width), latent_size[1] - int(left)),
            int(top), int(left))


def step_prompts(conds, x_in: torch.Tensor, timestep: torch.Tensor) -> StepPrompts:
    """The StepPrompts of one step, from the conds the host's CALC_COND_BATCH receives."""
    latent_size = tuple(x_in.shape[-2:])
    every = [c for cs in conds if cs for c in cs]
    prompts = {c["uuid"]: c[PROMPT_KEY] for c in every if PROMPT_KEY in c}
    areas = {c["uuid"]: area for c in every if (area := cond_area(c, latent_size)) is not None}
    return StepPrompts(prompts, float(timestep.max()), areas, latent_size)


def check_subject_words(words, positive_conds: list[dict]) -> None:
    """Every subject word must be in some positive prompt, else a SubjectWordError naming both."""
    prompts = [c[PROMPT_KEY] for c in positive_conds if PROMPT_KEY in c]
    for word in words:
        if not prompts:
            raise SubjectWordError(
                f"subject word {word!r}: the positive prompt carries no word positions. Encode the positive "
                f"prompt with 'Nested Attention Text Encode' (NestedAttentionTextEncode) instead of CLIPTextEncode")
        holding = [p for p in prompts if p.positions(word)]
        if not holding:
            shown = " | ".join(p.text() for p in prompts)
            raise SubjectWordError(
                f"subject word {word!r} is not in the positive prompt (its words: {shown!r}). "
                f"Put the word in the prompt, or set the subject's word to one of the prompt's words")
        for prompt in holding:
            if not prompt.holds_as_typed(word) and (word, prompt.text()) not in _WARNED:
                _WARNED.add((word, prompt.text()))
                log.warning("subject word %r is not in the prompt as typed; it acts on %r, the word without the "
                            "punctuation around it", word, " ".join(trimmed_pieces(word_pieces(word))))

"""One sampling step as the patches see it: which prompt and which latent area each batch chunk
carries and the current sigma; and, before sampling, the check of the subjects against the prompts.

``NestedAttentionTextEncode`` puts the prompt's words and positions (``PromptWords``) under
``PROMPT_KEY`` in each conditioning dict, and the context it encoded under ``ENCODED_KEY``; the
host keeps such keys and gives each cond a uuid, and ``transformer_options["uuids"]`` names the
cond of each chunk of the batch at attention time.

Which rows a subject acts on is read from the conditionings, not from the order in which a guider
passes them (SAG calls the model with the negative alone, DualCFGGuider passes negative, middle,
positive): a cond acts when it carries word positions that hold the word, and is not the guider's
``negative`` (every core guider names its negative prompt so; ``mark_negative`` marks those conds).
Word positions follow the tokens through the core conditioning nodes: ConditioningCombine keeps
each cond whole; ConditioningConcat appends tokens after the encoded ones (their words are unknown,
so only the encoded part's positions count); ConditioningAverage changes the tokens themselves,
which no position can follow, so such a cond is left unchanged and, if the word is nowhere else,
the error names the node.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Optional

import torch

from ...nested_attention_core.errors import SubjectWordError
from ...nested_attention_core.prompt import PromptWords, trimmed_pieces, word_pieces
from .binding import Area

PROMPT_KEY = "nested_attention_prompt"  # conditioning dict: PromptWords of the encoded prompt
ENCODED_KEY = "nested_attention_encoded"  # conditioning dict: the context tensor the prompt was encoded to
NEGATIVE_KEY = "nested_attention_negative"  # a sampling copy of a cond: the guider passes it as its negative
STEP_KEY = "nested_attention_step"  # transformer options: StepPrompts of the current step
NEGATIVE = "negative"  # the name every core guider (CFG, DualCFG, PerpNeg) gives its negative prompt

log = logging.getLogger(__name__)
_WARNED: set = set()  # (word, prompt text) said once per process, not at every step


@dataclass
class StepPrompts:
    """Per sampling step: the prompt and latent area of each cond uuid, the sigma, and a mask cache."""

    prompts: dict  # uuid -> PromptWords of each cond a subject may act on
    sigma: float
    areas: dict = field(default_factory=dict)  # uuid -> Area of a cond that samples part of the latent
    latent_size: Optional[tuple[int, int]] = None  # (H, W) of the whole latent
    periods: dict = field(default_factory=dict)  # uuid -> length of a cond's own context, if longer than its prompt
    _masks: dict = field(default_factory=dict)

    def __deepcopy__(self, memo):
        return self

    def token_mask(self, word: str, uuids, cond_or_uncond, rows: int, length: int, device) -> torch.Tensor | None:
        """Bool [rows, length]: the word's positions in each row whose cond's prompt the subject acts on
        (whatever the cond's place in the guider's call); None if in no row."""
        key = (word, tuple(uuids), tuple(cond_or_uncond), rows, length, device)
        if key not in self._masks:
            mask = torch.zeros(rows, length, dtype=torch.bool)
            per_chunk = rows // len(cond_or_uncond)
            for chunk, uuid in enumerate(uuids):
                prompt = self.prompts.get(uuid)
                if prompt is not None:
                    mask[chunk * per_chunk:(chunk + 1) * per_chunk] = prompt.token_mask(word, length,
                                                                                        self.periods.get(uuid))
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


@dataclass(frozen=True)
class CondPrompt:
    """The word positions one cond carries, and how its context relates to the encoded prompt."""

    words: PromptWords
    period: int  # length of the cond's own context (more than the prompt's after ConditioningConcat)
    changed: bool = False  # its tokens are no longer those encoded (ConditioningAverage): not followed

    @property
    def lengthened(self) -> bool:
        return self.period > self.words.length


def cond_prompt(cond: dict) -> CondPrompt | None:
    """What a cond (as the sampler holds it) carries: None for no word positions."""
    words = cond.get(PROMPT_KEY)
    if words is None:
        return None
    context = cond.get("cross_attn")
    if context is None:
        return CondPrompt(words, words.length)
    period = int(context.shape[1])
    encoded = cond.get(ENCODED_KEY)
    changed = period < words.length or (encoded is not None and not _starts_with(context, encoded))
    return CondPrompt(words, period, changed)


def _starts_with(context: torch.Tensor, encoded: torch.Tensor) -> bool:
    if context is encoded:
        return True
    head = context[:, :encoded.shape[1]]
    return head.shape == encoded.shape and torch.equal(head.to(encoded.device), encoded)


def mark_negative(conds: dict) -> None:
    """Mark the guider's negative conds (``conds``: the guider's per-sampling copies) as never changed."""
    for cond in conds.get(NEGATIVE) or []:
        cond[NEGATIVE_KEY] = True


def step_prompts(conds, x_in: torch.Tensor, timestep: torch.Tensor) -> StepPrompts:
    """The StepPrompts of one step, from the conds the host's CALC_COND_BATCH receives."""
    latent_size = tuple(x_in.shape[-2:])
    every = [c for cs in conds if cs for c in cs]
    prompts = {c["uuid"]: prompt for c in every
               if not c.get(NEGATIVE_KEY) and (prompt := cond_prompt(c)) is not None and not prompt.changed}
    areas = {c["uuid"]: area for c in every if (area := cond_area(c, latent_size)) is not None}
    return StepPrompts({uuid: p.words for uuid, p in prompts.items()}, float(timestep.max()), areas, latent_size,
                       {uuid: p.period for uuid, p in prompts.items() if p.lengthened})


def check_subject_words(bindings, conds: dict) -> None:
    """Before sampling: every subject word must be in a prompt the subject can act on, and no two
    subjects may act on one token; else a SubjectWordError naming the subjects and what to change.
    ``conds``: the guider's conds by name (positive, negative, middle, ...)."""
    carried = [(name, prompt) for name, cs in conds.items() if name != NEGATIVE for c in cs or []
               if (prompt := cond_prompt(c)) is not None]
    usable = [(name, prompt) for name, prompt in carried if not prompt.changed]
    for binding in bindings:
        word = binding.word
        if not carried:
            raise SubjectWordError(
                f"{subject_name(binding)}: the positive prompt carries no word positions. Encode the positive "
                f"prompt with 'Nested Attention Text Encode' (NestedAttentionTextEncode) instead of CLIPTextEncode "
                f"(after ConditioningConcat only conditioning_to's positions remain: encode that one with it)")
        holding = [(name, prompt) for name, prompt in usable if prompt.words.positions(word)]
        if not holding:
            shown = "; ".join(f"{name}: {prompt.words.text()!r}" for name, prompt in usable) or "none"
            raise SubjectWordError(
                f"{subject_name(binding)} is not in the positive prompt ({shown}). Put the word in the prompt, or "
                f"set the subject's word to one of the prompt's words" + _notes(carried))
        for _, prompt in holding:
            if not prompt.words.holds_as_typed(word) and (word, prompt.words.text()) not in _WARNED:
                _WARNED.add((word, prompt.words.text()))
                log.warning("subject word %r is not in the prompt as typed; it acts on %r, the word without the "
                            "punctuation around it", word, " ".join(trimmed_pieces(word_pieces(word))))
    _check_shared_tokens(bindings, usable)


def _notes(carried) -> str:
    notes = []
    for name, prompt in carried:
        if prompt.changed:
            notes.append(f"The {name} prompt {prompt.words.text()!r} was changed after Nested Attention Text Encode "
                         f"by a node that changes its tokens (ConditioningAverage mixes two prompts' tokens): they no "
                         f"longer are the prompt's words, so the subject cannot follow them and leaves it "
                         f"unchanged. Give the sampler the prompt as encoded (ConditioningAverage: "
                         f"conditioning_to_strength 1.0), or combine prompts with ConditioningCombine")
        elif prompt.lengthened:
            notes.append(f"The {name} prompt {prompt.words.text()!r} was lengthened by ConditioningConcat: the "
                         f"appended conditioning_from part carries no word positions. Put the word in the "
                         f"conditioning_to prompt, or write the whole prompt in one Nested Attention Text Encode")
    return "".join(f". {note}" for note in notes)


def _check_shared_tokens(bindings, usable) -> None:
    for name, prompt in usable:
        owner: dict[int, object] = {}
        for binding in bindings:
            for position in prompt.words.positions(binding.word):
                other = owner.setdefault(position, binding)
                if other is not binding and other.word != binding.word:
                    raise SubjectWordError(
                        f"{subject_name(other)} and {subject_name(binding)} both act on the token "
                        f"{prompt.words.word_at(position)!r} (position {position}) of the {name} prompt "
                        f"{prompt.words.text()!r}: one token can carry one subject. Give each subject a word of "
                        f"its own in the prompt (e.g. 'teddy bear' and 'dog', not 'teddy bear' and 'bear')")


def subject_name(binding) -> str:
    """'subject word 'dog' (Apply Nested Attention node #12)': the node to change, when known."""
    node = getattr(binding, "node", None)
    return f"subject word {binding.word!r}" + (f" ({node})" if node else "")

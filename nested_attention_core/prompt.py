"""Where the subject word sits in a tokenized prompt.

A prompt is kept as the pieces CLIP's tokenizer cut it into, each with its context positions (chunk
* 77 + position, so prompts longer than one 77-token chunk work). CLIP first splits text into pieces
(runs of letters, single digits, runs of other symbols, contractions such as 's) and then BPE-encodes
each piece; the last BPE token of a piece carries the ``</w>`` marker, so the tokens of a prompt
group into pieces without the tokenizer at hand, and a piece of several BPE tokens ("gorgonzola" ->
"gor", "gon", "zola</w>") owns all of their positions.

A subject word is cut into pieces by the same rule (``word_pieces``) and found as that run of pieces
in the prompt: ``sks_dog``, ``dog2``, ``t-shirt``, ``dog's``, ``35mm`` or ``<dog1>`` match wherever
the prompt holds exactly that text, and never inside another word (``sksdog`` does not hold ``sks``).
A word typed with punctuation around it that the prompt does not have (``dog,`` in "a dog on grass")
matches without it (``trimmed_pieces``); the host says so in its log.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

import torch

from .errors import SubjectWordError

WORD_END = "</w>"
# CLIP's pre-tokenizer: contractions, runs of letters, single digits, runs of other symbols.
_PIECES = re.compile(r"'s|'t|'re|'ve|'m|'ll|'d|[^\W\d_]+|\d|(?:[^\s\w]|_)+", re.IGNORECASE)


@dataclass(frozen=True)
class PromptWords:
    """The words of one prompt and their positions in its text context.

    words: (text, positions) in prompt order; length: number of context positions (77 per chunk).
    """

    words: tuple[tuple[str, tuple[int, ...]], ...]
    length: int

    def __deepcopy__(self, memo):
        return self

    @classmethod
    def from_bpe(cls, tokens: list[tuple[int, str]], length: int, decode=lambda text: text) -> "PromptWords":
        """Group ``(position, bpe_token)`` pairs (special tokens left out) into words; ``decode``
        turns a word's byte-level BPE text into plain text (the tokenizer's byte decoder)."""
        words, text, positions = [], "", []
        for position, token in tokens:
            text += token.removesuffix(WORD_END)
            positions.append(position)
            if token.endswith(WORD_END):
                words.append((decode(text), tuple(positions)))
                text, positions = "", []
        if positions:
            words.append((decode(text), tuple(positions)))
        return cls(tuple(words), length)

    def text(self) -> str:
        return " ".join(word for word, _ in self.words)

    def occurrences(self, word: str) -> list[tuple[int, ...]]:
        """The context positions of each occurrence of ``word`` as typed, else of its
        ``trimmed_pieces`` (the word without surrounding punctuation)."""
        pieces = word_pieces(word)
        found = self._occurrences(pieces)
        if not found and trimmed_pieces(pieces) not in ((), pieces):
            found = self._occurrences(trimmed_pieces(pieces))
        return found

    def holds_as_typed(self, word: str) -> bool:
        return bool(self._occurrences(word_pieces(word)))

    def _occurrences(self, pieces: tuple[str, ...]) -> list[tuple[int, ...]]:
        texts = [w for w, _ in self.words]
        n = len(pieces)
        return [tuple(p for _, positions in self.words[start:start + n] for p in positions)
                for start in range(len(texts) - n + 1) if n and tuple(texts[start:start + n]) == pieces]

    def positions(self, word: str) -> list[int]:
        """Context positions of every occurrence of ``word``."""
        return [p for occurrence in self.occurrences(word) for p in occurrence]

    def token_mask(self, word: str, length: int | None = None, period: int | None = None) -> torch.Tensor:
        """Bool mask [length] of the word's positions.

        ``period``: the length of the conditioning that carries this prompt (the prompt's own length,
        or more when tokens without word positions were appended after it, as ConditioningConcat
        does). A context longer than that (the host repeats shorter conditionings to batch them with
        longer ones) repeats the positions every ``period`` tokens; appended tokens are never marked."""
        length = self.length if length is None else length
        period = self.length if period is None else period
        mask = torch.zeros(length, dtype=torch.bool)
        positions = torch.tensor(self.positions(word), dtype=torch.long)
        if len(positions) and period >= self.length and length % period == 0:
            offsets = torch.arange(0, length, period)
            mask[(positions[None, :] + offsets[:, None]).flatten()] = True
        return mask

    def word_at(self, position: int) -> str | None:
        """The word (piece) of the prompt at a context position, None for none."""
        return next((word for word, positions in self.words if position in positions), None)


def word_pieces(word: str) -> tuple[str, ...]:
    """The pieces CLIP's tokenizer cuts ``word`` into (lower case)."""
    return tuple(_PIECES.findall(normalize_word(word)))


def trimmed_pieces(pieces: tuple[str, ...]) -> tuple[str, ...]:
    """``pieces`` without the pieces of punctuation at either end."""
    keep = [i for i, piece in enumerate(pieces) if any(c.isalnum() for c in piece)]
    return pieces[keep[0]:keep[-1] + 1] if keep else ()


def normalize_word(word: str) -> str:
    """The subject word as matched: lower case, single spaces. An empty word is an error."""
    normalized = " ".join(str(word).lower().split())
    if not normalized:
        raise SubjectWordError(
            "subject word is empty: type the word of the prompt that names the subject, e.g. 'person' or 'dog'")
    return normalized

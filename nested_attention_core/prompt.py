"""Where the subject word sits in a tokenized prompt.

A prompt is kept as the words it was tokenized into, each with its context positions (chunk * 77 +
position, so prompts longer than one 77-token chunk work). A CLIP BPE token that ends a word carries
the ``</w>`` marker, so the tokens of a prompt group into words without the tokenizer at hand; a word
of several BPE tokens ("gorgonzola" -> "gor", "gon", "zola</w>") owns all of their positions.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from .errors import SubjectWordError

WORD_END = "</w>"


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
        """The context positions of each occurrence of ``word`` (one or more words, matched whole,
        as ``normalize_word`` gives them)."""
        target = normalize_word(word).split()
        texts = [w for w, _ in self.words]
        return [tuple(p for _, positions in self.words[start:start + len(target)] for p in positions)
                for start in range(len(texts) - len(target) + 1) if texts[start:start + len(target)] == target]

    def positions(self, word: str) -> list[int]:
        """Context positions of every occurrence of ``word``."""
        return [p for occurrence in self.occurrences(word) for p in occurrence]

    def token_mask(self, word: str, length: int | None = None) -> torch.Tensor:
        """Bool mask [length] of the word's positions. A context longer than the prompt (the host
        repeats shorter prompts to batch them with longer ones) repeats the prompt's positions."""
        length = self.length if length is None else length
        mask = torch.zeros(length, dtype=torch.bool)
        positions = torch.tensor(self.positions(word), dtype=torch.long)
        if len(positions) and length % self.length == 0:
            offsets = torch.arange(0, length, self.length)
            mask[(positions[None, :] + offsets[:, None]).flatten()] = True
        return mask


def normalize_word(word: str) -> str:
    """The subject word as matched: lower case, single spaces. An empty word is an error."""
    normalized = " ".join(str(word).lower().split())
    if not normalized:
        raise SubjectWordError(
            "subject word is empty: type the word of the prompt that names the subject, e.g. 'person' or 'dog'")
    return normalized

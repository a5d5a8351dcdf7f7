"""Encoding a prompt so that a subject's word can be found in it at sampling time."""
from __future__ import annotations

from ...nested_attention_core.prompt import PromptWords
from .step import ENCODED_KEY, PROMPT_KEY


def prompt_words(clip, text: str) -> tuple[dict, PromptWords]:
    """Tokenize ``text`` with the host CLIP; return the host tokens and the prompt's words/positions.

    The words are read from the ``l`` tokenizer when the model has one (SD1.5, SDXL: their
    tokenizers share the context positions, see the families' ``text_encoders``)."""
    tokens = clip.tokenize(text, return_word_ids=True)
    name = "l" if "l" in tokens else next(iter(tokens))
    hf_tokenizer = getattr(clip.tokenizer, f"clip_{name}").tokenizer
    chunks = tokens[name]
    pairs = [(c * len(chunk) + i, hf_tokenizer.convert_ids_to_tokens(int(token[0])))
             for c, chunk in enumerate(chunks) for i, token in enumerate(chunk)
             if token[2] > 0 and isinstance(token[0], int)]  # word id 0: BOS, EOS, padding
    words = PromptWords.from_bpe(pairs, sum(len(chunk) for chunk in chunks),
                                 decode=lambda bpe: hf_tokenizer.convert_tokens_to_string([bpe]).strip())
    stripped = {k: [[t[:2] for t in chunk] for chunk in v] for k, v in tokens.items()}
    return stripped, words


def encode_prompt(clip, text: str) -> list:
    """CONDITIONING of ``text`` (as CLIP Text Encode gives it) carrying the prompt's word positions and
    the context they index (a reference to the same tensor), so that a node that changes the tokens
    afterwards is noticed (``step.cond_prompt``)."""
    tokens, words = prompt_words(clip, text)
    return [[cond, {**extra, PROMPT_KEY: words, ENCODED_KEY: cond}]
            for cond, extra in clip.encode_from_tokens_scheduled(tokens)]

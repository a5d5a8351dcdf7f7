"""Subject word positions from BPE tokens, without a tokenizer."""
import pytest
import torch

from nested_attention.nested_attention_core import PromptWords, SubjectWordError
from nested_attention.nested_attention_core.prompt import normalize_word


def words(*tokens, start=1, length=77):
    return PromptWords.from_bpe([(start + i, t) for i, t in enumerate(tokens)], length)


def test_single_token_word_position():
    p = words("a</w>", "photo</w>", "of</w>", "sks</w>", "dog</w>")
    assert p.positions("dog") == [5] and p.positions("sks") == [4]
    assert p.text() == "a photo of sks dog"


def test_multi_token_word_owns_every_token():
    p = words("a</w>", "gor", "gon", "zola</w>", "cheese</w>")
    assert p.positions("gorgonzola") == [2, 3, 4]
    assert p.positions("gon") == []  # a piece of a word is not the word


def test_glued_words_and_punctuation():
    p = words("sk", "sdog</w>", ",</w>", "dog</w>", ",</w>")
    assert p.positions("sks") == [] and p.positions("dog") == [4]


def test_every_occurrence_and_phrases_and_case():
    p = words("a</w>", "dog</w>", "and</w>", "a</w>", "sks</w>", "dog</w>")
    assert p.positions("Dog") == [2, 6]
    assert p.positions("sks  dog") == [5, 6]


def test_token_mask_repeats_for_longer_batched_context():
    p = words("a</w>", "dog</w>")
    mask = p.token_mask("dog", 154)
    assert mask.shape == (154,) and mask.nonzero().flatten().tolist() == [2, 79]
    assert p.token_mask("cat").sum() == 0


def test_second_chunk_positions():
    p = PromptWords.from_bpe([(77 + 1, "dog</w>")], 154)
    assert p.token_mask("dog").nonzero().flatten().tolist() == [78]


def test_decode_is_applied_per_word():
    p = PromptWords.from_bpe([(1, "caf"), (2, "Ã©</w>")], 77, decode=lambda s: s.encode("latin-1").decode("utf-8"))
    assert p.positions("café") == [1, 2]


@pytest.mark.parametrize("bad", ["", "   ", "\n"])
def test_empty_word_is_a_clear_error(bad):
    with pytest.raises(SubjectWordError, match="subject word is empty"):
        normalize_word(bad)

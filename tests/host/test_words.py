"""Subject words as people write them, found in prompts tokenized by the real CLIP tokenizers."""
import logging
from types import SimpleNamespace

import pytest

def subject_of(word):  # what the check reads of an applied subject: its word
    return SimpleNamespace(word=word)


PROMPT = "a photo of sks_dog and dog2 in a t-shirt, the dog's ball, 35mm film, <dog1> and ohwx man, sksdog"


@pytest.fixture(scope="module", params=["sd15", "sdxl"])
def clip(request, tiny_models, host):
    import comfy.sd

    return comfy.sd.load_checkpoint_guess_config(str(tiny_models[request.param]), output_vae=False)[1]


@pytest.mark.parametrize("word, count", [("sks_dog", 1), ("dog2", 1), ("t-shirt", 1), ("dog's", 1), ("35mm", 1),
                                         ("<dog1>", 1), ("ohwx man", 1), ("OHWX", 1), (" sks_dog ", 1), ("sksdog", 1),
                                         ("t-shirt,", 1), ("dog", 4), ("sks", 1), ("shirt", 1)])
def test_any_text_of_the_prompt_is_found_whole(clip, host, word, count):
    """As the tokenizer sees it: ``dog`` is a token of ``sks_dog``, ``dog2``, ``dog's`` and ``<dog1>``
    (not of ``sksdog``, one token run of its own); ``t-shirt,`` is in the prompt with its comma."""
    words = host.prompt_words(clip, PROMPT)[1]
    assert len(words.occurrences(word)) == count, (word, words.text())


def test_pieces_of_words_are_not_words(clip, host):
    words = host.prompt_words(clip, "a photo of sksdog and a t-shirt")[1]
    assert words.positions("sks") == [] and words.positions("dog") == [] and words.positions("t-shirt")
    assert words.positions("(sksdog:1.2)".strip("()").split(":")[0])  # weights syntax does not move positions


def test_surrounding_punctuation_the_prompt_lacks_is_left_out_with_a_message(clip, host, caplog, monkeypatch):
    from nested_attention.nodes.host import step
    from nested_attention.nodes.host.step import check_subject_words

    monkeypatch.setattr(step, "_WARNED", set())  # said once per process: forget the other model's run

    conditioning = host.encode_prompt(clip, "a dog on the grass")
    words = conditioning[0][1][host.PROMPT_KEY]
    assert words.positions("dog,") == words.positions("dog") != []
    caplog.set_level(logging.WARNING)
    check_subject_words([subject_of("dog,")], {"positive": [conditioning[0][1]]})
    assert "'dog,' is not in the prompt as typed" in caplog.text
    caplog.clear()
    check_subject_words([subject_of("dog")], {"positive": [conditioning[0][1]]})
    assert caplog.text == ""

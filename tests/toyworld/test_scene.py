"""Scenes and captions: every factor has its phrase, the subject is named by its class word."""
from __future__ import annotations

import pytest

from nested_attention.toyworld.errors import SceneError
from nested_attention.toyworld.identity import CLASS_WORDS, DOMAINS
from nested_attention.toyworld.scene import (BACKGROUND_WORDS, FACTORS, PLACEMENT_WORDS, STYLE_WORDS, Scene, all_scenes, caption,
                            caption_two, sample_scene)


def test_class_words_are_single_plain_words():
    assert CLASS_WORDS == {"person": "person", "pet": "dog"}
    for word in CLASS_WORDS.values():
        assert word.isalpha() and word.islower()


@pytest.mark.parametrize("domain", DOMAINS)
def test_captions_hold_the_class_word_and_every_scene_phrase(domain):
    captions = set()
    for scene in all_scenes():
        text = caption(domain, scene)
        assert f"a {CLASS_WORDS[domain]} " in text
        assert BACKGROUND_WORDS[scene.background] in text
        assert text.endswith(PLACEMENT_WORDS[scene.placement])
        assert STYLE_WORDS[scene.style] in text
        assert ("close-up" in text) == (scene.framing == "close-up")
        other = CLASS_WORDS["pet" if domain == "person" else "person"]
        assert other not in text.split()
        captions.add(text)
    assert len(captions) == len(all_scenes()) == 144  # a caption names its scene exactly


def test_a_caption_reads_naturally():
    assert caption("pet", Scene("snow", "left", "close-up", "pencil")) == \
        "a close-up pencil drawing of a dog in the snow, on the left"
    assert caption("person", Scene("red", "center", "full", "photo")) == \
        "a photo of a person on a red background, in the center"


def test_two_subject_captions_name_both_subjects_and_sides():
    text = caption_two(Scene("beach", "left", "full", "watercolor"), "right")
    assert text == "a watercolor painting of a person on the right and a dog on the left, on the beach"
    with pytest.raises(SceneError):
        caption_two(Scene(), "center")


def test_unknown_factor_values_are_errors_listing_the_known_ones():
    with pytest.raises(SceneError, match="background 'mars'.*red"):
        Scene(background="mars")
    with pytest.raises(SceneError, match="style"):
        Scene(style="oil")


def test_sampled_scenes_are_deterministic_and_cover_every_value():
    assert sample_scene(1, "a") == sample_scene(1, "a")
    scenes = [sample_scene(i) for i in range(400)]
    for factor, values in FACTORS.items():
        assert {getattr(s, factor) for s in scenes} == set(values)
    assert Scene("night", "right", "close-up", "pencil").labels() == {
        "background": 5, "placement": 2, "framing": 1, "style": 1}

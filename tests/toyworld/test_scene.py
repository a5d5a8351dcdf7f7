"""Scenes and captions: every factor has its phrase, the subject is named by its class word."""
from __future__ import annotations

import pytest

from nested_attention.toyworld.errors import SceneError
from nested_attention.toyworld.identity import CLASS_WORDS, DOMAINS
from dataclasses import asdict

from nested_attention.toyworld.look import HIDDEN_IN_CLOSE_UP, LOOK_FACTORS, LOOK_FIELDS, LOOK_WORDS, realised_look, visible
from nested_attention.toyworld.scene import (BACKGROUND_WORDS, FACTORS, PLACEMENT_WORDS, STYLE_WORDS, Scene, all_scenes, caption,
                            caption_two, parse_caption, reference_scene, sample_scene)
from nested_attention.toyworld.variation import sample_variation


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


def test_look_factors_have_one_phrase_per_value():
    assert set(LOOK_FACTORS) == set(DOMAINS)
    assert set(LOOK_FACTORS["person"]) == {"shirt", "expression", "hat"}
    assert set(LOOK_FACTORS["pet"]) == {"accessory", "pose"}
    assert LOOK_FACTORS["person"]["hat"][0] == "none" == LOOK_FACTORS["pet"]["accessory"][0]
    phrases = [p for factors in LOOK_WORDS.values() for words in factors.values() for p in words.values()]
    assert len(phrases) == len(set(phrases)) and all(phrases)
    assert LOOK_WORDS["person"]["shirt"]["orange"] == "in an orange shirt"


def test_no_shirt_colour_is_a_background_word():
    """A colour word in both phrases confounds them: run 10's base painted backgrounds in the shirt's colour."""
    from nested_attention.toyworld.grounding import background_phrase, look_phrases

    background_words = {w for background in BACKGROUND_WORDS for w in background_phrase(background).split()}
    for name in LOOK_FACTORS["person"]["shirt"]:
        (phrase,) = look_phrases("person", Scene(shirt=name))  # the words the grounding loss sees: "orange shirt"
        assert not set(phrase.split()) & background_words, name


def test_captions_name_the_look_of_their_domain_around_the_class_word():
    scene = Scene("snow", "left", shirt="orange", expression="smile", hat="cap", accessory="bow", pose="standing")
    assert caption("person", scene) == "a photo of a smiling person in an orange shirt wearing a cap in the snow, on the left"
    assert caption("pet", scene) == "a photo of a standing dog wearing a bow in the snow, on the left"
    assert caption_two(scene, "right") == ("a photo of a smiling person in an orange shirt wearing a cap on the right and "
                                           "a standing dog wearing a bow on the left, in the snow")
    assert caption("person", Scene(hat="none")) == "a photo of a person without a hat on a blue background, in the center"
    assert caption("pet", scene.for_domain("person")) == caption("pet", Scene("snow", "left"))


def test_captions_parse_back_into_their_scene():
    for i in range(300):
        scene = sample_scene("parse", i)
        for domain in DOMAINS:
            assert parse_caption(caption(domain, scene)) == (domain, scene.for_domain(domain))
    with pytest.raises(SceneError, match="not a toy-world"):
        parse_caption("a photo of a cat in the snow, on the left")


def test_look_values_are_validated_and_scenes_round_trip_through_json():
    with pytest.raises(SceneError, match="hat 'fedora'.*cap"):
        Scene(hat="fedora")
    with pytest.raises(SceneError, match="pose"):
        Scene(pose="flying")
    scene = Scene("night", "right", "close-up", "pencil", shirt="purple", pose="lying")
    assert Scene(**asdict(scene)) == scene
    assert Scene(**asdict(Scene())) == Scene() and Scene().hat is None


def test_sampled_scenes_name_each_look_factor_about_half_the_time_where_the_framing_shows_it():
    all_scenes = [sample_scene("look", i) for i in range(1600)]
    for field in LOOK_FIELDS:
        shown = [s for s in all_scenes if visible(field, s.framing)]
        assert len(shown) < len(all_scenes) or field not in HIDDEN_IN_CLOSE_UP, field
        assert all(getattr(s, field) is None for s in all_scenes if not visible(field, s.framing)), field  # cropped out
        scenes = shown[:800]
        named = [getattr(s, field) for s in scenes if getattr(s, field) is not None]
        assert 0.4 < len(named) / len(scenes) < 0.6, field
        domain = "person" if field in LOOK_FACTORS["person"] else "pet"
        assert set(named) == set(LOOK_FACTORS[domain][field]), field
        if field in ("hat", "accessory"):
            assert 0.4 < named.count("none") / len(named) < 0.6, field
    assert sample_scene(5, "x") == sample_scene(5, "x")


def test_realised_look_is_the_named_value_else_the_variation_draw():
    key = "person_0003"
    drawn = sample_variation(11, key)
    assert realised_look("person", Scene(), 11, key) == {"shirt": drawn.shirt, "expression": drawn.expression,
                                                        "hat": drawn.hat}
    assert realised_look("person", Scene(hat="crown", pose="lying"), 11, key)["hat"] == "crown"
    assert realised_look("pet", Scene(pose="lying"), 11, "pet_0003")["pose"] == "lying"
    hats = {realised_look("person", Scene(), seed, key)["hat"] for seed in range(60)}
    assert hats == set(LOOK_FACTORS["person"]["hat"])  # unnamed: the variation draws every value


def test_reference_scenes_carry_no_hat_and_no_accessory():
    for i in range(50):
        scene = reference_scene("toyworld-eval-reference", "person", 1800 + i)
        assert scene.hat == "none" and scene.accessory == "none"
        assert scene.background == sample_scene("toyworld-eval-reference", "person", 1800 + i).background

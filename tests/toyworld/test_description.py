"""Captions that name what a subject looks like (description.py), and the toy text encoder's vocabulary."""
from __future__ import annotations

import pytest

from nested_attention.toyworld.description import appearance, described_caption
from nested_attention.toyworld.look import LOOK_FACTORS
from nested_attention.toyworld.identity import ATTRIBUTES, CLASS_WORDS, DOMAINS, IDENTITY_COUNT, sample_identity
from nested_attention.toyworld.scene import Scene, caption

EVERY = [(d, i) for d in DOMAINS for i in range(IDENTITY_COUNT)]


def _visible(identity, name: str) -> bool:
    """A bald head shows no hair colour; solid fur no pattern colour."""
    return not ((name == "hair_colour" and identity.hair_style == "bald")
                or (name == "pattern_colour" and identity.pattern == "solid"))


def test_the_phrase_changes_with_every_visible_attribute_value():
    """For each attribute, identities grouped by its value never share a phrase across values."""
    for domain in DOMAINS:
        identities = [sample_identity(domain, i) for i in range(IDENTITY_COUNT)]
        for name, values in ATTRIBUTES[domain]:
            by_value = {}
            for identity in identities:
                if _visible(identity, name):
                    by_value.setdefault(getattr(identity, name), set()).add(appearance(identity))
            assert len(by_value) >= 2, (domain, name)
            phrases = list(by_value.values())
            for a in range(len(phrases)):
                for b in range(a + 1, len(phrases)):
                    assert not phrases[a] & phrases[b], (domain, name)


def test_examples_read_as_written():
    person = next(sample_identity("person", i) for i in range(IDENTITY_COUNT)
                  if sample_identity("person", i).hair_style == "long" and sample_identity("person", i).glasses == "none"
                  and sample_identity("person", i).mark == "none")
    text = appearance(person)
    assert text.startswith("person with a ") and f"long {person.hair_colour} hair" in text
    assert f"{person.skin_tone} skin" in text and "glasses" not in text
    scene = Scene("snow", "left", "full", "watercolor")
    assert described_caption(person, scene) == f"a watercolor painting of a {text}, in the snow, on the left"
    looked = Scene("snow", "left", "full", "watercolor", shirt="orange", expression="smile", hat="cap", pose="lying")
    assert described_caption(person, looked) == \
        f"a watercolor painting of a smiling {text}, in an orange shirt wearing a cap, in the snow, on the left"


def test_captions_keep_the_class_word_and_fit_one_clip_chunk(host):
    import comfy.sd1_clip

    tokenizer = comfy.sd1_clip.SD1Tokenizer()
    # the longest medium phrase and the longest look phrases
    scene = Scene("forest", "center", "close-up", "watercolor", shirt="orange", expression="open", hat="top_hat",
                  accessory="party_hat", pose="standing")
    for domain, i in EVERY[::7]:
        text = described_caption(sample_identity(domain, i), scene)
        chunks = tokenizer.tokenize_with_weights(text)["l"]
        assert len(chunks) == 1, text  # 75 tokens and less: no second chunk
        assert f" {CLASS_WORDS[domain]} with " in text


def test_the_text_encoder_vocabulary_holds_every_word_of_every_description(host):
    import comfy.sd1_clip

    from nested_attention.toyworld.base_model import vocabulary_tokens
    from nested_attention.toyworld.base_pipeline import world_captions

    tokenizer = comfy.sd1_clip.SD1Tokenizer()
    vocabulary = vocabulary_tokens(tokenizer, world_captions())
    scene = Scene("beach", "right", "full", "pencil")
    looks = [Scene("beach", "right", "full", "pencil", **{f: v}) for d in DOMAINS for f, vs in LOOK_FACTORS[d].items()
             for v in vs]
    described = [described_caption(sample_identity(d, i), scene) for d, i in EVERY]
    described += [described_caption(sample_identity(d, 0), s) for d in DOMAINS for s in looks]
    used = vocabulary_tokens(tokenizer, sorted(set(described)) + [caption(d, s) for d in DOMAINS for s in [scene] + looks])
    assert used <= vocabulary, sorted(used - vocabulary)[:10]


@pytest.mark.parametrize("domain", DOMAINS)
def test_two_identities_share_a_description_only_when_they_differ_in_what_is_not_seen(domain):
    seen = {}
    for i in range(IDENTITY_COUNT):
        identity = sample_identity(domain, i)
        seen.setdefault(appearance(identity), []).append(identity)
    for same in seen.values():
        for other in same[1:]:
            differ = [name for name, _ in ATTRIBUTES[domain] if getattr(other, name) != getattr(same[0], name)]
            assert differ and all(not _visible(other, name) for name in differ), differ
    assert len(seen) > 0.95 * IDENTITY_COUNT

"""toyworld/grounding.py and grounding_loss.py: which words have which region, and the base's grounding loss."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from nested_attention.toyworld.errors import GroundingError
from nested_attention.toyworld.grounding import (REGIONS, GroundedImages, caption_slots, grounded_phrases,
                                                 region_masks)
from nested_attention.toyworld.grounding_loss import GroundingLoss, PooledRegions, region_terms
from nested_attention.toyworld.publish import BASE_FILES, COMMITTED_WEIGHTS
from nested_attention.toyworld.scene import Scene, caption, caption_two
from nested_attention.toyworld.unet_training import UNetTrainConfig, train_unet

CHECKPOINT = COMMITTED_WEIGHTS / BASE_FILES["checkpoint"]


@pytest.fixture(scope="module")
def base():
    from nested_attention.toyworld.base_model import load_checkpoint
    from nested_attention.toyworld.comfy_runtime import load_host

    load_host()
    return load_checkpoint(CHECKPOINT)


def test_one_subject_caption_grounds_its_class_word_and_background_phrase():
    assert grounded_phrases(("pet",), Scene("snow", "left")) == [("dog", "subject"), ("snow", "background")]
    assert grounded_phrases(("person",), Scene("red", "center", "close-up", "pencil")) == [
        ("person", "subject"), ("red background", "background")]
    assert grounded_phrases(("person",), Scene("night"))[-1] == ("night", "background")


def test_two_subject_caption_grounds_each_class_word_to_its_own_subject():
    assert grounded_phrases(("person", "pet"), Scene("beach")) == [
        ("person", "person"), ("dog", "pet"), ("beach", "background")]
    with pytest.raises(GroundingError, match="neither one domain"):
        grounded_phrases(("pet", "pet"), Scene())


def test_caption_slots_find_each_phrase_in_the_caption_tokens(base):
    _, clip, _ = base
    scene = Scene("forest", "right")
    captions = [caption("person", scene), caption_two(scene, "left"), ""]
    tokens, regions = caption_slots(clip, captions, [grounded_phrases(("person",), scene),
                                                      grounded_phrases(("person", "pet"), scene), []])
    assert tokens.shape == (3, 3, 77)
    assert regions.tolist() == [[0, 3, -1], [1, 2, 3], [-1, -1, -1]]
    assert tokens[0, :2].sum(1).tolist() == [1, 1] and not tokens[0, 2].any() and not tokens[2].any()
    assert tokens[1].sum(1).tolist() == [1, 1, 1] and tokens[1, 0].nonzero().item() < tokens[1, 1].nonzero().item()
    with pytest.raises(GroundingError, match="does not hold"):
        caption_slots(clip, [caption("person", scene)], [grounded_phrases(("pet",), scene)])


def test_described_captions_ground_the_class_word_and_only_the_backgrounds_colour(base):
    from nested_attention.toyworld.description import described_caption
    from nested_attention.toyworld.identity import sample_identity

    _, clip, _ = base
    people = (sample_identity("person", i) for i in range(500))
    person = next(p for p in people if p.hair_colour == "red" and p.hair_style != "bald")
    scene = Scene("red", "left")
    text = described_caption(person, scene)
    assert text.count("red") == 2
    tokens, regions = caption_slots(clip, [text], [grounded_phrases(("person",), scene)])
    assert regions.tolist() == [[0, 3]] and tokens[0].sum(1).tolist() == [1, 2]  # "person"; "red background"
    from nested_attention.nodes import host

    _, words = host.prompt_words(clip, text)
    reds = [positions for word, positions in words.words if word == "red"]
    assert len(reds) == 2 and not tokens[0, 1, list(reds[0])].any() and tokens[0, 1, list(reds[1])].all()


def test_region_masks_put_the_background_outside_every_subject():
    masks = np.zeros((1, 3, 4, 4), np.uint8)
    masks[0, 1, :, :2] = 255  # person on the left
    masks[0, 2, :, 3] = 255  # dog on the far right
    regions = region_masks(masks)
    assert regions.shape == (1, len(REGIONS), 4, 4)
    assert regions[0, 3].tolist() == [[0, 0, 1, 0]] * 4


def test_region_terms_are_zero_when_the_attention_is_inside_and_positive_otherwise():
    masks = torch.zeros(1, 1, 16)
    masks[0, 0, :4] = 1
    inside_only = masks * 0.3  # past the cap inside, nothing outside
    terms, usable = region_terms(inside_only, masks, cap=0.25)
    assert usable.all() and terms.item() == 0.0
    everywhere = torch.full((1, 1, 16), 0.03)  # the second edition: 3 % inside and outside
    assert region_terms(everywhere, masks, cap=0.25)[0].item() == pytest.approx(0.03 + 0.22)
    below_cap = masks * 0.1
    assert region_terms(below_cap, masks, cap=0.25)[0].item() == pytest.approx(0.15)
    assert not region_terms(everywhere, torch.ones(1, 1, 16), cap=0.25)[1].any()  # no outside: not usable


def _loss(base, captions, grounded, masks):
    model, clip, _ = base
    tokens, regions = caption_slots(clip, captions, grounded)
    return GroundingLoss(tokens, regions, PooledRegions(masks), 0.25, model)


def test_layer_term_is_zero_for_attention_on_the_word_inside_its_region(base):
    scene = Scene("blue", "left")
    masks = np.zeros((1, 3, 64, 64), np.uint8)
    masks[0, 0, :, :32] = 255  # the subject fills the left half
    loss = _loss(base, [caption("pet", scene)], [[("dog", "subject")]], masks)
    word = int(loss.tokens[0, 0].nonzero())
    grid, heads, dim = (4, 4), 1, 8
    left = torch.tensor([x < 2 for y in range(4) for x in range(4)])
    q = torch.zeros(1, 16, dim)
    q[0, left, 0], q[0, ~left, 1] = 200.0, 200.0  # left queries look for key axis 0, the others for axis 1
    k = torch.zeros(1, 77, dim)
    k[0, word, 0], k[0, 0, 1] = 1.0, 1.0  # the word answers axis 0, the start token axis 1
    loss.begin(torch.tensor([0]), torch.tensor([0]))
    assert loss.layer_term(q, k, heads, grid).item() == pytest.approx(0.0, abs=1e-6)
    q_swapped = torch.zeros(1, 16, dim)  # now the word draws attention only on the right (the background)
    q_swapped[0, ~left, 0], q_swapped[0, left, 1] = 200.0, 200.0
    assert loss.layer_term(q_swapped, k, heads, grid).item() == pytest.approx(1.0 + 0.25, abs=1e-4)


def test_grounding_gradient_reaches_every_attn2_query_and_key_and_the_output_is_the_hosts(base):
    from nested_attention.nodes import host

    model, clip, _ = base
    scene = Scene("snow", "right")
    masks = np.zeros((2, 3, 64, 64), np.uint8)
    masks[0, 0, 16:48, 32:] = 255
    masks[1, 1, :, :32], masks[1, 2, :, 32:] = 255, 255
    captions = [caption("person", scene), caption_two(scene, "left")]
    loss = _loss(base, captions, [grounded_phrases(("person",), scene), grounded_phrases(("person", "pet"), scene)],
                 masks)
    context = torch.cat([clip.encode_from_tokens(clip.tokenize(text)) for text in captions])
    x = torch.randn(2, 4, 8, 8, generator=torch.Generator().manual_seed(0))
    sigma = torch.tensor([3.0, 3.0])
    net = model.model.diffusion_model
    with torch.no_grad():
        plain = model.model.apply_model(x, sigma, c_crossattn=context)
    net.requires_grad_(True)
    try:
        loss.begin(torch.tensor([0, 1]), torch.tensor([0, 1]))
        patched = model.model.apply_model(x, sigma, c_crossattn=context, transformer_options=loss.options)
        term = loss.take()
        torch.testing.assert_close(patched.detach(), plain)
        # on noise at sigma 3 and these hand-made masks even the committed (grounded) base leaves some of each
        # word's attention outside its region: the (unweighted) term is positive, 0.15 (the second edition's
        # base, which spread its words, gave > 0.2), and below half its maximum 1 + cap (every word's
        # attention outside its region); a loss that found no phrase or no layer gives 0
        assert 0.05 < term.item() < (1 + loss.cap) / 2
        term.backward()
        modules = host.attention_modules(model)
        assert len(modules) == 7
        for layer_id, attn in modules.items():
            for name in ("to_q", "to_k"):
                grad = getattr(attn, name).weight.grad
                assert grad is not None and grad.abs().sum() > 0, (layer_id, name)
        last = modules["output_3_0"].to_v.weight.grad  # values reach the term only through later layers' queries
        assert last is None or last.abs().sum() == 0
    finally:
        net.zero_grad(set_to_none=True)
        net.requires_grad_(False)


def test_take_without_a_patched_call_names_the_fix(base):
    masks = np.zeros((1, 3, 64, 64), np.uint8)
    loss = _loss(base, [""], [[]], masks)
    loss.begin(torch.tensor([0]), torch.tensor([0]))
    with pytest.raises(GroundingError, match="transformer_options"):
        loss.take()


def test_training_with_grounding_weight_and_no_loss_names_the_fix():
    with pytest.raises(GroundingError, match="grounding_weight=0"):
        train_unet(None, torch.zeros(1, 4, 8, 8), torch.zeros(1, dtype=torch.long), torch.zeros(1, 77, 64), 0,
                   UNetTrainConfig(steps=1))


def test_grounded_images_need_one_phrase_list_per_mask_set():
    with pytest.raises(GroundingError, match="one of each"):
        GroundedImages([[("dog", "subject")]], np.zeros((2, 3, 8, 8), np.uint8))
    with pytest.raises(GroundingError, match=r"uint8 \[N, 3"):
        PooledRegions(np.zeros((2, 8, 8), np.uint8))


def test_named_look_values_are_grounded_to_their_own_subject_and_a_named_absence_is_not():
    from nested_attention.toyworld.grounding import grounded_phrases
    from nested_attention.toyworld.scene import Scene

    scene = Scene("red", "left", "full", "photo", shirt="orange", expression="smile", hat="none", accessory="party_hat",
                  pose="sitting")
    grounded = grounded_phrases(("person", "pet"), scene)
    assert ("orange shirt", "person") in grounded and ("smiling", "person") in grounded
    assert ("party hat", "pet") in grounded and ("sitting", "pet") in grounded
    assert ("red background", "background") in grounded
    assert not any("hat" == p or p.startswith("without") for p, _ in grounded)
    assert [p for p, _ in grounded_phrases(("person",), Scene("snow"))] == ["person", "snow"]

"""Region masks (ApplyNestedAttention's attn_mask) under area conditioning, and mask vs latent batch."""
import pytest
import torch

from nested_attention.nested_attention_core.errors import RegionMaskError
from fixtures.subjects import random_subject

SIZE = 64  # px; latent 8 x 8


@pytest.fixture(scope="module")
def loaded(tiny_models, host):
    import comfy.sd

    model, clip, _vae, _ = comfy.sd.load_checkpoint_guess_config(str(tiny_models["sd15"]), output_vae=False)
    return model, clip, random_subject(host, model, "person")


def half(side: str, batch: int = 1) -> torch.Tensor:
    mask = torch.zeros(batch, SIZE, SIZE)
    mask[..., : SIZE // 2] = side == "left"
    mask[..., SIZE // 2:] = side == "right"
    return mask


def sample(model, positive, clip, batch=1):
    import nodes

    negative = nodes.CLIPTextEncode().encode(clip, "blurry")[0]
    latent = {"samples": torch.zeros(batch, 4, SIZE // 8, SIZE // 8)}
    return nodes.common_ksampler(model, 7, 2, 5.0, "euler", "normal", positive, negative, latent)[0]["samples"]


def area_prompt(clip):
    """'a photo' over the whole image, combined with 'a person' in the right half (ConditioningSetArea)."""
    import nodes

    from nested_attention.nodes.text_encode import NestedAttentionTextEncode

    whole = NestedAttentionTextEncode.execute(clip, "a photo").args[0]
    person = NestedAttentionTextEncode.execute(clip, "a person").args[0]
    right = nodes.ConditioningSetArea().append(person, SIZE // 2, SIZE, SIZE // 2, 0, 1.0)[0]
    return nodes.ConditioningCombine().combine(whole, right)[0]


def test_a_region_outside_the_area_changes_nothing_and_inside_it_acts(loaded, host):
    model, clip, subject = loaded
    positive = area_prompt(clip)
    plain = sample(model, positive, clip)
    outside = sample(host.apply_subject(model, subject, 1.0, region=half("left")), positive, clip)
    assert torch.equal(outside, plain)  # the left-half region and the right-half area do not overlap
    inside = sample(host.apply_subject(model, subject, 1.0, region=half("right")), positive, clip)
    everywhere = sample(host.apply_subject(model, subject, 1.0), positive, clip)
    assert (inside - plain).abs().max() > 1e-3
    assert torch.equal(inside, everywhere)  # the region covers the whole area: the same as no region


def test_region_crop_follows_the_area(host):
    """Layer level: a chunk sampling the right half gets the right half of the region."""
    from nested_attention.nodes.host import SubjectBinding

    region = torch.zeros(1, SIZE, SIZE)
    region[:, :, SIZE - 8:] = 1  # the last latent column only
    binding = SubjectBinding(subject=None, strength=1.0, sigma_start=1.0, sigma_end=0.0, region=region)
    whole, right = binding.query_mask((8, 4), [None, (8, 4, 0, 4)], 1, (8, 8), "cpu").view(2, 8, 4)
    assert right[:, 3].eq(1).all() and right[:, :3].eq(0).all()  # in the area: its last column, exactly
    assert whole[:, :3].eq(0).all() and whole[:, 3].lt(1).all()  # the whole image on 4 columns: blurred


def test_a_mask_per_latent_and_a_wrong_mask_batch(loaded, host):
    model, clip, subject = loaded
    from nested_attention.nodes.text_encode import NestedAttentionTextEncode

    positive = NestedAttentionTextEncode.execute(clip, "a photo of a person").args[0]
    plain = sample(model, positive, clip, batch=2)
    first_only = torch.stack([torch.ones(SIZE, SIZE), torch.zeros(SIZE, SIZE)])
    result = sample(host.apply_subject(model, subject, 1.0, region=first_only), positive, clip, batch=2)
    assert (result[0] - plain[0]).abs().max() > 1e-3 and torch.equal(result[1], plain[1])
    three = torch.zeros(3, SIZE, SIZE)
    three[0] = 1
    with pytest.raises(RegionMaskError, match=r"batch of 3 masks but 2 images are sampled"):
        sample(host.apply_subject(model, subject, 1.0, region=three), positive, clip, batch=2)

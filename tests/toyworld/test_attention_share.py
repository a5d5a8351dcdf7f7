"""toyworld/attention_share.py: the grounded words' attention shares per layer, on the committed base."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from nested_attention.toyworld.attention_share import (KEYS, TWO_KEYS, attention_share, format_share_table,
                                                       mask_shares, masked_mean, prompt_groups, record_shares)
from nested_attention.toyworld.grounding import grounded_phrases
from nested_attention.toyworld.scene import Scene
from nested_attention.toyworld.publish import BASE_FILES, COMMITTED_WEIGHTS

CHECKPOINT = COMMITTED_WEIGHTS / BASE_FILES["checkpoint"]


@pytest.fixture(scope="module")
def base():
    from nested_attention.toyworld.base_model import load_checkpoint

    return load_checkpoint(CHECKPOINT)


def test_mask_shares_weights_the_share_by_the_area_pooled_mask():
    share = torch.arange(16, dtype=torch.float32).reshape(1, 16)  # 4x4 grid, row-major
    mask = torch.zeros(1, 8, 8)
    mask[0, :4, :4] = 1  # the top-left 2x2 cells of the grid: queries 0, 1, 4, 5
    mask[0, 7, 7] = 1  # a quarter of cell 15
    inside, outside = mask_shares(share, mask, (4, 4))
    weights = torch.zeros(16)
    weights[[0, 1, 4, 5]] = 1
    weights[15] = 0.25
    assert inside.item() == pytest.approx((0 + 1 + 4 + 5 + 0.25 * 15) / 4.25)
    assert outside.item() == pytest.approx(float(((1 - weights) * share[0]).sum() / (1 - weights).sum()))
    # a share equal everywhere reads the same inside and outside; one only inside reads 0 outside
    flat = mask_shares(torch.full((1, 16), 0.3), mask, (4, 4))
    assert [v.item() for v in flat] == pytest.approx([0.3, 0.3])
    only_inside = torch.zeros(1, 4, 4)
    only_inside[0, :2, :2] = 1
    assert [v.item() for v in mask_shares(only_inside.flatten(1), mask, (4, 4))] == pytest.approx([4 / 4.25, 0.0])


def test_shares_of_start_words_and_end_padding_sum_to_one_per_query(base):
    from nested_attention.nodes import host

    model, clip, vae = base
    conditioning, groups = prompt_groups(clip, "a close-up pencil drawing of a dog in the snow, on the left",
                                         grounded_phrases(("pet",), Scene("snow", "left", "close-up", "pencil")))
    words = {k: v for k, v in groups.items() if k.startswith("word:")}
    dogs = [k for k in words if k.endswith(":dog")]
    assert len(dogs) == 1 and torch.equal(groups["subject"], words[dogs[0]]) and groups["subject"].sum() == 1
    snow = [k for k in words if k.endswith(":snow")]
    assert len(snow) == 1 and torch.equal(groups["background"], words[snow[0]])
    assert groups["start"].nonzero().flatten().tolist() == [0]
    partition = torch.stack([groups["start"], groups["end_padding"], *words.values()]).int().sum(0)
    assert partition.tolist() == [1] * 77  # every context position in exactly one group
    batch = {k: v[None] for k, v in groups.items() if k not in ("subject", "background")}
    x0 = torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(0))
    recorder = record_shares(model, x0, 500, conditioning[0][0], batch, torch.randn_like(x0))
    assert list(recorder.shares) == [layer.id for layer in host.model_layers(model)]
    shares = recorder.shares["output_1_0"]
    total = sum(shares.values())
    assert total.shape == (1, 16) and recorder.grids["output_1_0"] == (4, 4)
    torch.testing.assert_close(total, torch.ones_like(total), atol=1e-5, rtol=0)


def test_recording_leaves_the_model_output_unchanged(base):
    from nested_attention.toyworld.attention_share import ShareRecorder

    model, clip, _ = base
    conditioning, groups = prompt_groups(clip, "a photo of a person in the snow, on the left",
                                         grounded_phrases(("person",), Scene("snow", "left")))
    x = torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(1))
    sigma = torch.tensor([2.0])
    plain = model.model.apply_model(x, sigma, c_crossattn=conditioning[0][0])
    probing = model.clone()
    recorder = ShareRecorder({"subject": groups["subject"][None]})
    from nested_attention.nodes import host

    for layer in host.model_layers(model):
        probing.set_model_attn2_replace(recorder.patch(layer.id), *layer.key)
    recorded = probing.model.apply_model(x, sigma, c_crossattn=conditioning[0][0],
                                         transformer_options=probing.model_options["transformer_options"])
    assert len(recorder.shares) == 7
    torch.testing.assert_close(recorded, plain)


def test_masked_mean_over_another_subject_reads_the_share_there():
    share = torch.zeros(1, 16)
    share[0, :8] = 0.4  # the top half of a 4x4 grid
    top, bottom = torch.zeros(1, 8, 8), torch.zeros(1, 8, 8)
    top[0, :4], bottom[0, 4:] = 1, 1
    assert masked_mean(share, top, (4, 4)).item() == pytest.approx(0.4)
    assert masked_mean(share, bottom, (4, 4)).item() == pytest.approx(0.0)


def test_two_subject_captions_group_each_class_word_and_the_background_phrase(base):
    _, clip, _ = base
    scene = Scene("red", "left")
    described = "a photo of a person with long red hair, on a red background, on the left"
    _, groups = prompt_groups(clip, described, grounded_phrases(("person",), scene))
    reds = [k for k in groups if k.endswith(":red")]
    assert len(reds) == 2 and groups["background"].sum() == 2  # "red background", never the hair's "red"
    assert not (groups["background"] & groups[reds[0]]).any() and (groups["background"] & groups[reds[1]]).any()
    _, groups = prompt_groups(clip, "a photo of a person on the left and a dog on the right, on a red background",
                              grounded_phrases(("person", "pet"), scene))
    assert groups["person"].sum() == 1 and groups["pet"].sum() == 1 and not (groups["person"] & groups["pet"]).any()


def test_attention_share_on_the_committed_base_is_a_share_per_layer():
    report = attention_share(CHECKPOINT, ids_per_domain=2, timesteps=(500,))
    assert report["images"] == 4 and report["two_subject_images"] == 2 and report["timesteps"] == [500]
    assert list(report["layers"]) == ["input_1_0", "input_3_0", "middle_0_0", "output_0_0", "output_1_0",
                                      "output_2_0", "output_3_0"]
    for values in [*report["layers"].values(), report["mean"]]:
        assert set(values) == set(KEYS) and set(TWO_KEYS) <= set(values)
        assert all(0.0 <= values[key] <= 1.0 for key in KEYS), values
        assert values["start"] + values["end_padding"] <= 1.0  # disjoint groups, mean over the same queries
    assert report["mean"]["inside"] == pytest.approx(np.mean([v["inside"] for v in report["layers"].values()]))
    table = format_share_table(report, report).splitlines()
    assert len(table) == 2 + 7 + 1 and table[-1].startswith("| mean |")
    middle = report["layers"]["middle_0_0"]
    assert f"{100 * middle['inside']:.1f} / {100 * middle['outside']:.1f} %" in table[4]
    assert f"{100 * middle['two_own']:.1f} / {100 * middle['two_other']:.1f} %" in table[4]


def test_committed_second_edition_shares_say_the_base_does_not_localise_words():
    import json
    from pathlib import Path

    report = json.loads((Path(__file__).parents[2] / "docs/toyworld/attention_share_second_edition.json").read_text())
    mean = report["mean"]
    assert set(mean) == set(KEYS)
    for inside, outside in (("inside", "outside"), ("background_background", "background_subject"),
                            ("two_own", "two_other")):
        assert abs(mean[inside] - mean[outside]) < 0.005, (inside, mean)


def test_a_subject_region_group_is_its_class_word_when_the_caption_also_names_looks(base):
    """The look phrases are grounded to the subject too; the measured subject word stays the class word."""
    from nested_attention.toyworld.scene import caption, caption_two

    _, clip, _ = base
    scene = Scene("snow", "left", shirt="orange", hat="top_hat", accessory="bow", pose="sitting")
    one = scene.for_domain("person")
    _, groups = prompt_groups(clip, caption("person", one), grounded_phrases(("person",), one))
    person = next(k for k in groups if k.endswith(":person"))
    assert torch.equal(groups["subject"], groups[person])
    _, groups = prompt_groups(clip, caption_two(scene, "left"), grounded_phrases(("person", "pet"), scene))
    dog = next(k for k in groups if k.endswith(":dog"))
    assert torch.equal(groups["pet"], groups[dog])

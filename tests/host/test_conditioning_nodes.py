"""Word positions through the core conditioning nodes (ConditioningConcat, ConditioningCombine,
ConditioningAverage) and subjects that would share a token, sampled with the real KSampler."""
import pytest
import torch

from nested_attention.nested_attention_core import SubjectWordError
from nested_attention.nodes.host import step as host_step
from fixtures.subjects import random_subject

STEPS = 2


@pytest.fixture(scope="module")
def env(host, tiny_models):
    import comfy.sd
    import nodes

    model, clip, _vae, _ = comfy.sd.load_checkpoint_guess_config(str(tiny_models["sd15"]), output_vae=False,
                                                                  output_clip=True)
    return host, nodes, model, clip


@pytest.fixture
def masks(monkeypatch):
    """Every token mask the layers asked for: (word, context length, the marked positions of each row)."""
    seen, token_mask = [], host_step.StepPrompts.token_mask

    def spy(self, word, uuids, cond_or_uncond, rows, length, device):
        mask = token_mask(self, word, uuids, cond_or_uncond, rows, length, device)
        if mask is not None:
            seen.append((word, length, [tuple(torch.nonzero(row).flatten().tolist()) for row in mask]))
        return mask

    monkeypatch.setattr(host_step.StepPrompts, "token_mask", spy)
    return seen


def encode(clip, text):
    from nested_attention.nodes.text_encode import NestedAttentionTextEncode

    return NestedAttentionTextEncode.execute(clip, text).args[0]


def sample(nodes, model, positive, negative):
    latent = {"samples": torch.zeros(1, 4, 8, 8)}
    return nodes.common_ksampler(model, 7, STEPS, 5.0, "euler", "normal", positive, negative, latent)[0]["samples"]


def apply(env, model, word, seed=1, node=None):
    host = env[0]
    named = {"node": node} if node else {}
    return host.apply_subject(model, random_subject(host, model, word, seed=seed), 1.0, 0.0, 1.0, **named)


def test_concat_keeps_the_positions_of_the_encoded_part_only(env, masks):
    """Concat('a photo of a dog', 'watercolor painting, in the snow'): 154 tokens; 'dog' is at 5 only
    (82 is 'the' of the appended prompt, which the subject must not touch)."""
    host, nodes, model, clip = env
    positive = nodes.ConditioningConcat().concat(encode(clip, "a photo of a dog"),
                                                 encode(clip, "watercolor painting, in the snow"))[0]
    negative = nodes.CLIPTextEncode().encode(clip, "blurry")[0]
    sample(nodes, apply(env, model, "dog"), positive, negative)
    marked = {rows for word, length, chunk_rows in masks for rows in chunk_rows if rows}
    assert masks and {length for _, length, _ in masks} == {154}
    assert marked == {(5,)}


def test_concat_with_the_word_in_the_appended_part_names_the_node(env):
    host, nodes, model, clip = env
    positive = nodes.ConditioningConcat().concat(encode(clip, "a photo of a dog"),
                                                 encode(clip, "watercolor painting, in the snow"))[0]
    with pytest.raises(SubjectWordError, match=r"'snow'.*not in the positive prompt.*lengthened by ConditioningConcat"):
        sample(nodes, apply(env, model, "snow"), positive, nodes.CLIPTextEncode().encode(clip, "blurry")[0])


def test_combine_keeps_each_prompt_with_its_own_positions(env, masks):
    host, nodes, model, clip = env
    plain = nodes.CLIPTextEncode().encode(clip, "a dog, watercolor painting, in the snow")[0]
    positive = nodes.ConditioningCombine().combine(plain, encode(clip, "a photo of a dog"))[0]
    sample(nodes, apply(env, model, "dog"), positive, nodes.CLIPTextEncode().encode(clip, "blurry")[0])
    marked = {rows for _, _, chunk_rows in masks for rows in chunk_rows}
    assert marked == {(5,), ()}  # the encoded prompt's 'dog'; the plain prompt (its 'dog' at 2) untouched


def test_average_is_followed_only_when_it_keeps_the_tokens(env, masks):
    """ConditioningAverage mixes the tokens of two prompts: positions cannot follow that, so the
    conditioning is left unchanged and, the word being nowhere else, the error names the node."""
    host, nodes, model, clip = env
    dog, cat = encode(clip, "a photo of a dog"), nodes.CLIPTextEncode().encode(clip, "a painting of a cat")[0]
    negative = nodes.CLIPTextEncode().encode(clip, "blurry")[0]
    patched = apply(env, model, "dog")
    with pytest.raises(SubjectWordError, match=r"'dog'.*changed after Nested Attention Text Encode.*ConditioningAverage"):
        sample(nodes, patched, nodes.ConditioningAverage().addWeighted(dog, cat, 0.5)[0], negative)
    assert not masks
    sample(nodes, patched, nodes.ConditioningAverage().addWeighted(dog, cat, 1.0)[0], negative)
    assert {rows for _, _, chunk_rows in masks for rows in chunk_rows if rows} == {(5,)}


def test_two_subjects_on_one_token_are_refused(env):
    host, nodes, model, clip = env
    negative = nodes.CLIPTextEncode().encode(clip, "blurry")[0]
    with pytest.raises(SubjectWordError, match=r"'dog,' and subject word 'dog' both act on the token 'dog'"):
        apply(env, apply(env, model, "dog,"), "dog", seed=2)  # refused on the Apply node, before sampling
    both = apply(env, apply(env, model, "teddy bear"), "bear", seed=2)
    with pytest.raises(SubjectWordError, match=r"'teddy bear' and subject word 'bear' both act on the token 'bear' "
                                               r"\(position 3\) of the positive prompt 'a teddy bear on a bed'"):
        sample(nodes, both, encode(clip, "a teddy bear on a bed"), negative)
    # different tokens of one prompt are fine, each subject on its own word
    sample(nodes, apply(env, apply(env, model, "teddy bear"), "bed", seed=2), encode(clip, "a teddy bear on a bed"),
           negative)


def test_errors_found_at_sampling_name_the_apply_node(env):
    host, nodes, model, clip = env
    negative = nodes.CLIPTextEncode().encode(clip, "blurry")[0]
    with pytest.raises(SubjectWordError, match=r"'dog,' \(Apply Nested Attention node #4\) and subject word 'dog' "
                                               r"\(Apply Nested Attention node #5\) both act on the token 'dog'"):
        apply(env, apply(env, model, "dog,", node="Apply Nested Attention node #4"), "dog", seed=2,
              node="Apply Nested Attention node #5")
    patched = apply(env, model, "corgi", node="Apply Nested Attention node #9")
    with pytest.raises(SubjectWordError, match=r"'corgi' \(Apply Nested Attention node #9\) is not in the positive"):
        sample(nodes, patched, encode(clip, "a photo of a dog"), negative)


def test_model_merge_keeps_the_subjects_of_model1_only(env):
    """What the README says of ModelMergeSimple: model1's options (and subjects) stay, model2's do not."""
    host, nodes, model, clip = env
    from comfy_extras.nodes_model_merging import ModelMergeSimple

    patched = apply(env, model, "dog")
    assert host.applied_subjects(ModelMergeSimple().merge(patched, model, 0.5)[0]).words == ("dog",)
    assert host.applied_subjects(ModelMergeSimple().merge(model, patched, 0.5)[0]) is None

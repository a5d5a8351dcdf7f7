"""The training forward: the host's attention path with live per-row nested values."""
from __future__ import annotations

import pytest
import torch


def test_subject_only_keeps_the_subject_words_positions_under_one_name(training):
    from nested_attention.nested_attention_core.prompt import PromptWords
    from nested_attention.training.binding import SUBJECT_WORD, subject_only

    words = PromptWords((("a", (1,)), ("teddy", (2,)), ("bear", (3, 4)), ("and", (5,)), ("a", (6,)), ("dog", (7,)),
                         ("teddy", (8,)), ("bear", (9,))), 77)
    teddy = subject_only(words, "Teddy Bear")
    assert teddy.positions(SUBJECT_WORD) == [2, 3, 4, 8, 9] and teddy.length == 77
    assert teddy.positions("dog") == [] and teddy.positions("teddy bear") == []
    assert subject_only(words, "cat").words == ()
    assert teddy.token_mask(SUBJECT_WORD, 154).nonzero().squeeze(1).tolist() == [2, 3, 4, 8, 9, 79, 80, 81, 85, 86]


def test_the_binding_only_acts_inside_a_step(training):
    from nested_attention.training.binding import LiveNested, TrainingBinding

    binding = TrainingBinding(LiveNested())
    assert binding.active(1e9) and binding.query_mask((8, 8), [None], 2, (8, 8), "cpu") is None
    with pytest.raises(RuntimeError, match="outside a training step"):
        binding.nested_kv("input_1_0", "cpu", torch.float32)


def test_rows_without_their_subject_are_the_plain_model_and_gradients_reach_the_encoder(
        training, sdxl_models, helpers, tiny_models, tmp_path):
    from nested_attention.training.batch import RowPlan, assemble
    from nested_attention.training.data import ReferenceChoice
    from nested_attention.training.session import open_session
    from nested_attention.training.step import encode_nested

    data = helpers.make_data(tmp_path / "data", {"alice": 1, "rex": 1}, caption="a {word} next to a dog and a woman",
                             words={"alice": "woman", "rex": "dog"})
    session = open_session(helpers.tiny_config(tiny_models, data, tmp_path / "out", cache=False), models=sdxl_models)
    den = session.denoiser
    drops = ["none", "subject", "text", "both"]
    plans = [RowPlan(i % 2, 0, i, ReferenceChoice(i % 2, None), drop) for i, drop in enumerate(drops)]
    batch = assemble(session.store, session.data, plans, den.model_sampling, den.process_latent_in, 0)
    assert [p is not None for p in batch.prompts] == [True, False, True, False]
    from nested_attention.training.binding import SUBJECT_WORD

    assert batch.prompts[0].positions(SUBJECT_WORD) == [2, 9]  # "a woman next to a dog and a woman": not the dog
    assert batch.prompts[2].positions(SUBJECT_WORD) == [1]  # text dropped: the bare word "dog"
    nested = encode_nested(session.encoder, batch.references)
    with torch.no_grad():
        plain = den.denoise(batch, None)
    subject = den.denoise(batch, nested)
    assert torch.equal(subject[1], plain[1]) and torch.equal(subject[3], plain[3])  # no subject: bit-identical
    assert (subject[0] - plain[0]).abs().max() > 1e-4 and (subject[2] - plain[2]).abs().max() > 1e-4
    session.encoder.zero_grad()
    den.losses(batch, nested).mean().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in session.encoder.parameters())

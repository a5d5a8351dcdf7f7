"""Training captions are read as written: ComfyUI's prompt weighting does not apply to them."""
from __future__ import annotations

import logging

import torch


def test_a_weighted_caption_is_trained_as_its_literal_text(training, sdxl_models, helpers, tiny_models, tmp_path,
                                                           caplog):
    """``(person:1.5)`` in a caption was parsed as ComfyUI prompt weighting: the word's conditioning was scaled by
    1.5 in training, silently. Measures: the training text features of such a caption are the host CLIP's encoding
    of the text with its parentheses as characters (every token weight 1; the parenthesis tokens are there), not
    the weighted one; and the run's log says captions are read literally, naming the caption file."""
    from nested_attention.training.session import open_session

    data = helpers.make_data(tmp_path / "data", {"a": 2}, caption="a photo of a (person:1.5)")
    caplog.set_level(logging.INFO, logger="nested_attention.training")
    session = open_session(helpers.tiny_config(tiny_models, data, tmp_path / "out", cache=False), models=sdxl_models)
    assert "captions are read literally" in caplog.text and "000.txt" in caplog.text, caplog.text
    caption = session.data.images[0].caption
    assert caption == "a photo of a (person:1.5), picture 0"
    features = session.store.text(caption)

    clip = sdxl_models.clip
    literal = clip.tokenize(caption.replace("(", "\\(").replace(")", "\\)"))
    assert all(weight == 1.0 for chunks in literal.values() for chunk in chunks for _, weight in chunk)
    expected = clip.encode_from_tokens(literal)
    weighted = clip.encode_from_tokens(clip.tokenize(caption))
    assert (weighted.float() - expected.float()).abs().max() > 1e-2  # the weighting would show
    torch.testing.assert_close(features.cond, expected.to(torch.float16).float(), rtol=0, atol=0)
    ids = [int(t) for chunk in literal["l"] for t, _ in chunk]
    assert features.token_ids["l"].tolist() == ids  # the parentheses are tokens of the text
    assert ids != [int(t) for chunk in clip.tokenize(caption)["l"] for t, _ in chunk]
    assert features.words.positions("person")  # the subject word is still found

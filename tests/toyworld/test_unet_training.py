"""toyworld/unet_training.py: the base's caption conditioning, on the committed base's text encoder."""
from __future__ import annotations

import pytest
import torch

from nested_attention.toyworld.publish import BASE_FILES, COMMITTED_WEIGHTS
from nested_attention.toyworld.unet_training import encode_captions


def test_captions_encoded_in_batches_equal_clip_text_encode_one_by_one():
    from nested_attention.toyworld.base_model import load_checkpoint

    _model, clip, _vae = load_checkpoint(COMMITTED_WEIGHTS / BASE_FILES["checkpoint"])
    captions = ["a photo of a person", "", "a pencil sketch of a dog on the left, in the snow",
                "a smiling person in a red shirt wearing a crown", "a dog"] * 3
    one_by_one = torch.cat([clip.encode_from_tokens(clip.tokenize(text)).float() for text in captions])
    batched = encode_captions(clip, captions, batch=4)  # chunks of 4, 4, 4, 3
    assert batched.shape == one_by_one.shape == (15, 77, one_by_one.shape[-1])
    assert torch.equal(batched, one_by_one)
    with pytest.raises(ValueError, match="longer than one 77-token section"):
        encode_captions(clip, ["a dog", " ".join(["a watercolor painting of a person in the snow"] * 12)])

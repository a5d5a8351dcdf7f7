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
                "a smiling person in an orange shirt wearing a crown", "a dog"] * 3
    one_by_one = torch.cat([clip.encode_from_tokens(clip.tokenize(text)).float() for text in captions])
    batched = encode_captions(clip, captions, batch=4)  # chunks of 4, 4, 4, 3
    assert batched.shape == one_by_one.shape == (15, 77, one_by_one.shape[-1])
    assert torch.equal(batched, one_by_one)
    with pytest.raises(ValueError, match="longer than one 77-token section"):
        encode_captions(clip, ["a dog", " ".join(["a watercolor painting of a person in the snow"] * 12)])


def test_min_snr_weights_are_min_snr_gamma_over_snr_for_eps():
    from nested_attention.toyworld.unet_training import min_snr_weights

    sigma = torch.tensor([0.03, 0.2, 0.4472136, 1.0, 14.6])  # SNR = 1 / sigma^2: 1111, 25, 5, 1, 0.005
    snr = 1 / sigma ** 2
    expected = torch.minimum(snr, torch.tensor(5.0)) / snr
    assert torch.allclose(min_snr_weights(sigma, 5.0), expected, rtol=1e-5)
    assert min_snr_weights(sigma, 5.0)[0] < 0.01 and torch.all(min_snr_weights(sigma, 5.0)[2:] > 0.99)
    assert torch.equal(min_snr_weights(sigma, 0.0), torch.ones(5))
    with pytest.raises(ValueError, match="min_snr_gamma"):
        min_snr_weights(sigma, -1.0)


@pytest.mark.parametrize("every", [-1, 2.5, True])
def test_a_look_gap_interval_that_is_not_a_count_of_steps_names_the_fix(every):
    from nested_attention.toyworld.unet_training import UNetTrainConfig, train_unet

    with pytest.raises(ValueError, match=r"look_gap_every is .*integer >= 0 \(0: never\)"):
        train_unet(None, torch.zeros(1, 4, 8, 8), torch.zeros(1, dtype=torch.long), torch.zeros(1, 77, 64), 0,
                   UNetTrainConfig(steps=1, grounding_weight=0.0, look_gap_every=every))

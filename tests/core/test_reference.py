"""Reference images of every shape become RGB [B, H, W, 3]; masks blank the background."""
import pytest
import torch

from nested_attention.nested_attention_core import ReferenceImageError
from nested_attention.nested_attention_core.reference import prepare_reference_images


def test_rgb_passes_through():
    img = torch.rand(2, 5, 7, 3)
    assert torch.equal(prepare_reference_images(img), img)


def test_alpha_is_composited_over_white():
    img = torch.zeros(1, 2, 2, 4)
    img[..., 3] = torch.tensor([[1.0, 0.0], [0.5, 1.0]])
    out = prepare_reference_images(img)
    assert out.shape == (1, 2, 2, 3)
    assert out[0, 0, 0].tolist() == [0, 0, 0] and out[0, 0, 1].tolist() == [1, 1, 1]
    assert torch.allclose(out[0, 1, 0], torch.full((3,), 0.5))


def test_grayscale_and_unbatched_and_odd_size():
    gray = torch.rand(13, 7, 1)
    out = prepare_reference_images(gray)
    assert out.shape == (1, 13, 7, 3) and torch.equal(out[..., 0], out[..., 2])


def test_mask_of_another_size_is_resized_and_blanks_background():
    img = torch.zeros(1, 8, 8, 3)
    mask = torch.zeros(4, 4)
    mask[:, :2] = 1  # left half is the subject
    out = prepare_reference_images(img, mask)
    assert out[0, :, :3].max() == 0 and out[0, :, 5:].min() == 1


def test_mask_batch_must_fit_the_images():
    with pytest.raises(ReferenceImageError, match="one mask for all images or one per image"):
        prepare_reference_images(torch.rand(2, 4, 4, 3), torch.ones(3, 4, 4))


def test_wrong_shape_names_the_input():
    with pytest.raises(ReferenceImageError, match="reference image has shape"):
        prepare_reference_images(torch.rand(4, 4, 5))

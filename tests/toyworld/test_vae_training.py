"""The toy VAE's crops: most centred on the subjects, where identity and looks are drawn."""
import numpy as np
import pytest

from nested_attention.toyworld.vae_training import VaeTrainConfig, _crops, train_taesd


def _world(n=6, size=64):
    """Images whose subject is one 4x4 white square at a random place, the rest black."""
    rng = np.random.default_rng(3)
    images = np.zeros((n, size, size, 3), np.uint8)
    subjects = np.zeros((n, size, size), bool)
    for i in range(n):
        y, x = rng.integers(0, size - 4, 2)
        images[i, y:y + 4, x:x + 4] = 255
        subjects[i, y:y + 4, x:x + 4] = True
    return images, subjects


def test_subject_crops_hold_a_subject_pixel_and_uniform_crops_mostly_miss_it():
    images, subjects = _world()
    on = _crops(images, 400, 16, np.random.default_rng(0), subjects, 1.0)
    off = _crops(images, 400, 16, np.random.default_rng(0), subjects, 0.0)
    seen = lambda crops: float((crops.amax(dim=(1, 2, 3)) > 0).float().mean())  # noqa: E731
    assert seen(on) == 1.0
    assert seen(off) < 0.5  # a 16 px crop of 64 px holds a 4 px square about a tenth of the time


def test_share_zero_draws_the_crops_of_before():
    """subject_crops=0 takes no extra random draw: the uniform crops are those of the plain sampler."""
    images, subjects = _world()
    rng = np.random.default_rng(5)
    n, h, w, _ = images.shape
    idx = rng.integers(0, n, 8)
    ys, xs = rng.integers(0, h - 16 + 1, 8), rng.integers(0, w - 16 + 1, 8)
    expected = np.stack([images[i, y:y + 16, x:x + 16] for i, y, x in zip(idx, ys, xs)])
    got = _crops(images, 8, 16, np.random.default_rng(5), subjects, 0.0)
    assert np.array_equal(got.permute(0, 2, 3, 1).mul(255).round().byte().numpy(), expected)


def test_subject_crops_without_masks_is_an_error_that_names_the_fix():
    images, _ = _world()
    with pytest.raises(ValueError, match="subject_crops=0.75.*pass subjects="):
        train_taesd(images, VaeTrainConfig(steps=1, batch=2))
    with pytest.raises(ValueError, match=r"shape \(6, 32, 32\)"):
        train_taesd(images, VaeTrainConfig(steps=1, batch=2), subjects=np.zeros((6, 32, 32), bool))

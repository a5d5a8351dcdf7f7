"""The loss in the model's own parameterization, the schedule, and the per-row randomness."""
from __future__ import annotations

import pytest
import torch


def model_sampling(kind):
    import comfy.model_sampling as ms

    class Sampling(ms.ModelSamplingDiscrete, kind):
        pass

    return Sampling()


@pytest.mark.parametrize("kind_name, expected", [("EPS", "eps"), ("V_PREDICTION", "v")])
def test_prediction_inverts_the_hosts_denoised_estimate(training, kind_name, expected):
    import comfy.model_sampling as ms
    from nested_attention.training.loss import denoising_losses, noisy_input, parameterization, prediction

    sampling = model_sampling(getattr(ms, kind_name))
    assert parameterization(sampling) == expected
    g = torch.Generator().manual_seed(0)
    x0, noise, output = (torch.randn(3, 4, 8, 8, generator=g) for _ in range(3))
    sigma = sampling.sigma(torch.tensor([10, 500, 990]))
    x = noisy_input(sampling, sigma, noise, x0)
    denoised = sampling.calculate_denoised(sigma, output, x)
    torch.testing.assert_close(prediction(expected, sigma, x, denoised), output, atol=2e-4, rtol=1e-4)
    target = prediction(expected, sigma, x, x0)
    if expected == "eps":
        torch.testing.assert_close(target, noise, atol=2e-4, rtol=1e-4)
    else:  # v = alpha * noise - sigma_t * x0 in variance-preserving terms
        alpha, sigma_t = 1 / (1 + sigma ** 2).sqrt(), sigma / (1 + sigma ** 2).sqrt()
        torch.testing.assert_close(target, alpha[:, None, None, None] * noise - sigma_t[:, None, None, None] * x0,
                                   atol=2e-4, rtol=1e-4)
    losses = denoising_losses(expected, sigma, x, denoised, x0)
    torch.testing.assert_close(losses, ((output - target) ** 2).mean(dim=(1, 2, 3)), atol=1e-3, rtol=1e-3)
    weight = torch.ones(3, 1, 8, 8)
    weight[..., 4:] = 0
    torch.testing.assert_close(denoising_losses(expected, sigma, x, denoised, x0, weight),
                               ((output - target) ** 2)[..., :4].mean(dim=(1, 2, 3)), atol=1e-3, rtol=1e-3)


@pytest.mark.parametrize("kind_name", ["EDM", "CONST"])
def test_other_parameterizations_are_refused(training, kind_name):
    import comfy.model_sampling as ms
    from nested_attention.training.errors import TrainingConfigError
    from nested_attention.training.loss import parameterization

    with pytest.raises(TrainingConfigError, match="train on an SD1.5 or SDXL"):
        parameterization(model_sampling(getattr(ms, kind_name)))


def test_rows_draw_from_their_own_seed(training):
    import comfy.model_sampling as ms
    from nested_attention.training.loss import draw_sigma_and_noise, row_generator

    sampling = model_sampling(ms.EPS)
    a = draw_sigma_and_noise(sampling, (4, 8, 8), row_generator(0, 1, 5, "noise"))
    b = draw_sigma_and_noise(sampling, (4, 8, 8), row_generator(0, 1, 5, "noise"))
    c = draw_sigma_and_noise(sampling, (4, 8, 8), row_generator(0, 1, 6, "noise"))
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1]) and not torch.equal(a[1], c[1])
    sigmas = torch.cat([draw_sigma_and_noise(sampling, (1,), row_generator(i))[0] for i in range(200)])
    nearest = (sigmas[:, None] - sampling.sigmas[None]).abs().min(dim=1).values
    assert bool((nearest <= 1e-5 * sigmas).all())  # on the host's discrete schedule
    assert sigmas.min() < sampling.sigmas[100] and sigmas.max() > sampling.sigmas[900]


def test_warmup_then_cosine(training):
    from nested_attention.training.optim import warmup_cosine

    factor = warmup_cosine(4, 104)
    assert [factor(s) for s in range(4)] == [0.25, 0.5, 0.75, 1.0]
    assert factor(54) == pytest.approx(0.5) and factor(104) == pytest.approx(0.0) and factor(200) == pytest.approx(0.0)

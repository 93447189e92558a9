"""Measures of images: total variation, PSNR, the noise estimate."""

import numpy as np
import pytest
import torch

from napari_dip.engine.measures import estimate_noise_std, psnr, total_variation


@pytest.mark.parametrize("sigma", [0.01, 0.05, 0.1])
def test_noise_estimate_reads_the_noise_of_a_smooth_image_with_or_without_a_mask(sigma):
    rng = np.random.default_rng(0)
    y, x = np.mgrid[0:96, 0:96] / 96.0
    clean = 0.3 + 0.3 * np.sin(3 * x) * np.cos(2 * y)
    noisy = torch.from_numpy(clean + rng.normal(0, sigma, clean.shape)).float()[None, None]
    assert estimate_noise_std(noisy) == pytest.approx(sigma, rel=0.1)
    known = torch.from_numpy(rng.random(clean.shape) > 0.5).float()[None, None]
    noisy_where_unknown = torch.where(known > 0, noisy, torch.zeros_like(noisy))  # 0 = missing
    assert estimate_noise_std(noisy_where_unknown, known) == pytest.approx(sigma, rel=0.15)
    assert estimate_noise_std(noisy[..., :2, :2]) is None  # too small to tell


def test_psnr_of_known_error():
    assert psnr(np.full(10, 0.1), np.zeros(10)) == pytest.approx(20.0)
    assert psnr(np.ones(3), np.ones(3)) == float("inf")


def test_total_variation_is_zero_on_a_constant_and_the_mean_step_otherwise():
    assert float(total_variation(torch.full((1, 2, 5, 5), 0.3))) == 0.0
    ramp = torch.arange(4.0).repeat(4, 1)[None, None]  # steps of 1 along the columns only
    assert float(total_variation(ramp)) == pytest.approx(1.0)
    image = torch.rand(1, 1, 6, 6, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(total_variation, (image,))

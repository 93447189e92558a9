import numpy as np
import pytest
import torch

from napari_dip.operators import (LanczosDownsampler, data_loss, inpainting_loss,
                                  lanczos_downsample, lanczos_kernel, psnr)


@pytest.mark.parametrize("factor", [2, 4, 8])
def test_lanczos_kernel_sums_to_one_and_is_symmetric(factor):
    taps = lanczos_kernel(factor)
    assert taps.shape == (4 * factor,)
    assert taps.sum() == pytest.approx(1.0, abs=1e-12)
    np.testing.assert_allclose(taps, taps[::-1])
    # the 2D kernel is the outer product: it sums to 1 too
    assert np.outer(taps, taps).sum() == pytest.approx(1.0, abs=1e-12)


@pytest.mark.parametrize("factor", [2, 4, 8])
def test_downsampler_keeps_a_constant_image_constant(factor):
    image = torch.full((1, 3, 64, 64), 0.37)
    small = LanczosDownsampler(factor)(image)
    assert small.shape == (1, 3, 64 // factor, 64 // factor)
    torch.testing.assert_close(small, torch.full_like(small, 0.37))


def test_downsampler_averages_a_fine_checkerboard_away():
    yy, xx = np.mgrid[:64, :64]
    board = torch.from_numpy(((yy + xx) % 2).astype(np.float32))[None, None]
    small = lanczos_downsample(board, 4)
    # away from the replicated borders the alternating pattern averages to its mean
    assert float((small[..., 2:-2, 2:-2] - 0.5).abs().max()) < 1e-3


def test_downsampler_is_differentiable_and_per_channel():
    image = torch.rand(2, 3, 16, 16, requires_grad=True)
    out = LanczosDownsampler(2)(image)
    out[:, 1].sum().backward()
    assert image.grad[:, 1].abs().sum() > 0
    assert image.grad[:, 0].abs().sum() == 0  # channels do not mix


def test_downsampler_rejects_sides_that_are_not_multiples():
    with pytest.raises(ValueError, match="multiples of the factor"):
        LanczosDownsampler(4)(torch.zeros(1, 1, 18, 16))


def test_inpainting_loss_ignores_values_under_the_mask():
    torch.manual_seed(0)
    target = torch.rand(1, 1, 8, 8)
    missing = torch.zeros(1, 1, 8, 8, dtype=torch.bool)
    missing[..., 2:5, 3:7] = True
    prediction = target.clone()
    prediction[missing] = torch.rand(int(missing.sum())) * 100  # wildly wrong, but masked
    assert inpainting_loss(prediction, target, missing).item() == 0.0
    prediction[0, 0, 0, 0] += 1.0  # a known pixel is wrong: the loss sees it
    assert inpainting_loss(prediction, target, missing).item() > 0.0


def test_data_loss_without_weight_is_mse():
    a, b = torch.rand(1, 2, 5, 5), torch.rand(1, 2, 5, 5)
    torch.testing.assert_close(data_loss(a, b), torch.nn.functional.mse_loss(a, b))


def test_psnr_of_known_error():
    assert psnr(np.full(10, 0.1), np.zeros(10)) == pytest.approx(20.0)
    assert psnr(np.ones(3), np.ones(3)) == float("inf")

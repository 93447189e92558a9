"""Degradation operators: identity, mask of known pixels, Lanczos downsampler, PSF blur.

Every operator gets shape, gradient (gradcheck), exception, module-equals-function and
correctness tests."""

import numpy as np
import pytest
import torch

from napari_dip.engine.convolution import Convolution, convolve
from napari_dip.engine.operators import (Chain, Identity, LanczosDownsampler, Mask, Operator,
                                         identity, lanczos_downsample, lanczos_kernel, mask)
from napari_dip.engine.psf import gaussian_psf


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


def _known(shape=(1, 1, 8, 8), seed=0):
    return (torch.rand(shape, generator=torch.Generator().manual_seed(seed)) > 0.3).double()


def _psf(side):
    return torch.from_numpy(gaussian_psf(1.0, size=side))


OPERATORS = {
    "identity": (Identity, (), identity, ()),
    "mask": (Mask, (_known(),), mask, (_known(),)),
    "lanczos2": (LanczosDownsampler, (2,), lanczos_downsample, (2,)),
    "lanczos4": (LanczosDownsampler, (4,), lanczos_downsample, (4,)),
    # deconvolution: a 3 x 3 PSF is convolved directly, a 5 x 5 one through the FFT
    "blur3": (Convolution, (_psf(3),), convolve, (_psf(3),)),
    "blur5": (Convolution, (_psf(5),), convolve, (_psf(5),)),
}
EXPECTED_SIDE = {"identity": 8, "mask": 8, "lanczos2": 4, "lanczos4": 2, "blur3": 8, "blur5": 8}


@pytest.mark.parametrize("name", OPERATORS)
@pytest.mark.parametrize("batch, channels", [(1, 1), (2, 3)])
def test_operators_keep_batch_and_channels_and_give_the_observed_size(name, batch, channels):
    module_class, args, _, _ = OPERATORS[name]
    image = torch.rand(batch, channels, 8, 8, dtype=torch.float64)
    out = module_class(*args)(image)
    side = EXPECTED_SIDE[name]
    assert out.shape == (batch, channels, side, side) and out.dtype == image.dtype


@pytest.mark.parametrize("name", OPERATORS)
def test_operators_have_exact_gradients(name):
    module_class, args, function, function_args = OPERATORS[name]
    image = torch.rand(1, 2, 8, 8, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(module_class(*args), (image,))
    assert torch.autograd.gradcheck(lambda x: function(x, *function_args), (image,))


@pytest.mark.parametrize("name", OPERATORS)
def test_each_module_equals_its_function(name):
    module_class, args, function, function_args = OPERATORS[name]
    image = torch.rand(2, 3, 8, 8)
    torch.testing.assert_close(module_class(*args)(image), function(image, *function_args),
                               rtol=0, atol=0)


@pytest.mark.parametrize("name", OPERATORS)
@pytest.mark.parametrize("bad", [torch.zeros(8, 8), torch.zeros(3, 8, 8), np.zeros((1, 1, 8, 8))])
def test_operators_refuse_anything_but_an_n_c_h_w_tensor(name, bad):
    module_class, args, _, _ = OPERATORS[name]
    with pytest.raises(ValueError, match=r"\(N, C, H, W\).*add the missing"):
        module_class(*args)(bad)


def test_identity_returns_the_image_itself():
    image = torch.rand(1, 1, 4, 4)
    assert Identity()(image) is image
    assert Identity().measured is None
    other = Mask(torch.ones(1, 1, 4, 4))
    assert Identity().then(other) is other  # nothing to chain


def test_the_mask_zeroes_exactly_the_unknown_pixels_and_keeps_the_others():
    image = torch.rand(2, 3, 8, 8) + 1.0  # no pixel is 0 by chance
    known = _known((1, 1, 8, 8)).float()
    out = Mask(known)(image)
    unknown = (known == 0).expand_as(image)
    assert torch.equal(out == 0, unknown)
    assert torch.equal(out[~unknown], image[~unknown])


def test_the_mask_tells_the_likelihood_which_values_are_measured():
    known = torch.tensor([[True, False], [False, True]])[None, None]
    operator = Mask(known)
    assert operator.measured.dtype == torch.float32
    assert operator.measured.tolist() == [[[[1.0, 0.0], [0.0, 1.0]]]]


@pytest.mark.parametrize("known, message", [
    (torch.ones(8, 8), "shape \\(N or 1, C or 1, H, W\\)"),
    (torch.full((1, 1, 8, 8), 0.5), "only 0 \\(unknown\\) and 1 \\(known\\).*known > 0"),
    (np.ones((1, 1, 8, 8)), "must be a tensor"),
])
def test_a_bad_mask_is_refused_with_how_to_fix_it(known, message):
    with pytest.raises(ValueError, match=message):
        Mask(known)


def test_a_mask_of_another_size_than_the_image_is_refused():
    with pytest.raises(ValueError, match="does not fit an image of shape.*height and width"):
        Mask(torch.ones(1, 1, 4, 4))(torch.rand(1, 1, 8, 8))
    with pytest.raises(ValueError, match="does not fit"):
        mask(torch.rand(1, 1, 8, 8), torch.ones(1, 2, 8, 8))  # more channels than the image


@pytest.mark.parametrize("factor", [0, -2, 2.5, True])
def test_the_downsampler_refuses_a_factor_that_is_not_a_positive_integer(factor):
    with pytest.raises(ValueError, match="factor must be an integer >= 1"):
        LanczosDownsampler(factor)
    with pytest.raises(ValueError, match="factor must be an integer >= 1"):
        lanczos_downsample(torch.zeros(1, 1, 8, 8), factor)


@pytest.mark.parametrize("factor", [1, 3])
def test_the_downsampler_refuses_an_odd_factor_and_names_the_identity(factor):
    with pytest.raises(ValueError, match="even factor.*without downsampling use Identity"):
        LanczosDownsampler(factor)


def test_a_chain_applies_its_operators_in_order_and_measures_what_the_last_records():
    known = torch.ones(1, 1, 4, 4)
    known[..., 0, 0] = 0
    chain = LanczosDownsampler(2).then(Mask(known))
    assert isinstance(chain, Chain) and isinstance(chain, Operator)
    image = torch.rand(1, 1, 8, 8, dtype=torch.float64)
    torch.testing.assert_close(chain(image), lanczos_downsample(image, 2) * known)
    assert chain.measured is chain.operators[-1].known
    assert torch.autograd.gradcheck(chain, (image.requires_grad_(),))
    with pytest.raises(ValueError, match="Chain takes one or more Operator"):
        Chain(torch.nn.Identity())


def test_operators_follow_the_module_to_another_dtype_and_device():
    operator = LanczosDownsampler(2).then(Mask(torch.ones(1, 1, 4, 4))).to(torch.float64)
    assert operator(torch.rand(1, 1, 8, 8, dtype=torch.float64)).dtype == torch.float64


def test_the_blur_is_an_operator_that_measures_every_value_and_chains():
    blur = Convolution(_psf(3).float())
    known = (torch.arange(64).reshape(1, 1, 8, 8) % 3 > 0).float()
    image = torch.rand(1, 1, 8, 8)
    assert isinstance(blur, Operator) and blur.measured is None
    torch.testing.assert_close(blur.then(Mask(known))(image), convolve(image, _psf(3)) * known)

import re

import numpy as np
import pytest
import torch
from scipy import ndimage

from napari_dip.engine.convolution import Convolution, convolve
from napari_dip.engine.psf import check_psf, gaussian_psf

METHODS = ["direct", "fft"]


def _random_psf(rng, shape=(5, 7)):
    return torch.from_numpy(check_psf(rng.random(shape), (64, 64)))


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("shape", [(1, 1, 12, 16), (2, 3, 9, 10)])
def test_output_has_the_input_shape_for_batches_and_channels(shape, method):
    image = torch.rand(shape, dtype=torch.float64)
    assert convolve(image, torch.full((3, 5), 1 / 15, dtype=torch.float64),
                    method=method).shape == shape


@pytest.mark.parametrize("method", METHODS)
def test_a_constant_image_stays_constant_up_to_the_borders(method):
    image = torch.full((1, 2, 20, 24), 0.37, dtype=torch.float64)
    psf = torch.from_numpy(gaussian_psf(2.0))  # 17 x 17: reflection reaches far into the image
    torch.testing.assert_close(convolve(image, psf, method=method), image)


@pytest.mark.parametrize("method", METHODS)
def test_matches_scipy_direct_convolution_with_mirror_borders(method):
    rng = np.random.default_rng(0)
    image = rng.random((2, 3, 20, 23))
    psf = rng.random((5, 7))  # asymmetric: a correlation instead of a convolution would fail
    blurred = convolve(torch.from_numpy(image), torch.from_numpy(psf), method=method).numpy()
    expected = np.stack([[ndimage.convolve(plane, psf, mode="mirror") for plane in planes]
                         for planes in image])
    np.testing.assert_allclose(blurred, expected, atol=1e-10)
    # torch's "reflect" padding is scipy's "mirror" (edge not repeated), not scipy's "reflect"
    assert not np.allclose(blurred[0, 0], ndimage.convolve(image[0, 0], psf, mode="reflect"))


def test_fft_and_direct_agree_in_float32():
    rng = np.random.default_rng(1)
    image = torch.rand(1, 3, 32, 40)
    psf = _random_psf(rng, (9, 9)).float()
    torch.testing.assert_close(convolve(image, psf, method="fft"),
                               convolve(image, psf, method="direct"), atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize("method", ["auto", *METHODS])
def test_a_delta_psf_is_the_identity(method):
    image = torch.rand(2, 3, 24, 24, dtype=torch.float64)
    delta = torch.from_numpy(check_psf(np.ones((1, 1)), (24, 24)))
    torch.testing.assert_close(convolve(image, delta, method=method), image)
    delta = torch.zeros(21, 21, dtype=torch.float64)
    delta[10, 10] = 1
    torch.testing.assert_close(convolve(image, delta, method=method), image)


def test_channels_do_not_mix():
    image = torch.zeros(1, 3, 16, 16, dtype=torch.float64)
    image[0, 1, 8, 8] = 1
    blurred = convolve(image, torch.from_numpy(gaussian_psf(1.0)))
    assert blurred[0, 0].abs().max() == 0 and blurred[0, 2].abs().max() == 0
    assert float(blurred[0, 1].sum()) == pytest.approx(1.0)


@pytest.mark.parametrize("method", METHODS)
def test_gradcheck_in_float64_for_image_and_psf(method):
    image = torch.rand(1, 2, 7, 8, dtype=torch.float64, requires_grad=True)
    psf = torch.rand(3, 5, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda x, k: convolve(x, k, method=method), (image, psf))


@pytest.mark.parametrize("method", ["auto", *METHODS])
def test_module_equals_function_and_reuses_it_across_calls(method):
    rng = np.random.default_rng(2)
    psf = check_psf(rng.random((9, 11)), (32, 32))
    module = Convolution(psf, method=method)
    for shape in [(1, 1, 20, 24), (2, 3, 20, 24), (1, 1, 32, 30)]:
        image = torch.rand(shape, dtype=torch.float64)
        torch.testing.assert_close(module(image),
                                   convolve(image, torch.from_numpy(psf), method=method))


def test_module_follows_a_changed_psf_and_dtype():
    module = Convolution(gaussian_psf(1.0, size=5))
    image = torch.rand(1, 1, 16, 16)
    module(image)
    module.psf.copy_(torch.from_numpy(gaussian_psf(0.5, size=5)))
    torch.testing.assert_close(module(image), convolve(image, module.psf.float()))
    double = module.double()(image.double())
    assert double.dtype == torch.float64


def test_module_gradcheck_and_buffer():
    module = Convolution(gaussian_psf(1.5), method="fft")
    assert "psf" in dict(module.named_buffers())
    image = torch.rand(1, 1, 14, 15, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(module, (image,))


@pytest.mark.parametrize("image_shape, psf_shape, words", [
    ((16, 16), (3, 3), "(N, C, H, W)"),
    ((1, 1, 16, 16), (4, 3), "odd sides"),
    ((1, 1, 16, 16), (3, 3, 3), "odd sides"),
    ((1, 1, 8, 16), (9, 9), "larger than the image plane"),
])
def test_refusals_name_the_problem_and_fix(image_shape, psf_shape, words):
    with pytest.raises(ValueError, match=re.escape(words)):
        convolve(torch.zeros(image_shape), torch.ones(psf_shape))


def test_unknown_method_is_refused():
    with pytest.raises(ValueError, match="method must be one of"):
        Convolution(np.ones((3, 3)), method="spectral")

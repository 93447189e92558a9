import hashlib
import json
import re

import numpy as np
import pytest

from napari_dip.engine.psf import (airy_psf, check_psf, gaussian_psf, model_psf,
                                   psf_description)


def _centre_of_mass(psf):
    rows, columns = np.indices(psf.shape)
    return (rows * psf).sum() / psf.sum(), (columns * psf).sum() / psf.sum()


def _variance_along_rows(psf):
    offsets = np.arange(psf.shape[0]) - psf.shape[0] // 2
    return float((offsets[:, None] ** 2 * psf).sum())


@pytest.mark.parametrize("shape", [(1, 1), (2, 2), (4, 7), (5, 5), (10, 3)])
def test_check_psf_gives_odd_sides_sum_one_and_the_mass_on_the_central_pixel(shape):
    psf = np.random.default_rng(0).random(shape) + 0.1
    original = psf.copy()
    checked = check_psf(psf, (32, 32))
    assert checked.dtype == np.float64 and checked.sum() == pytest.approx(1.0)
    assert checked.shape[0] % 2 == 1 and checked.shape[1] % 2 == 1
    centre = np.array(checked.shape) // 2
    assert np.all(np.abs(np.array(_centre_of_mass(checked)) - centre) <= 0.5)
    np.testing.assert_array_equal(psf, original)  # the input is not modified


def test_check_psf_moves_an_off_centre_spot_to_the_centre_without_wrapping():
    psf = np.zeros((9, 9))
    psf[1, 6] = 1.0
    psf[1, 7] = 1.0  # the centre of mass is between two pixels: the nearer-rounded one wins
    checked = check_psf(psf, (32, 32))
    centre = np.array(checked.shape) // 2
    assert checked[tuple(centre)] == pytest.approx(0.5)
    assert checked.sum() == pytest.approx(1.0) and (checked >= 0).all()


def test_check_psf_keeps_a_centred_psf_as_it_is():
    psf = gaussian_psf(1.3)
    np.testing.assert_allclose(check_psf(psf * 7, (64, 64)), psf)


@pytest.mark.parametrize("psf, words", [
    (np.ones((3, 3, 3)), ["3D", "2D PSF", "in-focus plane"]),
    (np.ones(5), ["2D array"]),
    (np.ones((0, 3)), ["empty"]),
    (np.array([[1.0, np.nan], [1.0, 1.0]]), ["NaN or infinite", "nan_to_num"]),
    (np.array([[1.0, np.inf], [1.0, 1.0]]), ["NaN or infinite"]),
    (-np.ones((3, 3)), ["sum to -9", "not a positive number"]),
    (np.zeros((3, 3)), ["sum to 0"]),
    (np.ones((3, 3)) + 1j, ["complex", "intensity"]),
    (np.ones((33, 5)), ["larger than the image plane", "crop it"]),
])
def test_check_psf_refusals_name_the_problem_and_the_fix(psf, words):
    with pytest.raises(ValueError, match=".*".join(map(re.escape, words))):
        check_psf(psf, (32, 32))


def test_check_psf_refuses_a_psf_that_centred_outgrows_the_image():
    psf = np.zeros((31, 31))
    psf[2, 2] = 1.0
    with pytest.raises(ValueError, match="off-centre.*Crop it"):
        check_psf(psf, (32, 32))


@pytest.mark.parametrize("sigma", [0.7, 1.5, 3.0])
def test_gaussian_psf_sums_to_one_and_has_the_pixel_integrated_variance(sigma):
    psf = gaussian_psf(sigma)
    assert psf.shape[0] == psf.shape[1] and psf.shape[0] % 2 == 1
    assert psf.shape[0] >= 8 * sigma + 1  # covers +-4 sigma
    assert psf.sum() == pytest.approx(1.0)
    # integrating over a pixel adds the pixel's own variance, 1/12 px^2
    assert _variance_along_rows(psf) == pytest.approx(sigma ** 2 + 1 / 12, rel=0.02)
    np.testing.assert_allclose(psf, psf.T)
    np.testing.assert_allclose(psf, psf[::-1, ::-1])


def test_a_wide_gaussian_psf_has_the_requested_variance():
    assert _variance_along_rows(gaussian_psf(3.0)) == pytest.approx(9.0, rel=0.02)


def test_gaussian_psf_size_is_honoured_and_checked():
    assert gaussian_psf(1.0, size=5).shape == (5, 5)
    for size in (4, 0, 2.5):
        with pytest.raises(ValueError, match="positive odd whole number"):
            gaussian_psf(1.0, size=size)
    with pytest.raises(ValueError, match="sigma must be a positive number"):
        gaussian_psf(0.0)


@pytest.mark.parametrize("numerical_aperture, wavelength_nm, pixel_size_nm", [
    (1.4, 520, 30), (0.8, 600, 50), (1.2, 460, 40)])
def test_airy_first_zero_is_at_0_61_wavelength_over_na(numerical_aperture, wavelength_nm,
                                                       pixel_size_nm):
    psf = airy_psf(numerical_aperture=numerical_aperture, wavelength_nm=wavelength_nm,
                   pixel_size_nm=pixel_size_nm)
    assert psf.sum() == pytest.approx(1.0)
    centre = psf.shape[0] // 2
    profile = psf[centre, centre:]
    first_minimum = int(np.argmax(np.diff(profile) > 0))  # where the profile first rises again
    expected = 0.61 * wavelength_nm / numerical_aperture / pixel_size_nm
    assert abs(first_minimum - expected) <= 1.0


def test_confocal_psf_is_narrower_than_widefield():
    numbers = dict(numerical_aperture=1.4, wavelength_nm=520, pixel_size_nm=40)
    widefield, confocal = airy_psf(**numbers), airy_psf(**numbers, confocal=True)
    assert confocal.sum() == pytest.approx(1.0)
    assert confocal.max() > widefield.max()
    assert _variance_along_rows(confocal) < _variance_along_rows(widefield)


@pytest.mark.parametrize("numbers, words", [
    (dict(numerical_aperture=0.0), ["numerical_aperture must be a positive number"]),
    (dict(numerical_aperture=1.8), ["above 1.7", "engraved"]),
    (dict(wavelength_nm=-500), ["wavelength_nm must be a positive number"]),
    (dict(pixel_size_nm=0), ["pixel_size_nm must be a positive number"]),
    (dict(pixel_size_nm=6500), ["under-sampled to one pixel", "magnification"]),
    (dict(wavelength_nm=0.52), ["under-sampled to one pixel", "nanometres"]),
])
def test_airy_refusals_name_the_problem_and_the_fix(numbers, words):
    arguments = dict(numerical_aperture=1.4, wavelength_nm=520, pixel_size_nm=65) | numbers
    with pytest.raises(ValueError, match=".*".join(map(re.escape, words))):
        airy_psf(**arguments)


def test_description_of_an_array_is_its_shape_and_the_digest_of_its_normalised_values():
    psf = np.arange(12, dtype=np.uint8).reshape(3, 4) + 1
    description = psf_description(psf)
    normalised = (psf / psf.sum()).astype("<f8")
    assert description == {"shape": [3, 4],
                           "sha256": hashlib.sha256(normalised.tobytes()).hexdigest()}
    assert psf_description(psf * 3.0) == description  # scale does not matter
    assert psf_description(psf.T)["sha256"] != description["sha256"]


def test_description_of_a_model_rebuilds_the_psf():
    description = psf_description("airy", numerical_aperture=1.2, wavelength_nm=510,
                                  pixel_size_nm=60, confocal=True)
    numbers = {k: v for k, v in description.items() if k not in ("model", "shape")}
    rebuilt = model_psf(description["model"], **numbers)
    assert list(rebuilt.shape) == description["shape"]
    assert psf_description("gaussian", sigma=1.5) == {"model": "gaussian", "sigma": 1.5,
                                                       "shape": [13, 13]}
    json.dumps(psf_description("gaussian", sigma=np.float32(1.5), size=np.int64(9)))


@pytest.mark.parametrize("call, words", [
    (lambda: psf_description("lorentzian", width=2), ["unknown PSF model", "airy"]),
    (lambda: psf_description("gaussian", width=2), ["PSF model 'gaussian'", "width"]),
    (lambda: psf_description(np.ones((3, 3)), sigma=2), ["model's name"]),
    (lambda: psf_description(np.zeros((3, 3))), ["sum to 0"]),
])
def test_description_refusals(call, words):
    with pytest.raises(ValueError, match=".*".join(map(re.escape, words))):
        call()

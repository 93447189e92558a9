"""Point-spread functions for deconvolution: checked arrays and the microscope's models.

A PSF reaches the engine either as an array (a measured bead, a napari layer, a TIFF file) or
from a model with the microscope's numbers: :func:`gaussian_psf` of a given width, or
:func:`airy_psf` from numerical aperture, emission wavelength and pixel size. Every PSF the
convolution sees has passed :func:`check_psf`: 2D, float64, summing to 1 and centred on the
central pixel of an odd-sized array. :func:`psf_description` is what a run record keeps of it.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable, Mapping

import numpy as np

# The largest numerical aperture of any immersion objective (high-index oil) is about 1.7.
MAX_NUMERICAL_APERTURE = 1.7
# Zeros of J1: v at the first five dark rings of the Airy pattern.
_AIRY_ZEROS = (3.8317, 7.0156, 10.1735, 13.3237, 16.4706)
# The default widefield PSF reaches its 5th dark ring, the (faster-falling) confocal one its 3rd.
_WIDEFIELD_RINGS, _CONFOCAL_RINGS = 5, 3
_SUPERSAMPLING = 9  # odd, so that a pixel's sample positions are symmetric about its centre


def _plane_array(psf) -> np.ndarray:
    """``psf`` as a new float64 2D array; ValueError (with the fix) for anything that is not a
    usable PSF whatever the image."""
    array = np.asarray(psf)
    if np.iscomplexobj(array):
        raise ValueError("the PSF is complex: pass its intensity (e.g. np.abs(psf) ** 2 of an "
                         "amplitude PSF), a real array")
    if array.ndim == 3:
        raise ValueError(
            f"the PSF is 3D, shape {array.shape}: slice-wise deconvolution needs a 2D PSF. Pass "
            "its in-focus plane, e.g. psf[np.argmax(psf.max(axis=(1, 2)))], the plane holding "
            "the brightest pixel")
    if array.ndim != 2:
        raise ValueError(f"the PSF must be a 2D array (rows, columns), got {array.ndim} "
                         f"dimension(s), shape {array.shape}")
    if array.size == 0:
        raise ValueError(f"the PSF is empty, shape {array.shape}: pass an array with at least "
                         "one pixel, e.g. a measured bead cropped around its peak")
    array = np.array(array, dtype=np.float64)
    if not np.isfinite(array).all():
        raise ValueError("the PSF holds NaN or infinite values: replace them (e.g. "
                         "np.nan_to_num(psf)) or crop them away")
    total = array.sum()
    if not total > 0:
        raise ValueError(f"the PSF's values sum to {total:g}, not a positive number: a PSF is "
                         "an intensity. Subtract less background from it, or pass the PSF "
                         "itself rather than its negative or a zero array")
    return array


def _centred(psf: np.ndarray) -> np.ndarray:
    """``psf`` zero-padded so that the pixel nearest its centre of mass is the central pixel of
    an odd-sized array (a shift by whole pixels, never a wrap-around)."""
    rows, columns = np.indices(psf.shape)
    total = psf.sum()
    centre = [int(np.clip(math.floor((grid * psf).sum() / total + 0.5), 0, side - 1))
              for grid, side in zip((rows, columns), psf.shape)]
    halves = [max(c, side - 1 - c) for c, side in zip(centre, psf.shape)]
    pad = [(half - c, half - (side - 1 - c)) for half, c, side in zip(halves, centre, psf.shape)]
    return np.pad(psf, pad)


def check_psf(psf, image_shape: tuple[int, int]) -> np.ndarray:
    """The PSF the convolution uses: 2D, float64, summing to 1 and centred.

    "Centred" means: the pixel nearest the PSF's centre of mass is the central pixel of an
    array with odd sides. The array is zero-padded on the side that needs it, which pads an
    even side to odd and shifts the PSF by whole pixels; it is never resampled or wrapped.
    A measured PSF may hold small negative values (background subtracted); only its sum must
    be positive.

    Parameters
    ----------
    psf : array_like, shape (M, N)
        The point-spread function, in any units (it is normalised here).
    image_shape : tuple of int
        ``(H, W)``, the image plane the PSF will blur.

    Returns
    -------
    numpy.ndarray, shape (2m + 1, 2n + 1)
        A new array; ``psf`` is not modified.

    Raises
    ------
    ValueError
        For a PSF that is not 2D (a 3D PSF: pass its in-focus plane), empty, non-finite, with a
        sum that is not positive, or larger than the image plane once centred.

    Examples
    --------
    >>> check_psf(np.ones((2, 2)), (64, 64)).shape
    (3, 3)
    """
    plane = tuple(int(side) for side in image_shape)
    if len(plane) != 2 or min(plane) < 1:
        raise ValueError(f"image_shape must be the image plane (H, W), got {image_shape}")
    array = _plane_array(psf)
    if array.shape[0] > plane[0] or array.shape[1] > plane[1]:
        raise ValueError(f"the PSF, shape {array.shape}, is larger than the image plane "
                         f"{plane}: crop it around its peak to at most the image's size")
    centred = _centred(array)
    if centred.shape[0] > plane[0] or centred.shape[1] > plane[1]:
        raise ValueError(
            f"the PSF, shape {array.shape}, is off-centre: centred on its centre of mass it "
            f"needs {centred.shape}, larger than the image plane {plane}. Crop it to a "
            "smaller window centred on its peak")
    return centred / centred.sum()


def _odd_size(size, default: int) -> int:
    if size is None:
        return default
    if (isinstance(size, bool) or not isinstance(size, (int, np.integer)) or size < 1
            or size % 2 == 0):
        raise ValueError(f"size must be a positive odd whole number of pixels, got {size!r}: "
                         "an odd side puts the PSF's centre on a pixel (e.g. size=15)")
    return int(size)


def _positive(name: str, value) -> float:
    number = float(value)
    if not (math.isfinite(number) and number > 0):
        raise ValueError(f"{name} must be a positive number, got {value!r}")
    return number


def gaussian_psf(sigma: float, *, size: int | None = None) -> np.ndarray:
    """A Gaussian PSF of standard deviation ``sigma`` pixels, integrated over each pixel.

    Each value is the Gaussian's integral over the pixel's square (from ``erf``), as a camera
    pixel collects light, not its value at the pixel centre. Its variance is therefore
    ``sigma**2 + 1/12`` px² along each axis: the pixel's own width adds to the blur.

    Parameters
    ----------
    sigma : float
        Standard deviation of the continuous Gaussian, in pixels.
    size : int, optional
        Odd side of the square array; by default the smallest odd side covering ±4 sigma.

    Returns
    -------
    numpy.ndarray, shape (size, size)
        float64, summing to 1, centred.
    """
    from scipy.special import erf

    sigma = _positive("sigma", sigma)
    size = _odd_size(size, 2 * math.ceil(4 * sigma) + 1)
    edges = np.arange(size + 1) - size / 2
    profile = np.diff(erf(edges / (sigma * math.sqrt(2)))) / 2
    psf = np.outer(profile, profile)
    return psf / psf.sum()


def _airy_intensity(v: np.ndarray) -> np.ndarray:
    """(2 J1(v) / v)^2, with its limit 1 at v = 0."""
    from scipy.special import j1

    safe = np.where(v == 0, 1.0, v)
    return np.where(v == 0, 1.0, (2 * j1(safe) / safe) ** 2)


def airy_psf(*, numerical_aperture: float, wavelength_nm: float, pixel_size_nm: float,
             confocal: bool = False, size: int | None = None) -> np.ndarray:
    """The in-focus PSF of a widefield or confocal microscope, from its numbers.

    Widefield: the Airy pattern ``(2 J1(v) / v)^2`` with ``v = 2 pi NA r / wavelength``, whose
    first dark ring is at ``r = 0.61 wavelength / NA``. Confocal: its square, which assumes a
    pinhole small enough to be a point and excitation at the emission wavelength (a real
    pinhole and a shorter excitation wavelength give a PSF between the two). Each pixel's value
    is the mean of the pattern over a 9 x 9 grid of positions inside the pixel. Scalar
    (paraxial) optics: at NA above about 1 the true PSF is a little wider and asymmetric.

    Parameters
    ----------
    numerical_aperture : float
        The objective's NA, in (0, 1.7].
    wavelength_nm : float
        Emission wavelength in nanometres.
    pixel_size_nm : float
        Pixel size at the sample (the camera pixel divided by the magnification), in nm.
    confocal : bool
        Square the widefield pattern.
    size : int, optional
        Odd side of the array; by default it reaches the 5th dark ring (widefield) or the 3rd
        (confocal).

    Returns
    -------
    numpy.ndarray, shape (size, size)
        float64, summing to 1, centred.
    """
    aperture = _positive("numerical_aperture", numerical_aperture)
    if aperture > MAX_NUMERICAL_APERTURE:
        raise ValueError(f"numerical_aperture {aperture:g} is above {MAX_NUMERICAL_APERTURE}, "
                         "more than any immersion objective reaches: pass the NA engraved on "
                         "the objective")
    wavelength = _positive("wavelength_nm", wavelength_nm)
    pixel = _positive("pixel_size_nm", pixel_size_nm)
    first_zero_px = _AIRY_ZEROS[0] * wavelength / (2 * math.pi * aperture * pixel)
    if first_zero_px < 1:
        raise ValueError(
            f"the PSF is under-sampled to one pixel: its first dark ring (0.61 wavelength / NA "
            f"= {first_zero_px * pixel:.0f} nm) lies within one pixel of {pixel:g} nm, so there "
            "is no blur to undo at this pixel size. Check that pixel_size_nm is the pixel at "
            "the sample (camera pixel / magnification) and wavelength_nm is in nanometres; for "
            "an image this coarse, denoise instead")
    rings = _CONFOCAL_RINGS if confocal else _WIDEFIELD_RINGS
    radius_px = _AIRY_ZEROS[rings - 1] * wavelength / (2 * math.pi * aperture * pixel)
    size = _odd_size(size, 2 * math.ceil(radius_px) + 1)
    offsets = (np.arange(_SUPERSAMPLING) + 0.5) / _SUPERSAMPLING - 0.5
    positions = (np.arange(size)[:, None] - size // 2 + offsets[None, :]).ravel()
    radius_nm = np.hypot(positions[:, None], positions[None, :]) * pixel
    intensity = _airy_intensity(2 * math.pi * aperture * radius_nm / wavelength)
    if confocal:
        intensity = intensity ** 2
    psf = intensity.reshape(size, _SUPERSAMPLING, size, _SUPERSAMPLING).mean(axis=(1, 3))
    return psf / psf.sum()


PSF_MODELS: dict[str, Callable[..., np.ndarray]] = {"gaussian": gaussian_psf, "airy": airy_psf}


def model_psf(model: str, **numbers) -> np.ndarray:
    """The PSF of a named model (``"gaussian"`` or ``"airy"``) with its numbers as keywords,
    e.g. ``model_psf("gaussian", sigma=1.5)``."""
    if model not in PSF_MODELS:
        raise ValueError(f"unknown PSF model {model!r}: use one of {sorted(PSF_MODELS)}")
    try:
        return PSF_MODELS[model](**numbers)
    except TypeError as error:
        raise ValueError(f"PSF model {model!r}: {error}") from None


def psf_description(psf, **numbers) -> dict:
    """What a run record keeps of a PSF, as JSON-ready values.

    For an array: its shape and the SHA-256 digest of its normalised values (the array divided
    by its sum, as little-endian float64 in C order), so a record can tell whether a PSF file
    is the one a run used. For a model, ``psf`` is its name and ``numbers`` its keywords: the
    record keeps them, with the size they give, and :func:`model_psf` rebuilds the PSF.

    Examples
    --------
    >>> psf_description("gaussian", sigma=1.5)
    {'model': 'gaussian', 'sigma': 1.5, 'shape': [13, 13]}
    """
    if isinstance(psf, str):
        numbers = {name: value.item() if isinstance(value, np.generic) else value
                   for name, value in numbers.items()}
        built = model_psf(psf, **numbers)
        return {"model": psf, **numbers, "shape": list(built.shape)}
    if numbers:
        raise ValueError(f"the numbers {sorted(numbers)} describe a PSF model: pass the model's "
                         f"name ({sorted(PSF_MODELS)}) instead of an array")
    array = _plane_array(psf)
    normalised = np.ascontiguousarray(array / array.sum(), dtype="<f8")
    return {"shape": list(array.shape), "sha256": hashlib.sha256(normalised.tobytes()).hexdigest()}


_DESCRIPTION_KEYS = ("shape", "sha256", "path")  # what a description adds beyond a model's numbers


def check_psf_description(description) -> dict:
    """A run's PSF description (what :func:`psf_description` gives, a file's with its
    ``"path"``), checked: a model's name and numbers must build a PSF; an array's must name its
    digest or file. Returns it as a plain dict."""
    if not isinstance(description, Mapping):
        raise ValueError(f"the PSF must be an array, or a description such as "
                         f"{{'model': 'gaussian', 'sigma': 1.5}}, got {description!r}")
    description = dict(description)
    if "model" in description:
        model_psf(description["model"], **model_numbers(description))
    elif not ({"sha256", "path"} & set(description)):
        raise ValueError(f"the PSF description {description!r} names neither a model "
                         f"({sorted(PSF_MODELS)}, e.g. {{'model': 'gaussian', 'sigma': 1.5}}) "
                         "nor an array (its 'sha256' or file 'path')")
    return description


def model_numbers(description: Mapping) -> dict:
    """A model description's numbers: its keywords for :func:`model_psf`."""
    return {name: value for name, value in description.items()
            if name != "model" and name not in _DESCRIPTION_KEYS}


def run_psf(description: Mapping | None, psf, image_shape: tuple[int, int]) -> np.ndarray:
    """The checked PSF (:func:`check_psf`) of a deconvolution run on planes of ``image_shape``:
    ``psf`` (an array) when given, which must then have the digest the description records;
    else the model the description names."""
    if psf is None and description is None:
        raise ValueError("task='deconvolve' needs a PSF: psf= an array (a measured bead, "
                         "a TIFF's pixels) or a model, e.g. psf={'model': 'gaussian', "
                         "'sigma': 1.5}")
    if psf is not None:
        recorded = None if description is None else description.get("sha256")
        if recorded is not None and psf_description(psf)["sha256"] != recorded:
            raise ValueError("the PSF array is not the one the run describes (its digest "
                             f"differs from {recorded[:12]}...): pass the PSF the run used")
        return check_psf(psf, image_shape)
    description = check_psf_description(description)
    if "model" not in description:
        where = description.get("path", "an array")
        raise ValueError(f"the run used the PSF in {where} (sha256 "
                         f"{str(description.get('sha256'))[:12]}...): pass its pixels as psf=")
    return check_psf(model_psf(description["model"], **model_numbers(description)), image_shape)


def described_psf(psf) -> tuple[np.ndarray | None, dict | None]:
    """The PSF array (None for a model) and the description a run records, from what
    ``psf=`` was given: None; an array; or a model's description, e.g. ``{"model":
    "gaussian", "sigma": 1.5}`` or ``{"model": "airy", "numerical_aperture": 1.4,
    "wavelength_nm": 520, "pixel_size_nm": 65}``. A description of an array alone (its shape
    and digest, as a record gives it) comes back as it is, for :func:`~.plan.plan` to ask for
    the array."""
    if psf is None:
        return None, None
    if not isinstance(psf, Mapping):
        return psf, psf_description(psf)
    description = check_psf_description(psf)
    if "model" in description:
        return None, psf_description(description["model"], **model_numbers(description))
    return None, description

"""The deconvolution degradation: blur by a point-spread function, ``x0 = psf * x``.

A function and an :class:`~.operators.Operator`, as for the other operators (the operator of
task ``"deconvolve"``). Borders are reflective: the image
is padded by reflection (the edge pixel not repeated: ``d c b | a b c d | c b a``, which is
``scipy.ndimage.convolve(mode="mirror")``, not its ``mode="reflect"``) by the PSF's half size,
convolved, and cropped back, so the output has the input's shape and no dark frame. Kernels up
to 3 x 3 are convolved directly, larger ones through the FFT; both give the same result to
rounding. The PSF is used as given: pass it through :func:`napari_dip.engine.psf.check_psf`
first (odd sides, sum 1, centred).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

from .operators import Operator, _check_image as check_image_tensor

# Above this side (pixels) the FFT is used: on a CPU, forward and backward together, it beats
# torch's direct convolution of one-channel planes from 5 x 5 kernels up.
FFT_ABOVE = 3
METHODS = ("auto", "fft", "direct")


def _check_psf_tensor(psf: torch.Tensor, method: str) -> None:
    if psf.ndim != 2 or psf.shape[0] % 2 == 0 or psf.shape[1] % 2 == 0:
        raise ValueError(f"the PSF must be a 2D tensor with odd sides, got shape "
                         f"{tuple(psf.shape)}: pass it through check_psf first")
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")


def _check_image(image: torch.Tensor, psf: torch.Tensor) -> None:
    check_image_tensor(image)
    height, width = image.shape[-2:]
    if psf.shape[0] > height or psf.shape[1] > width:
        raise ValueError(f"the PSF, shape {tuple(psf.shape)}, is larger than the image plane "
                         f"{(height, width)}: crop the PSF around its peak")


def _uses_fft(psf: torch.Tensor, method: str) -> bool:
    return method == "fft" or (method == "auto" and max(psf.shape) > FFT_ABOVE)


def _reflect_pad(image: torch.Tensor, psf_shape: tuple[int, int]) -> torch.Tensor:
    """(N, C, H, W) -> (N * C, 1, H + kh - 1, W + kw - 1), padded by reflection."""
    n, c, h, w = image.shape
    half_h, half_w = psf_shape[0] // 2, psf_shape[1] // 2
    return F.pad(image.reshape(n * c, 1, h, w), (half_w, half_w, half_h, half_h),
                 mode="reflect")


def _fft_shape(padded_shape: tuple[int, int]) -> tuple[int, int]:
    """At least the padded image's size, with small prime factors only (a fast FFT)."""
    from scipy.fft import next_fast_len

    return tuple(next_fast_len(int(side), real=True) for side in padded_shape)


def psf_spectrum(psf: torch.Tensor, padded_shape: tuple[int, int]) -> torch.Tensor:
    """The PSF's real FFT for an image of ``padded_shape`` (after its reflective padding):
    computed once per image size by :class:`Convolution`, which reuses it at every step."""
    return torch.fft.rfft2(psf, s=_fft_shape(padded_shape))


def _fft_convolve(padded: torch.Tensor, spectrum: torch.Tensor,
                  psf_shape: tuple[int, int]) -> torch.Tensor:
    # The circular convolution over at least the padded size equals the linear one on the
    # padded image's last H x W pixels: the wrap-around only reaches the first kh - 1 rows and
    # kw - 1 columns.
    height, width = padded.shape[-2:]
    size = _fft_shape((height, width))
    full = torch.fft.irfft2(torch.fft.rfft2(padded, s=size) * spectrum, s=size)
    return full[..., psf_shape[0] - 1:height, psf_shape[1] - 1:width]


def _direct_convolve(padded: torch.Tensor, psf: torch.Tensor) -> torch.Tensor:
    # conv2d correlates: flipping the kernel makes it a convolution.
    return F.conv2d(padded, psf.flip(0, 1)[None, None])


def _blur(image: torch.Tensor, psf: torch.Tensor, method: str,
          spectrum_of: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]) -> torch.Tensor:
    psf = psf.to(image.device, image.dtype)
    padded = _reflect_pad(image, tuple(psf.shape))
    if _uses_fft(psf, method):
        blurred = _fft_convolve(padded, spectrum_of(padded, psf), tuple(psf.shape))
    else:
        blurred = _direct_convolve(padded, psf)
    return blurred.reshape(image.shape)


def convolve(image: torch.Tensor, psf: torch.Tensor, *, method: str = "auto") -> torch.Tensor:
    """Blur ``image`` by ``psf`` with reflective borders.

    Parameters
    ----------
    image : torch.Tensor, shape (N, C, H, W)
        Every channel of every image is blurred by the same PSF.
    psf : torch.Tensor, shape (kh, kw)
        Odd sides, at most the image plane's; used as given (not normalised).
    method : {"auto", "fft", "direct"}
        ``"auto"`` convolves kernels of at most 3 x 3 directly, larger ones through the FFT.

    Returns
    -------
    torch.Tensor, shape (N, C, H, W)
        Differentiable with respect to both the image and the PSF.

    Examples
    --------
    >>> image = torch.full((1, 1, 8, 8), 0.5)
    >>> bool(torch.allclose(convolve(image, torch.full((3, 3), 1 / 9)), image))
    True
    """
    _check_psf_tensor(psf, method)
    _check_image(image, psf)
    return _blur(image, psf, method,
                 lambda padded, kernel: psf_spectrum(kernel, tuple(padded.shape[-2:])))


class Convolution(Operator):
    """The deconvolution degradation ``x0 = psf * f(z)``, holding the PSF as a buffer.

    With the FFT, the PSF's spectrum is computed at the first image of a given size, dtype and
    device and reused, which saves one of the three FFTs a step would otherwise take.

    Parameters
    ----------
    psf : array_like or torch.Tensor, shape (kh, kw)
        As :func:`convolve` takes it (see :func:`napari_dip.engine.psf.check_psf`).
    method : {"auto", "fft", "direct"}

    Examples
    --------
    >>> blur = Convolution(torch.full((3, 3), 1 / 9))
    >>> blur(torch.ones(1, 1, 8, 8)).shape
    torch.Size([1, 1, 8, 8])
    """

    def __init__(self, psf, *, method: str = "auto") -> None:
        super().__init__()
        psf = torch.as_tensor(psf)
        _check_psf_tensor(psf, method)
        self.method = method
        if not psf.is_floating_point():
            psf = psf.to(torch.get_default_dtype())
        self.register_buffer("psf", psf.clone())
        self._spectrum: tuple[tuple, torch.Tensor] | None = None

    def _cached_spectrum(self, padded: torch.Tensor, psf: torch.Tensor) -> torch.Tensor:
        if psf.requires_grad:
            return psf_spectrum(psf, tuple(padded.shape[-2:]))
        # a new buffer (after .to()) or an in-place change to it makes a new key
        key = (tuple(padded.shape[-2:]), padded.dtype, padded.device, id(self.psf),
               self.psf._version)
        if self._spectrum is None or self._spectrum[0] != key:
            self._spectrum = (key, psf_spectrum(psf, key[0]))
        return self._spectrum[1]

    def forward(self, estimate: torch.Tensor) -> torch.Tensor:
        """Blur ``estimate``, shape (N, C, H, W), into the observation's shape."""
        _check_image(estimate, self.psf)
        return _blur(estimate, self.psf, self.method, self._cached_spectrum)

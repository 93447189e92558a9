"""Degradation operators ``A``: what an instrument records of the clean image ``x``.

The fit looks for an ``x = f(z)`` whose ``A(x)`` explains the observation ``y``; the task is
the operator:

- denoising: :class:`Identity`, ``y = x + n``;
- inpainting: :class:`Mask`, ``y = m * x + n``, only the known pixels are recorded;
- super-resolution: :class:`LanczosDownsampler`, ``y = d(x) + n``, the paper's Lanczos-2
  antialiasing filter followed by a stride;
- deconvolution: :class:`~.convolution.Convolution`, ``y = psf * x + n``, a blur by the
  microscope's point-spread function (in :mod:`.convolution`).

Each operator is an ``nn.Module`` with a plain function beside it that does the work
(:func:`identity`, :func:`mask`, :func:`lanczos_downsample`), and takes and returns
``(N, C, H, W)`` tensors. Operators chain with :meth:`Operator.then`, e.g. a downsampler then
the mask of the observed pixels.

A new task is a new operator: write its function, and a subclass of :class:`Operator` whose
``forward`` calls it, as :mod:`.convolution` does (``convolve(image, psf)`` and
``Convolution(psf)`` holding the PSF as a buffer); a 3D PSF would be a new operator on
``(N, C, D, H, W)`` volumes in the same way. Deep Image Prior needs no adjoint or inverse,
only ``A`` itself and its gradient, which autograd gives.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn


def _check_image(image: torch.Tensor) -> None:
    if not isinstance(image, torch.Tensor) or image.dim() != 4:
        shape = tuple(image.shape) if isinstance(image, torch.Tensor) else type(image).__name__
        raise ValueError(f"expected an image tensor of shape (N, C, H, W), got {shape}; add "
                         f"the missing batch or channel axes (e.g. image[None, None])")


class Operator(nn.Module):
    """A degradation operator: maps an estimate ``(N, C, H, W)`` to what was observed.

    Subclasses implement :meth:`forward`. :attr:`measured` says which values of the result
    carry data (1) and which do not (0); the likelihood counts only the former.
    """

    @property
    def measured(self) -> torch.Tensor | None:
        """0/1 weights of the values this operator records (None: every value)."""
        return None

    def then(self, after: Operator) -> Operator:
        """This operator followed by ``after``, as one operator."""
        return Chain(self, after)


def identity(image: torch.Tensor) -> torch.Tensor:
    """The denoising operator: the image itself."""
    _check_image(image)
    return image


class Identity(Operator):
    """The denoising operator as a module (see :func:`identity`).

    Examples
    --------
    >>> import torch
    >>> x = torch.rand(1, 1, 8, 8)
    >>> bool(torch.equal(Identity()(x), x))
    True
    """

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return identity(image)

    def then(self, after: Operator) -> Operator:
        return after


def fits(shape: tuple[int, ...], image_shape: tuple[int, ...]) -> bool:
    """Whether a tensor of ``shape`` broadcasts onto an image of ``image_shape`` without
    changing it (each side 1 or the image's)."""
    return len(shape) == len(image_shape) and all(
        side in (1, image_side) for side, image_side in zip(shape, image_shape))


def _check_known(known: torch.Tensor) -> None:
    if not isinstance(known, torch.Tensor) or known.dim() != 4:
        shape = tuple(known.shape) if isinstance(known, torch.Tensor) else type(known).__name__
        raise ValueError(f"the mask of known pixels must be a tensor of shape (N or 1, C or 1, "
                         f"H, W), got {shape}")
    if not bool(((known == 0) | (known == 1)).all()):
        raise ValueError("the mask of known pixels must hold only 0 (unknown) and 1 (known); "
                         "threshold it first, e.g. (known > 0).float()")


def mask(image: torch.Tensor, known: torch.Tensor) -> torch.Tensor:
    """The inpainting operator: ``image`` where ``known`` is 1, zero where it is 0.

    ``known`` is ``(N or 1, C or 1, H, W)``, broadcast over the image's batch and channels.
    """
    _check_image(image)
    if not fits(known.shape, image.shape):
        raise ValueError(f"the mask of known pixels has shape {tuple(known.shape)}, which does "
                         f"not fit an image of shape {tuple(image.shape)}; give it the image's "
                         f"height and width, and 1 or the image's size on the other axes")
    return image * known


class Mask(Operator):
    """The inpainting operator as a module: keeps the known pixels, zeroes the others.

    Parameters
    ----------
    known : (N or 1, C or 1, H, W) tensor
        1 where a pixel was observed, 0 where it is missing (or padding); bool or float.

    Examples
    --------
    >>> import torch
    >>> known = torch.tensor([[1.0, 0.0], [0.0, 1.0]])[None, None]
    >>> Mask(known)(torch.full((1, 1, 2, 2), 5.0))[0, 0].tolist()
    [[5.0, 0.0], [0.0, 5.0]]
    """

    def __init__(self, known: torch.Tensor) -> None:
        super().__init__()
        _check_known(known)
        self.register_buffer("known", known.float() if known.dtype == torch.bool else known,
                             persistent=False)

    @property
    def measured(self) -> torch.Tensor:
        return self.known

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return mask(image, self.known)


def lanczos_kernel(factor: int, support: int = 2) -> np.ndarray:
    """1D taps of the paper's Lanczos antialiasing kernel for downsampling by ``factor``.

    ``2 * support * factor`` taps sampled at half-pixel phase (so an even-sized image maps onto
    the centres of the coarse grid), normalised to sum to 1. The 2D kernel is the outer
    product.
    """
    if isinstance(factor, bool) or not isinstance(factor, (int, np.integer)) or factor < 1:
        raise ValueError(f"factor must be an integer >= 1, got {factor!r}")
    if isinstance(support, bool) or not isinstance(support, (int, np.integer)) or support < 1:
        raise ValueError(f"support must be an integer >= 1, got {support!r}")
    size = 2 * support * factor
    positions = (np.arange(size) + 0.5 - size / 2) / factor
    taps = np.sinc(positions) * np.sinc(positions / support)
    return taps / taps.sum()


def _lanczos_taps(factor: int, support: int) -> torch.Tensor:
    taps = torch.from_numpy(lanczos_kernel(factor, support)).float()
    if factor % 2:  # the half-pixel phase puts odd factors off the coarse grid
        raise ValueError(f"the Lanczos downsampler takes an even factor (2, 4, 8, ...), got "
                         f"{factor}; without downsampling use Identity")
    return taps


def _filter_and_stride(image: torch.Tensor, taps: torch.Tensor, factor: int) -> torch.Tensor:
    """Separable filtering with ``taps``, then a stride of ``factor``; borders replicated."""
    _check_image(image)
    n, c, h, w = image.shape
    if h % factor or w % factor:
        raise ValueError(f"image sides ({h}, {w}) must be multiples of the factor {factor}; "
                         f"crop or pad the image to multiples of {factor}")
    pad = (taps.numel() - factor) // 2
    x = F.pad(image.reshape(n * c, 1, h, w), (pad,) * 4, mode="replicate")
    taps = taps.to(image.dtype)
    x = F.conv2d(x, taps.view(1, 1, -1, 1), stride=(factor, 1))
    x = F.conv2d(x, taps.view(1, 1, 1, -1), stride=(1, factor))
    return x.reshape(n, c, h // factor, w // factor)


def lanczos_downsample(image: torch.Tensor, factor: int, support: int = 2) -> torch.Tensor:
    """The super-resolution operator: downsample ``(N, C, H, W)`` by an even ``factor`` with the
    Lanczos kernel (:func:`lanczos_kernel`), each channel on its own.

    H and W must be multiples of ``factor``. Borders are replicated, so the output is exactly
    ``(N, C, H / factor, W / factor)``.
    """
    return _filter_and_stride(image, _lanczos_taps(factor, support).to(image.device), factor)


class LanczosDownsampler(Operator):
    """The super-resolution operator as a module (see :func:`lanczos_downsample`); the taps
    are computed once.

    Examples
    --------
    >>> import torch
    >>> LanczosDownsampler(2)(torch.ones(1, 3, 8, 8)).shape
    torch.Size([1, 3, 4, 4])
    """

    def __init__(self, factor: int, support: int = 2) -> None:
        super().__init__()
        self.register_buffer("taps", _lanczos_taps(factor, support), persistent=False)
        self.factor = int(factor)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return _filter_and_stride(image, self.taps, self.factor)


class Chain(Operator):
    """Operators applied one after another; what the last one records is what is measured
    (so a :class:`Mask` comes last)."""

    def __init__(self, *operators: Operator) -> None:
        super().__init__()
        if not operators or not all(isinstance(op, Operator) for op in operators):
            raise ValueError("Chain takes one or more Operator modules, e.g. "
                             "Chain(LanczosDownsampler(2), Mask(known))")
        self.operators = nn.ModuleList(operators)

    @property
    def measured(self) -> torch.Tensor | None:
        return self.operators[-1].measured

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        for operator in self.operators:
            image = operator(image)
        return image

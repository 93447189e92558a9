"""Likelihoods: the data term ``-log p(y | A(x))`` of a fit, in the noise model of the data.

- :class:`Gaussian`: squared error (the paper's), for additive white noise;
- :class:`Poisson`: Poisson deviance on photon counts, for shot noise;
- :class:`PoissonGaussian`: squared error after the generalised Anscombe transform, for shot
  noise plus camera read noise.

Each is an ``nn.Module`` called as ``likelihood(prediction, observed, measured)`` on
``(N, C, H, W)`` tensors in the model's [0, 1] range, ``prediction = A(x)``; it returns the
negative log-likelihood up to terms that do not depend on the prediction, averaged over the
values ``measured`` marks as recorded (see :attr:`.operators.Operator.measured`). The plain
functions beside them (:func:`squared_error`, :func:`poisson_deviance`,
:func:`generalized_anscombe`) do the arithmetic. :func:`likelihood_from_config` picks one by
the config's ``data_term``.
"""

from __future__ import annotations

import torch
from torch import nn

from ..config import DIPConfig
from .measures import estimate_noise_std
from .operators import fits


def _measured_mean(values: torch.Tensor, measured: torch.Tensor | None) -> torch.Tensor:
    """Mean of ``values`` over the entries ``measured`` weights by 1 (all when None)."""
    if measured is None:
        return values.mean()
    measured = measured.expand_as(values)
    return (values * measured).sum() / measured.sum().clamp_min(1.0)


def squared_error(prediction: torch.Tensor, observed: torch.Tensor,
                  measured: torch.Tensor | None = None) -> torch.Tensor:
    """Mean squared error over the values with non-zero ``measured`` weight (all when None).

    With a 0/1 weight this is the inpainting loss ``||(f(z) - y) * m||^2``, normalised by the
    number of known values: values under the mask do not influence it at all.
    """
    return _measured_mean((prediction - observed) ** 2, measured)


def poisson_deviance(rate: torch.Tensor, counts: torch.Tensor,
                     measured: torch.Tensor | None = None) -> torch.Tensor:
    """Poisson negative log-likelihood of ``counts`` under ``rate``, as a deviance.

    ``rate - counts + counts * log(counts / rate)`` is the NLL up to a term that does not depend
    on the rate, shifted so that a perfect fit scores 0 (and the loss stays non-negative).
    """
    rate = rate.clamp_min(1e-6)
    counts = counts.clamp_min(0.0)
    log_ratio = torch.where(counts > 0, torch.log(counts.clamp_min(1e-12) / rate),
                            torch.zeros_like(rate))
    return _measured_mean(rate - counts + counts * log_ratio, measured)


def generalized_anscombe(values: torch.Tensor, gain: float, read_noise: float,
                         offset: float = 0.0) -> torch.Tensor:
    """Variance-stabilising transform for Poisson-Gaussian noise ``z = gain * P + N(offset, s^2)``.

    After it the noise is close to unit-variance Gaussian, so a squared error fits it well.
    """
    inside = gain * values + 0.375 * gain ** 2 + read_noise ** 2 - gain * offset
    return (2.0 / gain) * torch.sqrt(inside.clamp_min(0.0) + 1e-12)


class Likelihood(nn.Module):
    """A data term: ``likelihood(prediction, observed, measured=None)`` is the mean negative
    log-likelihood of ``observed`` given ``prediction`` (both ``(N, C, H, W)``, in the model's
    [0, 1] range) over the measured values. Subclasses implement :meth:`negative_log_likelihood`.
    """

    def forward(self, prediction: torch.Tensor, observed: torch.Tensor,
                measured: torch.Tensor | None = None) -> torch.Tensor:
        if prediction.shape != observed.shape:
            raise ValueError(f"prediction {tuple(prediction.shape)} and observation "
                             f"{tuple(observed.shape)} differ in shape; pass the prediction "
                             f"through the degradation operator first")
        if measured is not None and not fits(measured.shape, prediction.shape):
            raise ValueError(f"measured has shape {tuple(measured.shape)}, which does not fit "
                             f"the observation's {tuple(observed.shape)}; give it the "
                             f"observation's height and width")
        return self.negative_log_likelihood(prediction, observed, measured)

    def negative_log_likelihood(self, prediction: torch.Tensor, observed: torch.Tensor,
                                measured: torch.Tensor | None) -> torch.Tensor:
        raise NotImplementedError

    def noise_unit(self, observed: torch.Tensor, measured: torch.Tensor | None = None) -> float:
        """About the data term's value for a prediction one noise standard deviation off at
        every pixel of ``observed``: the unit a regulariser weighed in noise units is scaled by
        (``tv_scaling="noise"``)."""
        raise NotImplementedError


class Gaussian(Likelihood):
    """Additive white Gaussian noise: the squared error (:func:`squared_error`).

    Examples
    --------
    >>> import torch
    >>> float(Gaussian()(torch.zeros(1, 1, 2, 2), torch.full((1, 1, 2, 2), 0.5)))
    0.25
    """

    def negative_log_likelihood(self, prediction, observed, measured):
        return squared_error(prediction, observed, measured)

    def noise_unit(self, observed, measured=None):
        """The noise variance, estimated from ``observed`` (:func:`.estimate_noise_std`; 1
        where it cannot be measured)."""
        std = estimate_noise_std(observed, measured)
        return 1.0 if std is None else std ** 2


class _InIntensityUnits(Likelihood):
    """A likelihood whose noise parameters are given in the input's intensity units.

    ``to_input = (scale, shift)`` maps the model's [0, 1] back to those units;
    ``gain`` is intensity units per detected photon, ``offset`` the dark level (camera offset).
    """

    def __init__(self, *, to_input: tuple[float, float] = (1.0, 0.0), gain: float = 1.0,
                 offset: float = 0.0) -> None:
        super().__init__()
        if not gain > 0:
            raise ValueError(f"gain={gain!r} must be positive (intensity units per detected "
                             f"photon); measure it, or use 1.0 for data already in photons")
        self.to_input, self.gain, self.offset = to_input, gain, offset

    def _input_units(self, unit: torch.Tensor) -> torch.Tensor:
        scale, shift = self.to_input
        return unit * scale + shift


class Poisson(_InIntensityUnits):
    """Shot noise: the Poisson deviance (:func:`poisson_deviance`) of the photon counts
    ``(y - offset) / gain``.

    Examples
    --------
    >>> import torch
    >>> counts = torch.full((1, 1, 2, 2), 4.0)
    >>> float(Poisson(to_input=(10.0, 0.0))(counts / 10, counts / 10))
    0.0
    """

    def negative_log_likelihood(self, prediction, observed, measured):
        pred, obs = self._input_units(prediction), self._input_units(observed)
        return poisson_deviance((pred - self.offset) / self.gain,
                                (obs - self.offset) / self.gain, measured)

    def noise_unit(self, observed, measured=None):
        """One half: the deviance of a count one standard deviation (the square root of its
        rate) from its rate."""
        return 0.5


class PoissonGaussian(_InIntensityUnits):
    """Shot noise plus Gaussian read noise of std ``read_noise`` (intensity units): squared
    error after the generalised Anscombe transform (:func:`generalized_anscombe`).

    Examples
    --------
    >>> import torch
    >>> y = torch.rand(1, 1, 4, 4)
    >>> float(PoissonGaussian(to_input=(100.0, 0.0), gain=2.0, read_noise=1.0)(y, y))
    0.0
    """

    def __init__(self, *, to_input: tuple[float, float] = (1.0, 0.0), gain: float = 1.0,
                 read_noise: float = 0.0, offset: float = 0.0) -> None:
        super().__init__(to_input=to_input, gain=gain, offset=offset)
        if not read_noise >= 0:
            raise ValueError(f"read_noise={read_noise!r} must be 0 or more (the std of the "
                             f"camera's read noise, in intensity units)")
        self.read_noise = read_noise

    def negative_log_likelihood(self, prediction, observed, measured):
        pred, obs = self._input_units(prediction), self._input_units(observed)
        return squared_error(
            generalized_anscombe(pred, self.gain, self.read_noise, self.offset),
            generalized_anscombe(obs, self.gain, self.read_noise, self.offset), measured)

    def noise_unit(self, observed, measured=None):
        """One: the transform gives the noise a unit variance."""
        return 1.0


LIKELIHOODS = {"gaussian": Gaussian, "poisson": Poisson, "poisson_gaussian": PoissonGaussian}
"""The likelihood of each ``data_term`` name."""


def make_likelihood(name: str, *, to_input: tuple[float, float] = (1.0, 0.0),
                    gain: float = 1.0, read_noise: float = 0.0,
                    offset: float = 0.0) -> Likelihood:
    """The likelihood of the data term ``name`` (a key of :data:`LIKELIHOODS`) with its noise
    parameters, in the input's intensity units (``to_input`` maps the model's [0, 1] to them);
    parameters a likelihood has no use for are ignored."""
    if name not in LIKELIHOODS:
        raise ValueError(f"unknown data term {name!r}; choose one of {list(LIKELIHOODS)}")
    if name == "gaussian":
        return Gaussian()
    if name == "poisson":
        return Poisson(to_input=to_input, gain=gain, offset=offset)
    return PoissonGaussian(to_input=to_input, gain=gain, read_noise=read_noise, offset=offset)


def likelihood_from_config(config: DIPConfig,
                           to_input: tuple[float, float] = (1.0, 0.0)) -> Likelihood:
    """The likelihood ``config.data_term`` names, with the config's ``gain``, ``read_noise``
    and ``offset``. ``data_term="auto"`` is resolved from the image by
    :func:`napari_dip.engine.plan.plan` before any fit."""
    if config.data_term == "auto":
        raise ValueError("data_term='auto' is chosen from the image when a run is planned: run "
                         "through plan() (or restore()), or name the data term")
    return make_likelihood(config.data_term, to_input=to_input, gain=config.gain,
                           read_noise=config.read_noise, offset=config.offset)

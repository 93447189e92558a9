"""Trackers: what watches a fit step by step, each fed through the same call.

``tracker.update(iteration, output, estimate=None, loss=None) -> bool`` takes the step's
number, the generator's output (detached), the fit's current estimate and its loss; it
returns True when the tracker asks the loop to act, False otherwise.

- :class:`MovingAverage`: the exponential moving average of the outputs (the paper's
  estimate); never asks anything.
- :class:`PosteriorSampler`: Bayesian DIP (stochastic gradient Langevin dynamics): noise on
  the weights after every step, and the running mean and standard deviation of the outputs
  sampled after a burn-in; never asks anything.
- :class:`Backtracking`: the guard against divergence; True when the loss jumped and the last
  good weights were put back (the loop then skips the step's update).
- :class:`VarianceStop`, :class:`HoldoutStop`: automatic stopping rules; True when the fit
  should stop. Both remember the estimate at their best point, which is what the fit returns.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from ..config import SGLD_REFERENCE_NOISE, SGLD_SCALE_LIMITS, DIPConfig
from .likelihoods import squared_error


class Tracker:
    """Base of the trackers: one :meth:`update` per optimisation step."""

    def update(self, iteration: int, output: torch.Tensor | None,
               estimate: torch.Tensor | None = None, loss: torch.Tensor | None = None) -> bool:
        """Feed one step; True when the tracker asks the loop to act."""
        raise NotImplementedError


# ----------------------------------------------------------------------------- estimates

class MovingAverage(Tracker):
    """Exponential moving average of the outputs; ``start`` says how it begins.

    - ``"first"`` (the paper's code) starts the average at the first output, so for the first few
      hundred steps the estimate still carries the untrained network's grey output (weight
      ``weight**n``).
    - ``"debiased"`` starts from zero and divides by ``1 - weight**n`` (as Adam does for its
      moments): every output counts by its own weight, the untrained ones included, until the
      average's horizon ``1 / (1 - weight)`` has passed over them.
    - ``"recent"`` lets the weight grow with the run, ``min(weight, 1 - RECENT_SHARE / n)``: the
      average spans about the latest quarter of the steps taken so far (up to the weight's own
      horizon), so the first outputs are forgotten within a few dozen steps. Needs no bias
      correction: the first ``RECENT_SHARE`` steps take the output as it is.

    ``weight=0`` disables averaging: the estimate is the latest output.

    Examples
    --------
    >>> import torch
    >>> average = MovingAverage(0.5)
    >>> [float(average.add(torch.tensor(v))) for v in (1.0, 0.0)]
    [1.0, 0.5]
    """

    RECENT_SHARE = 4.0

    def __init__(self, weight: float, start: str = "first") -> None:
        if not 0.0 <= weight < 1.0:
            raise ValueError(f"the moving average's weight must be in [0, 1), got {weight!r}; "
                             f"use 0 to turn averaging off")
        if start not in ("first", "debiased", "recent"):
            raise ValueError(f"unknown start {start!r} of the moving average; choose 'first', "
                             f"'debiased' or 'recent'")
        self.weight, self.start = weight, start
        self.value: torch.Tensor | None = None
        self.estimate: torch.Tensor | None = None
        self.count = 0

    def add(self, sample: torch.Tensor) -> torch.Tensor:
        """Average one more output in; returns the estimate (the average, bias-corrected for
        ``"debiased"``)."""
        self.count += 1
        if self.weight == 0:
            return sample
        weight = self.weight
        if self.start == "recent":
            weight = min(weight, max(0.0, 1.0 - self.RECENT_SHARE / self.count))
        if self.value is None:
            self.value = sample * (1.0 - weight) if self.start == "debiased" else sample
        else:
            self.value = self.value * weight + sample * (1.0 - weight)
        if self.start == "debiased":
            return self.value / (1.0 - weight ** self.count)
        return self.value

    def update(self, iteration, output, estimate=None, loss=None) -> bool:
        self.estimate = self.add(output)
        return False


def sgld_weight_noise(config: DIPConfig, noise_std: float | None) -> float:
    """Std of the Gaussian noise SGLD adds to the weights after each step.

    ``sgld_noise`` x the learning rate; with ``sgld_noise_scaling="noise"`` also times the
    observation's noise std (``noise_std``, e.g. from
    :func:`~.measures.estimate_noise_std`) over :data:`~napari_dip.config.SGLD_REFERENCE_NOISE`,
    clipped to :data:`~napari_dip.config.SGLD_SCALE_LIMITS` (factor 1 when ``noise_std`` is
    None). Langevin dynamics on a squared error samples the posterior of Gaussian noise of one
    level; the same weight noise on much cleaner data swamps the fit
    (``docs/benchmarks/bayesian.md``).
    """
    std = config.sgld_noise * config.learning_rate
    if config.sgld_noise_scaling == "none" or noise_std is None:
        return std
    low, high = SGLD_SCALE_LIMITS
    return std * min(max(noise_std / SGLD_REFERENCE_NOISE, low), high)


class PosteriorSampler(Tracker):
    """Stochastic gradient Langevin dynamics (Bayesian DIP, Cheng et al. 2019).

    After every accepted step, Gaussian noise of std ``weight_noise`` (drawn from ``rng``) is
    added to the convolution kernels of ``network``; the outputs of the steps after
    ``burn_in``, every ``sample_every``, are posterior samples, whose running mean
    (:attr:`mean`, the estimate) and standard deviation (:attr:`std`, the uncertainty) are
    kept with Welford's algorithm.
    """

    def __init__(self, network: nn.Module, weight_noise: float, rng: torch.Generator, *,
                 burn_in: int = 0, sample_every: int = 1) -> None:
        if weight_noise < 0 or burn_in < 0 or sample_every < 1:
            raise ValueError(f"weight_noise={weight_noise!r} and burn_in={burn_in!r} must be 0 "
                             f"or more and sample_every={sample_every!r} 1 or more")
        self.network, self.weight_noise, self.rng = network, weight_noise, rng
        self.burn_in, self.sample_every = burn_in, sample_every
        self.count = 0
        self.mean: torch.Tensor | None = None
        self.sum_sq: torch.Tensor | None = None

    def update(self, iteration, output, estimate=None, loss=None) -> bool:
        self._perturb_weights()
        if iteration > self.burn_in and (iteration - self.burn_in) % self.sample_every == 0:
            self.add(output)
        return False

    def _perturb_weights(self) -> None:
        with torch.no_grad():
            for parameter in self.network.parameters():
                if parameter.dim() == 4:
                    noise = torch.randn(parameter.shape, generator=self.rng,
                                        device=parameter.device, dtype=parameter.dtype)
                    parameter.add_(noise * self.weight_noise)

    def add(self, sample: torch.Tensor) -> None:
        """One more posterior sample."""
        self.count += 1
        if self.mean is None:
            self.mean, self.sum_sq = sample.clone(), torch.zeros_like(sample)
            return
        delta = sample - self.mean
        self.mean.add_(delta / self.count)
        self.sum_sq.add_(delta * (sample - self.mean))

    @property
    def std(self) -> torch.Tensor | None:
        """Standard deviation of the samples (None before two)."""
        return None if self.count < 2 else (self.sum_sq / self.count).sqrt()


# ----------------------------------------------------------------------------- divergence

class Backtracking(Tracker):
    """The paper's guard against divergence.

    Every ``every`` steps the loss is compared with the one at the last check: if the fit to
    the data dropped by more than ``drop_db`` dB, the weights saved at that check are put back
    into ``network`` and :meth:`update` returns True; otherwise the weights are saved as the new
    good ones. ``drop_db=0`` disables it.
    """

    def __init__(self, network: nn.Module, drop_db: float, every: int) -> None:
        if drop_db < 0 or every < 1:
            raise ValueError(f"drop_db={drop_db!r} must be 0 (off) or more and every={every!r} "
                             f"1 or more")
        self.network, self.drop_db, self.every = network, drop_db, every
        self.threshold = 10.0 ** (drop_db / 10.0)
        self.good_loss = math.inf
        self.good_weights: list[torch.Tensor] | None = None
        self.count = 0

    def update(self, iteration, output, estimate=None, loss=None) -> bool:
        if self.drop_db == 0 or iteration % self.every:
            return False
        value = loss.item()
        if value > self.threshold * self.good_loss and self.good_weights is not None:
            self.restore()
            self.count += 1
            return True
        self.good_loss = value
        self.good_weights = [p.detach().clone() for p in self.network.parameters()]
        return False

    def restore(self) -> None:
        """Copy the last good weights back into the network (nothing before the first check)."""
        if self.good_weights is None:
            return
        with torch.no_grad():
            for parameter, value in zip(self.network.parameters(), self.good_weights):
                parameter.copy_(value)


# ----------------------------------------------------------------------------- stopping

MIN_IMPROVEMENT = 1e-9
"""Smallest decrease of a criterion (in [0, 1] intensity units squared) that counts as better."""


class _BestPoint(Tracker):
    """Shared bookkeeping of the stopping rules: the lowest criterion seen, where, and the
    estimate there; asks to stop once that best point is ``patience`` iterations old."""

    def __init__(self, patience: int, min_iterations: int, check_every: int) -> None:
        if patience < 1 or check_every < 1:
            raise ValueError(f"patience={patience!r} and check_every={check_every!r} must be "
                             f"1 or more")
        self.patience = patience
        self.min_iterations = min_iterations
        self.check_every = check_every
        self.criterion = float("nan")
        self.best_criterion = float("inf")
        self.best_iteration = 0
        self.best_estimate: torch.Tensor | None = None

    def _consider(self, iteration: int, criterion: float, estimate: torch.Tensor) -> bool:
        self.criterion = criterion
        # a new best must improve by more than a negligible amount: outputs that have stopped
        # changing give an ever-shrinking moving variance, which is a plateau, not progress
        if criterion < self.best_criterion - MIN_IMPROVEMENT:
            self.best_criterion, self.best_iteration = criterion, iteration
            self.best_estimate = estimate.detach().clone()
            return False
        return iteration - self.best_iteration >= self.patience

    def _due(self, iteration: int) -> bool:
        return iteration >= self.min_iterations and iteration % self.check_every == 0


class VarianceStop(_BestPoint):
    """Stop when the exponential moving variance of the outputs stops reaching new minima
    (ES-WMV, Wang et al., "Early Stopping for Deep Image Prior").

    The running variance of the outputs falls while the network learns the image and rises
    again once it starts fitting noise. ``window`` sets the averaging horizon (the moving
    weights are ``1 / window``); the criterion is the mean over pixels of the per-pixel
    variance. Needs no clean image and works for every task, in O(1) memory. The best-point
    estimate is the moving mean of the outputs at the variance minimum (the ``estimate``
    passed to :meth:`update` is not used).
    """

    def __init__(self, window: int = 100, patience: int = 500, check_every: int = 10) -> None:
        if window < 1:
            raise ValueError(f"window={window!r} must be 1 or more")
        super().__init__(patience, min_iterations=window, check_every=check_every)
        self.rate = 1.0 / window
        self.mean: torch.Tensor | None = None
        self.variance: torch.Tensor | None = None

    def update(self, iteration, output, estimate=None, loss=None) -> bool:
        """Feed one step's output; True when the fit should stop."""
        output = output.detach()
        if self.mean is None:
            self.mean, self.variance = output.clone(), torch.zeros_like(output)
            return False
        delta = output - self.mean
        self.mean.add_(delta, alpha=self.rate)
        self.variance.mul_(1.0 - self.rate).addcmul_(delta, delta,
                                                     value=self.rate * (1.0 - self.rate))
        if not self._due(iteration):
            return False
        # the estimate kept at the best point is the rule's own moving mean of the outputs: it
        # is centred on the recent iterations, where a long output average would still carry
        # the blurry early outputs of a fast fit
        return self._consider(iteration, float(self.variance.mean()), self.mean)


class HoldoutStop(_BestPoint):
    """Stop when the estimate's error on held-out pixels stops reaching new minima.

    A random share of the observed pixels is left out of the fit's loss (see
    :func:`split_holdout`); ``holdout`` is 1 on them. The squared error of
    ``degrade(estimate)`` against ``target`` there is a validation loss whose minimum marks the
    best point. ``degrade`` is the task's operator without the mask.
    """

    def __init__(self, target: torch.Tensor, holdout: torch.Tensor, degrade,
                 patience: int = 500, check_every: int = 10, min_iterations: int = 50) -> None:
        super().__init__(patience, min_iterations=min_iterations, check_every=check_every)
        self.target, self.holdout, self.degrade = target, holdout, degrade

    def update(self, iteration, output, estimate=None, loss=None) -> bool:
        if not self._due(iteration):
            return False
        with torch.no_grad():
            error = squared_error(self.degrade(estimate), self.target, self.holdout)
        return self._consider(iteration, float(error), estimate)


def split_holdout(known: torch.Tensor | None, shape: tuple[int, ...], fraction: float,
                  generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Split the known pixels into training and held-out weights (both 0/1 images).

    ``shape`` is the observation's ``(B, C, H, W)`` (B slices fitted together); the same pixels
    are held out in every channel, different ones in every slice. Only known pixels
    (``known > 0``; all when None) can be held out.
    """
    if not 0.0 < fraction < 1.0:
        raise ValueError(f"the held-out fraction must be between 0 and 1, got {fraction!r}")
    known = torch.ones((1, 1) + tuple(shape[2:])) if known is None else (known > 0).float()
    pick = (torch.rand((shape[0], 1) + tuple(shape[2:]), generator=generator) < fraction).float()
    held = known * pick
    return known - held, held

"""Automatic stopping rules: when has the fit found the image and not yet the noise?

Both rules watch the fit step by step, remember the estimate at their best point, and ask to stop
once that best point has not improved for ``patience`` iterations. The estimate they return is the
one from the best point, not the last.

- :class:`VarianceStop` (ES-WMV, Wang et al., "Early Stopping for Deep Image Prior"): the running
  variance of the outputs falls while the network learns the image and rises again once it
  starts fitting noise. Kept in exponential-moving form (O(1) memory: a mean and a variance
  image), so it also suits large images. Needs no clean image; works for every task.
- :class:`HoldoutStop`: a random share of the observed pixels is left out of the loss; the error
  of the estimate on those pixels is a validation loss whose minimum marks the best point.
"""

from __future__ import annotations

import torch

from .operators import data_loss

MIN_IMPROVEMENT = 1e-9
"""Smallest decrease of a criterion (in [0, 1] intensity units squared) that counts as better."""


class _BestPoint:
    """Shared bookkeeping: the lowest criterion seen, where, and the estimate there."""

    def __init__(self, patience: int, min_iterations: int, check_every: int) -> None:
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
    """Stop when the exponential moving variance of the outputs stops reaching new minima.

    ``window`` sets the averaging horizon (the moving weights are ``1 / window``); the
    criterion is the mean over pixels of the per-pixel variance. The best-point estimate is the
    moving mean of the outputs at the variance minimum (``estimate`` passed to :meth:`update`
    is not used).
    """

    def __init__(self, window: int = 100, patience: int = 500, check_every: int = 10) -> None:
        super().__init__(patience, min_iterations=window, check_every=check_every)
        self.rate = 1.0 / window
        self.mean: torch.Tensor | None = None
        self.variance: torch.Tensor | None = None

    def update(self, iteration: int, output: torch.Tensor, estimate: torch.Tensor) -> bool:
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

    ``holdout`` is a weight image that is 1 on the held-out observed pixels; the fit must
    exclude them from its own loss (see :func:`split_holdout`).
    """

    def __init__(self, target: torch.Tensor, holdout: torch.Tensor, degrade,
                 patience: int = 500, check_every: int = 10, min_iterations: int = 50) -> None:
        super().__init__(patience, min_iterations=min_iterations, check_every=check_every)
        self.target, self.holdout, self.degrade = target, holdout, degrade

    def update(self, iteration: int, output: torch.Tensor, estimate: torch.Tensor) -> bool:
        if not self._due(iteration):
            return False
        with torch.no_grad():
            error = data_loss(self.degrade(estimate), self.target, self.holdout)
        return self._consider(iteration, float(error), estimate)


def split_holdout(weight: torch.Tensor | None, shape: tuple[int, ...], fraction: float,
                  generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Split the known pixels into training and held-out weights (both 0/1 images).

    ``shape`` is the observation's ``(B, C, H, W)`` (B slices fitted together); the same pixels
    are held out in every channel, different ones in every slice. Only known pixels
    (``weight > 0``) can be held out.
    """
    known = torch.ones((1, 1) + tuple(shape[2:])) if weight is None else (weight > 0).float()
    pick = (torch.rand((shape[0], 1) + tuple(shape[2:]), generator=generator) < fraction).float()
    held = known * pick
    return known - held, held

"""Which snapshots of an image plane's fits go into its :class:`~.history.History`, and as what.

A run keeps a history only when its config asks (``history`` checkpoints, at most
``history_budget_mb`` MiB; 0: none): one :class:`PlaneRecorder` per image plane (per slice of
a stack). Each checkpoint holds the estimate a user would get by stopping the fit there:

- without a stopping rule (or with Bayesian DIP), the snapshot's ``estimate``;
- with a rule, the moving average (or last output, per ``config.result``) at that step, not
  the rule's best point so far, which stays the same once the fit starts to overfit: scrolling
  through the history then shows the noise coming back. The rule's best point, the run's
  result, is pinned with the note ``"automatic stop"`` at the iteration where it was found.

The plane's last snapshot is pinned as ``"last"``. A plane fitted in several fits (tiles,
seeded runs, a stack's backward pass) counts its steps over all of them, so a checkpoint's
``iteration`` is the plane's steps so far and its estimate the plane as a whole (a tiled
plane's blended mosaic). The pinned best point's loss, criterion and time are those of its
fit's last snapshot (the history keeps no trace of the steps between snapshots).
"""

from __future__ import annotations

from typing import Callable

import numpy as np

from .history import History

AUTOMATIC_STOP = "automatic stop"
LAST = "last"


def current_estimate(snapshot) -> np.ndarray:
    """What stopping the fit at ``snapshot`` would return if it had no stopping rule."""
    config = snapshot.config
    if config.stopping == "none" or config.sgld_noise > 0:
        return snapshot.estimate
    return snapshot.average if config.result == "ema" else snapshot.image


class PlaneRecorder:
    """Offers one image plane's snapshots to its :class:`History` (see the module's notes).

    ``keep`` turns a snapshot's array into the estimate kept (e.g. a stack slice in the
    caller's layout); it is called only for checkpoints the history keeps.
    """

    def __init__(self, history: History) -> None:
        self.history = history
        self._finished_steps = 0  # steps of the plane's fits that have ended
        self._fit_steps = 0  # steps of the current fit
        self._fit_ended = False

    @classmethod
    def for_config(cls, config) -> PlaneRecorder | None:
        """A recorder for a run of ``config``; None when it keeps no history."""
        if not config.history:
            return None
        return cls(History(config.history, max(1, int(config.history_budget_mb * 2 ** 20))))

    def record(self, snapshot, *, fit_done: bool,
               keep: Callable[[np.ndarray], np.ndarray] | None = None,
               last_note: str = LAST) -> None:
        """Offer ``snapshot``; ``fit_done``: it ends one of the plane's fits (a tile's, a
        run's); the plane's last snapshot (``snapshot.done``) is pinned with ``last_note``."""
        if self._fit_ended:
            self._finished_steps += self._fit_steps
            self._fit_ended = False
        self._fit_steps, self._fit_ended = snapshot.iteration, fit_done

        def kept(array: np.ndarray) -> Callable[[], np.ndarray]:
            return lambda: np.array(array if keep is None else keep(array), copy=True)

        step = self._finished_steps + snapshot.iteration
        self.history.offer(step, snapshot.elapsed, snapshot.loss, snapshot.criterion,
                           kept(current_estimate(snapshot)),
                           note=last_note if snapshot.done else None)
        best = snapshot.best_iteration
        if fit_done and best and snapshot.config.sgld_noise == 0:
            where = "" if snapshot.n_tiles == 1 and snapshot.config.n_runs == 1 else \
                f" (tile {snapshot.tile + 1}, run {snapshot.run + 1})"
            self.history.offer(self._finished_steps + best, snapshot.elapsed, snapshot.loss,
                               snapshot.criterion, kept(snapshot.estimate),
                               note=AUTOMATIC_STOP + where)

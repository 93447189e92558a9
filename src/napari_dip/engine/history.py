"""A bounded history of a fit's estimates, to look back over a run and choose a result.

The fit offers every snapshot (:meth:`History.offer`); the history keeps some of them as
:class:`Checkpoint` objects, each with the iteration, the time since the start, the loss, the
stopping criterion and a copy of the estimate. However long the run, it keeps at most
``max_checkpoints`` of them, their estimates together take at most ``memory_budget_bytes``, and
they stay spread over the whole run:

- **Spacing.** Checkpoints sit on a grid in iterations: the first offer is its origin and the
  gap between the first two offers its unit, and an offer is kept when its distance from the
  origin is a multiple of ``stride`` units (the stride starts at 1). When one more would not
  fit, every other checkpoint of the grid is dropped and the stride doubled, as often as needed.
  The kept checkpoints are thus evenly spaced, one stride apart (protected ones add points
  between), from the start of the run to at most one stride before its latest offer; the
  caller keeps the very end by offering the last snapshot with a note.
- **Protection.** Thinning never drops the latest checkpoint, the one with the lowest
  criterion, nor a *pinned* one (offered with a ``note``, or pinned later with
  :meth:`History.mark`, for example the point where the automatic rule stopped). An offer with
  a note is kept even off the grid and even out of order, so the stopping rule's own best point
  can be kept exactly. The origin is on every grid, so the first checkpoint stays too.
- **Memory.** An estimate is copied (``estimate_fn`` is called) only for an offer that will be
  kept, after room has been made for it (sized as the previous estimate), so skipped offers
  cost nothing and the checkpoints' bytes stay within the budget even during an offer. When
  the limits leave fewer places than protected checkpoints (a tiny budget, or many pins), the
  least needed go first: plain ones, then the lowest-criterion one, then the latest, then the
  oldest pins; an estimate larger than the whole budget is not kept at all.
- **Threads.** Each change publishes a new set of checkpoints at once, so another thread (a
  viewer's slider) may read the history while the fit offers.

Nothing here knows about tiles, devices or units: the caller passes the estimate it wants kept
(a tiled plane's blended mosaic, a stack's slice) as a NumPy array and gets it back unchanged.
Measured memory of long runs: ``docs/benchmarks/history.md``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Callable

import numpy as np

# what a checkpoint is for when the history needs room: the lowest rank leaves first
_PLAIN, _BEST, _LATEST, _PINNED = range(4)


@dataclass(frozen=True, eq=False)
class Checkpoint:
    """One kept point of a fit.

    Parameters
    ----------
    iteration : int
        The number of optimisation steps done when the estimate was taken.
    elapsed : float
        Seconds since the fit started.
    loss : float
        The fit's loss at that step.
    criterion : float or None
        The stopping rule's criterion at that step (lower is better); None without a rule.
    estimate : numpy.ndarray
        The estimate, as the caller gave it (shape, dtype and units unchanged).
    note : str or None
        Why it was pinned (for example ``"automatic stop"`` or ``"last"``); None for a
        checkpoint kept only by the spacing.

    Examples
    --------
    >>> import numpy as np
    >>> point = Checkpoint(100, 2.5, 0.01, None, np.zeros((4, 4), np.float32), note="last")
    >>> point.iteration, point.nbytes, point.note
    (100, 64, 'last')
    """

    iteration: int
    elapsed: float
    loss: float
    criterion: float | None
    estimate: np.ndarray
    note: str | None = None

    @property
    def nbytes(self) -> int:
        """The bytes of the estimate."""
        return int(self.estimate.nbytes)


@dataclass(frozen=True)
class _Slot:
    """What the history weighs when it needs room: a checkpoint, or an offer not yet copied."""

    iteration: int
    criterion: float | None
    note: str | None
    nbytes: int


def _slot(point: Checkpoint) -> _Slot:
    return _Slot(point.iteration, point.criterion, point.note, point.nbytes)


def _ranks(slots: dict[int, _Slot]) -> dict[int, int]:
    """Each slot's rank (``_PLAIN`` .. ``_PINNED``): the role that protects it most."""
    latest = max(slots)
    scored = [(s.criterion, i) for i, s in slots.items()
              if s.criterion is not None and math.isfinite(s.criterion)]
    best = min(scored)[1] if scored else None
    ranks = {}
    for iteration, slot in slots.items():
        ranks[iteration] = (_PINNED if slot.note is not None else _LATEST if iteration == latest
                            else _BEST if iteration == best else _PLAIN)
    return ranks


class History:
    """The checkpoints of one fit, bounded in number and in memory, spread over the whole run.

    See the module's description for how checkpoints are spaced, protected and dropped.

    Parameters
    ----------
    max_checkpoints : int, optional
        The most checkpoints kept at once (at least 2).
    memory_budget_bytes : int or None, optional
        The most bytes the kept estimates may take together; None: no limit beyond
        ``max_checkpoints``.

    Examples
    --------
    A run of 1000 iterations offering a snapshot every 10 keeps checkpoints evenly spread over
    it; its last snapshot, offered with a note, is kept too:

    >>> import numpy as np
    >>> history = History(max_checkpoints=8)
    >>> for iteration in range(10, 1001, 10):
    ...     kept = history.offer(iteration, iteration / 100, 1 / iteration, None,
    ...                          lambda: np.full((2, 2), iteration, np.float32),
    ...                          note="last" if iteration == 1000 else None)
    >>> [point.iteration for point in history.checkpoints]
    [10, 170, 330, 490, 650, 810, 970, 1000]
    >>> history.checkpoints[-1].note
    'last'
    >>> stack, iterations = history.to_stack()
    >>> stack.shape, iterations[:3]
    ((8, 2, 2), [10, 170, 330])
    """

    def __init__(self, max_checkpoints: int = 32, memory_budget_bytes: int | None = None) -> None:
        if isinstance(max_checkpoints, bool) or not isinstance(max_checkpoints, int) \
                or max_checkpoints < 2:
            raise ValueError(f"max_checkpoints must be a whole number of at least 2 (the first and "
                             f"the latest checkpoint), not {max_checkpoints!r}: pass 2 or more")
        if memory_budget_bytes is not None and (
                isinstance(memory_budget_bytes, bool)
                or not isinstance(memory_budget_bytes, (int, np.integer))
                or memory_budget_bytes <= 0):
            raise ValueError(f"memory_budget_bytes must be a positive number of bytes or None (no "
                             f"limit), not {memory_budget_bytes!r}: pass for example 256 * 2**20 "
                             f"for 256 MiB")
        self.max_checkpoints = max_checkpoints
        self.memory_budget_bytes = None if memory_budget_bytes is None else int(memory_budget_bytes)
        self._kept: dict[int, Checkpoint] = {}
        self._origin: int | None = None
        self._unit: int | None = None
        self._stride = 1
        self._last_offered: int | None = None
        self._expected_nbytes = 0

    def __len__(self) -> int:
        return len(self._kept)

    @property
    def checkpoints(self) -> list[Checkpoint]:
        """The kept checkpoints, in the order of their iterations."""
        kept = self._kept
        return [kept[i] for i in sorted(kept)]

    @property
    def nbytes(self) -> int:
        """The bytes the kept estimates take together."""
        return sum(point.nbytes for point in self._kept.values())

    def offer(self, iteration: int, elapsed: float, loss: float, criterion: float | None,
              estimate_fn: Callable[[], np.ndarray], *, note: str | None = None
              ) -> Checkpoint | None:
        """Offer the fit's state at ``iteration``; returns the new checkpoint, or None if skipped.

        Parameters
        ----------
        iteration, elapsed, loss, criterion
            As in :class:`Checkpoint`. Without a note, each offer's iteration must be later than
            the previous one's.
        estimate_fn : callable
            Returns the estimate to keep, as a NumPy array the history may keep (a copy, not a
            buffer the fit goes on writing). Called only when the offer is kept.
        note : str, optional
            Pins the checkpoint (see :meth:`mark`): it is kept even off the spacing's grid, and
            may be an earlier iteration (the stopping rule's best point); it replaces a
            checkpoint kept at the same iteration.

        Examples
        --------
        >>> import numpy as np
        >>> history = History()
        >>> copies = []
        >>> def copy():
        ...     copies.append(1)
        ...     return np.zeros(3, np.float32)
        >>> _ = history.offer(1, 0.1, 0.5, None, copy)
        >>> _ = history.offer(2, 0.2, 0.4, None, copy)
        >>> history.offer(1, 0.1, 0.5, None, copy, note="automatic stop").note
        'automatic stop'
        >>> len(history), len(copies)
        (2, 3)
        """
        self._advance(iteration, pinned=note is not None)
        if note is None and not self._on_grid(iteration):
            return None
        # changes are made on a copy and published whole, for readers on other threads
        kept = dict(self._kept)
        expected = _Slot(iteration, criterion, note, self._expected_nbytes)
        if not self._make_room(kept, expected):
            return None
        self._kept = dict(kept)  # the room is freed before the copy is made
        estimate = estimate_fn()
        if not isinstance(estimate, np.ndarray):
            raise TypeError(f"estimate_fn must return a NumPy array, not "
                            f"{type(estimate).__name__}: return for example "
                            f"tensor.detach().cpu().numpy().copy()")
        self._expected_nbytes = int(estimate.nbytes)
        point = Checkpoint(iteration, float(elapsed), float(loss),
                           None if criterion is None else float(criterion), estimate, note)
        if point.nbytes != expected.nbytes and not self._make_room(kept, _slot(point)):
            return None
        kept[iteration] = point
        self._drop_unneeded(kept)
        self._kept = kept
        return point

    def mark(self, iteration: int, note: str) -> Checkpoint:
        """Pin the checkpoint kept at ``iteration`` with ``note``, so thinning keeps it.

        Examples
        --------
        >>> import numpy as np
        >>> history = History()
        >>> _ = history.offer(50, 1.0, 0.2, 0.01, lambda: np.zeros(1, np.float32))
        >>> history.mark(50, "automatic stop").note
        'automatic stop'
        """
        if not isinstance(note, str) or not note:
            raise ValueError(f"a checkpoint's note must be a non-empty text, not {note!r}: say "
                             f"why it is kept, for example 'automatic stop'")
        if iteration not in self._kept:
            raise ValueError(f"no checkpoint is kept at iteration {iteration} (kept: "
                             f"{sorted(self._kept)}): offer that iteration with note={note!r} "
                             f"to keep it")
        point = replace(self._kept[iteration], note=note)
        self._kept = {**self._kept, iteration: point}
        return point

    def nearest(self, iteration: int) -> Checkpoint:
        """The kept checkpoint closest to ``iteration`` (the earlier one on a tie).

        Examples
        --------
        >>> import numpy as np
        >>> history = History()
        >>> for i in (10, 20, 30):
        ...     _ = history.offer(i, 0.0, 0.0, None, lambda: np.zeros(1, np.float32))
        >>> history.nearest(24).iteration, history.nearest(25).iteration
        (20, 20)
        """
        kept = self._kept
        if not kept:
            raise ValueError("the history has no checkpoint yet: offer the fit's snapshots "
                             "first")
        return kept[min(kept, key=lambda kept_at: (abs(kept_at - iteration), kept_at))]

    def to_stack(self) -> tuple[np.ndarray, list[int]]:
        """The kept estimates stacked along a new first axis, and their iterations.

        For writing one file with an iteration axis (``(iterations, *estimate.shape)``).

        Examples
        --------
        >>> import numpy as np
        >>> history = History()
        >>> for i in (1, 2):
        ...     _ = history.offer(i, 0.0, 0.0, None, lambda: np.zeros((3, 5), np.uint16))
        >>> stack, iterations = history.to_stack()
        >>> stack.shape, stack.dtype, iterations
        ((2, 3, 5), dtype('uint16'), [1, 2])
        """
        points = self.checkpoints
        if not points:
            raise ValueError("the history has no checkpoint to stack: offer the fit's "
                             "snapshots first")
        shapes = {point.estimate.shape for point in points}
        if len(shapes) > 1:
            raise ValueError(f"the checkpoints' estimates differ in shape ({sorted(shapes)}) and "
                             f"cannot be stacked: keep one History per image")
        return np.stack([point.estimate for point in points]), [p.iteration for p in points]

    def _advance(self, iteration: int, pinned: bool) -> None:
        """Place the grid's origin and unit, and check that unpinned offers move forward."""
        if self._last_offered is not None and iteration <= self._last_offered:
            if not pinned:
                raise ValueError(f"iteration {iteration} was offered after iteration "
                                 f"{self._last_offered}: offer a fit's snapshots in order (an "
                                 f"earlier point only with a note), and use one History per fit")
            return
        if self._origin is None:
            self._origin = iteration
        elif self._unit is None:
            self._unit = iteration - self._origin
        self._last_offered = iteration

    def _on_grid(self, iteration: int) -> bool:
        if self._unit is None:
            return iteration == self._origin
        offset = iteration - self._origin
        return offset >= 0 and offset % (self._unit * self._stride) == 0

    def _over(self, slots: dict[int, _Slot]) -> bool:
        budget = self.memory_budget_bytes
        return len(slots) > self.max_checkpoints or (
            budget is not None and sum(s.nbytes for s in slots.values()) > budget)

    def _make_room(self, kept: dict[int, Checkpoint], incoming: _Slot) -> bool:
        """Thin, then drop the least needed of ``kept``, until ``incoming`` fits beside them.

        Returns False, and changes nothing, when ``incoming`` is itself the least needed.
        """
        stride = self._stride
        slots = {i: _slot(point) for i, point in kept.items()}
        slots[incoming.iteration] = incoming
        while self._over(slots):
            ranks = _ranks(slots)
            leaving = self._thin(slots, ranks) or [min(slots, key=lambda i: (ranks[i], i))]
            if incoming.iteration in leaving:
                self._stride = stride
                return False
            for iteration in leaving:
                del slots[iteration]
        # a checkpoint that incoming replaces goes too, before incoming's estimate is made
        for iteration in [i for i in kept if i not in slots or i == incoming.iteration]:
            del kept[iteration]
        return True

    def _thin(self, slots: dict[int, _Slot], ranks: dict[int, int]) -> list[int]:
        """Double the stride until some unprotected checkpoints fall off the grid; returns them."""
        if self._unit is None:
            return []
        span = max(slots) - self._origin
        while self._unit * self._stride <= span:
            self._stride *= 2
            off_grid = [i for i in slots if ranks[i] == _PLAIN and not self._on_grid(i)]
            if off_grid:
                return off_grid
        return []

    def _drop_unneeded(self, kept: dict[int, Checkpoint]) -> None:
        """Drop from ``kept`` the checkpoints that lost their protection and are off the grid."""
        ranks = _ranks({i: _slot(point) for i, point in kept.items()})
        for iteration in [i for i, rank in ranks.items() if rank == _PLAIN]:
            if not self._on_grid(iteration):
                del kept[iteration]

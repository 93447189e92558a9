"""What a widget run reports, and how it reads to a user, without Qt, napari or torch.

:class:`Progress` is what the worker yields after each snapshot; :class:`StepCounter` turns the
snapshots into steps done and steps expected (the one place where the widget reasons about a
run's schedule); :class:`RunStatus` is the evented state the widgets show (a progress bar, a
status line, a device label), updated on the GUI thread from each :class:`Progress`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from psygnal import evented

from ..config import warm_start_config


@dataclass
class Progress:
    """What the worker reports to the GUI after each snapshot.

    ``steps_done`` and ``steps_total`` count optimisation steps over the whole run (every
    slice, tile and seeded run); ``steps_total`` is an estimate when a stopping rule may end a
    fit early (see :class:`StepCounter`). ``expected_iterations`` is the current fit's expected
    length, ``best_iteration`` and ``patience`` what its stopping rule knows (``stopping`` is
    the rule's name, ``"none"`` without one).
    """

    slice_number: int
    n_slices: int
    iteration: int
    max_iterations: int
    tile: int
    n_tiles: int
    steps_done: int
    steps_total: int
    loss: float
    criterion: float | None
    seconds_left: float | None
    device: str  # where it runs and in which arithmetic, as readable_device words it
    previews: tuple[tuple[tuple, np.ndarray], ...] = ()  # (stack index, estimate) per slice
    backward: bool = False  # the optional second pass over the slices (stack_passes=2)
    group_size: int = 1  # slices fitted together (slice_batch), ending at slice_number
    run: int = 0  # which of n_runs seeded runs (their results are averaged)
    n_runs: int = 1
    stopping: str = "none"
    best_iteration: int | None = None
    patience: int = 0
    expected_iterations: int = 0
    background: np.ndarray | None = None  # first report only: the input, shaped like the output


# ----------------------------------------------------------------------------- the schedule

def expected_fit_length(config, iteration: int = 0, best_iteration: int | None = None) -> int:
    """How many steps one fit of ``config`` is expected to run, seen at ``iteration``.

    Without a stopping rule: ``max_iterations``. With one, the fit stops once ``patience``
    steps pass without a new best, so it runs at least to ``best + patience`` (the variance
    rule's first best comes after ``variance_window`` steps), and never past
    ``max_iterations``. A later best moves the estimate on: it is a lower bound, not a promise.
    """
    cap = config.max_iterations
    if config.stopping == "none":
        return cap
    first_best = config.variance_window if config.stopping == "variance" else 0
    best = max(best_iteration or 0, first_best)
    return int(min(cap, max(iteration, best + config.patience)))


@dataclass
class StepCounter:
    """Steps done and steps expected in a stack run, fed one :class:`~napari_dip.StackSnapshot`
    at a time.

    A slice (or a group of ``slice_batch`` slices) is ``n_tiles`` x ``n_runs`` fits; the first
    slice runs ``config``, later ones the shorter warm-started schedule that the first slice's
    length decides (:func:`~napari_dip.config.warm_start_config`). Fits not yet started are
    expected to run like the current one (same slice) or like the later slices finished so far.
    """

    config: Any
    finished_steps: int = 0
    fit_steps: dict = field(default_factory=dict)  # (tile, run) -> steps, current slice group
    first_fit_length: int | None = None
    later_fit_lengths: list = field(default_factory=list)
    _last: Any = None

    def count(self, stack_step) -> tuple[int, int, int]:
        """``(steps done, steps expected in all, expected length of the current fit)``."""
        snapshot = stack_step.snapshot
        key = (snapshot.tile, snapshot.run)
        if self._last is not None and (self._last.tile, self._last.run) != key:
            self.fit_steps[(self._last.tile, self._last.run)] = self._final_length(self._last)
        self._last = snapshot
        self.fit_steps[key] = snapshot.iteration
        current = snapshot.iteration if snapshot.stopped else expected_fit_length(
            snapshot.config, snapshot.iteration, snapshot.best_iteration)
        done = self.finished_steps + sum(self.fit_steps.values())
        fits_per_slice = snapshot.n_tiles * self.config.n_runs
        fits_left = fits_per_slice - (snapshot.tile * self.config.n_runs + snapshot.run) - 1
        first_fit = stack_step.pass_number == 0 and \
            stack_step.slice_number + 1 == len(stack_step.group)
        groups_left = -(-self._slices_left(stack_step) // self.config.slice_batch)
        total = done + (current - snapshot.iteration) + fits_left * current + \
            groups_left * fits_per_slice * self._later_fit_length(current if first_fit else None)
        if snapshot.done:
            self._finish_slice(first_fit, snapshot, fits_per_slice)
        return done, total, current

    @staticmethod
    def _final_length(snapshot) -> int:
        """A finished fit's length: its cap without a stopping rule, else as far as it got."""
        if snapshot.config.stopping == "none":
            return snapshot.max_iterations
        return snapshot.iteration

    def _slices_left(self, stack_step) -> int:
        left = stack_step.n_slices - stack_step.slice_number - 1
        if stack_step.pass_number == 0 and self.config.stack_passes == 2:
            left += stack_step.n_slices - 1
        return left

    def _later_fit_length(self, first_fit_now: int | None) -> float:
        """Expected length of one fit of a later slice."""
        if self.later_fit_lengths:
            return sum(self.later_fit_lengths) / len(self.later_fit_lengths)
        first = self.first_fit_length if first_fit_now is None else first_fit_now
        warm = warm_start_config(self.config, max(1, first or self.config.max_iterations))
        if warm is self.config:  # every slice starts from scratch, on the first's schedule
            return first or expected_fit_length(self.config)
        return expected_fit_length(warm)

    def _finish_slice(self, first_fit: bool, snapshot, fits_per_slice: int) -> None:
        steps = sum(self.fit_steps.values())
        self.finished_steps += steps
        if first_fit:
            self.first_fit_length = snapshot.iteration
        else:
            self.later_fit_lengths.append(steps / fits_per_slice)
        self.fit_steps, self._last = {}, None


# ----------------------------------------------------------------------------- texts

def task_label(task: str) -> str:
    """``"super_resolve"`` -> ``"super-resolve"``: the name users see and layers get."""
    return task.replace("_", "-")


def format_duration(seconds: float) -> str:
    """``75.3`` -> ``"1 min 15 s"``; short and readable in a progress bar."""
    seconds = max(0, round(seconds))
    if seconds < 60:
        return f"{seconds} s"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes} min {seconds:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"


def slice_position(slice_number: int, n_slices: int, backward: bool) -> int:
    """Where a slice lies in the stack (1-based), from its number within its pass: the
    backward pass (``stack_passes=2``) counts from the second-to-last slice down."""
    return n_slices - slice_number if backward else slice_number + 1


def readable_device(device: str, precision: str) -> str:
    """Where a fit runs and in which arithmetic, from the engine's device name:
    ``"cpu (1 threads)", "float32"`` -> ``"CPU, 1 thread, float32"``;
    ``"cuda:0 (NVIDIA H100)", "bfloat16"`` -> ``"CUDA:0, NVIDIA H100, bfloat16"``."""
    name, _, detail = device.partition(" (")
    detail = detail.rstrip(")")
    threads = detail.split()
    if len(threads) == 2 and threads[0].isdigit() and threads[1].startswith("thread"):
        detail = f"{threads[0]} thread{'' if threads[0] == '1' else 's'}"
    return ", ".join(part for part in (name.upper(), detail, precision) if part)


def progress_text(progress: Progress) -> str:
    """The progress bar's line: where the run is and how long it should still take."""
    text = "backward pass · " if progress.backward else ""
    position = slice_position(progress.slice_number, progress.n_slices, progress.backward)
    if progress.group_size > 1:
        first = position + 1 - progress.group_size
        text += f"slices {first}-{position}/{progress.n_slices} · "
    else:
        text += f"slice {position}/{progress.n_slices} · "
    if progress.n_tiles > 1:
        text += f"tile {progress.tile + 1}/{progress.n_tiles} · "
    if progress.n_runs > 1:
        text += f"run {progress.run + 1}/{progress.n_runs} · "
    expected = progress.expected_iterations or progress.max_iterations
    approximate = "~" if progress.stopping != "none" and expected < progress.max_iterations \
        else ""
    text += f"iteration {progress.iteration}/{approximate}{expected}"
    if progress.seconds_left is not None:
        text += f" · ~{format_duration(progress.seconds_left)} left"
    return text


def stopping_text(progress: Progress) -> str:
    """What the automatic stopping rule knows, in a sentence ("" without a rule)."""
    if progress.stopping == "none":
        return ""
    rule = f"Automatic stop ({progress.stopping} rule): "
    if not progress.best_iteration:
        return (rule + f"no best point yet; stops {progress.patience} steps after its best, "
                f"at most at iteration {progress.max_iterations}.")
    since = progress.iteration - progress.best_iteration
    return (rule + f"best at iteration {progress.best_iteration}, {since} steps since; stops "
            f"after {progress.patience} without a better one (at iteration "
            f"{progress.expected_iterations} at the earliest, {progress.max_iterations} at "
            f"most).")


def stopped_early_text(snapshot) -> str:
    """Where the automatic stopping rule ended the last fit ("" when it ran to its cap)."""
    if not snapshot.stopped:
        return ""
    return (f"The automatic stop ended the last fit at iteration {snapshot.iteration}; its "
            f"result is the estimate at its best point, iteration {snapshot.best_iteration}.")


@evented
@dataclass
class RunStatus:
    """The state the widget shows; each change emits ``status.events.<field>``.

    ``fraction`` (0 to 1) and ``progress`` drive the progress bar, ``message`` the status line
    below it (the stopping rule's state during a run, the full text of an error after one),
    ``failed`` colours that line, ``device`` names where the last run ran.
    """

    fraction: float = 0.0
    progress: str = "ready"
    message: str = ""
    failed: bool = False
    device: str = "chosen at Run"

    def starting(self) -> None:
        """A run was started: clear what the previous run left."""
        self.fraction, self.progress, self.message, self.failed = 0.0, \
            "starting (loading torch)…", "", False

    def refused(self, reason: str) -> None:
        """A run was refused before it started: the reason replaces the last run's outcome."""
        self.fraction, self.progress, self.message, self.failed = 0.0, "not started", \
            reason, True

    def show(self, progress: Progress) -> None:
        self.device = progress.device
        self.progress = progress_text(progress)
        self.fraction = min(1.0, progress.steps_done / max(1, progress.steps_total))
        self.message = stopping_text(progress)

    def finished(self, text: str, message: str = "") -> None:
        self.fraction, self.progress, self.message, self.failed = 1.0, text, message, False

    def stopped(self, text: str, message: str = "") -> None:
        self.progress, self.message, self.failed = text, message, False

    def failure(self, message: str) -> None:
        self.progress, self.message, self.failed = "failed (details below)", message, True


def seconds_left(elapsed: float, done: int, total: int) -> float | None:
    """Time left at the pace so far (None before the first step)."""
    if not done or not math.isfinite(elapsed):
        return None
    return elapsed / done * max(0, total - done)

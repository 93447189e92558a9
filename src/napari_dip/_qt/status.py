"""What a widget run reports, and how it reads to a user, without Qt, napari or torch.

:class:`Progress` is what the worker yields after each snapshot (its steps done and expected
come from the run's plan: :class:`napari_dip.engine.plan.StepCounter`); :class:`RunStatus` is
the evented state the widgets show (a progress bar, a status line, a device label), updated on
the GUI thread from each :class:`Progress`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from psygnal import evented


@dataclass
class Progress:
    """What the worker reports to the GUI after each snapshot.

    ``steps_done`` and ``steps_total`` count optimisation steps over the whole run (every
    slice, tile and seeded run); ``steps_total`` is an estimate when a stopping rule may end a
    fit early (see :class:`napari_dip.engine.plan.StepCounter`). ``expected_iterations`` is
    the current fit's expected length, ``best_iteration`` and ``patience`` what its stopping
    rule knows (``stopping`` is the rule's name, ``"none"`` without one).
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

"""The widget's run, off the GUI thread, without Qt or napari.

A run is a :class:`~napari_dip.spec.RunSpec` (every setting) and the data that goes beside it
(:class:`RunInput`). :func:`restoration_steps` plans it with the engine
(:func:`napari_dip.engine.plan.plan`), runs the plan and turns its snapshots into
:class:`Progress` reports, whose steps done and expected come from the plan's
:class:`~napari_dip.engine.plan.StepCounter`. It is a plain generator: the widget hands it to
napari's ``create_worker`` (a thread worker whose ``yielded`` signal carries each report to
the GUI thread), and tests iterate it directly. Torch is imported here, on the worker thread,
when a run starts.
"""

from __future__ import annotations

import dataclasses
import os
import time
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..engine.layout import RunPlan
from ..spec import RunSpec
from .status import Progress, readable_device, seconds_left

PREVIEW_INTERVAL_S = 0.5
"""Least time between two preview-layer updates, so a fast GPU run cannot flood the GUI."""

WIDGET_HISTORY = 16
"""Checkpoints the widget keeps for its history slider when the settings ask for none."""


@dataclass
class RunInput:
    """A run's :class:`~napari_dip.spec.RunSpec` and what goes beside it, gathered on the GUI
    thread before the worker starts.

    Attributes
    ----------
    spec : RunSpec
        Every setting of the run (its ``channel_axis`` is the region's).
    data : array-like
        The region to restore, as the layer holds it (a lazy array is read on the worker).
    region : RunPlan
        Where ``data`` lies in the layer: its axes, the slices looped over, the fixed indices.
    mask : ndarray or None
        For inpainting: true where pixels are missing, shaped like the region's spatial axes.
    alpha : array-like or None
        An RGBA layer's alpha channel: kept as it is, not restored.
    psf : ndarray or None
        Deconvolution's PSF pixels (None for a model PSF, which ``spec.psf`` describes).
    """

    spec: RunSpec
    data: Any
    region: RunPlan
    mask: np.ndarray | None = None
    alpha: Any = None
    psf: np.ndarray | None = None


@dataclass
class RunState:
    """The run's outcome so far, written by the worker and read by the GUI once it finished.

    ``last`` is the latest :class:`~napari_dip.StackSnapshot`; its ``result`` holds every
    finished slice and the current slice's latest estimate, which is what Stop keeps.
    ``spec`` is the run's spec with the intensities the model's [0, 1] stood for; the CPU
    threads each fit ran with are in its snapshots (``threads``), from which the result
    layer's metadata pins them.
    """

    last: Any = None
    error: str | None = None
    spec: RunSpec | None = None


def explain_error(error: BaseException) -> str:
    """The full text for an error raised during a run: what happened and what to do."""
    text = str(error) or type(error).__name__
    if "out of memory" in text.lower() or type(error).__name__ == "OutOfMemoryError":
        return ("Deep Image Prior ran out of memory. Try the 'quick' preset, fewer channels or "
                "scales under Advanced, the current slice instead of the whole stack, a smaller "
                f"crop, or another device. ({text.splitlines()[0]})")
    if isinstance(error, ValueError):
        return f"Deep Image Prior cannot run: {text}"
    return (f"Deep Image Prior failed: {type(error).__name__}: {text}. The widget is ready for "
            f"another run; if this repeats, please report it with the settings you used.")


def restoration_steps(run_input: RunInput, state: RunState):
    """Run the restoration; yield a :class:`Progress` per snapshot (with a preview at most every
    PREVIEW_INTERVAL_S seconds and at the end of each slice); record the outcome in ``state``.

    Errors are caught and stored in ``state.error`` rather than raised: napari's generator
    worker treats a raised ``RuntimeError`` (which is what torch raises) as a deleted worker and
    drops it, so the GUI would never hear of it.
    """
    try:
        # the first torch import happens here, on the worker thread
        with cpu_threads_leaving_one_for_the_gui(run_input.spec.device):
            state.spec = run_input.spec  # "auto" threads: measured per fit, pinned in the record
            yield from _progress_of(run_input, state)
    except Exception as error:  # noqa: BLE001 (every failure becomes a notification)
        state.error = explain_error(error)
    return state


@contextmanager
def cpu_threads_leaving_one_for_the_gui(device: str):
    """On the CPU, fit with at most one thread fewer than the machine has, so the GUI thread
    keeps a core: with every core busy, torch's worker threads and napari's event loop contend
    and both slow down (``threads="auto"`` chooses between one thread and this many). The
    previous thread count is restored afterwards. Yields the count (None off the CPU)."""
    import torch

    from ..engine.device import select_device, torch_threads

    if select_device(device).type != "cpu":
        yield None
        return
    with torch_threads(max(1, min(torch.get_num_threads(), (os.cpu_count() or 2) - 1))) as n:
        yield n


def _with_history(spec: RunSpec) -> RunSpec:
    """``spec`` keeping :data:`WIDGET_HISTORY` checkpoints for the history slider when its
    settings ask for none. The history only watches the fit, so the run's own document (the
    result layer's metadata) stays ``spec``."""
    if spec.config().history:
        return spec
    return dataclasses.replace(spec, overrides={**spec.overrides, "history": WIDGET_HISTORY})


def input_as_output(data: np.ndarray, plan: RunPlan) -> np.ndarray:
    """A copy of the input region shaped like the output (enlarged by pixel repetition when
    super-resolving): what the preview shows where no slice has been fitted yet."""
    shown = np.array(data, copy=True)
    for axis in plan.axes.plane if plan.factor > 1 else ():
        shown = np.repeat(shown, plan.factor, axis=axis)
    return shown


def _progress_of(run_input: RunInput, state: RunState):
    """The body of :func:`restoration_steps`: the plan's snapshots in, :class:`Progress` out."""
    from ..engine.plan import plan, run

    data = np.asarray(run_input.data)
    planned = plan(data, _with_history(state.spec), mask=run_input.mask, psf=run_input.psf)
    state.spec = dataclasses.replace(state.spec, intensity_range=planned.intensity_range)
    background = input_as_output(data, run_input.region)
    counter = planned.step_counter()
    start, last_preview = time.perf_counter(), -np.inf
    for stack_step in run(planned):
        state.last = stack_step
        snapshot = stack_step.snapshot
        done, total = counter.update(stack_step)
        progress = Progress(
            slice_number=stack_step.slice_number, n_slices=stack_step.n_slices,
            iteration=snapshot.iteration, max_iterations=snapshot.max_iterations,
            tile=snapshot.tile, n_tiles=snapshot.n_tiles, backward=stack_step.pass_number == 1,
            steps_done=done, steps_total=total, loss=snapshot.loss,
            criterion=snapshot.criterion,
            seconds_left=seconds_left(time.perf_counter() - start, done, total),
            device=readable_device(snapshot.device, snapshot.precision),
            group_size=len(stack_step.group), run=snapshot.run,
            n_runs=planned.config.n_runs, stopping=snapshot.config.stopping,
            best_iteration=snapshot.best_iteration, patience=snapshot.config.patience,
            expected_iterations=counter.fit_length, background=background)
        background = None  # sent once, with the first report
        now = time.perf_counter()
        if snapshot.done or now - last_preview >= PREVIEW_INTERVAL_S:
            progress.previews = tuple((index, member.estimate) for index, member in
                                      zip(stack_step.group, stack_step.group_snapshots))
            last_preview = now
        yield progress

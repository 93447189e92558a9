"""The public Python API: :func:`restore`, :func:`iter_restore` and their stack versions."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from .config import DIPConfig, check_factor, check_task, get_config
from .device import describe_device, select_device
from .fit import FitStep, fit
from .networks import size_multiple
from .stack import (IntensityScaling, Observation, from_tensor, prepare_observation,
                    slice_layout, to_user_layout)


@dataclass
class Snapshot:
    """A view of a running restoration, in the caller's layout, dtype and intensity range.

    Attributes
    ----------
    iteration : int
        Optimisation steps done so far.
    max_iterations : int
        The run's step budget.
    loss : float
        The data term at this step (mean squared error in [0, 1] units).
    image : ndarray
        The generator's current output.
    average : ndarray
        The exponential moving average of the outputs (``ema_weight``).
    estimate : ndarray
        The result the run would return now (``image`` or ``average``, per ``config.result``).
    elapsed : float
        Seconds since the fit started.
    device : str
        Where it runs, e.g. ``"cpu (2 threads)"``.
    backtracks : int
        How often the divergence guard restored earlier weights.
    done : bool
        True for the last snapshot of the run.
    config : DIPConfig
        The settings of the run.
    """

    iteration: int
    max_iterations: int
    loss: float
    image: np.ndarray
    average: np.ndarray
    estimate: np.ndarray
    elapsed: float
    device: str
    backtracks: int
    done: bool
    config: DIPConfig


@dataclass
class StackSnapshot:
    """Progress of a slice-wise stack restoration.

    Attributes
    ----------
    index : tuple of int
        Index of the current slice along the stack axes (e.g. ``(t, z)``).
    slice_number, n_slices : int
        The current slice's position (0-based) and the number of slices.
    snapshot : Snapshot
        The current slice's snapshot (its ``estimate`` is a 2D result).
    result : ndarray
        The whole output stack as far as it got: finished slices and the current slice's latest
        estimate; slices not reached yet are 0. This array is updated in place by later
        snapshots: copy it to keep it.
    done : bool
        True once every slice is finished.
    """

    index: tuple[int, ...]
    slice_number: int
    n_slices: int
    snapshot: Snapshot
    result: np.ndarray
    done: bool


@dataclass
class _Run:
    config: DIPConfig
    factor: int | None
    device: torch.device
    seed: int


def _setup(task: str, mask, factor, preset, seed, device, max_iterations,
           settings: dict[str, Any]) -> _Run:
    """Check the options every entry point shares; build the config and pick the device."""
    check_task(task)
    factor = check_factor(task, factor)
    if task == "inpaint" and mask is None:
        raise ValueError("task='inpaint' needs mask=, an array that is true where pixels are missing")
    if task != "inpaint" and mask is not None:
        raise ValueError(f"mask= is only used by task='inpaint', not {task!r}")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    config = get_config(preset, task, factor, max_iterations=max_iterations, **settings)
    return _Run(config, factor, select_device(device), int(seed))


def _snapshots(observation: Observation, scaling: IntensityScaling, channel_axis: int | None,
               run: _Run, config: DIPConfig | None = None,
               warm: FitStep | None = None) -> Iterator[tuple[Snapshot, FitStep]]:
    """Fit one observation and convert each step into a user-facing snapshot."""
    config = config or run.config
    device = describe_device(run.device)
    network, code = (warm.network, warm.code) if warm is not None else (None, None)
    for step in fit(observation, config, seed=run.seed, device=run.device, network=network,
                    code=code):
        def user(tensor):
            return to_user_layout(from_tensor(tensor, observation.crop), scaling, channel_axis)

        image, average = user(step.output), user(step.average)
        yield Snapshot(iteration=step.iteration, max_iterations=config.max_iterations,
                       loss=step.loss, image=image, average=average,
                       estimate=average if config.result == "ema" else image,
                       elapsed=step.elapsed, device=device, backtracks=step.backtracks,
                       done=step.done, config=config), step


def iter_restore(image: np.ndarray, *, task: str = "denoise", mask: np.ndarray | None = None,
                 factor: int | None = None, guide: np.ndarray | None = None,
                 preset: str | DIPConfig = "paper", channel_axis: int | None = None, seed: int = 0,
                 device: str | None = None, max_iterations: int | None = None,
                 **settings: Any) -> Iterator[Snapshot]:
    """Restore a 2D image with Deep Image Prior, yielding a :class:`Snapshot` as the fit goes.

    Stop early by breaking out of the loop; the last snapshot received holds the best result
    so far. Parameters are those of :func:`restore`.
    """
    run = _setup(task, mask, factor, preset, seed, device, max_iterations, settings)
    observation, scaling = prepare_observation(image, mask=mask, factor=run.factor, guide=guide,
                                               channel_axis=channel_axis,
                                               size_multiple=size_multiple(run.config))
    for snapshot, _ in _snapshots(observation, scaling, channel_axis, run):
        yield snapshot


def restore(image: np.ndarray, *, task: str = "denoise", mask: np.ndarray | None = None,
            factor: int | None = None, guide: np.ndarray | None = None,
            preset: str | DIPConfig = "paper", channel_axis: int | None = None, seed: int = 0,
            device: str | None = None, max_iterations: int | None = None,
            **settings: Any) -> np.ndarray:
    """Restore a 2D image with Deep Image Prior.

    Parameters
    ----------
    image : (M, N[, C]) ndarray
        Greyscale, RGB or multichannel image of any integer or float dtype. It is not modified.
    task : {"denoise", "inpaint", "super_resolve"}
        The degradation to undo.
    mask : (M, N[, C]) ndarray, optional
        For ``task="inpaint"``: true (non-zero) where pixels are missing.
    factor : {2, 4, 8}, optional
        For ``task="super_resolve"``: the result is ``factor`` times larger on each side.
    guide : (M', N'[, C']) ndarray, optional
        An image of the same field (a flash photo, a cleaner channel) used as the network's
        input instead of random noise; ``M', N'`` are the result's sides.
    preset : str or DIPConfig
        ``"paper"`` (the paper's recipe for the task), ``"quick"``, or a config.
    channel_axis : int, optional
        The axis of ``image`` that holds channels; None for greyscale.
    seed : int
        Seeds the network's initialisation, its input code and the input perturbation.
    device : str, optional
        ``"cuda"``, ``"mps"``, ``"cpu"``; None picks the best available.
    max_iterations : int, optional
        Overrides the preset's number of steps.
    **settings
        Any other field of :class:`DIPConfig`, e.g. ``learning_rate=0.005``.

    Returns
    -------
    ndarray
        The restored image in the input's layout, dtype and intensity range (``factor`` times
        larger for super-resolution).
    """
    last = None
    for last in iter_restore(image, task=task, mask=mask, factor=factor, guide=guide,
                             preset=preset, channel_axis=channel_axis, seed=seed, device=device,
                             max_iterations=max_iterations, **settings):
        pass
    return last.estimate


def iter_restore_stack(image: np.ndarray, *, task: str = "denoise",
                       mask: np.ndarray | None = None, factor: int | None = None,
                       guide: np.ndarray | None = None, preset: str | DIPConfig = "paper",
                       channel_axis: int | None = None, seed: int = 0, device: str | None = None,
                       max_iterations: int | None = None,
                       **settings: Any) -> Iterator[StackSnapshot]:
    """Restore every 2D slice of a stack, yielding a :class:`StackSnapshot` as it goes.

    The last two non-channel axes are the image plane; every other axis (Z, T, ...) is looped
    over, slice by slice. Slice k continues from the weights fitted on slice k-1 for
    ``warm_start_fraction * max_iterations`` steps (the first slice gets the full schedule).
    All slices share one intensity scaling, taken from the whole stack. Parameters are those
    of :func:`restore_stack`.
    """
    run = _setup(task, mask, factor, preset, seed, device, max_iterations, settings)
    layout = slice_layout(image, channel_axis, mask=mask, guide=guide, factor=run.factor)
    config, warm_config = run.config, run.config
    if config.warm_start_fraction > 0:
        warm_config = config.replace(
            max_iterations=max(1, round(config.max_iterations * config.warm_start_fraction)))
    warm: FitStep | None = None
    for number, index in enumerate(layout.indices):
        observation, _ = prepare_observation(
            layout.slice(index), mask=layout.mask_slice(index), factor=run.factor,
            guide=layout.guide_slice(index), channel_axis=-1,
            size_multiple=size_multiple(config), scaling=layout.scaling)
        slice_config = warm_config if warm is not None else config
        for snapshot, step in _snapshots(observation, layout.scaling, -1, run, slice_config, warm):
            layout.put(index, snapshot.estimate)
            last_slice = number == len(layout.indices) - 1
            yield StackSnapshot(index=index, slice_number=number, n_slices=len(layout.indices),
                                snapshot=layout.user_snapshot(snapshot), result=layout.result,
                                done=snapshot.done and last_slice)
        warm = step if config.warm_start_fraction > 0 else None


def restore_stack(image: np.ndarray, *, task: str = "denoise", mask: np.ndarray | None = None,
                  factor: int | None = None, guide: np.ndarray | None = None,
                  preset: str | DIPConfig = "paper", channel_axis: int | None = None,
                  seed: int = 0, device: str | None = None, max_iterations: int | None = None,
                  **settings: Any) -> np.ndarray:
    """Restore a stack (Z, T, ... of 2D images) slice by slice.

    Parameters
    ----------
    image : (..., M, N) ndarray
        Any number of leading stack axes; with ``channel_axis``, one of the axes holds channels.
        A plain 2D image is a stack of one slice.
    mask : (M, N) or (..., M, N) ndarray, optional
        For inpainting: one mask for every slice, or one per slice (true = missing).
    guide : (M', N'[, C']) or (..., M', N'[, C']) ndarray, optional
        One guide for every slice, or one per slice.

    Other parameters are those of :func:`restore`; ``warm_start_fraction`` (a setting) controls
    how long slices after the first are fitted.

    Returns
    -------
    ndarray
        The restored stack in the input's layout and dtype (image plane ``factor`` times larger
        for super-resolution).
    """
    last = None
    for last in iter_restore_stack(image, task=task, mask=mask, factor=factor, guide=guide,
                                   preset=preset, channel_axis=channel_axis, seed=seed,
                                   device=device, max_iterations=max_iterations, **settings):
        pass
    return last.result


def run_record(snapshot: Snapshot) -> dict[str, Any]:
    """Parameters and outcome of a finished run, for metadata and JSON records."""
    return {"config": snapshot.config.to_dict(), "iterations": snapshot.iteration,
            "loss": snapshot.loss, "seconds": round(snapshot.elapsed, 3),
            "device": snapshot.device, "backtracks": snapshot.backtracks}


__all__ = ["Snapshot", "StackSnapshot", "iter_restore", "iter_restore_stack", "restore",
           "restore_stack", "run_record"]

"""The public Python API: :func:`restore` and :func:`iter_restore`."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from .config import DIPConfig, check_factor, check_task, get_config
from .device import describe_device, select_device
from .fit import FitStep, fit
from .networks import size_multiple
from .stack import IntensityScaling, from_tensor, prepare_observation, to_user_layout


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


def iter_restore(image: np.ndarray, *, task: str = "denoise", mask: np.ndarray | None = None,
                 factor: int | None = None, guide: np.ndarray | None = None,
                 preset: str | DIPConfig = "paper", channel_axis: int | None = None, seed: int = 0,
                 device: str | None = None, max_iterations: int | None = None,
                 **settings: Any) -> Iterator[Snapshot]:
    """Restore a 2D image with Deep Image Prior, yielding a :class:`Snapshot` as the fit goes.

    Stop early by breaking out of the loop; the last snapshot received holds the best result
    so far. Parameters are those of :func:`restore`.
    """
    check_task(task)
    factor = check_factor(task, factor)
    if task == "inpaint" and mask is None:
        raise ValueError("task='inpaint' needs mask=, an array that is true where pixels are missing")
    if task != "inpaint" and mask is not None:
        raise ValueError(f"mask= is only used by task='inpaint', not {task!r}")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    config = get_config(preset, task, factor, max_iterations=max_iterations, **settings)
    torch_device = select_device(device)
    observation, scaling = prepare_observation(image, mask=mask, factor=factor, guide=guide,
                                               channel_axis=channel_axis,
                                               size_multiple=size_multiple(config))
    described = describe_device(torch_device)
    for step in fit(observation, config, seed=int(seed), device=torch_device):
        yield _snapshot(step, observation.crop, scaling, channel_axis, config, described)


def _snapshot(step: FitStep, crop: tuple[int, int], scaling: IntensityScaling,
              channel_axis: int | None, config: DIPConfig, device: str) -> Snapshot:
    def user(tensor):
        return to_user_layout(from_tensor(tensor, crop), scaling, channel_axis)

    image, average = user(step.output), user(step.average)
    return Snapshot(iteration=step.iteration, max_iterations=config.max_iterations,
                    loss=step.loss, image=image, average=average,
                    estimate=average if config.result == "ema" else image,
                    elapsed=step.elapsed, device=device, backtracks=step.backtracks,
                    done=step.done, config=config)


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


def run_record(snapshot: Snapshot) -> dict[str, Any]:
    """Parameters and outcome of a finished run, for metadata and JSON records."""
    return {"config": snapshot.config.to_dict(), "iterations": snapshot.iteration,
            "loss": snapshot.loss, "seconds": round(snapshot.elapsed, 3),
            "device": snapshot.device, "backtracks": snapshot.backtracks}


__all__ = ["Snapshot", "iter_restore", "restore", "run_record"]

"""The public Python API: :func:`restore`, :func:`iter_restore` and their stack versions.

Each builds a :class:`~napari_dip.spec.RunSpec`, plans it (:func:`napari_dip.engine.plan.plan`:
every check before any fit) and runs the plan.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np

from .config import DEFAULT_HISTORY, DIPConfig
from .engine.plan import plan, run
from .engine.plane import Snapshot, run_record
from .engine.stack import StackSnapshot
from .io.psf import psf_source
from .spec import RunSpec


def _spec(task, factor, preset, seed, device, max_iterations, settings: dict[str, Any], *,
          threads="auto", channel_axis=None, intensity_range=None, psf=None) -> RunSpec:
    """The run an entry point's arguments describe (checked by :func:`plan`)."""
    overrides = dict(settings) if max_iterations is None else \
        {"max_iterations": max_iterations, **settings}
    return RunSpec(task=task, preset=preset, factor=factor, overrides=overrides, seed=seed,
                   device=device, threads=threads, channel_axis=channel_axis,
                   intensity_range=intensity_range, psf=psf)


def iter_restore(image: np.ndarray, *, task: str = "denoise", mask: np.ndarray | None = None,
                 factor: int | None = None, guide: np.ndarray | None = None,
                 preset: str | DIPConfig = "auto", channel_axis: int | None = None, seed: int = 0,
                 device: str | None = None, max_iterations: int | None = None, psf=None,
                 threads: int | str | None = "auto", **settings: Any) -> Iterator[Snapshot]:
    """Restore a 2D image with Deep Image Prior, yielding a :class:`Snapshot` as the fit goes.

    Stop early by breaking out of the loop; the last snapshot received holds the best result
    so far. Parameters are those of :func:`restore`.

    Examples
    --------
    >>> import numpy as np
    >>> import napari_dip
    >>> noisy = np.random.default_rng(0).random((48, 48), dtype=np.float32)
    >>> for snapshot in napari_dip.iter_restore(noisy, preset="quick", max_iterations=20,
    ...                                         report_every=10):
    ...     print(snapshot.iteration, snapshot.estimate.shape)
    10 (48, 48)
    20 (48, 48)
    """
    psf, description = psf_source(psf)
    spec = _spec(task, factor, preset, seed, device, max_iterations, settings,
                 threads=threads, channel_axis=channel_axis, psf=description)
    return run(plan(image, spec, mask=mask, guide=guide, psf=psf, stack=False))  # fails here


def restore(image: np.ndarray, *, task: str = "denoise", mask: np.ndarray | None = None,
            factor: int | None = None, guide: np.ndarray | None = None,
            preset: str | DIPConfig = "auto", channel_axis: int | None = None, seed: int = 0,
            device: str | None = None, max_iterations: int | None = None, psf=None,
            threads: int | str | None = "auto", return_uncertainty: bool = False,
            return_history: bool = False, **settings: Any) -> np.ndarray | tuple:
    """Restore a 2D image with Deep Image Prior.

    Parameters
    ----------
    image : (M, N[, C]) ndarray
        Greyscale, RGB or multichannel image of any integer or float dtype. It is not modified.
    task : {"denoise", "inpaint", "super_resolve", "deconvolve"}
        The degradation to undo.
    mask : (M, N[, C]) ndarray, optional
        For ``task="inpaint"``: true (non-zero) where pixels are missing.
    factor : {2, 4, 8}, optional
        For ``task="super_resolve"``: the result is ``factor`` times larger on each side.
    guide : (M', N'[, C']) ndarray, optional
        An image of the same field fed to the network instead of random noise (result's sides).
    psf : array_like or dict, optional
        For ``task="deconvolve"``: the 2D point-spread function, an array (normalised and
        centred here) or a description (:func:`psf_source`), e.g. ``{"model": "gaussian",
        "sigma": 1.5}``.
    preset : str or DIPConfig
        ``"auto"`` (stops by itself), ``"fast"``, ``"paper"``, ``"quick"``, ``"bayesian"``
        (with an uncertainty map; the README's preset table says what each is for), or a config.
    channel_axis : int, optional
        The axis of ``image`` that holds channels; None for greyscale.
    seed : int
        Seeds the network's initialisation, its input code and the input perturbation.
    device : str, optional
        ``"cuda"``, ``"cuda:N"``, ``"mps"``, ``"cpu"``; None or ``"auto"``: the best available.
    max_iterations : int, optional
        Overrides the preset's number of steps.
    threads : int, "auto" or None
        CPU threads for each fit; ``"auto"`` times a copy of each fit at one thread and at
        torch's count and runs at the faster; None keeps torch's. A CPU result repeats bit for
        bit only with the same count (each snapshot's ``threads``).
    return_uncertainty : bool
        Also return the per-pixel posterior standard deviation (Bayesian DIP; None for other
        methods, and when the run ended before two samples were drawn after ``burn_in``).
    return_history : bool
        Also return the run's checkpoints, to pick another point of the run: ``history`` of
        them (default :data:`napari_dip.config.DEFAULT_HISTORY`), see :mod:`.engine.run_history`.
    **settings
        Any other field of :class:`DIPConfig`, e.g. ``learning_rate=0.005``, or
        ``tile_size=256`` to restore a large image in overlapping, blended tiles.

    Returns
    -------
    ndarray
        The result in the input's layout, dtype and intensity range (``factor`` times larger).
    ndarray or None
        With ``return_uncertainty=True``: the uncertainty map, float32, in intensity units.
    list of Checkpoint
        With ``return_history=True`` (last in the tuple): the checkpoints by iteration, each
        with ``iteration``, ``elapsed``, ``loss``, ``criterion``, ``estimate`` and ``note``.

    Examples
    --------
    >>> import numpy as np, napari_dip
    >>> image = np.random.default_rng(0).random((48, 48), dtype=np.float32)
    >>> napari_dip.restore(image, preset="quick", max_iterations=10).shape
    (48, 48)
    >>> napari_dip.restore(image, task="super_resolve", factor=4, preset="quick",
    ...                    max_iterations=10).shape
    (192, 192)
    """
    if return_history:
        settings.setdefault("history", DEFAULT_HISTORY)
    last = None
    for last in iter_restore(image, task=task, mask=mask, factor=factor, guide=guide,
                             preset=preset, channel_axis=channel_axis, seed=seed, device=device,
                             max_iterations=max_iterations, psf=psf, threads=threads,
                             **settings):
        pass
    extras = ((last.uncertainty,) if return_uncertainty else ()) + \
        ((last.history.checkpoints,) if return_history else ())
    return (last.estimate, *extras) if extras else last.estimate


def iter_restore_stack(image: np.ndarray, *, task: str = "denoise",
                       mask: np.ndarray | None = None, factor: int | None = None,
                       guide: np.ndarray | None = None, preset: str | DIPConfig = "auto",
                       channel_axis: int | None = None, seed: int = 0, device: str | None = None,
                       max_iterations: int | None = None,
                       intensity_range: tuple[float, float] | None = None, psf=None,
                       threads: int | str | None = "auto",
                       **settings: Any) -> Iterator[StackSnapshot]:
    """Restore every 2D slice of a stack, yielding a :class:`StackSnapshot` as it goes.

    The last two non-channel axes are the image plane; every other axis (Z, T, ...) is looped
    over, slice by slice. Slice k continues from the weights fitted on slice k-1 for
    ``warm_start_fraction`` times the steps the first slice ran (the first slice gets the full
    schedule and its stopping rule); see :func:`warm_start_config`. With ``stack_passes=2`` a
    second pass goes back over the slices in reverse order, each continuing from the slice
    after it, and every slice's result becomes the mean of its two passes. All slices share one
    intensity scaling, taken from the whole stack. With ``tile_size``, each slice is restored
    in tiles, and tile k of a slice continues from tile k of the previous slice. With
    ``slice_batch=B``, B consecutive slices are fitted together by one generator (one input code
    each), group after group; each snapshot then stands for its group (``group``,
    ``group_snapshots``), with ``index`` and ``slice_number`` those of its last slice.
    Parameters are those of :func:`restore_stack`.
    """
    psf, description = psf_source(psf)
    spec = _spec(task, factor, preset, seed, device, max_iterations, settings, threads=threads,
                 channel_axis=channel_axis, intensity_range=intensity_range, psf=description)
    return run(plan(image, spec, mask=mask, guide=guide, psf=psf))  # bad input fails here


def restore_stack(image: np.ndarray, *, task: str = "denoise", mask: np.ndarray | None = None,
                  factor: int | None = None, guide: np.ndarray | None = None,
                  preset: str | DIPConfig = "auto", channel_axis: int | None = None,
                  seed: int = 0, device: str | None = None, max_iterations: int | None = None,
                  intensity_range: tuple[float, float] | None = None, psf=None,
                  threads: int | str | None = "auto", return_uncertainty: bool = False,
                  return_history: bool = False, **settings: Any) -> np.ndarray | tuple:
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
    intensity_range : (low, high), optional
        The intensities mapped to the network's [0, 1] (values outside are clipped). By default
        they are chosen from the whole stack (its pixels not masked out); give them to restore
        several stacks, or parts of one, with the same mapping.
    return_uncertainty : bool
        Also return the stack's uncertainty map (Bayesian DIP, ``preset="bayesian"``; None for
        presets that draw no posterior samples, and when no slice drew two samples).
    return_history : bool
        Also return each slice's checkpoints (as :func:`restore` does for one image).

    **settings
        Other parameters are those of :func:`restore`. ``warm_start_fraction`` (a setting)
        controls how long slices after the first are fitted.

    Returns
    -------
    ndarray
        The restored stack in the input's layout and dtype (image plane ``factor`` times larger
        for super-resolution).
    ndarray or None
        With ``return_uncertainty=True``: the uncertainty map, the result's shape, float32, in
        intensity units.
    dict
        With ``return_history=True`` (last in the returned tuple): each slice's index along
        the stack axes, e.g. ``(z,)``, to its list of checkpoints; a checkpoint's estimate is
        that slice's result had it been chosen there.

    Examples
    --------
    >>> import numpy as np
    >>> import napari_dip
    >>> stack = np.random.default_rng(0).random((3, 32, 32), dtype=np.float32)  # Z, Y, X
    >>> napari_dip.restore_stack(stack, preset="quick", max_iterations=10).shape
    (3, 32, 32)
    """
    if return_history:
        settings.setdefault("history", DEFAULT_HISTORY)
    last = None
    for last in iter_restore_stack(image, task=task, mask=mask, factor=factor, guide=guide,
                                   preset=preset, channel_axis=channel_axis, seed=seed,
                                   device=device, max_iterations=max_iterations,
                                   intensity_range=intensity_range, psf=psf, threads=threads,
                                   **settings):
        pass
    histories = {index: history.checkpoints for index, history in last.histories.items()}
    extras = ((last.uncertainty,) if return_uncertainty else ()) + \
        ((histories,) if return_history else ())
    return (last.result, *extras) if extras else last.result


__all__ = ["Snapshot", "StackSnapshot", "iter_restore", "iter_restore_stack", "psf_source",
           "restore", "restore_stack", "run_record"]

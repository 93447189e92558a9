"""The public Python API: :func:`restore`, :func:`iter_restore` and their stack versions."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from .config import DIPConfig, check_factor, check_seed, check_task, warm_start_config
from .engine.device import describe_device, select_device
from .engine.fit import FitStep, fit
from .engine.networks import size_multiple
from .presets import get_config
from .stack import (IntensityScaling, Observation, SliceLayout, channels_to_layout, checked_image,
                    from_tensor, guide_to_unit, map_blocks, prepare_observation)
from .tiling import Tile, TileBlender, plan_tiles


@dataclass
class Snapshot:
    """A view of a running restoration, in the caller's layout, dtype and intensity range.

    Attributes
    ----------
    iteration : int
        Optimisation steps done so far (on the current tile, when tiled; in the current run,
        with ``n_runs`` > 1).
    max_iterations : int
        The run's step budget (per tile and run, when tiled or with ``n_runs``).
    loss : float
        The objective at this step: the data term (mean squared error in [0, 1] units with
        ``data_term="gaussian"``, the Poisson deviance per pixel with ``"poisson"``, the squared
        error after a variance-stabilising transform with ``"poisson_gaussian"``) plus
        ``tv_weight`` times the total variation.
    image : ndarray
        The generator's current output.
    average : ndarray
        The exponential moving average of the outputs (``ema_weight``).
    estimate : ndarray
        The result the run would return now (``image`` or ``average``, per ``config.result``).
        When tiled, the blended mosaic of the tiles fitted so far with the current tile's
        estimate blended in, and the input (enlarged by pixel repetition for
        super-resolution) where no tile has been fitted yet; ``image``, ``average`` and
        ``uncertainty`` are the current tile's blended into the same mosaic.
    elapsed : float
        Seconds since the fit started (since the first tile's, when tiled).
    device : str
        Where it runs, e.g. ``"cpu (2 threads)"``.
    precision : str
        The arithmetic of the generator's forward pass: ``"float32"``, or ``"bfloat16"`` /
        ``"float16"`` under autocast (see ``DIPConfig.precision``).
    backtracks : int
        How often the divergence guard restored earlier weights.
    done : bool
        True for the last snapshot of the run.
    config : DIPConfig
        The settings of the run.
    uncertainty : ndarray or None
        Bayesian DIP (SGLD) only: the posterior standard deviation per pixel, in intensity
        units, once two samples have been drawn.
    criterion : float or None
        The stopping rule's current value (running variance or held-out error).
    best_iteration : int or None
        The stopping rule's best iteration so far; ``estimate`` is taken there.
    stopped : bool
        True when the stopping rule ended the run before ``max_iterations``.
    run : int
        Which of ``config.n_runs`` seeded runs this is (their results are averaged).
    tile, n_tiles : int
        Which tile of the image plane is being fitted (0-based), and how many there are
        (``config.tile_size``; 1 without tiling). ``done`` comes with the last tile.
    weight_noise : float
        Bayesian DIP (SGLD) only: the std of the Gaussian noise added to the weights after each
        step (``sgld_noise`` x learning rate, scaled to the data's noise with
        ``sgld_noise_scaling="noise"``); 0 otherwise.
    memory_format : str
        The generator's layout in memory, ``"channels_last"`` or ``"contiguous"`` (see
        ``DIPConfig.memory_format``): the same arithmetic rounded in another order, so a run
        repeats bit for bit only in the same layout.
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
    uncertainty: np.ndarray | None = None
    criterion: float | None = None
    best_iteration: int | None = None
    stopped: bool = False
    run: int = 0
    tile: int = 0
    n_tiles: int = 1
    precision: str = "float32"
    weight_noise: float = 0.0
    memory_format: str = "contiguous"


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
    pass_number : int
        0 for the forward pass over the slices; 1 for the optional backward pass
        (``stack_passes=2``), which visits the slices in reverse order, starting from the
        second-to-last. ``slice_number`` counts within the pass.
    group : tuple of index tuples
        The slices fitted together with this one (``slice_batch``), in stack order, ending with
        ``index``; just ``(index,)`` when slices are fitted one by one.
    group_snapshots : tuple of Snapshot
        The snapshot of every slice in ``group`` (the last is ``snapshot``).
    uncertainty : ndarray or None
        Bayesian DIP (SGLD) only: every slice's uncertainty map as far as it got, float32,
        shaped like ``result`` (a slice without one yet is 0), in intensity units; with
        ``stack_passes=2`` a slice's two passes are pooled. None until a slice has a map.
        Updated in place like ``result``.
    intensity_range : (float, float) or None
        The intensities that every slice's [0, 1] model range maps to, one for the whole
        stack (``intensity_range=`` of :func:`restore_stack` imposes it, e.g. to restore a
        part of the stack alike).
    """

    index: tuple[int, ...]
    slice_number: int
    n_slices: int
    snapshot: Snapshot
    result: np.ndarray
    done: bool
    pass_number: int = 0
    group: tuple[tuple[int, ...], ...] = ()
    group_snapshots: tuple[Snapshot, ...] = ()
    uncertainty: np.ndarray | None = None
    intensity_range: tuple[float, float] | None = None

    def __post_init__(self) -> None:
        if not self.group:
            self.group, self.group_snapshots = (self.index,), (self.snapshot,)


@dataclass
class _Run:
    config: DIPConfig
    factor: int | None
    device: torch.device
    seed: int


def _setup(task: str, mask, factor, preset, seed, device, max_iterations,
           settings: dict[str, Any], guide=None) -> _Run:
    """Check the options every entry point shares; build the config and pick the device."""
    check_task(task)
    factor = check_factor(task, factor)
    if task == "inpaint" and mask is None:
        raise ValueError("task='inpaint' needs mask=, an array that is true where pixels are "
                         "missing")
    if task != "inpaint" and mask is not None:
        raise ValueError(f"mask= is only used by task='inpaint', not {task!r}")
    check_seed(seed)
    config = get_config(preset, task, factor, max_iterations=max_iterations, **settings)
    if guide is not None and config.network == "deep_decoder":
        raise ValueError("the Deep Decoder takes no guide image; use network='skip' or "
                         "'hourglass' with guide=, or leave guide out")
    return _Run(config, factor, select_device(device), int(seed))


@dataclass
class _Images:
    """One fit step's images, ``(M, N, C)``: float32 in model units ([0, 1]) as a fit gives
    them, or converted by :func:`_in_intensities`."""

    image: np.ndarray
    average: np.ndarray
    estimate: np.ndarray
    uncertainty: np.ndarray | None


def _fit_runs(observation: Observation, run: _Run, config: DIPConfig,
              warm: list[FitStep] | None) -> Iterator[tuple[FitStep, list[_Images], int, bool]]:
    """Fit one observation ``n_runs`` times (seeds ``seed``, ``seed + 1``, ...), averaging the
    runs' estimates (and, for Bayesian DIP, pooling their posteriors: the uncertainty is the
    standard deviation of all runs' samples together); yield each step with its images cropped
    to the observation (one :class:`_Images` per slice of a batch), its run number and whether
    it is the last step of the last run. A step's ``elapsed`` counts the runs before it too.
    ``warm`` holds, per run, the fit to continue (a stack's previous slice): run r continues
    run r's weights and optimiser state, from its input code, or from this observation's own
    guide when it has one."""
    def crop(tensor, item):
        return None if tensor is None else from_tensor(tensor, observation.crop, item)

    finished: list[FitStep] = []
    for run_number in range(config.n_runs):
        network, code, optimizer_state = None, None, None
        previous = warm[run_number] if warm and run_number < len(warm) else None
        if previous is not None:
            network, optimizer_state = previous.network, previous.optimizer.state_dict()
            code = previous.code[:observation.target.shape[0]] if observation.guide is None \
                else observation.guide.to(previous.code.device)
        before = finished[-1].elapsed if finished else 0.0  # already counts earlier runs
        for step in fit(observation, config, seed=run.seed + run_number, device=run.device,
                        network=network, code=code, optimizer_state=optimizer_state):
            step = dataclasses.replace(step, elapsed=before + step.elapsed)
            estimate, uncertainty = _pooled(finished, step)
            images = [_Images(crop(step.output, item), crop(step.average, item),
                              crop(estimate, item), crop(uncertainty, item))
                      for item in range(observation.target.shape[0])]
            yield step, images, run_number, step.done and run_number == config.n_runs - 1
        finished.append(step)


def _pooled(finished: list[FitStep], step: FitStep) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The mean of the finished runs' estimates and ``step``'s, and the standard deviation of
    their posteriors pooled (each run's posterior mean and std; None unless every run has
    one)."""
    if not finished:
        return step.estimate, step.uncertainty
    runs = finished + [step]
    return _pool([r.estimate for r in runs], [r.uncertainty for r in runs])


def _pool(means: list[torch.Tensor], stds: list[torch.Tensor | None],
          ) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The mean of equally weighted posteriors (or estimates) and the standard deviation of
    their mixture: the root of the mean second moment less the squared mean (None unless every
    one has a standard deviation)."""
    mean = torch.stack(means).mean(0)
    if any(std is None for std in stds):
        return mean, None
    second_moment = torch.stack([std ** 2 + m ** 2 for m, std in zip(means, stds)]).mean(0)
    return mean, (second_moment - mean ** 2).clamp_min(0).sqrt()


def _in_intensities(images: _Images, scaling: IntensityScaling) -> _Images:
    """``images`` (model units) in the input's dtype and intensity range; the uncertainty in
    intensity units."""
    return _Images(*(scaling.from_unit(unit) for unit in
                     (images.image, images.average, images.estimate)),
                   uncertainty=None if images.uncertainty is None
                   else scaling.spread_from_unit(images.uncertainty))


def _snapshot(step: FitStep, images: _Images, run_number: int, *, done: bool,
              channel_axis: int | None, run: _Run, config: DIPConfig,
              **progress: Any) -> Snapshot:
    """A fit step as the user sees it: ``images``, converted by :func:`_in_intensities`, in
    the caller's layout."""
    def user(hwc):
        return None if hwc is None else channels_to_layout(hwc, channel_axis)

    fields = dict(iteration=step.iteration, max_iterations=config.max_iterations,
                  loss=step.loss, elapsed=step.elapsed, device=describe_device(run.device),
                  backtracks=step.backtracks, done=done, config=config,
                  criterion=step.criterion, best_iteration=step.best_iteration,
                  stopped=step.stopped, run=run_number, precision=step.precision,
                  weight_noise=step.weight_noise, memory_format=step.memory_format)
    fields.update(progress)
    return Snapshot(image=user(images.image), average=user(images.average),
                    estimate=user(images.estimate), uncertainty=user(images.uncertainty),
                    **fields)


def _restore_plane(image: np.ndarray, *, mask, guide, channel_axis: int | None,
                   scaling: IntensityScaling | None, run: _Run, config: DIPConfig,
                   warm: dict[int, list[FitStep]] | None = None,
                   ) -> Iterator[tuple[Snapshot, FitStep]]:
    """Restore one 2D problem: in one fit, or tile by tile when ``config.tile_size`` is set and
    the plane is larger than a tile. ``scaling`` imposes an intensity mapping (None: the
    image's own). ``warm`` maps tile numbers to the fits to continue from, one per run (a
    stack's previous slice); each tile takes its entry out as it starts, so that a finished
    tile's fit is not held for the rest of the plane."""
    tiles = None
    if config.tile_size:
        hwc, missing = checked_image(image, channel_axis, mask)
        tiles = _plan(hwc.shape[:2], config)
    if tiles is None or len(tiles) == 1:
        observation, scaling = prepare_observation(image, mask=mask, factor=run.factor,
                                                   guide=guide, channel_axis=channel_axis,
                                                   size_multiple=size_multiple(config),
                                                   scaling=scaling)
        for step, (images,), run_number, last in _fit_runs(observation, run, config,
                                                           (warm or {}).pop(0, None)):
            yield _snapshot(step, _in_intensities(images, scaling), run_number, done=last,
                            channel_axis=channel_axis, run=run, config=config), step
        return
    yield from _restore_tiles(hwc, tiles, missing=missing, guide=guide, channel_axis=channel_axis,
                              scaling=scaling, run=run, config=config, warm=warm)


def _plan(plane: tuple[int, int], config: DIPConfig) -> list[Tile]:
    """The tiles a plane of ``plane`` input pixels is restored in (one: the whole plane)."""
    return plan_tiles(plane, config.tile_size, config.tile_overlap, config.tile_above)


def _restore_tiles(hwc: np.ndarray, tiles: list[Tile], *, missing: np.ndarray | None, guide,
                   channel_axis: int | None, scaling: IntensityScaling | None, run: _Run,
                   config: DIPConfig,
                   warm: dict[int, list[FitStep]] | None) -> Iterator[tuple[Snapshot, FitStep]]:
    """Fit every tile of ``hwc`` (``missing``: its checked inpainting mask, or None) with the
    same config and seed and the whole image's intensity scaling, and blend the tiles'
    estimates (see :mod:`.tiling`). Every tile holds known pixels: the entry points checked
    that before any fit (:func:`_check_plane`, :func:`_check_stack`)."""
    factor = run.factor or 1
    scaling = scaling or IntensityScaling.from_image(hwc, missing)
    if missing is not None:
        missing = missing[..., 0] if missing.shape[2] == 1 else missing  # a mask as given
    shape = (hwc.shape[0] * factor, hwc.shape[1] * factor)
    if guide is not None:
        guide = guide_to_unit(guide, shape)  # one scaling for the whole guide, then cut
    background = np.nan_to_num(scaling.to_unit(hwc), copy=False)  # masked pixels may hold NaN
    if factor > 1:
        background = background.repeat(factor, axis=0).repeat(factor, axis=1)
    # the mosaics are kept in intensities: a snapshot converts only the tile it blends in
    estimates = TileBlender(shape, hwc.shape[2], factor=factor, background=background,
                            convert=scaling.from_unit)
    uncertainties: TileBlender | None = None
    start = time.perf_counter()
    for number, tile in enumerate(tiles):
        observation, _ = prepare_observation(
            tile.cut(hwc), mask=None if missing is None else tile.cut(missing),
            factor=run.factor, guide=None if guide is None else tile.cut(guide, factor),
            channel_axis=-1, size_multiple=size_multiple(config), scaling=scaling)
        last_tile = number == len(tiles) - 1
        for step, (images,), run_number, last in _fit_runs(observation, run, config,
                                                           (warm or {}).pop(number, None)):
            if images.uncertainty is not None and uncertainties is None:
                uncertainties = TileBlender(shape, hwc.shape[2], factor=factor,
                                            convert=scaling.spread_from_unit)
            mosaic = _Images(
                *(estimates.mosaic(tile, values) for values in
                  (images.image, images.average, images.estimate)),
                uncertainty=None if uncertainties is None
                else uncertainties.mosaic(tile, images.uncertainty))
            yield _snapshot(step, mosaic, run_number, done=last and last_tile,
                            channel_axis=channel_axis, run=run, config=config,
                            elapsed=time.perf_counter() - start, tile=number,
                            n_tiles=len(tiles)), step
        estimates.add(tile, images.estimate)
        if images.uncertainty is not None:
            uncertainties.add(tile, images.uncertainty)


def iter_restore(image: np.ndarray, *, task: str = "denoise", mask: np.ndarray | None = None,
                 factor: int | None = None, guide: np.ndarray | None = None,
                 preset: str | DIPConfig = "auto", channel_axis: int | None = None, seed: int = 0,
                 device: str | None = None, max_iterations: int | None = None,
                 **settings: Any) -> Iterator[Snapshot]:
    """Restore a 2D image with Deep Image Prior, yielding a :class:`Snapshot` as the fit goes.

    Stop early by breaking out of the loop; the last snapshot received holds the best result
    so far. Parameters are those of :func:`restore`.
    """
    run = _setup(task, mask, factor, preset, seed, device, max_iterations, settings,
                 guide)
    _check_plane(image, mask=mask, guide=guide, channel_axis=channel_axis, run=run,
                 config=run.config)  # bad input fails here, not at the first next()
    return (snapshot for snapshot, _ in _restore_plane(
        image, mask=mask, guide=guide, channel_axis=channel_axis, scaling=None, run=run,
        config=run.config))


def restore(image: np.ndarray, *, task: str = "denoise", mask: np.ndarray | None = None,
            factor: int | None = None, guide: np.ndarray | None = None,
            preset: str | DIPConfig = "auto", channel_axis: int | None = None, seed: int = 0,
            device: str | None = None, max_iterations: int | None = None,
            return_uncertainty: bool = False,
            **settings: Any) -> np.ndarray | tuple[np.ndarray, np.ndarray | None]:
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
        ``"auto"`` (automatic stopping; denoising with a slim network, inpainting and
        super-resolution with the paper's), ``"fast"`` (small networks for every task and a
        shorter patience), ``"paper"`` (the paper's recipe for the task, fixed iteration
        count), ``"quick"`` (small and short), ``"bayesian"`` (SGLD posterior mean and
        uncertainty), or a config.
    channel_axis : int, optional
        The axis of ``image`` that holds channels; None for greyscale.
    seed : int
        Seeds the network's initialisation, its input code and the input perturbation.
    device : str, optional
        ``"cuda"`` (or ``"cuda:N"``), ``"mps"``, ``"cpu"``; None or ``"auto"`` picks the best
        available.
    max_iterations : int, optional
        Overrides the preset's number of steps.
    return_uncertainty : bool
        Also return the per-pixel posterior standard deviation (Bayesian DIP: preset
        ``"bayesian"`` or ``sgld_noise > 0``; None for other methods, and when the run ended
        before two samples were drawn after ``burn_in``).
    **settings
        Any other field of :class:`DIPConfig`, e.g. ``learning_rate=0.005``, or
        ``tile_size=256`` to restore a large image in overlapping tiles, one fit each, whose
        estimates are blended smoothly (see :mod:`napari_dip.tiling`).

    Returns
    -------
    ndarray
        The restored image in the input's layout, dtype and intensity range (``factor`` times
        larger for super-resolution).
    ndarray or None
        With ``return_uncertainty=True``: the uncertainty map, the result's shape, float32, in
        intensity units.
    """
    last = None
    for last in iter_restore(image, task=task, mask=mask, factor=factor, guide=guide,
                             preset=preset, channel_axis=channel_axis, seed=seed, device=device,
                             max_iterations=max_iterations, **settings):
        pass
    return (last.estimate, last.uncertainty) if return_uncertainty else last.estimate


def iter_restore_stack(image: np.ndarray, *, task: str = "denoise",
                       mask: np.ndarray | None = None, factor: int | None = None,
                       guide: np.ndarray | None = None, preset: str | DIPConfig = "auto",
                       channel_axis: int | None = None, seed: int = 0, device: str | None = None,
                       max_iterations: int | None = None,
                       intensity_range: tuple[float, float] | None = None,
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
    layout, run = checked_stack(image, task=task, mask=mask, factor=factor, guide=guide,
                                preset=preset, channel_axis=channel_axis, seed=seed,
                                device=device, max_iterations=max_iterations,
                                intensity_range=intensity_range, **settings)
    return _iter_stack(layout, run)  # bad input failed above, not at the first next()


def checked_stack(image: np.ndarray, *, task: str = "denoise", mask=None, factor=None,
                  guide=None, preset: str | DIPConfig = "auto", channel_axis=None, seed: int = 0,
                  device: str | None = None, max_iterations: int | None = None,
                  intensity_range: tuple[float, float] | None = None,
                  **settings: Any) -> tuple[SliceLayout, _Run]:
    """What :func:`iter_restore_stack` checks before any fit (every option, every slice's
    image, mask and guide), and the stack's layout and intensity scaling it would run with.
    For a stack split over Dask tasks, whose first task checks it whole."""
    run = _setup(task, mask, factor, preset, seed, device, max_iterations, settings,
                 guide)
    layout = SliceLayout(image, channel_axis, mask=mask, guide=guide, factor=run.factor,
                         intensity_range=intensity_range)
    _check_stack(layout, run)
    return layout, run


def _check_plane(image, *, mask, guide, channel_axis: int | None, run: _Run, config: DIPConfig,
                 scaling: IntensityScaling | None = None) -> None:
    """Refuse, before any fit, a 2D problem that its fit would refuse: the image and mask
    (:func:`checked_image`), an intensity range float64 cannot scale (unless ``scaling`` is
    imposed), the guide's shape and values, and tiles that lie wholly in the mask."""
    hwc, missing = checked_image(image, channel_axis, mask)
    if scaling is None:
        IntensityScaling.from_image(hwc, missing)
    factor = run.factor or 1
    if guide is not None:
        guide_to_unit(guide, (hwc.shape[0] * factor, hwc.shape[1] * factor))
    if config.tile_size and missing is not None:
        _refuse_tiles_without_pixels(missing, _plan(hwc.shape[:2], config))


def _refuse_tiles_without_pixels(missing: np.ndarray, tiles: list[Tile]) -> None:
    """Refuse tiles that lie wholly in the mask (``missing``, ``(M, N[, C])``): their fit would
    have no known pixel."""
    if len(tiles) < 2:
        return
    missing = missing[..., 0] if missing.ndim == 3 and missing.shape[2] == 1 else missing
    for number, tile in enumerate(tiles):
        if tile.cut(missing).all():
            raise ValueError(
                f"tile {number + 1} of {len(tiles)} (rows {tile.rows.start}:"
                f"{tile.rows.stop}, columns {tile.cols.start}:{tile.cols.stop}) lies wholly "
                f"in the mask, so it has no known pixel to fit; raise tile_size so that "
                f"every tile holds known pixels, or set tile_size=0")


def _check_stack(layout: SliceLayout, run: _Run) -> None:
    """Refuse, before any slice is fitted, what a slice's fit would refuse: every slice with a
    mask or guide of its own (the message names the slice), else the first, which stands for
    them all; and settings that ``slice_batch`` cannot run."""
    config = run.config
    for index in layout.indices if layout.slices_differ else layout.indices[:1]:
        try:
            _check_plane(layout.slice(index), mask=layout.mask_slice(index),
                         guide=layout.guide_slice(index), channel_axis=-1, run=run,
                         config=config, scaling=layout.scaling)
        except ValueError as error:
            if len(layout.indices) == 1:
                raise
            raise ValueError(f"slice {index}: {error}") from error
    if config.slice_batch > 1 and len(layout.indices) > 1:
        plane = layout.slice(layout.indices[0]).shape[:2]
        if config.tile_size and len(_plan(plane, config)) > 1:
            raise ValueError(f"slice_batch={config.slice_batch} cannot fit slices of "
                             f"{plane[0]}x{plane[1]} pixels, which tile_size={config.tile_size}"
                             f" (tile_above={config.tile_above}) cuts into tiles; set "
                             f"tile_size=0 to fit each slice whole, or set slice_batch=1")
        if layout.one_guide:
            _refuse_one_guide_for_a_batch(config)


def _refuse_one_guide_for_a_batch(config: DIPConfig) -> None:
    raise ValueError(f"slice_batch={config.slice_batch} with one guide for every slice gives "
                     f"the slices of a batch the same input, so the generator cannot tell them "
                     f"apart; pass one guide per slice, or set slice_batch=1")


def _iter_stack(layout: SliceLayout, run: _Run) -> Iterator[StackSnapshot]:
    """The stack runner of :func:`iter_restore_stack`."""
    config = run.config
    n_slices = len(layout.indices)
    if config.slice_batch > 1 and n_slices > 1:
        yield from _iter_slice_batches(layout, run)
        return
    backward = config.stack_passes == 2 and n_slices > 1
    passes = [layout.indices] + ([layout.indices[::-1]] if backward else [])
    warm = _WarmStart(config)  # holds the previous slice's fit, per tile
    for pass_number, order in enumerate(passes):
        last_pass = pass_number == len(passes) - 1
        for number, index in enumerate(order):
            if pass_number and number == 0:
                continue  # the backward pass starts where the forward pass ended
            forward = layout.get(index) if pass_number else None  # its forward result
            fitted: dict[int, dict[int, FitStep]] = {}  # tile -> run -> its last step
            for snapshot, step in _restore_plane(
                    layout.slice(index), mask=layout.mask_slice(index),
                    guide=layout.guide_slice(index), channel_axis=-1, scaling=layout.scaling,
                    run=run, config=warm.config, warm=warm.fit):
                estimate, uncertainty = snapshot.estimate, snapshot.uncertainty
                if pass_number:  # the two passes' results, averaged
                    estimate, uncertainty = _two_passes(forward, (estimate, uncertainty))
                layout.put(index, estimate, uncertainty)
                yield StackSnapshot(index=index, slice_number=number, n_slices=n_slices,
                                    snapshot=layout.user_snapshot(snapshot), result=layout.result,
                                    done=snapshot.done and last_pass and number == n_slices - 1,
                                    pass_number=pass_number, uncertainty=layout.uncertainty,
                                    intensity_range=layout.scaling.range)
                fitted.setdefault(snapshot.tile, {})[snapshot.run] = warm.kept(
                    step, continued=not (last_pass and number == len(order) - 1))
            # a tiled slice's length is the mean over its tiles (and runs)
            warm.fitted({tile: list(runs.values()) for tile, runs in fitted.items()},
                        np.mean([step.iteration for runs in fitted.values()
                                 for step in runs.values()]))


class _WarmStart:
    """A stack's warm start: each fit after the first continues from the previous one
    (:attr:`fit`) on the short schedule that the first fit's length sets (:attr:`config`)."""

    def __init__(self, config: DIPConfig) -> None:
        self.first = config
        self.config = config
        self.fit = None  # what the next fit continues from; None: a fresh start

    def kept(self, step: FitStep, *, continued: bool = True) -> FitStep:
        """What of a fit step a stack keeps until its slice is done: its iteration, and the
        network, optimiser and code a warm start continues (only if a fit will: ``continued``);
        not its images, which the snapshots already carry, nor, once its fit is done, its
        gradients. A large tiled plane keeps one per tile."""
        images = dict(output=None, average=None, estimate=None, uncertainty=None)
        if self.first.warm_start_fraction == 0 or not continued:
            return dataclasses.replace(step, network=None, optimizer=None, code=None, **images)
        if step.done:  # the next fit computes its own gradients
            step.network.zero_grad(set_to_none=True)
        return dataclasses.replace(step, **images)

    def fitted(self, fit, iterations: float) -> None:
        """Record a finished fit of ``iterations`` steps (a no-op without warm start)."""
        if self.first.warm_start_fraction == 0:
            return
        if self.fit is None:
            self.config = warm_start_config(self.first, int(round(iterations)))
        self.fit = fit


def _iter_slice_batches(layout: SliceLayout, run: _Run) -> Iterator[StackSnapshot]:
    """The stack runner with ``slice_batch`` > 1: groups of consecutive slices, each group
    fitted by one generator in one batch (one input code per slice); a group continues from
    the previous group's weights and codes, on the warm-start schedule."""
    config, indices = run.config, layout.indices  # checked by _check_stack
    groups = [indices[start:start + config.slice_batch]
              for start in range(0, len(indices), config.slice_batch)]
    warm = _WarmStart(config)
    first_slice = 0
    for group_number, group in enumerate(groups):
        last_group = group_number == len(groups) - 1
        fitted: dict[int, FitStep] = {}  # run -> its last step
        for snapshots, step in _fit_group(layout, group, run, warm.config, warm.fit):
            fitted[snapshots[-1].run] = warm.kept(step, continued=not last_group)
            for index, snapshot in zip(group, snapshots):
                layout.put(index, snapshot.estimate, snapshot.uncertainty)
            user = tuple(layout.user_snapshot(snapshot) for snapshot in snapshots)
            yield StackSnapshot(index=group[-1], slice_number=first_slice + len(group) - 1,
                                n_slices=len(indices), snapshot=user[-1], result=layout.result,
                                done=user[-1].done and last_group, group=tuple(group),
                                group_snapshots=user, uncertainty=layout.uncertainty,
                                intensity_range=layout.scaling.range)
        first_slice += len(group)
        warm.fitted(list(fitted.values()), np.mean([step.iteration for step in fitted.values()]))


def _fit_group(layout: SliceLayout, group: list[tuple[int, ...]], run: _Run, config: DIPConfig,
               warm: list[FitStep] | None) -> Iterator[tuple[list[Snapshot], FitStep]]:
    """Fit the slices ``group`` together: their observations stacked along the batch axis."""
    prepared = [prepare_observation(layout.slice(index), mask=layout.mask_slice(index),
                                    factor=run.factor, guide=layout.guide_slice(index),
                                    channel_axis=-1, size_multiple=size_multiple(config),
                                    scaling=layout.scaling) for index in group]
    parts = [observation for observation, _ in prepared]

    def stacked(name: str) -> torch.Tensor | None:
        values = [getattr(part, name) for part in parts]
        return None if values[0] is None else torch.cat(values)

    observation = dataclasses.replace(parts[0], target=stacked("target"),
                                      weight=stacked("weight"), guide=stacked("guide"))
    if observation.guide is not None and len(parts) > 1 and all(
            torch.equal(parts[0].guide, part.guide) for part in parts[1:]):
        _refuse_one_guide_for_a_batch(config)  # guides of their own, but alike
    for step, images, run_number, last in _fit_runs(observation, run, config, warm):
        yield [_snapshot(step, _in_intensities(item, scaling), run_number, done=last,
                         channel_axis=-1, run=run, config=config)
               for item, (_, scaling) in zip(images, prepared)], step


def _two_passes(first: tuple[np.ndarray, np.ndarray | None],
                second: tuple[np.ndarray, np.ndarray | None],
                ) -> tuple[np.ndarray, np.ndarray | None]:
    """A slice's result after both passes (``stack_passes=2``) from each pass's
    ``(estimate, uncertainty)``, in the input's dtype: the mean of the two estimates, and their
    two posteriors pooled (Bayesian DIP). Pooled in float64, a block of rows at a time."""
    dtype = first[0].dtype

    def pooled(*blocks):  # two estimates' blocks, then two standard deviations' (if any)
        tensors = [torch.from_numpy(block.astype(np.float64)) for block in blocks]
        return _pool(tensors[:2], tensors[2:] or [None, None])

    def mean(*blocks):
        values = pooled(*blocks)[0].numpy()
        return np.rint(values) if dtype.kind in "ui" else values

    estimate = map_blocks(mean, first[0], second[0], dtype=dtype)
    if first[1] is None or second[1] is None:
        return estimate, None
    return estimate, map_blocks(lambda *blocks: pooled(*blocks)[1].numpy(), first[0], second[0],
                                first[1], second[1], dtype=np.float32)


def restore_stack(image: np.ndarray, *, task: str = "denoise", mask: np.ndarray | None = None,
                  factor: int | None = None, guide: np.ndarray | None = None,
                  preset: str | DIPConfig = "auto", channel_axis: int | None = None,
                  seed: int = 0, device: str | None = None, max_iterations: int | None = None,
                  intensity_range: tuple[float, float] | None = None,
                  return_uncertainty: bool = False,
                  **settings: Any) -> np.ndarray | tuple[np.ndarray, np.ndarray | None]:
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
    """
    last = None
    for last in iter_restore_stack(image, task=task, mask=mask, factor=factor, guide=guide,
                                   preset=preset, channel_axis=channel_axis, seed=seed,
                                   device=device, max_iterations=max_iterations,
                                   intensity_range=intensity_range, **settings):
        pass
    return (last.result, last.uncertainty) if return_uncertainty else last.result


def run_record(snapshot: Snapshot) -> dict[str, Any]:
    """Parameters and outcome of a finished run, for metadata and JSON records."""
    return {"config": snapshot.config.to_dict(), "iterations": snapshot.iteration,
            "loss": snapshot.loss, "seconds": round(snapshot.elapsed, 3),
            "device": snapshot.device, "precision": snapshot.precision,
            "memory_format": snapshot.memory_format,
            "backtracks": snapshot.backtracks, "weight_noise": snapshot.weight_noise,
            "stopped_early": snapshot.stopped, "best_iteration": snapshot.best_iteration}


__all__ = ["Snapshot", "StackSnapshot", "iter_restore", "iter_restore_stack", "restore",
           "restore_stack", "run_record"]

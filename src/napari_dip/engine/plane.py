"""Plane-level work: one 2D problem fitted whole or tile by tile, ``n_runs`` seeded runs each.

:func:`restore_plane` yields a :class:`Snapshot` per fit step, in the caller's layout, dtype
and intensity range. Runs with seeds ``seed``, ``seed + 1``, ... are averaged (their posteriors
pooled, for Bayesian DIP); tiles are blended into one mosaic (:mod:`.tiling`).
"""

from __future__ import annotations

import copy
import dataclasses
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from ..config import DIPConfig, warm_start_config
from ..spec import fit_outcome
from .device import describe_device
from .fit import FitStep, fit
from .history import History
from .networks import size_multiple
from .problem import (CheckedPlane, Observation, channels_to_layout, from_tensor, guide_to_unit,
                      observation_of)
from .scaling import IntensityScaling
from .tiling import Tile, TileBlender


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
        ``tv_weight`` times the total variation (in noise units with ``tv_scaling="noise"``).
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
    history : History or None
        The plane's checkpoints so far, when the run keeps a history (``config.history``;
        see :mod:`.run_history`): the same object, updated as the run goes; None otherwise.
    noise_estimate : dict or None
        With ``data_term="auto"``: the data term chosen and the noise model (gain and read
        variance, in intensity units) estimated from the image or stack it was chosen from.
    threads : int or None
        The CPU threads this fit runs with (None off the CPU): on a CPU the count changes the
        arithmetic, so a run repeats bit for bit only with the same count (``threads="auto"``
        measures which is faster before each fit: :mod:`napari_dip.engine.threads`).
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
    history: History | None = None
    noise_estimate: dict | None = None
    threads: int | None = None


def run_record(snapshot: Snapshot) -> dict[str, Any]:
    """Settings and outcome of a finished fit, for metadata and JSON records: the settings
    (``"config"``) and :func:`napari_dip.spec.fit_outcome`, which a batch run record lists per
    slice."""
    return {"config": snapshot.config.to_dict(), **fit_outcome(snapshot)}


@dataclass
class Images:
    """One fit step's images, ``(M, N, C)``: float32 in model units ([0, 1]) as a fit gives
    them, or converted by :func:`in_intensities`."""

    image: np.ndarray
    average: np.ndarray
    estimate: np.ndarray
    uncertainty: np.ndarray | None


def fit_runs(observation: Observation, plan, config: DIPConfig, warm: list[FitStep] | None,
             ) -> Iterator[tuple[FitStep, list[Images], int, bool]]:
    """Fit one observation ``n_runs`` times (seeds ``seed``, ``seed + 1``, ...), averaging the
    runs' estimates (and, for Bayesian DIP, pooling their posteriors: the uncertainty is the
    standard deviation of all runs' samples together); yield each step with its images cropped
    to the observation (one :class:`Images` per slice of a batch), its run number and whether
    it is the last step of the last run. A step's ``elapsed`` counts the runs before it too.
    ``warm`` holds, per run, the fit to continue (a stack's previous slice): run r continues
    run r's weights and optimiser state, from its input code, or from this observation's own
    guide when it has one. ``plan`` gives the seed, the device and each fit's CPU threads."""
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
        fit_options = dict(seed=plan.seed + run_number, network=network, code=code,
                           optimizer_state=optimizer_state)
        with plan.cpu_threads.fitting(observation, config, **fit_options) as threads:
            for step in fit(observation, config, device=plan.device, psf=plan.psf,
                            **fit_options):
                step = dataclasses.replace(step, elapsed=before + step.elapsed, threads=threads)
                estimate, uncertainty = _pooled(finished, step)
                images = [Images(crop(step.output, item), crop(step.average, item),
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
    return pool([r.estimate for r in runs], [r.uncertainty for r in runs])


def pool(means: list[torch.Tensor], stds: list[torch.Tensor | None],
         ) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The mean of equally weighted posteriors (or estimates) and the standard deviation of
    their mixture: the root of the mean second moment less the squared mean (None unless every
    one has a standard deviation)."""
    mean = torch.stack(means).mean(0)
    if any(std is None for std in stds):
        return mean, None
    second_moment = torch.stack([std ** 2 + m ** 2 for m, std in zip(means, stds)]).mean(0)
    return mean, (second_moment - mean ** 2).clamp_min(0).sqrt()


def in_intensities(images: Images, scaling: IntensityScaling) -> Images:
    """``images`` (model units) in the input's dtype and intensity range; the uncertainty in
    intensity units."""
    return Images(*(scaling.from_unit(unit) for unit in
                    (images.image, images.average, images.estimate)),
                  uncertainty=None if images.uncertainty is None
                  else scaling.spread_from_unit(images.uncertainty))


def make_snapshot(step: FitStep, images: Images, run_number: int, *, done: bool,
                  channel_axis: int | None, plan, config: DIPConfig,
                  **progress: Any) -> Snapshot:
    """A fit step as the user sees it: ``images``, converted by :func:`in_intensities`, in
    the caller's layout."""
    def user(hwc):
        return None if hwc is None else channels_to_layout(hwc, channel_axis)

    fields = dict(iteration=step.iteration, max_iterations=config.max_iterations,
                  loss=step.loss, elapsed=step.elapsed, device=describe_device(plan.device),
                  backtracks=step.backtracks, done=done, config=config,
                  criterion=step.criterion, best_iteration=step.best_iteration,
                  stopped=step.stopped, run=run_number, precision=step.precision,
                  weight_noise=step.weight_noise, memory_format=step.memory_format,
                  noise_estimate=plan.noise_estimate, threads=step.threads)
    fields.update(progress)
    return Snapshot(image=user(images.image), average=user(images.average),
                    estimate=user(images.estimate), uncertainty=user(images.uncertainty),
                    **fields)


def restore_plane(plane: CheckedPlane, tiles: list[Tile], *, channel_axis: int | None, plan,
                  config: DIPConfig, warm: dict[int, list[FitStep]] | None = None,
                  ) -> Iterator[tuple[Snapshot, FitStep]]:
    """Restore one checked 2D problem: in one fit, or tile by tile (``tiles``, as the plan
    cut the plane). ``warm`` maps tile numbers to the fits to continue from, one per run (a
    stack's previous slice); each tile takes its entry out as it starts, so that a finished
    tile's fit is not held for the rest of the plane."""
    if len(tiles) > 1:
        yield from _restore_tiles(plane, tiles, channel_axis=channel_axis, plan=plan,
                                  config=config, warm=warm)
        return
    observation, scaling = observation_of(plane.hwc, plane.missing, factor=plan.factor,
                                          guide=plane.guide, size_multiple=size_multiple(config),
                                          scaling=plane.scaling)
    for step, (images,), run_number, last in fit_runs(observation, plan, config,
                                                      (warm or {}).pop(0, None)):
        yield make_snapshot(step, in_intensities(images, scaling), run_number, done=last,
                            channel_axis=channel_axis, plan=plan, config=config), step


class NeighbourStart:
    """A plane's tiles with ``tile_warm_start``: each tile after the first that has no fit of
    its own to continue (a stack's previous slice) continues from the tile fitted before it, on
    the short schedule of :func:`~napari_dip.config.warm_start_config` that the first such
    tile's length sets. Neighbouring tiles share the image's noise and textures, so the
    weights fitted to one start the next past the early climb."""

    def __init__(self, config: DIPConfig) -> None:
        self.first = config
        self.config = config
        self.fits: list[FitStep] | None = None

    def fitted(self, fits: list[FitStep], *, continued: bool) -> None:
        """Record a tile's finished runs (their last steps); ``continued``: another tile
        follows."""
        if self.first.tile_warm_start == 0 or not continued or not fits:
            self.fits = None
            return
        if self.config is self.first:  # the first tile sets the schedule
            iterations = int(round(np.mean([step.iteration for step in fits])))
            self.config = warm_start_config(self.first, iterations,
                                            fraction=self.first.tile_warm_start)
        # copies: the next tile changes what it continues in place, and a stack keeps this
        # tile's own fit for the same tile of its next slice
        self.fits = []
        for step in fits:
            step.network.zero_grad(set_to_none=True)
            network, optimizer = copy.deepcopy((step.network, step.optimizer))
            self.fits.append(dataclasses.replace(step, network=network, optimizer=optimizer,
                                                 output=None, average=None, estimate=None,
                                                 uncertainty=None))


def _restore_tiles(plane: CheckedPlane, tiles: list[Tile], *, channel_axis: int | None, plan,
                   config: DIPConfig, warm: dict[int, list[FitStep]] | None,
                   ) -> Iterator[tuple[Snapshot, FitStep]]:
    """Fit every tile of the plane with the same config and seed and the whole plane's
    intensity scaling, and blend the tiles' estimates (see :mod:`.tiling`). Every tile holds
    known pixels: the plan checked that before any fit."""
    hwc, missing, guide, scaling = plane.hwc, plane.missing, plane.guide, plane.scaling
    factor = plan.factor or 1
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
    neighbour = NeighbourStart(config)
    for number, tile in enumerate(tiles):
        observation, _ = observation_of(
            tile.cut(hwc), None if missing is None else tile.cut(missing), factor=plan.factor,
            guide=None if guide is None else tile.cut(guide, factor),
            size_multiple=size_multiple(config), scaling=scaling)
        last_tile = number == len(tiles) - 1
        tile_config, tile_warm = config, (warm or {}).pop(number, None)
        if tile_warm is None:
            tile_config, tile_warm = neighbour.config, neighbour.fits
        finished: dict[int, FitStep] = {}
        for step, (images,), run_number, last in fit_runs(observation, plan, tile_config,
                                                          tile_warm):
            if step.done:
                finished[run_number] = step
            if images.uncertainty is not None and uncertainties is None:
                uncertainties = TileBlender(shape, hwc.shape[2], factor=factor,
                                            convert=scaling.spread_from_unit)
            mosaic = Images(
                *(estimates.mosaic(tile, values) for values in
                  (images.image, images.average, images.estimate)),
                uncertainty=None if uncertainties is None
                else uncertainties.mosaic(tile, images.uncertainty))
            yield make_snapshot(step, mosaic, run_number, done=last and last_tile,
                                channel_axis=channel_axis, plan=plan, config=tile_config,
                                elapsed=time.perf_counter() - start, tile=number,
                                n_tiles=len(tiles)), step
        # kept only for a next tile without a fit of its own (a stack's later slices have one)
        neighbour.fitted(list(finished.values()),
                         continued=not last_tile and number + 1 not in (warm or {}))
        estimates.add(tile, images.estimate)
        if images.uncertainty is not None:
            uncertainties.add(tile, images.uncertainty)

"""A run planned once: :func:`plan` checks everything and fixes the schedule; :func:`run` runs it.

``plan(image, spec, mask=, guide=)`` refuses, before any fit, everything a fit would refuse
(options, every slice's image, mask and guide, tiles wholly in the mask, ``slice_batch``
combinations) and knows the whole schedule: the slices in the order they are fitted (passes,
slice batches: :attr:`Plan.visits`), the tiles of each plane, the seeded runs of each tile and
the step budget of each fit, hence :attr:`Plan.total_steps`. A :class:`StepCounter` turns the
snapshots of :func:`run` into steps done and steps expected in all, for progress bars and time
left; with a stopping rule it counts toward where the rule is expected to stop
(:func:`expected_fit_length`), not toward the iteration cap.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np
import torch

from ..config import DIPConfig, check_factor, check_seed, check_task, warm_start_config
from ..presets import get_config
from ..spec import RunSpec
from .device import select_device
from .layout import ImageAxes
from .noise_model import auto_data_term
from .plane import Snapshot, restore_plane
from .psf import run_psf
from .problem import (CheckedPlane, _as_array, _check_finite, _refuse_all_missing,
                      check_channel_axis, checked_image, guide_to_unit)
from .run_history import PlaneRecorder
from .scaling import IntensityScaling
from .stack import StackData, StackSnapshot, iter_stack, refuse_one_guide_for_a_batch
from .threads import FitThreads
from .tiling import Tile, plan_tiles


def expected_fit_length(config: DIPConfig, iteration: int = 0,
                        best_iteration: int | None = None, *,
                        max_iterations: int | None = None) -> int:
    """How many steps one fit of ``config`` is expected to run, seen at ``iteration``.

    Without a stopping rule: its cap, ``max_iterations`` (default: the config's). With one,
    the fit stops once ``patience`` steps pass without a new best, so it runs at least to
    ``best + patience`` (the variance rule's first best comes after ``variance_window``
    steps), and never past the cap. A later best moves the estimate on: it is a lower bound,
    not a promise.
    """
    cap = config.max_iterations if max_iterations is None else max_iterations
    if config.stopping == "none":
        return cap
    first_best = config.variance_window if config.stopping == "variance" else 0
    best = max(best_iteration or 0, first_best)
    return int(min(cap, max(iteration, best + config.patience)))


@dataclass(frozen=True)
class Visit:
    """One step of a stack's schedule: the slices fitted together (``group``, in stack order;
    one slice unless ``slice_batch``), in which pass, and the position (within the pass) of
    the group's last slice, as :class:`StackSnapshot` reports it."""

    pass_number: int
    group: tuple[tuple[int, ...], ...]
    slice_number: int


@dataclass
class Plan:
    """A checked run and its schedule (made by :func:`plan`, run by :func:`run`).

    Attributes
    ----------
    spec : RunSpec
    config : DIPConfig
        The settings of the first fit (later slices of a stack run on
        :func:`~napari_dip.config.warm_start_config` of it).
    factor : int or None
        The checked super-resolution factor.
    device : torch.device
    tiles : list of Tile
        The tiles every plane is fitted in (one: the whole plane).
    visits : list of Visit
        The schedule: what is fitted, in order (one visit for a single plane).
    stack : StackData or None
        A stack run's data (:func:`run` yields :class:`StackSnapshot` s).
    plane : CheckedPlane or None
        A single plane's checked problem (:func:`run` yields :class:`Snapshot` s).
    psf : numpy.ndarray or None
        Deconvolution: the checked 2D PSF (:func:`~.psf.check_psf`) that blurs every slice.
    noise_estimate : dict or None
        With ``data_term="auto"``: the data term chosen and the noise model estimated from the
        image or stack (:func:`~.noise_model.auto_data_term`); ``config`` holds the choice.
    cpu_threads : FitThreads
        The CPU threads of each fit (``spec.threads``: a count, or measured per fit), and
        the counts the fits ran with.
    """

    spec: RunSpec
    config: DIPConfig
    factor: int | None
    device: torch.device
    tiles: list[Tile]
    visits: list[Visit]
    stack: StackData | None = None
    plane: CheckedPlane | None = None
    psf: np.ndarray | None = None
    noise_estimate: dict | None = None
    cpu_threads: FitThreads = field(init=False)

    def __post_init__(self) -> None:
        self.cpu_threads = FitThreads(self.spec.threads, self.device)

    @property
    def seed(self) -> int:
        return int(self.spec.seed)

    @property
    def intensity_range(self) -> tuple[float, float] | None:
        """The intensities the model's [0, 1] stands for (None for a boolean stack)."""
        scaling = self.stack.scaling if self.stack is not None else self.plane.scaling
        return None if scaling is None else scaling.range

    @property
    def fits_per_visit(self) -> int:
        """Fits in one visit: one per tile and seeded run."""
        return len(self.tiles) * self.config.n_runs

    def later_budget(self, first_iterations: int | None = None) -> int:
        """The step budget of each fit after the first visit: the warm-start schedule that a
        first visit of ``first_iterations`` steps (None: its full budget) sets."""
        first = self.config.max_iterations if first_iterations is None else first_iterations
        return warm_start_config(self.config, first).max_iterations

    def later_fit_length(self, first_iterations: int | None = None) -> int:
        """The expected length of each fit after the first visit (:func:`expected_fit_length`
        of the warm-start schedule that a first visit of ``first_iterations`` steps sets; None:
        as long as the first fit is expected to run). Without warm start every slice starts
        from scratch and is expected to run as long as the first."""
        first = expected_fit_length(self.config) if first_iterations is None \
            else first_iterations
        warm = warm_start_config(self.config, max(1, first))
        return first if warm is self.config else expected_fit_length(warm)

    @property
    def chains_tiles(self) -> bool:
        """Whether the first visit's tiles continue each other (``tile_warm_start``)."""
        return bool(self.config.tile_warm_start) and len(self.tiles) > 1

    def from_scratch(self, tile: int) -> bool:
        """Whether the first visit fits ``tile`` from scratch: every tile, or only the first
        when the tiles continue each other (:attr:`chains_tiles`). Their mean length sets the
        warm-start schedule of the later visits."""
        return tile == 0 or not self.chains_tiles

    def neighbour_fit_length(self, first_iterations: int, *, budget: bool = False) -> int:
        """The expected length (``budget``: the cap) of a tile that continues the tile before
        it, after a first tile of ``first_iterations`` steps (:attr:`chains_tiles`)."""
        chained = warm_start_config(self.config, max(1, first_iterations),
                                    fraction=self.config.tile_warm_start)
        return chained.max_iterations if budget else expected_fit_length(chained)

    @property
    def total_steps(self) -> int:
        """The steps the whole run takes when every fit runs to its budget (a stopping rule
        ends fits sooner: :class:`StepCounter` follows that as the run goes)."""
        later = (len(self.visits) - 1) * self.later_budget()
        first = self.config.max_iterations
        if self.chains_tiles:
            others = (len(self.tiles) - 1) * self.neighbour_fit_length(first, budget=True)
            return self.config.n_runs * (first + others) + self.fits_per_visit * later
        return self.fits_per_visit * (first + later)

    def visit_number(self, snapshot: Snapshot | StackSnapshot) -> int:
        """Which of :attr:`visits` a snapshot of :func:`run` belongs to."""
        if not isinstance(snapshot, StackSnapshot):
            return 0
        if snapshot.pass_number:  # the backward pass starts at the second-to-last slice
            return snapshot.n_slices - 1 + snapshot.slice_number
        batch = self.config.slice_batch if snapshot.n_slices > 1 else 1
        return snapshot.slice_number // batch

    def step_counter(self) -> StepCounter:
        return StepCounter(self)


class StepCounter:
    """Steps done and steps expected in all, from the snapshots of a plan's run.

    The total starts at the plan's schedule and follows the run: a fit counts toward where its
    stopping rule is expected to end it (:func:`expected_fit_length`; its cap without a rule),
    a fit that its rule ended takes no more steps, and the fits after the first visit are
    expected to run the warm-start schedule that the first visit's length sets, then as long
    as the later fits that finished. :attr:`fit_length` is the current fit's expected length.
    """

    def __init__(self, plan: Plan) -> None:
        self.plan = plan
        self.fit_length = plan.config.max_iterations
        self._visit = 0
        self._fits: dict[tuple[int, int], int] = {}  # (tile, run) -> iteration, this visit
        self._steps_before = 0  # the steps of the visits that ended
        self._first_iterations: int | None = None
        self._later_fit_lengths: list[float] = []  # per visit after the first: mean per fit

    def update(self, snapshot: Snapshot | StackSnapshot) -> tuple[int, int]:
        """``(steps_done, steps_total)`` after ``snapshot``."""
        plan = self.plan
        visit = plan.visit_number(snapshot)
        fit = snapshot.snapshot if isinstance(snapshot, StackSnapshot) else snapshot
        if visit != self._visit:
            self._end_visit(visit)
        self._fits[fit.tile, fit.run] = fit.iteration
        done = self._steps_before + sum(self._fits.values())
        expected = expected_fit_length(fit.config, fit.iteration, fit.best_iteration,
                                       max_iterations=fit.max_iterations)
        self.fit_length = fit.iteration if fit.stopped else expected
        fits_left = plan.fits_per_visit - (fit.tile * plan.config.n_runs + fit.run) - 1
        if self._later_fit_lengths:
            later = float(np.mean(self._later_fit_lengths))
        elif visit:
            later = plan.later_fit_length(self._first_iterations)
        elif not plan.from_scratch(fit.tile):  # the first tile's length sets the schedule
            later = plan.later_fit_length(self._scratch_length())
        else:
            later = plan.later_fit_length(expected)
        visits_left = len(plan.visits) - visit - 1
        length_left = fits_left * self.fit_length
        if visit == 0 and plan.chains_tiles and fit.tile == 0:  # the other tiles: shorter
            runs_left = plan.config.n_runs - fit.run - 1
            length_left = runs_left * self.fit_length + (fits_left - runs_left) * \
                plan.neighbour_fit_length(self.fit_length)
        total = done + (self.fit_length - fit.iteration) + length_left + \
            visits_left * plan.fits_per_visit * later
        return done, int(round(total))

    def _scratch_length(self) -> int:
        """The mean length of this visit's fits from scratch so far (:meth:`Plan.from_scratch`)."""
        return int(round(np.mean([n for (tile, _), n in self._fits.items()
                                  if self.plan.from_scratch(tile)])))

    def _end_visit(self, visit: int) -> None:
        """Fold the visit that ended into the steps done; the first visit's mean fit length
        sets the warm-start schedule (a tiled slice's: the mean of its fits from scratch, only
        its first tile's when the tiles continue each other)."""
        steps = list(self._fits.values())
        self._steps_before += sum(steps)
        if self._visit == 0:
            self._first_iterations = self._scratch_length()
        else:
            self._later_fit_lengths.append(float(np.mean(steps)))
        self._visit, self._fits = visit, {}


def plan(image, spec: RunSpec, *, mask=None, guide=None, psf=None, stack: bool = True) -> Plan:
    """Check a run of ``spec`` on ``image`` and plan it; nothing is fitted yet.

    ``stack=True`` treats ``image`` as a stack ``(..., M, N)`` of 2D slices (a 2D image is a
    stack of one slice; :func:`run` yields :class:`StackSnapshot` s); ``stack=False`` as one
    2D image ``(M, N[, C])`` (:func:`run` yields :class:`Snapshot` s). ``psf`` (an array) is
    the PSF of ``task="deconvolve"``, unless ``spec.psf`` names a model; one 2D PSF blurs every
    slice. Raises ValueError, with the fix, for anything a fit would refuse.
    """
    config, factor, device = _checked_run(spec, mask, guide)
    if spec.task != "deconvolve" and psf is not None:
        raise ValueError(f"psf= is only used by task='deconvolve', not {spec.task!r}")
    if not stack:
        plane, tiles = _checked_plane(image, mask, guide, spec.channel_axis, factor, config,
                                      intensity_range=spec.intensity_range)
        config, noise = _resolved_data_term(config, plane.hwc, plane.missing)
        return Plan(spec, config, factor, device, tiles, [Visit(0, ((),), 0)], plane=plane,
                    psf=_run_psf(spec, psf, plane.hwc.shape[:2]), noise_estimate=noise)
    data, hwc, missing = _checked_stack(image, spec.channel_axis, mask=mask, guide=guide,
                                        factor=factor, intensity_range=spec.intensity_range,
                                        headroom=config.intensity_headroom)
    checked_psf = _run_psf(spec, psf, hwc.shape[-3:-1])
    config, noise = _resolved_data_term(config, hwc, missing)
    tiles = _check_slices(data, factor, config)
    return Plan(spec, config, factor, device, tiles, _schedule(data.indices, config), stack=data,
                psf=checked_psf, noise_estimate=noise)


def _run_psf(spec: RunSpec, psf, plane: tuple[int, int]) -> np.ndarray | None:
    """The checked PSF of a deconvolution (None for the other tasks)."""
    if spec.task != "deconvolve":
        return None
    return run_psf(spec.psf, psf, tuple(plane))


def _resolved_data_term(config: DIPConfig, hwc: np.ndarray, missing: np.ndarray | None,
                        ) -> tuple[DIPConfig, dict | None]:
    """``config`` with ``data_term="auto"`` replaced by the likelihood the image's noise suits
    (:func:`~.noise_model.auto_data_term`), and the estimate; else as it is."""
    if config.data_term != "auto":
        return config, None
    if hwc.dtype.kind == "b":
        return config.replace(data_term="gaussian"), {
            "data_term": "gaussian", "noise_model": None, "note": "a boolean image"}
    settings, report = auto_data_term(hwc, missing)
    return config.replace(**settings), report


def run(plan: Plan) -> Iterator[Snapshot] | Iterator[StackSnapshot]:
    """The snapshots of a planned run, as it goes (see :func:`napari_dip.iter_restore` and
    :func:`napari_dip.iter_restore_stack`)."""
    if plan.stack is not None:
        return iter_stack(plan)
    return _recorded(plan, restore_plane(plan.plane, plan.tiles,
                                         channel_axis=plan.spec.channel_axis, plan=plan,
                                         config=plan.config))


def _recorded(plan: Plan, steps) -> Iterator[Snapshot]:
    """A single plane's snapshots, offered to its history when the run keeps one."""
    recorder = PlaneRecorder.for_config(plan.config)
    for snapshot, step in steps:
        if recorder is not None:
            recorder.record(snapshot, fit_done=step.done)
            snapshot.history = recorder.history
        yield snapshot


def _checked_run(spec: RunSpec, mask, guide) -> tuple[DIPConfig, int | None, torch.device]:
    """Check the options every run shares; build the config and pick the device."""
    check_task(spec.task)
    factor = check_factor(spec.task, spec.factor)
    if spec.task == "inpaint" and mask is None:
        raise ValueError("task='inpaint' needs mask=, an array that is true where pixels are "
                         "missing")
    if spec.task != "inpaint" and mask is not None:
        raise ValueError(f"mask= is only used by task='inpaint', not {spec.task!r}")
    check_seed(spec.seed)
    config = get_config(spec.preset, spec.task, factor, **spec.overrides)
    if guide is not None and config.network == "deep_decoder":
        raise ValueError("the Deep Decoder takes no guide image; use network='skip' or "
                         "'hourglass' with guide=, or leave guide out")
    return config, factor, select_device(spec.device)


def plane_tiles(plane: tuple[int, int], config: DIPConfig) -> list[Tile]:
    """The tiles a plane of ``plane`` input pixels is restored in (one: the whole plane)."""
    if not config.tile_size:
        return plan_tiles(plane, max(plane), 0)
    return plan_tiles(plane, config.tile_size, config.tile_overlap, config.tile_above)


def _checked_plane(image, mask, guide, channel_axis, factor: int | None, config: DIPConfig, *,
                   scaling: IntensityScaling | None = None, intensity_range=None,
                   ) -> tuple[CheckedPlane, list[Tile]]:
    """Refuse, before any fit, a 2D problem that its fit would refuse: the image and mask
    (:func:`checked_image`), an intensity range float64 cannot scale (unless ``scaling`` is
    imposed), the guide's shape and values, and tiles that lie wholly in the mask. Returns
    the checked problem and its tiles."""
    hwc, missing = checked_image(image, channel_axis, mask)
    if scaling is None:
        scaling = intensity_scaling(hwc, missing, intensity_range, config.intensity_headroom)
    f = factor or 1
    if guide is not None:
        guide_to_unit(guide, (hwc.shape[0] * f, hwc.shape[1] * f))
    tiles = plane_tiles(hwc.shape[:2], config)
    if missing is not None:
        _refuse_tiles_without_pixels(missing, tiles)
    return CheckedPlane(hwc, missing, guide, scaling), tiles


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


def intensity_scaling(hwc: np.ndarray, missing: np.ndarray | None, intensity_range,
                      headroom: float = 1.0) -> IntensityScaling:
    """The scaling a run fits ``hwc`` in: ``intensity_range`` as given, else the image's own
    (:meth:`IntensityScaling.from_image`) widened by ``headroom``
    (:meth:`IntensityScaling.widened`)."""
    if intensity_range is not None:
        return IntensityScaling.given(intensity_range, hwc.dtype)
    return IntensityScaling.from_image(hwc, missing).widened(headroom)


def _checked_stack(image, channel_axis, *, mask, guide, factor: int | None,
                   intensity_range, headroom: float = 1.0,
                   ) -> tuple[StackData, np.ndarray, np.ndarray | None]:
    """A stack ``(..., M, N)`` (with an optional channel axis) checked as a whole and split
    into 2D slices: the last two non-channel axes are the image plane, the others are looped
    over in C order. The intensity scaling is the whole stack's widened by ``headroom`` (or
    ``intensity_range``).
    Returns the data, its pixels ``(..., M, N, C)`` and where they are missing (or None)."""
    image = _as_array("image", image)
    if image.size == 0:
        raise ValueError(f"image is empty (shape {image.shape})")
    check_channel_axis(channel_axis)
    needed = 2 if channel_axis is None else 3
    if image.ndim < needed:
        raise ValueError(f"image has shape {image.shape}: a stack needs at least {needed} "
                         "dimensions" + (" with channel_axis" if channel_axis is not None
                                         else ""))
    if channel_axis is not None and not -image.ndim <= channel_axis < image.ndim:
        raise ValueError(f"channel_axis={channel_axis} is out of range for an image with "
                         f"{image.ndim} dimensions")
    axes = ImageAxes.of(image.ndim, channel=channel_axis)
    hwc = image[..., None] if channel_axis is None else np.moveaxis(image, channel_axis, -1)
    leading, plane, f = hwc.shape[:-3], hwc.shape[-3:-1], factor or 1
    stored_mask = _per_slice_or_shared("mask", mask, leading, plane)
    missing = None
    if stored_mask is not None:
        value, per_slice = stored_mask
        if (value.shape[len(leading):] if per_slice else value.shape) != plane:
            raise ValueError(f"mask has shape {value.shape}; for this stack it must be "
                             f"{plane} (one mask for every slice) or {leading + plane} "
                             f"(one per slice), true = missing")
        _check_finite("mask", value)
        missing = (value != 0)[..., None]
        _check_every_slice_keeps_pixels(missing[..., 0], per_slice, leading)
    _check_finite("image", hwc, missing)
    scaling = None if hwc.dtype.kind == "b" else \
        intensity_scaling(hwc, missing, intensity_range, headroom)
    stored_guide = _per_slice_or_shared("guide", guide, leading, (plane[0] * f, plane[1] * f))
    data = StackData(hwc, channel_axis=axes.channel, slice_channel=axes.slice_channel,
                     mask=stored_mask, guide=stored_guide, scaling=scaling, factor=f)
    return data, hwc, missing


def _per_slice_or_shared(name, value, leading: tuple[int, ...], plane: tuple[int, int]):
    """``(array, per_slice)``: per slice when its leading axes are the stack's and the next
    two the plane's (``plane``: the sides it must have), else shared by every slice (its shape
    is then checked with the slice's)."""
    if value is None:
        return None
    value = _as_array(name, value)
    n = len(leading)
    per_slice = n > 0 and value.shape[:n] == leading and value.shape[n:n + 2] == plane
    return value, per_slice


def _check_every_slice_keeps_pixels(missing: np.ndarray, per_slice: bool,
                                    leading: tuple[int, ...]) -> None:
    """Refuse, before any slice is fitted, a mask that leaves some slice no known pixel."""
    if not per_slice:
        _refuse_all_missing(missing)
        return
    indices = list(np.ndindex(*leading))
    full = missing.reshape(len(indices), -1).all(axis=1)
    if full.any():
        slices = [indices[i] for i in np.flatnonzero(full)]
        raise ValueError(f"the mask marks every pixel of slice(s) {slices[:5]}"
                         f"{' ...' if len(slices) > 5 else ''} as missing, so they have "
                         f"nothing to fit; leave known pixels in every slice")


def _check_slices(data: StackData, factor: int | None, config: DIPConfig) -> list[Tile]:
    """Refuse, before any slice is fitted, what a slice's fit would refuse: every slice with a
    mask or guide of its own (the message names the slice), else the first, which stands for
    them all; and settings that ``slice_batch`` cannot run. Returns the tiles of a plane."""
    tiles = None
    for index in data.indices if data.slices_differ else data.indices[:1]:
        try:
            _, tiles = _checked_plane(data.slice(index), data.mask_slice(index),
                                      data.guide_slice(index), -1, factor, config,
                                      scaling=data.scaling)
        except ValueError as error:
            if len(data.indices) == 1:
                raise
            raise ValueError(f"slice {index}: {error}") from error
    if config.slice_batch > 1 and len(data.indices) > 1:
        plane = data.slice(data.indices[0]).shape[:2]
        if config.tile_size and len(tiles) > 1:
            raise ValueError(f"slice_batch={config.slice_batch} cannot fit slices of "
                             f"{plane[0]}x{plane[1]} pixels, which tile_size={config.tile_size}"
                             f" (tile_above={config.tile_above}) cuts into tiles; set "
                             f"tile_size=0 to fit each slice whole, or set slice_batch=1")
        if data.one_guide:
            refuse_one_guide_for_a_batch(config)
    return tiles


def _schedule(indices: list[tuple[int, ...]], config: DIPConfig) -> list[Visit]:
    """The order a stack's slices are fitted in: groups of ``slice_batch`` consecutive slices;
    else one by one, and with ``stack_passes=2`` back again in reverse order from the
    second-to-last slice."""
    n_slices = len(indices)
    if config.slice_batch > 1 and n_slices > 1:
        groups = [tuple(indices[start:start + config.slice_batch])
                  for start in range(0, n_slices, config.slice_batch)]
        ends = np.cumsum([len(group) for group in groups]) - 1
        return [Visit(0, group, int(end)) for group, end in zip(groups, ends)]
    visits = [Visit(0, (index,), number) for number, index in enumerate(indices)]
    if config.stack_passes == 2 and n_slices > 1:
        visits += [Visit(1, (index,), number)
                   for number, index in enumerate(indices[::-1]) if number > 0]
    return visits


__all__ = ["Plan", "StepCounter", "Visit", "expected_fit_length", "plan", "plane_tiles",
           "run"]

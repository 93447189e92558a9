"""Stack-level work: a stack as a sequence of 2D problems, fitted in the plan's order.

Slice k continues from the weights fitted on slice k-1 (warm start) on the short schedule the
first slice's length sets (:func:`~napari_dip.config.warm_start_config`); an optional backward
pass averages each slice's two results; ``slice_batch`` fits groups of slices together.
:class:`StackData` holds the stack's slices, masks, guides and the result as it fills.
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch

from ..config import DIPConfig, warm_start_config
from .fit import FitStep
from .history import History
from .networks import size_multiple
from .plane import Snapshot, fit_runs, in_intensities, make_snapshot, pool, restore_plane
from .problem import CheckedPlane, channels_to_layout, observation_of
from .run_history import PlaneRecorder
from .scaling import IntensityScaling, map_blocks


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
    histories : dict
        When the run keeps a history (``config.history``): each slice reached so far, by its
        index, to its :class:`~.history.History` (the current slice's is also
        ``snapshot.history``); empty otherwise. With ``stack_passes=2`` a slice's history
        goes on through its backward visit, whose checkpoints hold the two passes' mean.
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
    histories: dict[tuple[int, ...], History] = dataclasses.field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.group:
            self.group, self.group_snapshots = (self.index,), (self.snapshot,)


class StackData:
    """A checked stack's data as the stack runner reads and fills it.

    ``hwc`` is the stack with its channels last, ``(..., M, N, C)``; ``mask`` and ``guide``
    are ``(array, per_slice)`` or None (per slice: indexed like the stack; else shared). All
    slices share one :class:`IntensityScaling` (``scaling``), so that the restored slices stay
    consistent with each other. :attr:`result` is the output stack in the input's layout,
    filled slice by slice with :meth:`put`.
    """

    def __init__(self, hwc: np.ndarray, *, channel_axis: int | None, slice_channel: int | None,
                 mask, guide, scaling: IntensityScaling | None, factor: int) -> None:
        self._hwc = hwc
        self.channel_axis = channel_axis
        self.leading = hwc.shape[:-3]
        self.indices = list(np.ndindex(*self.leading))
        self._mask, self._guide = mask, guide
        self.scaling = scaling
        self._slice_channel = slice_channel
        self._result_shape = self.leading + (hwc.shape[-3] * factor, hwc.shape[-2] * factor,
                                             hwc.shape[-1])
        self._result_hwc = None  # allocated at the first put: a stack that is only checked
        self._uncertainty_hwc = None  # and scaled (a part of one) never holds its result

    def _pick(self, stored, index):
        if stored is None:
            return None
        value, per_slice = stored
        return value[index] if per_slice else value

    @property
    def slices_differ(self) -> bool:
        """Whether some slice has a mask or guide of its own (else every slice shares them)."""
        return any(stored is not None and stored[1] for stored in (self._mask, self._guide))

    @property
    def one_guide(self) -> bool:
        """Whether a single guide image serves every slice."""
        return self._guide is not None and not self._guide[1]

    def slice(self, index: tuple[int, ...]) -> np.ndarray:
        """The ``(M, N, C)`` slice at ``index`` (a view: never write to it)."""
        return self._hwc[index]

    def mask_slice(self, index):
        return self._pick(self._mask, index)

    def guide_slice(self, index):
        return self._pick(self._guide, index)

    def plane(self, index: tuple[int, ...]) -> CheckedPlane:
        """Slice ``index`` as a checked 2D problem (the plan checked every slice's image, mask
        and guide before any fit)."""
        mask = self.mask_slice(index)
        return CheckedPlane(self.slice(index), None if mask is None else (mask != 0)[..., None],
                            self.guide_slice(index), self.scaling)

    @property
    def result(self) -> np.ndarray:
        """The output stack in the input's layout and dtype (a view, updated by :meth:`put`;
        slices not put yet are 0)."""
        return channels_to_layout(self._result_array(), self.channel_axis)

    def _result_array(self) -> np.ndarray:
        if self._result_hwc is None:
            self._result_hwc = np.zeros(self._result_shape, dtype=self._hwc.dtype)
        return self._result_hwc

    @property
    def uncertainty(self) -> np.ndarray | None:
        """The per-pixel uncertainty maps put so far, as a float32 stack shaped like
        :attr:`result` (a view; slices without a map are 0); None until one was put."""
        if self._uncertainty_hwc is None:
            return None
        return channels_to_layout(self._uncertainty_hwc, self.channel_axis)

    def get(self, index: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray | None]:
        """Copies of what :meth:`put` stored for slice ``index``: its ``(M, N, C)`` estimate and
        uncertainty map (None without one)."""
        uncertainty = None if self._uncertainty_hwc is None else \
            self._uncertainty_hwc[index].copy()
        return self._result_array()[index].copy(), uncertainty

    def put(self, index: tuple[int, ...], estimate_hwc: np.ndarray,
            uncertainty_hwc: np.ndarray | None = None) -> None:
        """Store slice ``index``'s estimate (and its uncertainty map, if it has one), both
        ``(M, N, C)`` with the output's plane."""
        self._result_array()[index] = estimate_hwc
        if uncertainty_hwc is not None:
            if self._uncertainty_hwc is None:
                self._uncertainty_hwc = np.zeros(self._result_shape, dtype=np.float32)
            self._uncertainty_hwc[index] = uncertainty_hwc

    def user_layout(self, hwc: np.ndarray | None) -> np.ndarray | None:
        """An ``(M, N, C)`` slice in the caller's slice layout."""
        return None if hwc is None else channels_to_layout(hwc, self._slice_channel)

    def user_snapshot(self, snapshot: Snapshot) -> Snapshot:
        """A snapshot whose images are in the caller's slice layout."""
        layout = self.user_layout
        return dataclasses.replace(snapshot, image=layout(snapshot.image),
                                   average=layout(snapshot.average),
                                   estimate=layout(snapshot.estimate),
                                   uncertainty=layout(snapshot.uncertainty))


def iter_stack(plan) -> Iterator[StackSnapshot]:
    """The stack runner: every visit of the plan's schedule (:attr:`Plan.visits`) in order."""
    if plan.config.slice_batch > 1 and len(plan.stack.indices) > 1:
        yield from _iter_slice_batches(plan)
        return
    data, n_slices = plan.stack, len(plan.stack.indices)
    warm = WarmStart(plan.config)  # holds the previous slice's fit, per tile
    histories = SliceHistories(plan)
    for visit in plan.visits:
        (index,), pass_number, last_visit = visit.group, visit.pass_number, visit is plan.visits[-1]
        forward = data.get(index) if pass_number else None  # its forward result
        fitted: dict[int, dict[int, FitStep]] = {}  # tile -> run -> its last step
        for snapshot, step in restore_plane(data.plane(index), plan.tiles, channel_axis=-1,
                                            plan=plan, config=warm.config, warm=warm.fit):
            estimate, uncertainty = snapshot.estimate, snapshot.uncertainty
            if pass_number:  # the two passes' results, averaged
                estimate, uncertainty = two_passes(forward, (estimate, uncertainty))
            data.put(index, estimate, uncertainty)
            user = histories.recorded(index, snapshot, step, forward)
            yield StackSnapshot(index=index, slice_number=visit.slice_number, n_slices=n_slices,
                                snapshot=user, result=data.result,
                                done=snapshot.done and last_visit, pass_number=pass_number,
                                uncertainty=data.uncertainty,
                                intensity_range=data.scaling.range,
                                histories=histories.by_slice)
            fitted.setdefault(snapshot.tile, {})[snapshot.run] = warm.kept(
                step, continued=not last_visit)
        # a tiled slice's length is the mean over its tiles (and runs) fitted from scratch
        warm.fitted({tile: list(runs.values()) for tile, runs in fitted.items()},
                    np.mean([step.iteration for tile, runs in fitted.items()
                             if plan.from_scratch(tile) for step in runs.values()]))


class SliceHistories:
    """One history per slice of a stack run that keeps one (``config.history``; see
    :mod:`.run_history`), in the caller's slice layout."""

    def __init__(self, plan) -> None:
        self.plan, self.data = plan, plan.stack
        self.by_slice: dict[tuple[int, ...], History] = {}
        self._recorders: dict[tuple[int, ...], PlaneRecorder] = {}
        self._visits_left = Counter(index for visit in plan.visits for index in visit.group)

    def recorded(self, index: tuple[int, ...], snapshot: Snapshot, step: FitStep,
                 forward: tuple[np.ndarray, np.ndarray | None] | None = None) -> Snapshot:
        """``snapshot`` (``(M, N, C)``) offered to slice ``index``'s history, in the caller's
        layout; ``forward``: the slice's forward result, in its backward visit."""
        user = self.data.user_snapshot(snapshot)
        if not self.plan.config.history:
            return user
        recorder = self._recorders.get(index)
        if recorder is None:
            recorder = self._recorders[index] = PlaneRecorder.for_config(self.plan.config)
            self.by_slice[index] = recorder.history

        def keep(hwc: np.ndarray) -> np.ndarray:
            return self.data.user_layout(hwc if forward is None else
                                         two_passes(forward, (hwc, None))[0])

        last = "last" if self._visits_left[index] == 1 else "forward pass"
        recorder.record(snapshot, fit_done=step.done, keep=keep, last_note=last)
        if snapshot.done:
            self._visits_left[index] -= 1
        user.history = recorder.history
        return user


class WarmStart:
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


def _iter_slice_batches(plan) -> Iterator[StackSnapshot]:
    """The stack runner with ``slice_batch`` > 1: groups of consecutive slices, each group
    fitted by one generator in one batch (one input code per slice); a group continues from
    the previous group's weights and codes, on the warm-start schedule."""
    data = plan.stack
    warm = WarmStart(plan.config)
    histories = SliceHistories(plan)
    for visit in plan.visits:
        group, last_group = list(visit.group), visit is plan.visits[-1]
        fitted: dict[int, FitStep] = {}  # run -> its last step
        for snapshots, step in _fit_group(plan, group, warm.config, warm.fit):
            fitted[snapshots[-1].run] = warm.kept(step, continued=not last_group)
            for index, snapshot in zip(group, snapshots):
                data.put(index, snapshot.estimate, snapshot.uncertainty)
            user = tuple(histories.recorded(index, snapshot, step)
                         for index, snapshot in zip(group, snapshots))
            yield StackSnapshot(index=group[-1], slice_number=visit.slice_number,
                                n_slices=len(data.indices), snapshot=user[-1],
                                result=data.result, done=user[-1].done and last_group,
                                group=tuple(group), group_snapshots=user,
                                uncertainty=data.uncertainty, intensity_range=data.scaling.range,
                                histories=histories.by_slice)
        warm.fitted(list(fitted.values()), np.mean([step.iteration for step in fitted.values()]))


def _fit_group(plan, group: list[tuple[int, ...]], config: DIPConfig,
               warm: list[FitStep] | None) -> Iterator[tuple[list[Snapshot], FitStep]]:
    """Fit the slices ``group`` together: their observations stacked along the batch axis."""
    planes = [plan.stack.plane(index) for index in group]
    prepared = [observation_of(plane.hwc, plane.missing, factor=plan.factor, guide=plane.guide,
                               size_multiple=size_multiple(config), scaling=plane.scaling)
                for plane in planes]
    parts = [observation for observation, _ in prepared]

    def stacked(name: str) -> torch.Tensor | None:
        values = [getattr(part, name) for part in parts]
        return None if values[0] is None else torch.cat(values)

    observation = dataclasses.replace(parts[0], target=stacked("target"),
                                      weight=stacked("weight"), guide=stacked("guide"))
    if observation.guide is not None and len(parts) > 1 and all(
            torch.equal(parts[0].guide, part.guide) for part in parts[1:]):
        refuse_one_guide_for_a_batch(config)  # guides of their own, but alike
    for step, images, run_number, last in fit_runs(observation, plan, config, warm):
        yield [make_snapshot(step, in_intensities(item, scaling), run_number, done=last,
                             channel_axis=-1, plan=plan, config=config)
               for item, (_, scaling) in zip(images, prepared)], step


def refuse_one_guide_for_a_batch(config: DIPConfig) -> None:
    raise ValueError(f"slice_batch={config.slice_batch} with one guide for every slice gives "
                     f"the slices of a batch the same input, so the generator cannot tell them "
                     f"apart; pass one guide per slice, or set slice_batch=1")


def two_passes(first: tuple[np.ndarray, np.ndarray | None],
               second: tuple[np.ndarray, np.ndarray | None],
               ) -> tuple[np.ndarray, np.ndarray | None]:
    """A slice's result after both passes (``stack_passes=2``) from each pass's
    ``(estimate, uncertainty)``, in the input's dtype: the mean of the two estimates, and their
    two posteriors pooled (Bayesian DIP). Pooled in float64, a block of rows at a time."""
    dtype = first[0].dtype

    def pooled(*blocks):  # two estimates' blocks, then two standard deviations' (if any)
        tensors = [torch.from_numpy(block.astype(np.float64)) for block in blocks]
        return pool(tensors[:2], tensors[2:] or [None, None])

    def mean(*blocks):
        values = pooled(*blocks)[0].numpy()
        return np.rint(values) if dtype.kind in "ui" else values

    estimate = map_blocks(mean, first[0], second[0], dtype=dtype)
    if first[1] is None or second[1] is None:
        return estimate, None
    return estimate, map_blocks(lambda *blocks: pooled(*blocks)[1].numpy(), first[0], second[0],
                                first[1], second[1], dtype=np.float32)

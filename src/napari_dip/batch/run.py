"""Restoring one file of a batch: read it, run the stack runner, write the output and its run
record (last); and running a batch's files one after another, or on Dask."""

from __future__ import annotations

import ctypes
import dataclasses
import os
import platform
import sys
import time
from collections.abc import Callable, Sequence
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

import numpy as np

from ..engine.layout import ImageAxes
from ..io.psf import psf_source
from ..io.records import package_versions, write_json
from ..io.tiff import TiffImage, check_writable, read_mask, read_tiff, write_tiff
from ..spec import RunSpec, fit_outcome, record
from .history_file import history_path, write_history
from .jobs import Job, Outcome, clear_previous

if TYPE_CHECKING:
    from .progress import Progress

# Snapshot fields that are images or already in the record; any other field (such as a
# stopping rule's) is recorded per slice as it is, or as a mean when it is an array
_SNAPSHOT_SKIPPED = {"image", "average", "estimate", "config", "done", "iteration", "elapsed",
                     "device", "loss", "backtracks", "max_iterations", "tile"}


SnapshotCallback = Callable[[Any, tuple[int, int]], None]
"""Called with each :class:`~napari_dip.StackSnapshot` of a file's run and the steps done and
in all, by the plan's schedule (:meth:`~napari_dip.engine.plan.Plan.step_counter`)."""


def run_job(job: Job, on_snapshot: SnapshotCallback | None = None) -> Outcome:
    """Restore one file and write its output and run record; never raises for a bad file.

    Reading, restoring and writing errors become a failed :class:`Outcome` with a one-line
    reason (and a run record that says ``"failed"``).
    """
    start = time.perf_counter()
    started = _now()
    undo_tiny_malloc_trim()
    try:
        clear_previous(job)
        image, layout, engine_data, mask = load_job(job)
        loaded = time.perf_counter()
        histories: dict = {}  # the run's per-slice histories, when it keeps them

        def watch(snapshot, steps) -> None:
            histories.update(snapshot.histories)
            if on_snapshot is not None:
                on_snapshot(snapshot, steps)

        result, uncertainty, slices, intensity_range = restore_array(
            engine_data, layout, mask, job.spec, watch)
        restored = time.perf_counter()
        save_result(job, image, layout, result, uncertainty, slices, threads_ran(slices),
                    timings={"started": started, "read_s": loaded - start,
                             "restore_s": restored - loaded}, intensity_range=intensity_range,
                    histories={index: h.checkpoints for index, h in histories.items()})
    except Exception as error:  # one bad file must not stop the batch
        reason = _reason(error)
        _write_failure(job, reason, started)
        return Outcome(job.input, "failed", reason, seconds=time.perf_counter() - start)
    return Outcome(job.input, "written", output=job.output, seconds=time.perf_counter() - start)


def threads_ran(slices: list[dict[str, Any]]) -> int | None:
    """The CPU threads every fit of ``slices`` (their records) ran with; None off the CPU or
    when the fits ran with different counts (each slice's record keeps its own)."""
    counts = {fit.get("threads") for entry in slices for fit in entry.get("fits", [entry])}
    return counts.pop() if len(counts) == 1 else None


def undo_tiny_malloc_trim() -> None:
    """Raise glibc's trim and mmap thresholds (to 64 and 32 MiB) in a process started with a
    tiny ``MALLOC_TRIM_THRESHOLD_``, as Dask's nanny starts its workers (65536). With it glibc
    hands memory back to the system after nearly every free, and a fit, which frees and
    allocates tensors of megabytes every step, ran about 1.6 times slower on the CPU
    (benchmarks/dask_allocator.py)."""
    try:
        threshold = int(os.environ.get("MALLOC_TRIM_THRESHOLD_", ""))
    except ValueError:
        return
    if threshold >= 64 * 2 ** 20 or not sys.platform.startswith("linux"):
        return
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt(-3, 32 * 2 ** 20)  # M_MMAP_THRESHOLD
        libc.mallopt(-1, 64 * 2 ** 20)  # M_TRIM_THRESHOLD
    except (OSError, AttributeError):  # not glibc: nothing to undo
        pass


def _reason(error: BaseException) -> str:
    text = " ".join(str(error).split())
    return text if isinstance(error, ValueError) and text else \
        f"{type(error).__name__}: {text}" if text else type(error).__name__


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def load_job(job: Job) -> tuple[TiffImage, ImageAxes, np.ndarray, np.ndarray | None]:
    """Read a job's image (and mask) and arrange them for the stack runner."""
    image = read_tiff(job.input, axes=job.spec.axes)
    check_writable(image, job.spec.factor)
    layout = ImageAxes.from_letters(image.axes)
    colours = image.colours()  # RGBA: alpha is kept as it is, not restored
    mask = None
    if job.mask is not None:
        try:
            mask_data = read_mask(job.mask)
        except ValueError as error:
            raise ValueError(f"mask {job.mask.name}: {error}") from error
        mask = layout.mask_to_engine(mask_data, colours.shape)
    return image, layout, layout.to_engine(colours), mask


def restore_array(data: np.ndarray, layout: ImageAxes, mask: np.ndarray | None,
                  spec: RunSpec, on_snapshot: SnapshotCallback | None = None,
                  intensity_range: tuple[float, float] | None = None,
                  ) -> tuple[np.ndarray, np.ndarray | None, list[dict[str, Any]],
                             tuple[float, float]]:
    """Plan and run ``spec`` on ``data`` (engine layout, channels on ``layout``'s axis);
    return the result, its uncertainty map (None unless the run draws posterior samples),
    per-slice records and the intensity range the slices were scaled from.
    ``intensity_range`` imposes it (a stack restored in parts)."""
    from ..engine.plan import plan, run

    slices: list[dict[str, Any]] = []
    fits: dict[tuple[int, ...], dict[tuple[int, int], dict]] = {}  # slice -> (tile, run) -> end
    last = None
    psf, described = psf_source(spec.psf)
    spec = dataclasses.replace(spec, channel_axis=layout.channel_axis,
                               intensity_range=intensity_range, psf=described)
    planned = plan(data, spec, mask=mask, psf=psf)
    counter = planned.step_counter()
    for last in run(planned):
        if on_snapshot is not None:
            on_snapshot(last, counter.update(last))
        for index, snapshot in zip(last.group, last.group_snapshots):  # not their images
            fits.setdefault(index, {})[snapshot.tile, snapshot.run] = fit_record(snapshot)
        if last.snapshot.done:  # every slice of a group fitted together ends at once
            slices += [{"index": list(index), "pass": last.pass_number,
                        **slice_record(snapshot, fits.pop(index))}
                       for index, snapshot in zip(last.group, last.group_snapshots)]
    return last.result, last.uncertainty, slices, last.intensity_range


def fit_record(snapshot) -> dict[str, Any]:
    """How one fit (a tile's, a run's) stands at ``snapshot``."""
    return {"tile": snapshot.tile, "run": snapshot.run, "iterations": snapshot.iteration,
            "stopped_early": snapshot.stopped, "best_iteration": snapshot.best_iteration,
            "loss": snapshot.loss, "threads": snapshot.threads}


def slice_record(snapshot, fits: dict[tuple[int, int], dict] | None = None) -> dict[str, Any]:
    """How one slice's fit ended: stop iteration, loss, time, and any extra snapshot fields.
    A slice restored in several fits (tiles, runs) lists how each ended under ``"fits"``
    (``fits``: each fit's :func:`fit_record` by tile and run); the top-level iteration count
    and stop are the last fit's."""
    record = {**fit_outcome(snapshot), "max_iterations": snapshot.max_iterations}
    if fits and len(fits) > 1:
        record["fits"] = [fits[key] for key in sorted(fits)]
    for f in dataclasses.fields(snapshot):
        if f.name in _SNAPSHOT_SKIPPED:
            continue
        value = getattr(snapshot, f.name)
        if isinstance(value, (bool, int, float, str, np.generic)) or value is None:
            record[f.name] = value.item() if isinstance(value, np.generic) else value
        elif isinstance(value, np.ndarray) and value.dtype.kind in "biuf":
            record[f"{f.name}_mean"] = float(value.mean())
    return record


def save_result(job: Job, image: TiffImage, layout: ImageAxes, result: np.ndarray,
                uncertainty: np.ndarray | None, slices: list[dict[str, Any]],
                threads: int | None, timings: dict[str, Any],
                intensity_range: tuple[float, float] | None = None,
                histories: dict | None = None) -> None:
    """Write the output TIFF, its uncertainty map and history file (if any), then its run
    record (last, so it marks the output complete). ``threads``: the CPU threads the fits ran
    with; ``intensity_range``: the intensities the model's [0, 1] stood for; ``histories``:
    each slice's checkpoints (:mod:`.history_file`)."""
    begin = time.perf_counter()
    output = image.restored(image.with_alpha(layout.from_engine(result), job.spec.factor),
                            job.spec.factor)
    write_tiff(job.output, output)
    extra: dict[str, Any] = {}
    if uncertainty is not None:
        job.uncertainty.parent.mkdir(exist_ok=True)
        uncertainty_map = image.restored_map(layout.from_engine(uncertainty), job.spec.factor)
        write_tiff(job.uncertainty, uncertainty_map)
        extra["uncertainty"] = {"path": str(job.uncertainty), **uncertainty_map.describe()}
    else:  # an earlier run's map must not pass for this result's
        job.uncertainty.unlink(missing_ok=True)
    if histories:
        extra["history"] = write_history(history_path(job.output), image, layout, result,
                                         histories, job.spec.factor)
    else:
        history_path(job.output).unlink(missing_ok=True)
    timings = {**timings, "write_s": time.perf_counter() - begin, "finished": _now()}
    for key, value in timings.items():
        if isinstance(value, float):
            timings[key] = round(value, 3)
    timings["total_s"] = round(sum(v for k, v in timings.items() if k.endswith("_s")), 3)
    write_json(job.record, job_record(job, {
        "status": "complete", "input": {"path": str(job.input), **image.describe()},
        "output": {"path": str(job.output), **output.describe()}, **extra,
        "device_used": slices[0].get("device") if slices else None, "threads_used": threads,
        "intensity_range_used": None if intensity_range is None
        else [float(v) for v in intensity_range],
        "timings": timings, "slices": slices}))


def job_record(job: Job, outcome: dict[str, Any]) -> dict[str, Any]:
    """A job's run record: its run's document (:func:`napari_dip.spec.record`) with the
    ``outcome``, which input and mask files it read, the package versions and the host."""
    return record(job.spec, {**outcome, **job.files(),
                             "versions": package_versions("dask", "distributed"),
                             "host": platform.node()})


def _write_failure(job: Job, reason: str, started: str) -> None:
    try:
        write_json(job.record, job_record(job, {
            "status": "failed", "reason": reason, "input": {"path": str(job.input)},
            "timings": {"started": started, "finished": _now()}}))
    except Exception:  # noqa: BLE001 - e.g. an invalid spec; the outcome still reports it
        pass


def run_batch(jobs: Sequence[Job], *, progress: Progress | None = None,
              dask: str | None = None, slices_per_task: int | None = None) -> list[Outcome]:
    """Run ``jobs`` in this process, or on a Dask cluster (an address, or ``local:N``)."""
    if dask:
        from .dask import run_on_dask

        return run_on_dask(jobs, dask, progress, slices_per_task)
    outcomes = []
    for job in jobs:
        outcome = run_job(job, progress.on_snapshot if progress else None)
        outcomes.append(outcome)
        if progress:
            progress.finished(outcome)
    return outcomes

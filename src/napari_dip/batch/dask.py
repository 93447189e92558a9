"""A batch on a ``dask.distributed`` cluster: one task per file, or a large stack split into
tasks of a few slices that share the whole stack's intensity scaling."""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ..engine.layout import CHANNEL_AXES, ImageAxes
from ..io.tiff import read_mask, read_tiff, read_tiff_header, read_tiff_slices
from .jobs import BatchError, Job, Outcome, clear_previous
from .run import (_now, _reason, _write_failure, load_job, restore_array, run_job, save_result,
                  threads_ran, undo_tiny_malloc_trim)

if TYPE_CHECKING:
    from .progress import Progress


def run_on_dask(jobs: Sequence[Job], address: str, progress: Progress | None = None,
                slices_per_task: int | None = None) -> list[Outcome]:
    """One task per file on a ``dask.distributed`` scheduler; the workers write the results.

    ``address`` is a scheduler address (``tcp://host:8786``) or ``local:N`` for a
    LocalCluster of N single-threaded worker processes on this machine, closed at the end.
    With ``slices_per_task``, a stack with more slices is split into tasks of that many
    slices (see :func:`submit_in_parts`).
    """
    try:
        from distributed import Client, LocalCluster, as_completed
    except ImportError as error:
        raise BatchError("--dask needs dask.distributed: pip install 'napari-dip[dask]'") \
            from error
    cluster = None
    if address.startswith("local:"):
        workers = address.removeprefix("local:")
        if not workers.isdigit() or int(workers) < 1:
            raise BatchError(f"--dask {address!r}: expected local:N with N >= 1 workers")
        cluster = LocalCluster(n_workers=int(workers), threads_per_worker=1, processes=True,
                               dashboard_address=None)
        address = cluster.scheduler_address
    outcomes = []
    try:
        try:
            client = Client(address)
        except (OSError, TimeoutError) as error:
            raise BatchError(f"cannot reach the Dask scheduler at {address} "
                             f"({_reason(error)}); start it, check the address, or use "
                             f"--dask local:N for workers on this machine") from error
        with client:
            futures = {}
            for i, job in enumerate(jobs):
                key = f"napari-dip-{i}-{job.input.name}"
                if slices_per_task and count_slices(job) > slices_per_task:
                    future = submit_in_parts(client, job, slices_per_task, key)
                else:
                    future = client.submit(run_job, job, key=key, pure=False)
                futures[future] = job
            try:
                for future in as_completed(futures):
                    job = futures[future]
                    try:
                        outcome = future.result()
                    except Exception as error:  # noqa: BLE001 - a worker died or was lost
                        outcome = Outcome(job.input, "failed", f"Dask task failed: "
                                                               f"{_reason(error)}")
                        _write_failure(job, outcome.reason, _now())
                    outcomes.append(outcome)
                    if progress:
                        progress.finished(outcome)
            except BaseException:
                client.cancel(list(futures))
                raise
    finally:
        if cluster is not None:
            cluster.close()
    order = {job.input: i for i, job in enumerate(jobs)}
    return sorted(outcomes, key=lambda o: order[o.input])


def count_slices(job: Job) -> int:
    """Number of 2D slices in a job's input, from the file's header (1 when it cannot tell)."""
    import tifffile

    try:
        with tifffile.TiffFile(job.input) as tif:
            series = tif.series[0]
            shape, axes = series.shape, job.spec.axes or series.axes
        return int(np.prod(_stack_shape(ImageAxes.from_letters(axes), shape)))
    except Exception:  # noqa: BLE001 - the file's task will report what is wrong with it
        return 1


def _stack_shape(layout: ImageAxes, shape: tuple[int, ...]) -> tuple[int, ...]:
    """The lengths of the looped-over axes of an image of ``shape`` (file order), in the order
    the stack runner visits them (e.g. ``(T, Z)``)."""
    return tuple(shape[i] for i in layout.order if layout.letters[i] not in CHANNEL_AXES)[:-2]


def submit_in_parts(client, job: Job, slices_per_task: int, key: str):
    """Restore one large stack as several Dask tasks of ``slices_per_task`` slices each.

    One task fixes the intensity scaling from the whole stack (as the stack runner would), the
    parts run in parallel (each warm-starts only within its own slices), and a last task
    assembles and writes the output and its run record. Returns that last task's future.
    """
    n_slices = count_slices(job)
    scaling = client.submit(_prepare_parts, job, key=f"{key}-scaling", pure=False)
    parts = [client.submit(_restore_part, job, start, min(start + slices_per_task, n_slices),
                           scaling, key=f"{key}-slices-{start}", pure=False)
             for start in range(0, n_slices, slices_per_task)]
    return client.submit(_save_parts, job, scaling, *parts, key=key, pure=False)


def _flat_slices(data: np.ndarray, channel_axis: int | None) -> np.ndarray:
    """Engine-layout stack -> ``(n_slices, M, N, C)``."""
    hwc = data[..., None] if channel_axis is None else np.moveaxis(data, channel_axis, -1)
    return hwc.reshape((-1,) + hwc.shape[-3:])


def _flat_mask(mask: np.ndarray | None) -> np.ndarray | None:
    """An engine-layout mask -> ``(M, N)`` (one for every slice) or ``(n_slices, M, N)``."""
    return mask if mask is None or mask.ndim == 2 else mask.reshape((-1,) + mask.shape[-2:])


def _prepare_parts(job: Job):
    """First task of a stack in parts: clear earlier results; check the whole stack (and mask)
    as the stack runner would before its first fit, and fix its intensity scaling."""
    import dataclasses

    from ..engine.plan import plan
    from ..io.psf import psf_source

    clear_previous(job)
    _, layout, data, mask = load_job(job)
    psf, described = psf_source(job.spec.psf)
    spec = dataclasses.replace(job.spec, channel_axis=-1, psf=described)
    checked = plan(_flat_slices(data, layout.channel_axis), spec, mask=_flat_mask(mask),
                   psf=psf)
    return {"intensity_range": checked.intensity_range, "started": _now(),
            "clock": time.time()}


def _restore_part(job: Job, start: int, stop: int, prepared,
                  ) -> tuple[np.ndarray, np.ndarray | None, list, int]:
    """Restore slices ``start:stop`` with the whole stack's intensity scaling; also return
    the CPU threads it ran with."""
    undo_tiny_malloc_trim()
    part, mask, stack_shape = _load_part(job, start, stop)
    result, uncertainty, slices, _ = restore_array(
        part, ImageAxes.from_letters("ZYXC"), mask, job.spec,
        intensity_range=prepared["intensity_range"])
    for entry in slices:
        entry["index"] = [int(i) for i in np.unravel_index(start + entry["index"][0],
                                                           stack_shape)]
    return result, uncertainty, slices, threads_ran(slices)


def _load_part(job: Job, start: int, stop: int,
               ) -> tuple[np.ndarray, np.ndarray | None, tuple[int, ...]]:
    """Slices ``start:stop`` of a job's image as ``(n, M, N, C)`` (without its alpha),
    their mask, and the stack's shape; only those slices are read (the task before checked
    the whole image and mask, as :func:`load_job` does)."""
    image = read_tiff_header(job.input, axes=job.spec.axes)
    layout = ImageAxes.from_letters(image.axes)
    part = read_tiff_slices(job.input, image.axes, start, stop)
    if image.alpha:  # kept as it is, not restored
        part = np.ascontiguousarray(part[..., :-1])
    mask = None if job.mask is None else \
        _mask_part(job.mask, layout, image.colours().shape, start, stop)
    return part, mask, _stack_shape(layout, image.data.shape)


def _mask_part(path: Path, layout: ImageAxes, image_shape: tuple[int, ...], start: int,
               stop: int) -> np.ndarray:
    """The mask of slices ``start:stop`` as :meth:`ImageAxes.mask_to_engine` reads it:
    ``(M, N)`` for every slice, or ``(n, M, N)``. A mask of one plane per slice (and channel)
    is read only for those slices; any other is read whole."""
    import tifffile

    with tifffile.TiffFile(path) as tif:
        shape = tuple(tif.series[0].shape)
    plane = tuple(image_shape[layout.letters.index(a)] for a in "YX")
    non_channel = "".join(a for a in layout.letters if a not in CHANNEL_AXES)
    if tuple(n for n in shape if n != 1) != plane:  # mask_to_engine's first case
        if shape == tuple(image_shape):  # a pixel is missing when it is in any channel
            return (read_tiff_slices(path, layout.letters, start, stop) != 0).any(axis=-1)
        if shape == tuple(image_shape[layout.letters.index(a)] for a in non_channel):
            return read_tiff_slices(path, non_channel, start, stop)[..., 0] != 0
    mask = _flat_mask(layout.mask_to_engine(read_mask(path), image_shape))
    return mask if mask.ndim == 2 else mask[start:stop]


def _save_parts(job: Job, prepared, *parts) -> Outcome:
    """Last task of a stack in parts: back to the input's dtype and layout, then write."""
    start = time.perf_counter()
    try:
        image = read_tiff_header(job.input, axes=job.spec.axes)
        if image.alpha:  # its alpha goes back into the result as it is: that needs the pixels
            image = read_tiff(job.input, axes=job.spec.axes)
        layout = ImageAxes.from_letters(image.axes)
        leading = _stack_shape(layout, image.data.shape)

        def joined(arrays):  # the parts' (n, M, N, C) slices -> the engine-layout stack
            hwc = np.concatenate(arrays)
            hwc = hwc.reshape(leading + hwc.shape[1:])
            return hwc[..., 0] if layout.channel_axis is None else \
                np.moveaxis(hwc, -1, layout.channel_axis)

        maps = [uncertainty for _, uncertainty, _, _ in parts]
        uncertainty = None if any(m is None for m in maps) else joined(maps)
        slices = [entry for _, _, part_slices, _ in parts for entry in part_slices]
        threads = {part_threads for *_, part_threads in parts}
        save_result(job, image, layout, joined([result for result, *_ in parts]), uncertainty,
                    slices, threads.pop() if len(threads) == 1 else None,
                    timings={"started": prepared["started"],
                             "restore_s": time.time() - prepared["clock"], "tasks": len(parts)},
                    intensity_range=prepared["intensity_range"])
    except Exception as error:  # noqa: BLE001 - reported like any other failed file
        reason = _reason(error)
        _write_failure(job, reason, prepared["started"])
        return Outcome(job.input, "failed", reason, seconds=time.perf_counter() - start)
    return Outcome(job.input, "written", output=job.output,
                   seconds=time.time() - prepared["clock"])

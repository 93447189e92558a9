"""Batch restoration of TIFF files: find inputs, plan safe outputs, resume, run here or on Dask.

Every input becomes a :class:`Job` (input, output, run record, mask). A job's output is a TIFF
of the same name in the output folder, written atomically; a run that draws posterior samples
(Bayesian DIP) also writes its uncertainty map, under the same name in the ``uncertainty``
subfolder; the run record (``<output name>.json``) is written last: an output counts as
finished only when its record exists and says ``"status": "complete"``. :func:`run_batch` runs
the jobs in this process or as tasks on a ``dask.distributed`` cluster; either way the worker
that restores a file writes it.
"""

from __future__ import annotations

import ctypes
import dataclasses
import glob
import os
import platform
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from .config import DEFAULT_PRESET
from .io import (CHANNEL_AXES, EngineLayout, TiffImage, check_writable,
                 leftover_temporaries, package_versions, read_json, read_mask, read_tiff,
                 read_tiff_header, read_tiff_slices, write_json, write_tiff)

TIFF_SUFFIXES = (".tif", ".tiff")
UNCERTAINTY_FOLDER = "uncertainty"
RECORD_FORMAT = 1
# Snapshot fields that are images or already in the record; any other field (such as a
# stopping rule's) is recorded per slice as it is, or as a mean when it is an array
_SNAPSHOT_SKIPPED = {"image", "average", "estimate", "config", "done", "iteration", "elapsed",
                     "device", "loss", "backtracks", "max_iterations", "tile"}


class BatchError(ValueError):
    """A batch that must not start (e.g. an output that would overwrite an input)."""


@dataclass(frozen=True)
class Request:
    """What to do to every file; plain values only, so it travels to Dask workers.

    ``settings`` are :class:`~napari_dip.DIPConfig` overrides (``max_iterations`` included).
    ``threads``: CPU threads for each fit (None: torch's default); a CPU fit repeats bit for bit
    only with the same count. ``slices_per_task``: with Dask, stacks of more slices are split
    into tasks of this many (which changes their result: warm start stops at each part).
    """

    task: str
    preset: str = DEFAULT_PRESET
    factor: int | None = None
    seed: int = 0
    device: str | None = None
    axes: str | None = None
    settings: dict[str, Any] = field(default_factory=dict)
    threads: int | None = None
    slices_per_task: int | None = None

    def config(self):
        from .config import get_config

        return get_config(self.preset, self.task, self.factor, **self.settings)

    def fingerprint(self, mask: Path | None) -> dict[str, Any]:
        """What decides a result (run record keys): ``--resume`` reuses an output only if these
        match."""
        return {"task": self.task, "factor": self.factor, "seed": self.seed, "axes": self.axes,
                "threads": self.threads, "slices_per_task": self.slices_per_task,
                "mask": None if mask is None else str(mask), "config": self.config().to_dict()}


@dataclass(frozen=True)
class Job:
    """One input file and where its result and run record go."""

    input: Path
    output: Path
    mask: Path | None
    request: Request

    @property
    def record(self) -> Path:
        return record_path(self.output)

    @property
    def uncertainty(self) -> Path:
        """Where the uncertainty map goes, if the run draws posterior samples."""
        return uncertainty_path(self.output)

    def fingerprint(self) -> dict[str, Any]:
        """What decides this job's result: the request's settings and which input (and mask)
        file, by path, size and modification time, so that ``--resume`` redoes an input that
        was replaced or re-exported since its output was made."""
        return {**self.request.fingerprint(self.mask),  # the file itself, by whatever name
                "source": _file_identity(self.input.resolve()),
                "mask_source": None if self.mask is None else _file_identity(self.mask)}


def _file_identity(path: Path) -> dict[str, Any]:
    try:
        stat = path.stat()
    except OSError:
        return {"path": str(path)}
    return {"path": str(path), "size": stat.st_size, "mtime_ns": stat.st_mtime_ns}


@dataclass
class Outcome:
    """What happened to one input: ``"written"``, ``"skipped"`` (already complete) or
    ``"failed"``."""

    input: Path
    status: str
    reason: str = ""
    output: Path | None = None
    seconds: float = 0.0


def record_path(output: Path) -> Path:
    """The run record beside an output: ``cells.tif`` -> ``cells.tif.json``."""
    return output.with_name(output.name + ".json")


def uncertainty_path(output: Path) -> Path:
    """An output's uncertainty map: ``out/cells.tif`` -> ``out/uncertainty/cells.tif``."""
    return output.parent / UNCERTAINTY_FOLDER / output.name


# ----------------------------------------------------------------------------- planning

def find_inputs(patterns: Iterable[str | os.PathLike]) -> tuple[list[Path], list[Outcome]]:
    """Files named by ``patterns`` (files, folders, globs), in order, without repeats.

    A folder contributes its ``*.tif``/``*.tiff`` files (not recursively, not hidden ones
    whose names start with a dot). A pattern that names nothing, and a link to a file that
    does not exist, become failed :class:`Outcome` s so that the batch can report them and go
    on. Paths are absolute but keep the names they were given: a symbolic link is restored
    under its own name, not its target's; two names for one file count once.
    """
    found: dict[Path, Path] = {}  # the file itself -> the name it was first given
    missing: list[Outcome] = []
    for pattern in patterns:
        path = Path(pattern)
        if path.is_dir():
            named = sorted(p for p in path.iterdir()  # not hidden ones, e.g. macOS ._x.tif
                           if p.suffix.lower() in TIFF_SUFFIXES and not p.name.startswith("."))
        elif path.exists() or path.is_symlink():
            named = [path]
        else:
            named = sorted(Path(p) for p in glob.glob(str(pattern), recursive=True))
        matches = [p for p in named if p.is_file()]
        broken = [Outcome(p, "failed", "a link to a file that does not exist")
                  for p in named if p.is_symlink() and not p.exists()]
        missing += broken
        if not matches and not broken:
            what = "folder has no .tif/.tiff files" if path.is_dir() else \
                "no such file, folder or matching files"
            missing.append(Outcome(path, "failed", what))
        for match in matches:
            found.setdefault(match.resolve(), match.absolute())
    return list(found.values()), missing


def find_mask(image: Path, mask_dir: Path) -> Path:
    """The mask for ``image`` in ``mask_dir``: the same file name, the same stem with another
    TIFF suffix, or the stem with ``_mask`` appended (``cells.tif`` -> ``cells_mask.tif``).
    An OME-TIFF's stem is its name without ``.ome.tif`` (``cells.ome.tif`` ->
    ``cells_mask.tif`` or ``cells_mask.ome.tif``)."""
    stem = image.stem[:-4] if image.stem.lower().endswith(".ome") else image.stem
    suffixes = [*TIFF_SUFFIXES, *(f".ome{suffix}" for suffix in TIFF_SUFFIXES)]
    candidates = [mask_dir / image.name]
    for name in dict.fromkeys((image.stem, stem, f"{stem}_mask")):
        candidates += [mask_dir / f"{name}{suffix}" for suffix in suffixes]
        candidates += [mask_dir / f"{name}{suffix.upper()}" for suffix in suffixes]
    for candidate in candidates:
        if candidate.is_file():
            return candidate.resolve()
    raise ValueError(f"no mask named {image.name} (or {stem}_mask.tif) in {mask_dir}")


def plan_jobs(inputs: Sequence[Path], out_dir: Path, request: Request, *,
              mask: Path | None = None, mask_dir: Path | None = None,
              ) -> tuple[list[Job], list[Outcome]]:
    """One job per input, or a failed outcome when its mask cannot be found.

    Raises :class:`BatchError` when an output or run record would land on an input or a mask,
    or when two inputs share a name (their outputs would collide).
    """
    out_dir = Path(out_dir).resolve()
    if out_dir.exists() and not out_dir.is_dir():
        raise BatchError(f"--out {out_dir} exists and is not a folder")
    protected = {Path(p).resolve(): "input" for p in inputs}  # path -> what it is
    if mask is not None:
        protected[Path(mask).resolve()] = "mask"
    jobs, failed, names = [], [], {}
    for source in inputs:
        source = Path(source).absolute()  # a link keeps its own name
        output = out_dir / source.name
        if source.name in names:
            raise BatchError(f"{source} and {names[source.name]} have the same name; their "
                             f"results would both be {output}. Run them in separate batches")
        names[source.name] = source
        try:
            job_mask = find_mask(source, mask_dir) if mask_dir is not None else \
                (Path(mask).resolve() if mask is not None else None)
        except ValueError as error:
            failed.append(Outcome(source, "failed", str(error)))
            continue
        if job_mask is not None:
            protected.setdefault(job_mask, "mask")
        jobs.append(Job(source, output, job_mask, request))
    same_file = _file_finder(protected)
    for job in jobs:
        for target in (job.output, job.record, job.uncertainty):
            clash = same_file(target)
            if clash is not None:
                raise BatchError(f"refusing to write {target}: it would overwrite the "
                                 f"{protected[clash]} {clash}. Choose another --out folder")
    return jobs, failed


def _file_finder(paths: Iterable[Path]) -> Callable[[Path], Path | None]:
    """A lookup of which of ``paths`` (resolved) a path names, by its resolved path or, for a
    file that exists, by its device and inode (a hard link, another mount): one stat per
    path, so planning thousands of files stays linear."""
    known = set(paths)
    by_inode = {}
    for path in known:
        try:
            stat = path.stat()
        except OSError:
            continue
        by_inode[(stat.st_dev, stat.st_ino)] = path

    def find(target: Path) -> Path | None:
        target = target.resolve()
        if target in known:
            return target
        try:
            stat = target.stat()
        except OSError:
            return None
        return by_inode.get((stat.st_dev, stat.st_ino))

    return find


def check_output_folder(out_dir: Path) -> None:
    """Create ``out_dir`` if needed and prove that files can be written there, so that a batch
    does not fit every file only to fail when writing; :class:`BatchError` otherwise."""
    import tempfile

    out_dir = Path(out_dir)
    if not out_dir.exists() and out_dir.suffix.lower() in TIFF_SUFFIXES:
        raise BatchError(f"--out {out_dir} looks like a file name; --out is the folder the "
                         f"results go to (each keeps its input's name), e.g. --out "
                         f"{out_dir.with_suffix('')}")
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=out_dir, prefix=".napari-dip-probe-"):
            pass
    except OSError as error:
        raise BatchError(f"cannot write to --out {out_dir} ({error.strerror or error}); choose "
                         f"a folder you can write to") from error


def is_complete(job: Job) -> bool:
    """True when the job's output exists and its run record says complete, for the same request."""
    record = read_json(job.record)
    if record is None or record.get("status") != "complete" or not job.output.is_file():
        return False
    if record.get("uncertainty") and not job.uncertainty.is_file():
        return False
    expected = _jsonable(job.fingerprint())
    return all(record.get(key) == value for key, value in expected.items())


def _jsonable(value: Any) -> Any:
    """``value`` as it reads back from JSON (tuples become lists), for comparisons."""
    import json

    return json.loads(json.dumps(value))


def clear_previous(job: Job) -> None:
    """Before redoing a job: remove its earlier run record (so that its earlier output no longer
    counts as finished) and any temporary files a killed run left. The earlier output itself
    stays until the new one is renamed over it: a redo that fails or is interrupted loses
    nothing."""
    for path in (job.record, *leftover_temporaries(job.output),
                 *leftover_temporaries(job.record), *leftover_temporaries(job.uncertainty)):
        path.unlink(missing_ok=True)


# ----------------------------------------------------------------------------- one file

SnapshotCallback = Callable[[Any], None]


def run_job(job: Job, on_snapshot: SnapshotCallback | None = None) -> Outcome:
    """Restore one file and write its output and run record; never raises for a bad file.

    Reading, restoring and writing errors become a failed :class:`Outcome` with a one-line
    reason (and a run record that says ``"failed"``).
    """
    start = time.perf_counter()
    started = _now()
    from .device import torch_threads

    undo_tiny_malloc_trim()
    try:
        clear_previous(job)
        image, layout, engine_data, mask = load_job(job)
        loaded = time.perf_counter()
        with torch_threads(job.request.threads) as threads:
            result, uncertainty, slices, intensity_range = restore_array(
                engine_data, layout, mask, job.request, on_snapshot)
        restored = time.perf_counter()
        save_result(job, image, layout, result, uncertainty, slices, threads,
                    timings={"started": started, "read_s": loaded - start,
                             "restore_s": restored - loaded}, intensity_range=intensity_range)
    except Exception as error:  # one bad file must not stop the batch
        reason = _reason(error)
        _write_failure(job, reason, started)
        return Outcome(job.input, "failed", reason, seconds=time.perf_counter() - start)
    return Outcome(job.input, "written", output=job.output, seconds=time.perf_counter() - start)


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


def load_job(job: Job) -> tuple[TiffImage, EngineLayout, np.ndarray, np.ndarray | None]:
    """Read a job's image (and mask) and arrange them for the stack runner."""
    image = read_tiff(job.input, axes=job.request.axes)
    check_writable(image, job.request.factor)
    layout = EngineLayout.for_axes(image.axes)
    colours = image.colours()  # RGBA: alpha is kept as it is, not restored
    mask = None
    if job.mask is not None:
        try:
            mask_data = read_mask(job.mask)
        except ValueError as error:
            raise ValueError(f"mask {job.mask.name}: {error}") from error
        mask = layout.mask_to_engine(mask_data, colours.shape)
    return image, layout, layout.to_engine(colours), mask


def restore_array(data: np.ndarray, layout: EngineLayout, mask: np.ndarray | None,
                  request: Request, on_snapshot: SnapshotCallback | None = None,
                  intensity_range: tuple[float, float] | None = None,
                  ) -> tuple[np.ndarray, np.ndarray | None, list[dict[str, Any]],
                             tuple[float, float]]:
    """Run the stack runner on ``data`` (engine layout); return the result, its uncertainty map
    (None unless the run draws posterior samples), per-slice records and the intensity range
    the slices were scaled from. ``intensity_range`` imposes it (a stack restored in parts)."""
    from .api import iter_restore_stack

    slices: list[dict[str, Any]] = []
    fits: dict[tuple[int, ...], dict[tuple[int, int], dict]] = {}  # slice -> (tile, run) -> end
    last = None
    steps = iter_restore_stack(data, task=request.task, mask=mask, factor=request.factor,
                               preset=request.preset, channel_axis=layout.channel_axis,
                               seed=request.seed, device=request.device,
                               intensity_range=intensity_range, **request.settings)
    for last in steps:
        if on_snapshot is not None:
            on_snapshot(last)
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
            "loss": snapshot.loss}


def slice_record(snapshot, fits: dict[tuple[int, int], dict] | None = None) -> dict[str, Any]:
    """How one slice's fit ended: stop iteration, loss, time, and any extra snapshot fields.
    A slice restored in several fits (tiles, runs) lists how each ended under ``"fits"``
    (``fits``: each fit's :func:`fit_record` by tile and run); the top-level iteration count
    and stop are the last fit's."""
    from .api import run_record

    record = run_record(snapshot)
    record.pop("config")
    record["max_iterations"] = snapshot.max_iterations
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


def save_result(job: Job, image: TiffImage, layout: EngineLayout, result: np.ndarray,
                uncertainty: np.ndarray | None, slices: list[dict[str, Any]],
                threads: int | None, timings: dict[str, Any],
                intensity_range: tuple[float, float] | None = None) -> None:
    """Write the output TIFF and its uncertainty map (if any), then its run record (last, so
    it marks the output complete). ``threads``: the CPU threads the fits ran with;
    ``intensity_range``: the intensities the model's [0, 1] stood for."""
    begin = time.perf_counter()
    output = image.restored(image.with_alpha(layout.from_engine(result), job.request.factor),
                            job.request.factor)
    write_tiff(job.output, output)
    extra: dict[str, Any] = {}
    if uncertainty is not None:
        job.uncertainty.parent.mkdir(exist_ok=True)
        uncertainty_map = image.restored_map(layout.from_engine(uncertainty), job.request.factor)
        write_tiff(job.uncertainty, uncertainty_map)
        extra["uncertainty"] = {"path": str(job.uncertainty), **uncertainty_map.describe()}
    else:  # an earlier run's map must not pass for this result's
        job.uncertainty.unlink(missing_ok=True)
    timings = {**timings, "write_s": time.perf_counter() - begin, "finished": _now()}
    for key, value in timings.items():
        if isinstance(value, float):
            timings[key] = round(value, 3)
    timings["total_s"] = round(sum(v for k, v in timings.items() if k.endswith("_s")), 3)
    write_json(job.record, {**_record_header(job, "complete"),
                            "input": {"path": str(job.input), **image.describe()},
                            "output": {"path": str(job.output), **output.describe()}, **extra,
                            "device": slices[0].get("device") if slices else None,
                            "threads_used": threads,
                            "intensity_range": None if intensity_range is None
                            else [float(v) for v in intensity_range],
                            "timings": timings, "slices": slices})


def _record_header(job: Job, status: str) -> dict[str, Any]:
    request = job.request
    return {"napari_dip_record": RECORD_FORMAT, "status": status,
            **job.fingerprint(), "preset": request.preset,
            "requested_device": request.device,
            "versions": package_versions("dask", "distributed"), "host": platform.node()}


def _write_failure(job: Job, reason: str, started: str) -> None:
    try:
        write_json(job.record, {**_record_header(job, "failed"), "reason": reason,
                                "input": {"path": str(job.input)},
                                "timings": {"started": started, "finished": _now()}})
    except Exception:  # noqa: BLE001 - e.g. an invalid request; the outcome still reports it
        pass


# ----------------------------------------------------------------------------- the batch

class Progress:
    """Bars for files, slices and iterations (tqdm, on stderr); silent when ``quiet``.

    Failures are always printed, one line each; finished and skipped files only when not quiet.
    """

    def __init__(self, n_files: int, *, quiet: bool = False) -> None:
        from tqdm.auto import tqdm

        self.quiet = quiet
        self._tqdm = tqdm
        self.files = tqdm(total=n_files, desc="files", unit="file", disable=quiet, position=0)
        self.slices = None
        self.iterations = None
        self._fit = None

    def on_snapshot(self, stack_snapshot) -> None:
        """Move the slice and iteration bars to a :class:`~napari_dip.StackSnapshot`."""
        if self.quiet:
            return
        snap = stack_snapshot.snapshot
        if self.slices is None:
            self.slices = self._tqdm(total=stack_snapshot.n_slices, desc="slices", unit="slice",
                                     position=1, leave=False)
        fit = (stack_snapshot.slice_number, snap.tile)  # one bar per slice, or per tile
        if self.iterations is None or self._fit != fit:
            if self.iterations is not None:
                self.iterations.close()
            desc = f"tile {snap.tile + 1}/{snap.n_tiles}" if snap.n_tiles > 1 else "iterations"
            self.iterations = self._tqdm(total=snap.max_iterations, desc=desc,
                                         unit="it", position=2, leave=False)
            self._fit = fit
        self.iterations.update(snap.iteration - self.iterations.n)
        self.iterations.set_postfix(loss=f"{snap.loss:.4g}", refresh=False)
        if snap.done:
            self.slices.update(len(stack_snapshot.group))

    def finished(self, outcome: Outcome) -> None:
        """Count a finished file and say what happened to it."""
        self._close_inner()
        self.files.update(1)
        if outcome.status == "failed":
            self.say(f"failed  {outcome.input}: {outcome.reason}", always=True)
        elif outcome.status == "written":
            self.say(f"wrote   {outcome.output} ({outcome.seconds:.1f} s)")
        else:
            self.say(f"skipped {outcome.input}: {outcome.reason}")

    def say(self, line: str, always: bool = False) -> None:
        import sys

        if always or not self.quiet:
            self._tqdm.write(line, file=sys.stderr)

    def _close_inner(self) -> None:
        for bar in (self.iterations, self.slices):
            if bar is not None:
                bar.close()
        self.iterations = self.slices = None

    def close(self) -> None:
        self._close_inner()
        self.files.close()


def select_jobs(jobs: Sequence[Job], *, resume: bool, overwrite: bool,
                ) -> tuple[list[Job], list[Outcome]]:
    """Jobs to run, and outcomes for those not to run (finished, or whose output exists).

    With ``resume``, an output whose record is complete for the same request is skipped and
    anything else is redone. Without ``resume`` or ``overwrite``, an existing output is left
    alone and reported as failed rather than replaced.
    """
    todo, settled = [], []
    for job in jobs:
        if resume and is_complete(job):
            settled.append(Outcome(job.input, "skipped", "complete (run record found)",
                                   output=job.output))
        elif not (resume or overwrite) and (job.output.exists() or job.record.exists()):
            settled.append(Outcome(job.input, "failed",
                                   f"{job.output.name} already has results in {job.output.parent}"
                                   f"; use --resume to keep finished outputs or --overwrite to "
                                   f"redo them"))
        else:
            todo.append(job)
    return todo, settled


def run_batch(jobs: Sequence[Job], *, progress: Progress | None = None,
              dask: str | None = None, slices_per_task: int | None = None) -> list[Outcome]:
    """Run ``jobs`` in this process, or on a Dask cluster (an address, or ``local:N``)."""
    if dask:
        return run_on_dask(jobs, dask, progress, slices_per_task)
    outcomes = []
    for job in jobs:
        outcome = run_job(job, progress.on_snapshot if progress else None)
        outcomes.append(outcome)
        if progress:
            progress.finished(outcome)
    return outcomes


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


# ----------------------------------------------------------------------------- stacks in parts

def count_slices(job: Job) -> int:
    """Number of 2D slices in a job's input, from the file's header (1 when it cannot tell)."""
    import tifffile

    try:
        with tifffile.TiffFile(job.input) as tif:
            series = tif.series[0]
            shape, axes = series.shape, job.request.axes or series.axes
        return int(np.prod(_stack_shape(EngineLayout.for_axes(axes), shape)))
    except Exception:  # noqa: BLE001 - the file's task will report what is wrong with it
        return 1


def _stack_shape(layout: EngineLayout, shape: tuple[int, ...]) -> tuple[int, ...]:
    """The lengths of the looped-over axes of an image of ``shape`` (file order), in the order
    the stack runner visits them (e.g. ``(T, Z)``)."""
    return tuple(shape[i] for i in layout.order if layout.axes[i] not in CHANNEL_AXES)[:-2]


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
    from .engine.plan import plan
    from .spec import RunSpec

    clear_previous(job)
    _, layout, data, mask = load_job(job)
    request = job.request
    spec = RunSpec(task=request.task, preset=request.preset, factor=request.factor,
                   overrides=request.settings, seed=request.seed, device=request.device,
                   channel_axis=-1)
    checked = plan(_flat_slices(data, layout.channel_axis), spec, mask=_flat_mask(mask))
    return {"intensity_range": checked.intensity_range, "started": _now(),
            "clock": time.time()}


def _restore_part(job: Job, start: int, stop: int, prepared,
                  ) -> tuple[np.ndarray, np.ndarray | None, list, int]:
    """Restore slices ``start:stop`` with the whole stack's intensity scaling; also return
    the CPU threads it ran with."""
    from .device import torch_threads

    undo_tiny_malloc_trim()
    part, mask, stack_shape = _load_part(job, start, stop)
    with torch_threads(job.request.threads) as threads:
        result, uncertainty, slices, _ = restore_array(
            part, EngineLayout.for_axes("ZYXC"), mask, job.request,
            intensity_range=prepared["intensity_range"])
    for entry in slices:
        entry["index"] = [int(i) for i in np.unravel_index(start + entry["index"][0],
                                                           stack_shape)]
    return result, uncertainty, slices, threads


def _load_part(job: Job, start: int, stop: int,
               ) -> tuple[np.ndarray, np.ndarray | None, tuple[int, ...]]:
    """Slices ``start:stop`` of a job's image as ``(n, M, N, C)`` (without its alpha),
    their mask, and the stack's shape; only those slices are read (the task before checked
    the whole image and mask, as :func:`load_job` does)."""
    image = read_tiff_header(job.input, axes=job.request.axes)
    layout = EngineLayout.for_axes(image.axes)
    part = read_tiff_slices(job.input, image.axes, start, stop)
    if image.alpha:  # kept as it is, not restored
        part = np.ascontiguousarray(part[..., :-1])
    mask = None if job.mask is None else \
        _mask_part(job.mask, layout, image.colours().shape, start, stop)
    return part, mask, _stack_shape(layout, image.data.shape)


def _mask_part(path: Path, layout: EngineLayout, image_shape: tuple[int, ...], start: int,
               stop: int) -> np.ndarray:
    """The mask of slices ``start:stop`` as :meth:`EngineLayout.mask_to_engine` reads it:
    ``(M, N)`` for every slice, or ``(n, M, N)``. A mask of one plane per slice (and channel)
    is read only for those slices; any other is read whole."""
    import tifffile

    with tifffile.TiffFile(path) as tif:
        shape = tuple(tif.series[0].shape)
    plane = tuple(image_shape[layout.axes.index(a)] for a in "YX")
    non_channel = "".join(a for a in layout.axes if a not in CHANNEL_AXES)
    if tuple(n for n in shape if n != 1) != plane:  # mask_to_engine's first case
        if shape == tuple(image_shape):  # a pixel is missing when it is in any channel
            return (read_tiff_slices(path, layout.axes, start, stop) != 0).any(axis=-1)
        if shape == tuple(image_shape[layout.axes.index(a)] for a in non_channel):
            return read_tiff_slices(path, non_channel, start, stop)[..., 0] != 0
    mask = _flat_mask(layout.mask_to_engine(read_mask(path), image_shape))
    return mask if mask.ndim == 2 else mask[start:stop]


def _save_parts(job: Job, prepared, *parts) -> Outcome:
    """Last task of a stack in parts: back to the input's dtype and layout, then write."""
    start = time.perf_counter()
    try:
        image = read_tiff_header(job.input, axes=job.request.axes)
        if image.alpha:  # its alpha goes back into the result as it is: that needs the pixels
            image = read_tiff(job.input, axes=job.request.axes)
        layout = EngineLayout.for_axes(image.axes)
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

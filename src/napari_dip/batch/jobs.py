"""Planning a batch: which inputs, where their outputs and records go, and whether a finished
output can be kept (``--resume`` compares the fingerprint its run record holds)."""

from __future__ import annotations

import glob
import os
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..presets import DEFAULT_PRESET
from ..io.records import leftover_temporaries, read_json

TIFF_SUFFIXES = (".tif", ".tiff")
UNCERTAINTY_FOLDER = "uncertainty"


class BatchError(ValueError):
    """A batch that must not start (e.g. an output that would overwrite an input)."""


@dataclass(frozen=True)
class Request:
    """What to do to every file; plain values only, so it travels to Dask workers.

    ``settings`` are :class:`~napari_dip.DIPConfig` overrides (``max_iterations`` included).
    ``threads``: CPU threads for each fit (None: torch's default); a CPU fit repeats bit for bit
    only with the same count. ``slices_per_task``: with Dask, stacks of more slices are split
    into tasks of this many (which changes their result: warm start stops at each part).
    ``psf``: deconvolution's PSF description (:attr:`napari_dip.spec.RunSpec.psf`).
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
    psf: dict[str, Any] | None = None

    def config(self):
        from ..presets import get_config

        return get_config(self.preset, self.task, self.factor, **self.settings)

    def fingerprint(self, mask: Path | None) -> dict[str, Any]:
        """What decides a result (run record keys): ``--resume`` reuses an output only if these
        match."""
        return {"task": self.task, "factor": self.factor, "seed": self.seed, "axes": self.axes,
                "threads": self.threads, "slices_per_task": self.slices_per_task,
                "mask": None if mask is None else str(mask), "config": self.config().to_dict(),
                **({} if self.psf is None else {"psf": self.psf})}


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

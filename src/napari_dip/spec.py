"""One run, described once: :class:`RunSpec` and its one JSON document.

A run record beside a batch output, a result layer's metadata in napari and a ``--config`` file
are the same document: ``{"napari_dip_run": 2, "task": ..., "preset": ..., "overrides": {...},
"config": {...}, "seed": ..., ...}``. A record or a layer may carry its outcome beside these
keys (status, timings, per-slice results: :func:`record` writes it); reading takes the run's
keys and leaves the rest.

Older documents are read through explicit upgrades (:data:`UPGRADES`), each named by the
marker that document carries: batch run records (``"napari_dip_record": 1``), the widget's
layer metadata (a ``"napari_dip"`` entry, or its content with ``"source_layer"``) and plain
option files (no marker: option names to values, as ``--config`` always took them).
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

FORMAT = 2
"""The version of the JSON form :meth:`RunSpec.to_dict` writes."""
MARKER = "napari_dip_run"

RUN_KEYS = ("task", "preset", "factor", "seed", "device", "threads", "channel_axis",
            "intensity_range", "axes", "slices_per_task", "psf")
"""The option names a document may give besides the settings (:class:`~napari_dip.DIPConfig`
fields)."""


@dataclass(frozen=True)
class RunSpec:
    """Everything that decides a run's result, so that it can be repeated.

    Attributes
    ----------
    task : {"denoise", "inpaint", "super_resolve", "deconvolve"}
    preset : str or DIPConfig
        A preset name, or a ready config (written to JSON as its settings).
    factor : int or None
        Super-resolution factor.
    overrides : dict
        Settings that replace the preset's (``max_iterations`` included); the precision and
        memory layout that ``"auto"`` chose are pinned here to repeat a run (:meth:`pinned`).
    seed : int
    device : str or None
        As asked for (None or ``"auto"``: the best available).
    threads : int, "auto" or None
        CPU threads for each fit: ``"auto"`` measures before each fit whether one thread or
        all are faster (:mod:`napari_dip.engine.threads`), None leaves torch's count as it is;
        a CPU result repeats bit for bit only with the same count, which :meth:`pinned` fixes.
    channel_axis : int or None
        The input's channel axis (after ``axes`` arranged a file, for the batch).
    intensity_range : (float, float) or None
        The intensities the model's [0, 1] stands for (None: chosen from the image).
    axes : str or None
        A file's axis letters, overriding what the file says (batch only).
    slices_per_task : int or None
        With Dask, stacks of more slices are split into tasks of this many (batch only).
    psf : dict or None
        Deconvolution: which PSF blurs the image, as
        :func:`~napari_dip.engine.psf.psf_description` gives it: a model's name and numbers
        (which rebuild it), or an array's shape and digest (and its file's ``"path"``).
    """

    task: str = "denoise"
    preset: Any = "auto"
    factor: int | None = None
    overrides: Mapping[str, Any] = field(default_factory=dict)
    seed: int = 0
    device: str | None = None
    threads: int | str | None = "auto"
    channel_axis: int | None = None
    intensity_range: tuple[float, float] | None = None
    axes: str | None = None
    slices_per_task: int | None = None
    psf: Mapping[str, Any] | None = None

    def config(self):
        """The run's :class:`~napari_dip.DIPConfig`: the preset with the overrides applied."""
        from .presets import get_config

        return get_config(self.preset, self.task, self.factor, **self.overrides)

    def check(self) -> RunSpec:
        """Refuse a spec whose values cannot run, naming the key and the fix; return it."""
        from .config import check_factor, check_seed, check_task, check_threads

        check_task(self.task)
        check_factor(self.task, self.factor)
        check_seed(self.seed)
        check_threads(self.threads)
        value = self.slices_per_task
        if value is not None and (isinstance(value, bool) or not isinstance(value, int)
                                  or value < 1):
            raise ValueError(f"slices_per_task must be a positive whole number, got {value!r}")
        if self.axes is not None and not isinstance(self.axes, str):
            raise ValueError(f"axes must be letters such as 'ZYX' or 'TZCYX', got {self.axes!r}")
        if self.channel_axis is not None and (isinstance(self.channel_axis, bool) or
                                              not isinstance(self.channel_axis, int)):
            raise ValueError(f"channel_axis={self.channel_axis!r} must be an integer axis "
                             f"(e.g. -1 for channels last) or null for a greyscale image")
        if self.intensity_range is not None:
            _checked_range(self.intensity_range)
        if self.psf is not None:
            from .engine.psf import check_psf_description

            if self.task != "deconvolve":
                raise ValueError(f"psf is only used by task 'deconvolve', not {self.task!r}")
            check_psf_description(self.psf)
        self.config()
        return self

    def pinned(self, ran: Iterable[Mapping[str, Any]]) -> RunSpec:
        """This spec with the precision, memory layout and CPU threads that ``"auto"`` chose
        pinned, where every fit in ``ran`` (mappings with ``"precision"`` /
        ``"memory_format"`` / ``"threads"``, e.g. a record's slices) agrees: a run repeats bit
        for bit only in the same arithmetic."""
        ran = list(ran)
        threads = self.threads
        counts = {entry.get("threads") for entry in ran if isinstance(entry, Mapping)}
        if threads == "auto" and len(counts) == 1 and isinstance(next(iter(counts)), int):
            threads = counts.pop()
        return dataclasses.replace(self, threads=threads, overrides=_pinned(
            {**self.config().to_dict(), **self.overrides}, ran, self.overrides))

    def to_dict(self) -> dict[str, Any]:
        """The JSON form: the marker and version, every field, and the settings as they
        resolved (``"config"``), so a document still repeats its run if a preset changes."""
        from .config import DIPConfig

        custom = isinstance(self.preset, DIPConfig)
        overrides = {**self.preset.to_dict(), **self.overrides} if custom else \
            dict(self.overrides)
        document = {MARKER: FORMAT, **{name: getattr(self, name) for name in RUN_KEYS},
                    "preset": None if custom else self.preset, "overrides": overrides,
                    "config": self.config().to_dict()}
        if self.intensity_range is not None:
            document["intensity_range"] = [float(v) for v in self.intensity_range]
        return document

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    @classmethod
    def from_dict(cls, document: Mapping[str, Any], *, source: str = "the document",
                  ) -> RunSpec:
        """The spec a document describes, in any of the forms :data:`UPGRADES` reads."""
        return cls.from_options(read_options(document, source=source), source=source)

    @classmethod
    def from_options(cls, options: Mapping[str, Any], *, source: str = "the options",
                     ) -> RunSpec:
        """A spec from flat options (run keys and settings, as :func:`read_options` gives
        them); unset keys take their defaults."""
        from .presets import DEFAULT_PRESET

        check_option_names(options, source)
        settings = {k: v for k, v in options.items() if k not in RUN_KEYS}
        given = {k: options[k] for k in RUN_KEYS if options.get(k) is not None}
        given.setdefault("preset", DEFAULT_PRESET)
        if given.get("intensity_range") is not None:
            given["intensity_range"] = tuple(given["intensity_range"])
        try:
            return cls(**given, overrides=settings).check()
        except ValueError as error:
            raise ValueError(f"{source}: {error}") from error

    @classmethod
    def load(cls, path: str | Path) -> RunSpec:
        """The spec in a JSON or YAML file (any form :data:`UPGRADES` reads)."""
        return cls.from_options(load_options(path), source=f"--config {path}")


def _checked_range(values) -> tuple[float, float]:
    try:
        low, high = (float(v) for v in values)
    except (TypeError, ValueError):
        low = high = math.nan
    if not (math.isfinite(low) and math.isfinite(high) and low < high):
        raise ValueError(f"intensity_range={values!r} must be two finite numbers [low, high] "
                         f"with low < high, or null to choose it from the image")
    return low, high


def _pinned(settings: dict[str, Any], ran: list, base: Mapping[str, Any]) -> dict[str, Any]:
    """``base`` with ``precision`` and ``memory_format`` set to what every fit in ``ran``
    chose, where ``settings`` left them to ``"auto"``."""
    pinned = dict(base)
    for key in ("precision", "memory_format"):
        chosen = {entry.get(key) for entry in ran if isinstance(entry, Mapping)}
        if settings.get(key) == "auto" and len(chosen) == 1 and None not in chosen:
            pinned[key] = chosen.pop()
    return pinned


# ----------------------------------------------------------------------------- documents

def known_options() -> set[str]:
    """Every option name a document may give: the run keys and the settings."""
    from .config import describe_fields

    return set(RUN_KEYS) | {f["name"] for f in describe_fields()}


def check_option_names(options: Mapping[str, Any], source: str) -> None:
    unknown = sorted(set(options) - known_options())
    if unknown:
        raise ValueError(f"{source}: unknown option(s) {unknown}; known options are "
                         f"{sorted(known_options())}")


def document_kind(document: Mapping[str, Any]) -> str:
    """Which form ``document`` has, by the marker it carries: ``"run"`` (this module's),
    ``"record"`` (a batch run record of format 1), ``"layer"`` (the widget's layer metadata
    before this form) or ``"options"`` (no marker)."""
    if MARKER in document:
        return "run"
    if "napari_dip_record" in document:
        return "record"
    if "source_layer" in document and isinstance(document.get("config"), dict):
        return "layer"
    return "options"


def read_options(document: Mapping[str, Any], *, source: str = "the document",
                 ) -> dict[str, Any]:
    """The flat options (run keys and settings, names with underscores) a document gives, in
    any form: a napari layer's whole metadata is unwrapped first (its ``"napari_dip"``
    entry). Options a plain file leaves out stay out, so that another source can supply them."""
    if not isinstance(document, Mapping):
        raise ValueError(f"{source} must hold a mapping of option names to values")
    if isinstance(document.get("napari_dip"), Mapping):  # a napari layer's metadata, whole
        document = document["napari_dip"]
    options = UPGRADES[document_kind(document)](document, source)
    options = {str(key).replace("-", "_"): value for key, value in options.items()}
    check_option_names(options, source)
    return options


def _from_run(document: Mapping[str, Any], source: str) -> dict[str, Any]:
    """Format 2 (:meth:`RunSpec.to_dict`): its run keys and overrides. Where ``"config"`` no
    longer matches what the preset and overrides give (the preset changed since), the settings
    as they ran are taken whole."""
    from .presets import get_config

    version = document[MARKER]
    if version != FORMAT:
        raise ValueError(f"{source} is a napari-dip run of format {version!r}; this version "
                         f"reads format {FORMAT} (and the older records); upgrade napari-dip")
    options = {k: document[k] for k in RUN_KEYS if document.get(k) is not None}
    settings = dict(document.get("overrides") or {})
    ran = document.get("config")
    if isinstance(ran, Mapping) and options.get("preset") is not None:
        try:
            now = get_config(options["preset"], options.get("task", "denoise"),
                             options.get("factor"), **settings).to_dict()
        except ValueError:
            now = None
        if now != dict(ran):
            settings = dict(ran)
    elif options.get("preset") is None:  # a ready config: its settings are the overrides
        settings = dict(ran or settings)
    return {**options, **settings}


def _from_record(record: Mapping[str, Any], source: str) -> dict[str, Any]:
    """A batch run record (format 1): its settings, task, preset, seed, factor, axes and
    ``slices_per_task``; the device it asked for (unless "auto"); the CPU threads it ran
    with; the precision and memory layout "auto" chose where every slice agrees."""
    return _repeated(record, ("task", "preset", "seed", "factor", "axes", "slices_per_task",
                              "psf"),
                     ran=record.get("slices") or (), device=record.get("requested_device"),
                     threads=record.get("threads_used") or record.get("threads"))


def _from_layer(layer: Mapping[str, Any], source: str) -> dict[str, Any]:
    """The widget's metadata of a result layer (before format 2): its task, settings, seed,
    factor (when it enlarged), device, threads, precision and memory layout."""
    options = _repeated(layer, ("task", "preset", "seed", "psf"), ran=(layer,),
                        device=layer.get("device_choice"), threads=layer.get("threads"))
    if isinstance(layer.get("factor"), int) and layer["factor"] > 1:
        options["factor"] = layer["factor"]
    return options


def _from_plain_options(options: Mapping[str, Any], source: str) -> dict[str, Any]:
    """A plain option file: option names (underscores or dashes) to values, as given."""
    return dict(options)


def _repeated(run: Mapping[str, Any], keys: tuple[str, ...], *, ran, device, threads,
              ) -> dict[str, Any]:
    """The options that repeat ``run`` (an old record or layer's metadata): its settings and
    ``keys``; the precision and memory layout that "auto" chose where every fit in ``ran``
    agrees; the device it asked for unless "auto"; the CPU threads it ran with."""
    settings = dict(run.get("config", {}))
    data = {**settings, **{k: run[k] for k in keys if run.get(k) is not None}}
    data = _pinned(settings, list(ran), data)
    if device not in (None, "auto"):  # results differ by device
        data["device"] = device
    if threads:  # a CPU result depends on the number of threads
        data["threads"] = threads
    return data


UPGRADES: dict[str, Callable[[Mapping[str, Any], str], dict[str, Any]]] = {
    "run": _from_run, "record": _from_record, "layer": _from_layer,
    "options": _from_plain_options}
"""Per form (:func:`document_kind`), the function that reads a document's options."""


def load_options(path: str | Path) -> dict[str, Any]:
    """The options in a YAML or JSON file (any form :data:`UPGRADES` reads), keys with
    underscores; what the file leaves out stays out. Errors name the file."""
    source = f"--config {path}"
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as error:
        raise ValueError(f"cannot read {source}: {error.strerror or error}") from error
    try:
        if Path(path).suffix.lower() == ".json":
            data = json.loads(text)
        else:
            import yaml

            data = yaml.safe_load(text)
    except ValueError as error:  # json.JSONDecodeError and yaml.YAMLError (see below)
        raise ValueError(f"{source} is not valid JSON: {error}") from error
    except Exception as error:  # yaml.YAMLError does not derive from ValueError
        raise ValueError(f"{source} is not valid YAML: "
                         f"{' '.join(str(error).split())}") from error
    return read_options(data, source=source)


# ----------------------------------------------------------------------------- records

def repeatable(spec: RunSpec, outcome: Mapping[str, Any]) -> RunSpec:
    """``spec`` with what its run chose where ``spec`` left the choice open, so that the
    document repeats the run bit for bit: the precision and memory layout that ``"auto"``
    chose (:meth:`RunSpec.pinned`, over the fits in ``outcome["slices"]``, or the outcome
    itself for one fit) and the CPU threads the fits ran with (``outcome["threads_used"]``)
    where the spec left them to the machine."""
    ran = outcome.get("slices") or (outcome,)
    pinned = spec.pinned(ran)
    threads = outcome.get("threads_used")
    if isinstance(threads, int) and threads > 0 and not isinstance(spec.threads, int):
        pinned = dataclasses.replace(pinned, threads=threads)
    return pinned


def record(spec: RunSpec, outcome: Mapping[str, Any]) -> dict[str, Any]:
    """A run record: the run's document (:meth:`RunSpec.to_dict` of :func:`repeatable`) with
    its ``outcome`` (status, timings, per-slice results, ...) beside it, so that the record
    itself repeats the run as a ``--config``. Outcome keys must not be run keys."""
    document = repeatable(spec, outcome).to_dict()
    clash = sorted(set(document) & set(outcome))
    if clash:
        raise ValueError(f"outcome keys {clash} would hide the run's own; name them otherwise")
    return {**document, **outcome}


def fit_outcome(snapshot) -> dict[str, Any]:
    """How one fit stands at ``snapshot`` (a :class:`~napari_dip.Snapshot`): steps, loss,
    seconds, device, arithmetic, backtracks, weight noise and the stopping rule's verdict."""
    return {"iterations": snapshot.iteration, "loss": snapshot.loss,
            "seconds": round(snapshot.elapsed, 3), "device": snapshot.device,
            "precision": snapshot.precision, "memory_format": snapshot.memory_format,
            "threads": getattr(snapshot, "threads", None), "backtracks": snapshot.backtracks,
            "weight_noise": snapshot.weight_noise,
            "stopped_early": snapshot.stopped, "best_iteration": snapshot.best_iteration,
            **({} if getattr(snapshot, "noise_estimate", None) is None
               else {"noise_estimate": snapshot.noise_estimate})}


__all__ = ["FORMAT", "RunSpec", "UPGRADES", "document_kind", "fit_outcome", "load_options",
           "read_options", "record", "repeatable"]

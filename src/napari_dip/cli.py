"""The ``napari-dip`` command line."""

from __future__ import annotations

import argparse
import dataclasses
import logging
import sys
import textwrap
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from .spec import RUN_KEYS


def _demo(args: argparse.Namespace) -> int:
    from skimage.io import imsave

    from . import iter_restore
    from ._sample_data import make_noisy_cell
    from .engine.measures import psnr
    from .io.records import atomic_write

    clean, noisy = make_noisy_cell(args.size, seed=args.seed)
    print(f"napari-dip demo: denoising a {args.size}x{args.size} crop of scikit-image's cell "
          f"image with Gaussian noise (sigma 25/255), preset {args.preset!r}")
    start = time.perf_counter()
    last = None
    for last in iter_restore(noisy, preset=args.preset, seed=args.seed, device=args.device,
                             max_iterations=args.max_iterations, threads=args.threads):
        print(f"  iteration {last.iteration:5d}/{last.max_iterations}  loss {last.loss:.5f}  "
              f"PSNR {psnr(last.estimate, clean):6.2f} dB", flush=True)
    seconds = time.perf_counter() - start
    before, after = psnr(noisy, clean), psnr(last.estimate, clean)
    print(f"PSNR input : {before:.2f} dB")
    print(f"PSNR result: {after:.2f} dB  ({after - before:+.2f} dB)")
    print(f"time       : {seconds:.1f} s for {last.iteration} iterations")
    print(f"device     : {last.device}, {last.precision}, {last.memory_format}")
    png = labelled_panels([noisy, last.estimate, clean],
                          [("noisy", f"PSNR {before:.2f} dB"), ("restored", f"PSNR {after:.2f} dB"),
                           ("clean", "reference")])
    atomic_write(args.out, lambda tmp: imsave(tmp, png, check_contrast=False))
    print(f"wrote {args.out} (noisy | restored | clean)")
    return 0


def labelled_panels(images: Sequence[np.ndarray], labels: Sequence[Sequence[str]]) -> np.ndarray:
    """Greyscale images in [0, 1], all of one height, side by side with a white gap of 4 pixels,
    each under its lines of ``labels`` (black on white), as one uint8 image. A line wider
    than its image is cut at the image's edge."""
    from PIL import Image, ImageDraw, ImageFont

    font = ImageFont.load_default()
    line_height = font.getbbox("Ag")[3] + 2
    header = 4 + line_height * max(len(lines) for lines in labels)
    panels = []
    for image, lines in zip(images, labels):
        strip = Image.new("L", (image.shape[1], header), 255)
        draw = ImageDraw.Draw(strip)
        for row, line in enumerate(lines):
            draw.text((2, 2 + row * line_height), line, fill=0, font=font)
        pixels = (np.clip(image, 0, 1) * 255).round().astype(np.uint8)
        panels += [np.concatenate([np.asarray(strip), pixels]),
                   np.full((header + image.shape[0], 4), 255, np.uint8)]
    return np.concatenate(panels[:-1], axis=1)


BATCH_COMMANDS = {
    "denoise": ("denoise", "remove noise from TIFF files"),
    "inpaint": ("inpaint", "fill in missing pixels of TIFF files (mask non-zero = missing)"),
    "super-resolve": ("super_resolve", "make TIFF files FACTOR times larger on each side"),
    "deconvolve": ("deconvolve", "undo the microscope's blur in TIFF files, given its "
                                 "point-spread function (PSF)"),
}
"""Subcommand name -> (engine task, one-line help)."""

# settings with their own named option among the restoration options
_NAMED_SETTINGS = {"max_iterations"}
# run keys a --config file gives a batch; each file's axes give its channels, and its own
# pixels its intensity range
_CONFIG_FILE_KEYS = set(RUN_KEYS) - {"channel_axis", "intensity_range"}


def build_parser() -> argparse.ArgumentParser:
    from .engine.device import DEVICE_CHOICES
    from .presets import PRESETS

    parser = argparse.ArgumentParser(
        prog="napari-dip",
        description="Deep Image Prior restoration: denoising, inpainting, super-resolution and "
                    "deconvolution.")
    parser.add_argument("--version", action="version", version=_version())
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    demo = commands.add_parser(
        "demo", help="restore a bundled sample image and report PSNR, time and device",
        description="Denoise a crop of scikit-image's bundled cell image (synthetic Gaussian "
                    "noise, no download), print the PSNR of input and result, the time and the "
                    "device, and write a before/after PNG.")
    demo.add_argument("--preset", default="quick", choices=sorted(PRESETS),
                      help="settings preset (default: quick)")
    demo.add_argument("--size", type=int, default=128, help="crop side in pixels (default: 128)")
    demo.add_argument("--max-iterations", type=int, default=None,
                      help="override the preset's number of iterations")
    demo.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    demo.add_argument("--device", default=None, choices=DEVICE_CHOICES,
                      help="compute device (default: best available)")
    demo.add_argument("--threads", type=_thread_count, default="auto", metavar="N",
                      help=THREADS_HELP)
    demo.add_argument("--out", type=Path, default=Path("napari-dip-demo.png"),
                      help="before/after PNG to write (default: napari-dip-demo.png)")
    demo.set_defaults(run=_demo)

    for name, (task, summary) in BATCH_COMMANDS.items():
        _add_batch_command(commands, name, task, summary)
    return parser


def _add_batch_command(commands, name: str, task: str, summary: str) -> None:
    from .config import describe_fields

    fields = {f["name"]: f for f in describe_fields()}
    command = commands.add_parser(
        name, help=summary, formatter_class=argparse.RawDescriptionHelpFormatter,
        description=textwrap.fill(
            f"{summary[0].upper()}{summary[1:]} with Deep Image Prior: one output TIFF per input "
            f"in --out (same name, dtype, axes and metadata) plus a JSON run record beside it "
            f"(NAME.tif.json), written last. Inputs are never modified.", 79),
        epilog="Settings are taken from, in order: the command line, --config FILE, the preset.\n"
               "Expert settings (network, noise model, stopping, tiles, speed, ...): --help-all.\n"
               "Exit status: 0 when every input was restored or already complete, 1 when some "
               "failed\n(each with a one-line reason), 2 for a usage error.")
    help_all = command.add_argument(
        "--help-all", action=_HelpAll,
        help="show this help with every expert setting of the configuration, in groups, and "
             "exit")
    command.add_argument("inputs", nargs="+", metavar="INPUT",
                         help="TIFF files, folders (their *.tif/*.tiff) or glob patterns")
    command.add_argument("--out", type=Path, required=True, metavar="DIR",
                         help="folder for the results; must not be where an input would be "
                              "overwritten")
    _add_restoration_options(command.add_argument_group("restoration"), task, fields)
    _add_batch_options(command.add_argument_group("batch"))
    help_all.expert_help = _add_expert_settings(command, fields)
    command.set_defaults(run=_batch, task=task, setting_names=list(fields))


class _HelpAll(argparse.Action):
    """``--help-all``: the help with the expert settings shown, which ``--help`` leaves out
    (each is accepted either way). ``expert_help`` maps their actions to their help text."""

    def __init__(self, option_strings, dest=argparse.SUPPRESS, default=argparse.SUPPRESS,
                 help=None):
        super().__init__(option_strings, dest=dest, default=default, nargs=0, help=help)
        self.expert_help: dict[argparse.Action, str] = {}

    def __call__(self, parser, namespace, values, option_string=None):
        parser.usage = parser.format_usage().removeprefix("usage: ").rstrip()  # the short one
        for action, text in self.expert_help.items():
            action.help = text
        parser.print_help()
        parser.exit()


def _add_restoration_options(main, task: str, fields: dict[str, dict]) -> None:
    """The everyday options of a run: preset, length, seed, device, factor, mask, axes, file."""
    from .config import SUPPORTED_FACTORS
    from .presets import DEFAULT_PRESET, PRESETS

    main.add_argument("--preset", choices=sorted(PRESETS), default=None,
                      help=f"settings preset (default: {DEFAULT_PRESET})")
    main.add_argument("--max-iterations", type=_setting_type(fields["max_iterations"]),
                      default=None, metavar="N", help=_setting_help(fields["max_iterations"]))
    main.add_argument("--seed", type=_non_negative_int, default=None,
                      help="random seed for the network, its input and its noise (default: 0)")
    main.add_argument("--device", default=None, metavar="DEVICE",
                      help="auto, cuda, cuda:N, mps or cpu (default: auto, the best available)")
    main.add_argument("--threads", type=_thread_count, default=None, metavar="N",
                      help=THREADS_HELP + "; the run record keeps the count")
    if task == "super_resolve":
        main.add_argument("--factor", type=int, choices=SUPPORTED_FACTORS, default=None,
                          help="enlargement on each side; the pixel size is divided by it "
                               "(required, or from --config)")
    if task == "inpaint":
        masks = main.add_mutually_exclusive_group(required=True)
        masks.add_argument("--mask", type=Path, metavar="FILE",
                           help="one mask TIFF for every input (non-zero = missing)")
        masks.add_argument("--mask-dir", type=Path, metavar="DIR",
                           help="folder of masks matched by file name: NAME.tif, NAME.tiff or "
                                "NAME_mask.tif (non-zero = missing)")
    if task == "deconvolve":
        _add_psf_options(main)
    main.add_argument("--axes", default=None,
                      help="axes of every input, overriding what the files say, e.g. ZYX, "
                           "TZCYX or YXS (C/S: channels; Y, X: the image plane)")
    main.add_argument("--config", type=Path, metavar="FILE",
                      help="YAML or JSON file with any of these options or those of "
                           "--help-all (underscores or dashes), e.g. 'preset: quick', "
                           "'learning_rate: 0.005'; a run record (.json) repeats that run's "
                           "settings")


def _add_psf_options(main) -> None:
    """The PSF of ``deconvolve``: a file, a Gaussian's width, or the Airy model's numbers."""
    psf = main.add_mutually_exclusive_group()
    psf.add_argument("--psf", type=Path, metavar="FILE",
                     help="the PSF as a 2D TIFF (e.g. a measured bead cropped around it; "
                          "normalised and centred here); one PSF blurs every slice")
    psf.add_argument("--psf-sigma", type=float, metavar="S",
                     help="a Gaussian PSF of standard deviation S pixels")
    psf.add_argument("--na", type=float, metavar="NA",
                     help="an Airy-type PSF from the objective's numerical aperture (with "
                          "--wavelength)")
    main.add_argument("--wavelength", type=float, metavar="NM",
                      help="with --na: the emission wavelength in nanometres")
    main.add_argument("--confocal", action="store_true", default=None,
                      help="with --na: the confocal PSF (a point-like pinhole) instead of the "
                           "widefield one")
    main.add_argument("--pixel-size", type=float, metavar="NM",
                      help="with --na: the pixel size at the sample in nanometres (default: "
                           "from the inputs' metadata, where they all state the same)")


def psf_from_args(args: argparse.Namespace, from_file: dict) -> dict | None:
    """The PSF description of a ``deconvolve`` command (None for the other commands): from
    --psf, --psf-sigma or --na, else from --config (a model, or a file whose digest must
    still match)."""
    from .io.psf import psf_source
    from .engine.psf import psf_description

    if args.task != "deconvolve":
        return None
    if args.na is None and (args.wavelength or args.confocal or args.pixel_size):
        raise ValueError("--wavelength, --confocal and --pixel-size describe the Airy PSF: "
                         "give --na NA with them")
    if args.psf is not None:
        try:
            return psf_source({"path": str(args.psf)})[1]
        except ValueError as error:
            raise ValueError(f"--psf {args.psf}: {error}") from error
    if args.psf_sigma is not None:
        return psf_description("gaussian", sigma=args.psf_sigma)
    if args.na is not None:
        if args.wavelength is None:
            raise ValueError("--na needs --wavelength NM, the emission wavelength in nanometres")
        return psf_description("airy", numerical_aperture=args.na,
                               wavelength_nm=args.wavelength, confocal=bool(args.confocal),
                               pixel_size_nm=args.pixel_size or _inputs_pixel_size(args.inputs))
    if from_file.get("psf") is None:
        raise ValueError("deconvolve needs the microscope's PSF: --psf FILE, --psf-sigma S or "
                         "--na NA --wavelength NM (or a --config record of a deconvolution)")
    return psf_source(from_file["psf"])[1]


def _inputs_pixel_size(patterns: Sequence[str]) -> float:
    """The pixel size (nm) that every input's metadata states, for the Airy PSF."""
    from .batch.jobs import find_inputs
    from .io.tiff import pixel_size_nm, read_tiff

    sizes = {}
    for path in find_inputs(patterns)[0]:
        try:
            sizes[path] = pixel_size_nm(read_tiff(path, pixels=False))
        except ValueError:
            continue  # an unreadable input fails on its own, with its reason
    unknown = [path.name for path, size in sizes.items() if size is None]
    if unknown or not sizes:
        raise ValueError(f"the Airy PSF needs the pixel size: give --pixel-size NM (the pixel "
                         f"at the sample, camera pixel / magnification); "
                         f"{', '.join(unknown[:3]) or 'the inputs'} state none in a length unit")
    if len({round(size, 6) for size in sizes.values()}) > 1:
        listed = ", ".join(f"{path.name}: {size:g} nm" for path, size in list(sizes.items())[:4])
        raise ValueError(f"the inputs have different pixel sizes ({listed}): run them "
                         f"separately, or give --pixel-size NM")
    return next(iter(sizes.values()))


def _add_batch_options(batch) -> None:
    """How a batch treats finished outputs, where it runs and what it prints."""
    batch.add_argument("--resume", action="store_true",
                       help="skip inputs whose output has a complete run record with the same "
                            "settings; redo the rest")
    batch.add_argument("--overwrite", action="store_true",
                       help="replace existing outputs (by default they are left alone and "
                            "reported)")
    batch.add_argument("--dask", metavar="ADDRESS", default=None,
                       help="run one task per file on a dask.distributed scheduler at ADDRESS "
                            "(e.g. tcp://host:8786), or local:N for a LocalCluster of N workers "
                            "on this machine")
    batch.add_argument("--slices-per-task", type=_positive_int, default=None, metavar="N",
                       help="with --dask: split stacks of more than N slices into tasks of N "
                            "slices, so that one large stack spreads over several workers "
                            "(default: one task per file)")
    batch.add_argument("--save-history", action="store_true", default=None,
                       help="keep a history of each run (32 checkpoints, or --history N) and "
                            "write it beside each output as NAME.history.tif, checkpoints "
                            "along its first (T) axis, to choose a result later")
    batch.add_argument("--quiet", action="store_true",
                       help="no progress bars; print only failures and the summary")


def _add_expert_settings(command, fields: dict[str, dict]) -> dict[argparse.Action, str]:
    """One option per other field of the configuration, in the sections of
    :data:`~napari_dip.config.SETTING_GROUPS`, hidden from ``--help``; returns their actions
    with the help that ``--help-all`` shows."""
    from .config import grouped_fields

    expert_help = {}
    for title, group_fields in grouped_fields():
        group = command.add_argument_group(f"expert settings: {title.lower()}")
        for field_info in group_fields:
            if field_info["name"] in _NAMED_SETTINGS:
                continue
            action = group.add_argument(
                f"--{field_info['name'].replace('_', '-')}", dest=field_info["name"],
                default=None, type=_setting_type(field_info), choices=field_info["choices"],
                metavar=None if field_info["choices"] else field_info["type"].upper(),
                help=argparse.SUPPRESS)
            expert_help[action] = _setting_help(field_info)
    return expert_help


def _setting_help(field_info: dict) -> str:
    low, high = field_info["low"], field_info["high"]
    bounds = f" [{low:g} to {high:g}]" if low is not None and high is not None else ""
    return f"{field_info['doc']}{bounds}".replace("%", "%%")  # argparse %-formats help


def _setting_type(field_info: dict):
    """An argparse type for one config field: converts, then checks the value against the
    field's own bounds (combinations of settings are checked once all options are known)."""
    from .config import check_setting

    convert = {"int": int, "float": float}.get(str(field_info["type"]), str)

    def parse(text: str):
        try:
            value = convert(text)
            check_setting(field_info["name"], value)
        except ValueError as error:
            raise argparse.ArgumentTypeError(str(error)) from error
        return value

    parse.__name__ = str(field_info["type"])
    return parse


THREADS_HELP = ("CPU threads for each fit, or auto (default): time a few steps at one thread "
                "and at all of them before each fit and run it at the faster; a CPU result "
                "repeats bit for bit only with the same count")


def _thread_count(text: str) -> int | str:
    return "auto" if text == "auto" else _positive_int(text)


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {value}")
    return value


def _non_negative_int(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be a non-negative integer, got {value}")
    return value


def load_config_file(path: Path) -> dict:
    """Options from a YAML or JSON file, with keys normalised to underscores: a run document,
    an older run record or result layer's metadata (which repeat that run), or plain options
    (see :mod:`napari_dip.spec`)."""
    from .spec import load_options

    return load_options(path)


def request_from_args(args: argparse.Namespace):
    """The :class:`~napari_dip.spec.RunSpec` of a batch command: command line, then
    ``--config``, then the preset. Raises ValueError for invalid settings."""
    from .config import DEFAULT_HISTORY
    from .presets import DEFAULT_PRESET
    from .spec import RunSpec

    given = {name: value for name, value in vars(args).items() if value is not None}
    from_file = load_config_file(args.config) if args.config else {}
    task = from_file.pop("task", args.task)
    if task != args.task:
        raise ValueError(f"--config {args.config} is for task {task!r}, not {args.task!r}")
    allowed = (_CONFIG_FILE_KEYS - {"task"}) | set(args.setting_names)
    options = {**from_file, **{k: v for k, v in given.items() if k in allowed}}
    run_keys = {k: options[k] for k in _CONFIG_FILE_KEYS - {"task", "psf"} if k in options}
    settings = {k: options[k] for k in args.setting_names if k in options}
    if getattr(args, "save_history", None):
        if options.get("slices_per_task"):
            raise ValueError("--save-history cannot join the histories of a stack split into "
                             "Dask tasks; leave out --slices-per-task")
        settings["history"] = settings.get("history") or DEFAULT_HISTORY
    spec = RunSpec(task=args.task, **{"preset": DEFAULT_PRESET, **run_keys}, overrides=settings,
                   psf=psf_from_args(args, from_file))
    if args.task == "super_resolve" and spec.factor is None:
        raise ValueError("super-resolve needs --factor (2, 4 or 8)")
    return spec.check()  # every setting, before any file is touched


def _batch(args: argparse.Namespace) -> int:
    # tifffile logs its warnings about odd files; with --quiet the failure line says enough.
    # Only for this batch: a program that calls main() keeps its own logging afterwards
    logger = logging.getLogger("tifffile")
    level = logger.level
    if args.quiet:
        logger.setLevel(logging.ERROR)
    try:
        return _run_batch(args)
    finally:
        logger.setLevel(level)


def _run_batch(args: argparse.Namespace) -> int:
    from .batch.jobs import check_output_folder, find_inputs, plan_jobs, select_jobs
    from .batch.progress import Progress
    from .batch.run import run_batch

    start = time.perf_counter()
    spec = request_from_args(args)
    if spec.axes is not None:
        spec = dataclasses.replace(spec, axes=spec.axes.upper())
    if spec.slices_per_task and not args.dask:
        where = "" if args.slices_per_task else f" (from --config {args.config})"
        raise ValueError(f"--slices-per-task{where} splits stacks into Dask tasks; it needs "
                         f"--dask ADDRESS (local:N for workers on this machine)")
    from .engine.device import check_device_name, select_device

    if args.dask is None and spec.device not in (None, "auto"):
        try:  # an unknown or absent device is a usage error
            select_device(spec.device)
        except ValueError as error:
            if args.device:
                raise
            raise ValueError(f"{error}; the device comes from --config {args.config}: give "
                             f"--device (e.g. --device cpu) to run elsewhere (results differ "
                             f"between devices)") from error
    else:
        check_device_name(spec.device)  # the workers resolve it; a typo is a usage error
    inputs, outcomes = find_inputs(args.inputs)
    jobs, failed = plan_jobs(inputs, args.out, spec, mask=getattr(args, "mask", None),
                             mask_dir=getattr(args, "mask_dir", None))
    if jobs:
        check_output_folder(args.out)  # before any fit, not when writing the first result
    todo, settled = select_jobs(jobs, resume=args.resume, overwrite=args.overwrite)
    progress = Progress(len(outcomes) + len(failed) + len(jobs), quiet=args.quiet)
    try:
        for outcome in outcomes + failed + settled:
            progress.finished(outcome)
        outcomes += failed + settled + run_batch(todo, progress=progress, dask=args.dask,
                                                  slices_per_task=spec.slices_per_task)
    except KeyboardInterrupt:
        progress.close()
        print("napari-dip: interrupted; finished outputs are complete, run again with --resume "
              "to continue", file=sys.stderr)
        return 130
    progress.close()
    return _summarise(outcomes, time.perf_counter() - start)


def _summarise(outcomes, seconds: float) -> int:
    """Print the batch's summary and return its exit status (1 when anything failed)."""
    counts = {status: sum(o.status == status for o in outcomes)
              for status in ("written", "skipped", "failed")}
    print(f"napari-dip: {counts['written']} written, {counts['skipped']} already complete, "
          f"{counts['failed']} failed, in {seconds:.1f} s", file=sys.stderr)
    for outcome in outcomes:
        if outcome.status == "failed":
            print(f"  failed: {outcome.input}: {outcome.reason}", file=sys.stderr)
    return 1 if counts["failed"] else 0


def _version() -> str:
    from . import __version__

    return f"napari-dip {__version__}"


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.run(args)
    except ValueError as error:
        print(f"napari-dip: error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())

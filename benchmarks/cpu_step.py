"""What one optimisation step of a preset's generator costs on this CPU, in each of several modes:
``eager`` (float32, PyTorch's default contiguous layout), or a ``+``-joined combination of
``bfloat16`` (the forward pass under bfloat16 autocast: what ``precision="auto"`` picks on CPUs
with native bfloat16 from 256x256 pixels), ``channels_last`` (the channels-last memory format:
what ``memory_format="auto"`` picks on such CPUs), ``compile`` (``torch.compile``) and
``widened_padding`` (the reflection padding as autocast runs it by itself, widened to float32:
how the generator padded before it kept the activations' dtype) and ``torch_cat`` (the skip
connections concatenated by ``torch.cat``, as before they handed back dense gradients).

One Adam step (the fit's own optimiser) on the squared error of the generator's output against
a random image, the input code perturbed as in a fit. After a few warm-up steps (and the
compilation), timed apart, the modes take turns: ``--rounds`` rounds of ``--steps`` steps
each, so that a change in the machine's load falls on every mode alike; the median round
gives the CPU time per step. Nothing is written: the numbers are quoted in docs/benchmarks/speed.md.

    OMP_NUM_THREADS=1 python benchmarks/cpu_step.py --preset fast --side 256
    OMP_NUM_THREADS=1 python benchmarks/cpu_step.py --preset fast --side 256 --modes eager --profile
    OMP_NUM_THREADS=1 python benchmarks/cpu_step.py --preset auto --adam
    OMP_NUM_THREADS=1 python benchmarks/cpu_step.py --preset auto --modes eager,bfloat16 \
        --side 64,128,256,512
    OMP_NUM_THREADS=1 python benchmarks/cpu_step.py --preset auto --side 256 --modes \
        bfloat16+widened_padding,bfloat16,bfloat16+channels_last+torch_cat,bfloat16+channels_last
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

from napari_dip.presets import get_config
from napari_dip.engine.stepper import make_optimizer
from napari_dip.engine.networks import ReflectionPad, _HourglassLevel, build_generator

sys.path.insert(0, str(Path(__file__).resolve().parent))
from reproduce_paper import cpu_description  # noqa: E402

OPTIONS = ("bfloat16", "channels_last", "compile", "widened_padding", "torch_cat")


def parse_mode(mode: str) -> set[str]:
    options = set() if mode == "eager" else set(mode.split("+"))
    unknown = options - set(OPTIONS)
    if unknown:
        raise SystemExit(f"unknown mode option(s) {sorted(unknown)}: use eager or a "
                         f"'+'-joined combination of {list(OPTIONS)}")
    return options


def widen_padding(network: torch.nn.Module) -> None:
    """Swap the generator's dtype-keeping padding for PyTorch's own, which CPU autocast runs
    in float32."""
    for module in network.modules():
        for name, child in module.named_children():
            if isinstance(child, ReflectionPad):
                setattr(module, name, torch.nn.ReflectionPad2d(child.padding))


def plain_concatenation(network: torch.nn.Module) -> None:
    """Make the generator's skip connections concatenate with ``torch.cat``, whose backward
    hands each input a strided view of the gradient (how it concatenated before)."""
    def forward(level, x):
        y = level.encoder(x)
        if level.inner is not None:
            y = level.inner(y)
        y = level.upsample(y)
        if level.skip is not None:
            y = torch.cat([level.skip(x), y], dim=1)
        return level.decoder(y)

    for module in network.modules():
        if isinstance(module, _HourglassLevel):
            module.forward = forward.__get__(module)


def make_step(preset: str, side: int, options: set[str], task: str = "denoise"):
    """One training step of the preset's generator in the given mode, as a function."""
    torch.manual_seed(0)
    config = get_config(preset, task, factor=4 if task == "super_resolve" else None)
    network = build_generator(config, 1)
    if "widened_padding" in options:
        widen_padding(network)
    if "torch_cat" in options:
        plain_concatenation(network)
    code = torch.rand(1, config.input_channels, side, side) * config.input_scale
    target = torch.rand(1, 1, side, side)
    if "channels_last" in options:
        network = network.to(memory_format=torch.channels_last)
        code = code.contiguous(memory_format=torch.channels_last)
    forward = torch.compile(network) if "compile" in options else network
    optimizer = make_optimizer(network, config)

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled="bfloat16" in options):
            # drawn in the default layout, as the fit draws it (normal_ into a channels-last
            # tensor is several times slower)
            output = forward(code + config.reg_noise_std * torch.randn(code.shape))
        ((output.float() - target) ** 2).mean().backward()
        optimizer.step()

    return step


def time_modes(preset: str, side: int, modes: list[str], warmup: int, steps: int, rounds: int,
               profile: bool = False, task: str = "denoise") -> dict[str, tuple[float, float]]:
    """For each mode: (seconds of the first ``warmup`` steps, median CPU seconds per step over
    the rounds, which take turns between the modes); with ``profile``, also print where each
    mode's steps spend their time, operation by operation."""
    runs, first = {}, {}
    for mode in modes:
        runs[mode] = make_step(preset, side, parse_mode(mode), task)
        start = time.perf_counter()
        for _ in range(warmup):
            runs[mode]()
        first[mode] = time.perf_counter() - start
    per_round: dict[str, list[float]] = {mode: [] for mode in modes}
    for _ in range(rounds):
        for mode, step in runs.items():
            cpu_start = time.process_time()  # CPU time: robust to other jobs' load
            for _ in range(steps):
                step()
            per_round[mode].append((time.process_time() - cpu_start) / steps)
    if profile:
        for mode, step in runs.items():
            with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
                for _ in range(5):
                    step()
            print(mode)
            print(prof.key_averages().table(sort_by="cpu_time_total", row_limit=15))
    return {mode: (first[mode], statistics.median(per_round[mode])) for mode in modes}


def time_adam(preset: str, steps: int = 200) -> tuple[int, dict[str, float]]:
    """The number of weight tensors of the preset's denoising generator, and the CPU seconds per
    Adam update of them alone (random gradients) for each of PyTorch's implementations: the
    per-tensor loop (its CPU default), ``foreach`` and ``fused`` (what the fit uses where
    PyTorch has it)."""
    config = get_config(preset, "denoise")
    parameters = list(build_generator(config, 1).parameters())
    for parameter in parameters:
        parameter.grad = torch.randn_like(parameter)
    seconds = {}
    for name, options in [("loop", dict(foreach=False)), ("foreach", dict(foreach=True)),
                          ("fused", dict(fused=True))]:
        optimizer = torch.optim.Adam(parameters, lr=config.learning_rate, **options)
        optimizer.step()
        start = time.process_time()  # CPU time: robust to other jobs' load
        for _ in range(steps):
            optimizer.step()
        seconds[name] = (time.process_time() - start) / steps
    return len(parameters), seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--preset", default="fast")
    parser.add_argument("--side", default="256", help="image side(s), comma-separated")
    parser.add_argument("--modes", default="eager,channels_last,compile")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--steps", type=int, default=10, help="steps per round")
    parser.add_argument("--rounds", type=int, default=5,
                        help="rounds in which the modes take turns")
    parser.add_argument("--task", default="denoise",
                        help="whose generator: denoise, inpaint or super_resolve (x4)")
    parser.add_argument("--profile", action="store_true",
                        help="also print the time per operation (PyTorch profiler)")
    parser.add_argument("--adam", action="store_true",
                        help="time the Adam update alone, per implementation, instead")
    args = parser.parse_args()
    print(f"preset {args.preset} ({args.task}), {torch.get_num_threads()} thread(s), "
          f"torch {torch.__version__}, {cpu_description()}")
    if args.adam:
        tensors, timings = time_adam(args.preset)
        for name, seconds in timings.items():
            print(f"Adam, {name}: {1000 * seconds:.2f} ms per update of {tensors} weight tensors")
        return
    modes = args.modes.split(",")
    for side in (int(text) for text in args.side.split(",")):
        timings = time_modes(args.preset, side, modes, args.warmup, args.steps, args.rounds,
                             args.profile, args.task)
        reference = timings[modes[0]][1]
        for mode, (first, cpu) in timings.items():
            print(f"{side}x{side}, {mode}: first {args.warmup} steps {first:.1f} s, then "
                  f"{cpu:.4f} s of CPU per step ({cpu / reference:.2f} x {modes[0]})",
                  flush=True)


if __name__ == "__main__":
    main()

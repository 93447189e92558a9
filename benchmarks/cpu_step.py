"""What one optimisation step of a preset's generator costs on this CPU, run as PyTorch runs it
(eager), in channels-last memory format, compiled with ``torch.compile``, and with its forward
pass under bfloat16 autocast (mode ``bfloat16``: what ``precision="auto"`` picks on CPUs with
native bfloat16 from 256x256 pixels).

One Adam step (the fit's own optimiser) on the squared error of the generator's output against
a random image, the input code perturbed as in a fit; the first steps (and the compilation) are
timed apart from the steady state. Nothing is written: the numbers are quoted in docs/benchmarks.md.

    OMP_NUM_THREADS=1 python benchmarks/cpu_step.py --preset fast --side 256
    OMP_NUM_THREADS=1 python benchmarks/cpu_step.py --preset fast --side 256 --modes eager --profile
    OMP_NUM_THREADS=1 python benchmarks/cpu_step.py --preset auto --adam
    OMP_NUM_THREADS=1 python benchmarks/cpu_step.py --preset auto --modes eager,bfloat16 --side 64,128,256,512
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

from napari_dip.config import get_config
from napari_dip.fit import make_optimizer
from napari_dip.networks import build_generator

sys.path.insert(0, str(Path(__file__).resolve().parent))
from reproduce_paper import cpu_description  # noqa: E402


def time_steps(preset: str, side: int, mode: str, warmup: int, steps: int,
               profile: bool = False) -> tuple[float, float, float]:
    """(seconds of the first ``warmup`` steps, then seconds and CPU seconds per step); with
    ``profile``, also print where the steps after the first spend their time, operation by
    operation."""
    torch.manual_seed(0)
    config = get_config(preset, "denoise")
    network = build_generator(config, 1)
    code = torch.rand(1, config.input_channels, side, side) * config.input_scale
    target = torch.rand(1, 1, side, side)
    if mode == "channels_last":
        network = network.to(memory_format=torch.channels_last)
        code = code.contiguous(memory_format=torch.channels_last)
    forward = torch.compile(network) if mode == "compile" else network
    optimizer = make_optimizer(network, config)

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=mode == "bfloat16"):
            output = forward(code + config.reg_noise_std * torch.randn_like(code))
        ((output.float() - target) ** 2).mean().backward()
        optimizer.step()

    start = time.perf_counter()
    for _ in range(warmup):
        step()
    first = time.perf_counter() - start
    start, cpu_start = time.perf_counter(), time.process_time()
    for _ in range(steps):
        step()
    per_step = (time.perf_counter() - start) / steps
    cpu_per_step = (time.process_time() - cpu_start) / steps  # robust to other jobs' load
    if profile:
        with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
            for _ in range(5):
                step()
        print(prof.key_averages().table(sort_by="cpu_time_total", row_limit=15))
    return first, per_step, cpu_per_step


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
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--profile", action="store_true",
                        help="also print the time per operation (PyTorch profiler)")
    parser.add_argument("--adam", action="store_true",
                        help="time the Adam update alone, per implementation, instead")
    args = parser.parse_args()
    print(f"preset {args.preset}, {torch.get_num_threads()} thread(s), torch {torch.__version__}, "
          f"{cpu_description()}")
    if args.adam:
        tensors, timings = time_adam(args.preset)
        for name, seconds in timings.items():
            print(f"Adam, {name}: {1000 * seconds:.2f} ms per update of {tensors} weight tensors")
        return
    for side in (int(text) for text in args.side.split(",")):
        for mode in args.modes.split(","):
            first, per_step, cpu = time_steps(args.preset, side, mode, args.warmup, args.steps,
                                              args.profile)
            print(f"{side}x{side}, {mode}: first {args.warmup} steps {first:.1f} s, then "
                  f"{per_step:.3f} s per step ({cpu:.3f} s of CPU)", flush=True)


if __name__ == "__main__":
    main()

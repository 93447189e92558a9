"""What one optimisation step of a preset's generator costs on this CPU, run as PyTorch runs it
(eager), in channels-last memory format, and compiled with ``torch.compile``.

One Adam step (the fit's own optimiser) on the squared error of the generator's output against
a random image, the input code perturbed as in a fit; the first steps (and the compilation) are
timed apart from the steady state. Nothing is written: the numbers are quoted in docs/benchmarks.md.

    OMP_NUM_THREADS=1 python benchmarks/cpu_step.py --preset fast --side 256
    OMP_NUM_THREADS=1 python benchmarks/cpu_step.py --preset fast --side 256 --modes eager --profile
    OMP_NUM_THREADS=1 python benchmarks/cpu_step.py --preset auto --adam
"""

from __future__ import annotations

import argparse
import time

import torch

from napari_dip.config import get_config
from napari_dip.fit import make_optimizer
from napari_dip.networks import build_generator


def time_steps(preset: str, side: int, mode: str, warmup: int, steps: int,
               profile: bool = False) -> tuple[float, float]:
    """(seconds of the first ``warmup`` steps, seconds per step after them); with ``profile``,
    also print where the steps after the first spend their time, operation by operation."""
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
        output = forward(code + config.reg_noise_std * torch.randn_like(code))
        ((output - target) ** 2).mean().backward()
        optimizer.step()

    start = time.perf_counter()
    for _ in range(warmup):
        step()
    first = time.perf_counter() - start
    start = time.perf_counter()
    for _ in range(steps):
        step()
    per_step = (time.perf_counter() - start) / steps
    if profile:
        with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
            for _ in range(5):
                step()
        print(prof.key_averages().table(sort_by="cpu_time_total", row_limit=15))
    return first, per_step


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
    parser.add_argument("--side", type=int, default=256)
    parser.add_argument("--modes", default="eager,channels_last,compile")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--profile", action="store_true",
                        help="also print the time per operation (PyTorch profiler)")
    parser.add_argument("--adam", action="store_true",
                        help="time the Adam update alone, per implementation, instead")
    args = parser.parse_args()
    print(f"preset {args.preset}, {args.side}x{args.side}, {torch.get_num_threads()} thread(s), "
          f"torch {torch.__version__}")
    if args.adam:
        tensors, timings = time_adam(args.preset)
        for name, seconds in timings.items():
            print(f"Adam, {name}: {1000 * seconds:.2f} ms per update of {tensors} weight tensors")
        return
    for mode in args.modes.split(","):
        first, per_step = time_steps(args.preset, args.side, mode, args.warmup, args.steps,
                                     args.profile)
        print(f"{mode}: first {args.warmup} steps {first:.1f} s, then {per_step:.3f} s per step",
              flush=True)


if __name__ == "__main__":
    main()

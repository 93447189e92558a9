"""Choice of the compute device: CUDA, then Apple MPS, then CPU, unless the caller names one."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager

import torch

from ..config import MEMORY_FORMATS, PRECISIONS

DEVICE_CHOICES = ("auto", "cuda", "mps", "cpu")


def available_devices() -> list[str]:
    """Device names usable on this machine, best first (always ends with "cpu")."""
    found = []
    if torch.cuda.is_available():
        found += ["cuda"] + [f"cuda:{i}" for i in range(torch.cuda.device_count())]
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        found.append("mps")
    return found + ["cpu"]


def check_device_name(device: str | None) -> None:
    """Refuse a device name that no machine has (e.g. ``"gpu"``), without asking whether this
    one has it: for devices resolved elsewhere, such as on Dask workers."""
    if device is None or device == "auto":
        return
    try:
        kind = torch.device(device).type
    except (RuntimeError, TypeError) as error:
        raise ValueError(f"unknown device {device!r}; use one of {list(DEVICE_CHOICES)} "
                         f"(or e.g. 'cuda:1')") from error
    if kind not in ("cpu", "cuda", "mps"):
        raise ValueError(f"unsupported device {device!r}; use one of {list(DEVICE_CHOICES)}")


def select_device(device: str | torch.device | None = None) -> torch.device:
    """The device to run on.

    ``None`` or ``"auto"`` picks CUDA, then MPS, then CPU. A named device that this machine does
    not have raises ``ValueError`` rather than silently falling back to the CPU.
    """
    if device is None or device == "auto":
        return torch.device(available_devices()[0])
    check_device_name(device)
    chosen = torch.device(device)
    if chosen.type == "cuda":
        index = chosen.index or 0
        if not torch.cuda.is_available() or index >= torch.cuda.device_count():
            raise ValueError(f"device {device!r} was requested but this machine has no such CUDA "
                             f"GPU; available: {available_devices()}")
    elif chosen.type == "mps" and "mps" not in available_devices():
        raise ValueError(f"device 'mps' was requested but Apple MPS is not available; "
                         f"available: {available_devices()}")
    return chosen


def describe_device(device: torch.device) -> str:
    """Human-readable name, e.g. "cuda:0 (NVIDIA H100)" or "cpu (2 threads)"."""
    if device.type == "cuda":
        index = device.index if device.index is not None else torch.cuda.current_device()
        return f"cuda:{index} ({torch.cuda.get_device_name(index)})"
    if device.type == "cpu":
        return f"cpu ({torch.get_num_threads()} threads)"
    return str(device)


CPU_BFLOAT16_MIN_PIXELS = 256 * 256
"""Pixels per step (batch x height x width of the generator's output) from which ``"auto"``
precision runs a CPU fit under bfloat16, on processors that compute it natively: below it the
conversions cost more than they save (measurements: ``docs/benchmarks/speed.md``)."""


def cpu_has_native_bfloat16() -> bool:
    """Whether this CPU has bfloat16 arithmetic instructions (AVX512-BF16 or AMX), which PyTorch's
    CPU convolutions use under bfloat16 autocast; without them bfloat16 is emulated, and slow."""
    probes = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    return any(getattr(torch.cpu, name, lambda: False)() for name in probes)


def autocast_dtype(precision: str, device: torch.device, pixels: int = 0) -> torch.dtype | None:
    """The dtype the generator's forward pass runs in under autocast (None: plain float32).

    ``"auto"`` uses bfloat16 on CUDA GPUs that support it, and on CPUs with native bfloat16
    arithmetic once a step covers :data:`CPU_BFLOAT16_MIN_PIXELS` output pixels (``pixels``);
    float32 everywhere else (on smaller images the conversions cost more than they save, and
    without native instructions bfloat16 is many times slower). The loss, the optimiser state
    and the weights always stay in float32.
    """
    if precision not in PRECISIONS:
        raise ValueError(f"precision={precision!r} is not allowed; choose one of "
                         f"{list(PRECISIONS)}")
    if precision == "float32":
        return None
    if precision == "auto":
        if device.type == "cuda":
            return torch.bfloat16 if torch.cuda.is_bf16_supported() else None
        large = pixels >= CPU_BFLOAT16_MIN_PIXELS
        native = device.type == "cpu" and large and cpu_has_native_bfloat16()
        return torch.bfloat16 if native else None
    if device.type == "mps" and precision == "bfloat16":
        raise ValueError("precision='bfloat16' is not supported on Apple MPS; use 'float16' or "
                         "'float32'")
    return torch.bfloat16 if precision == "bfloat16" else torch.float16


def use_channels_last(memory_format: str, device: torch.device) -> bool:
    """Whether the generator runs in channels-last memory format (NHWC) on ``device``.

    ``"auto"`` does on CUDA (faster convolutions on tensor cores) and on CPUs with native
    bfloat16, where it made a step cheaper; on other CPUs it made a step dearer, so they (and
    Apple MPS, not measured) keep PyTorch's default (``docs/benchmarks/speed.md``).
    """
    if memory_format not in MEMORY_FORMATS:
        raise ValueError(f"memory_format={memory_format!r} is not allowed; choose one of "
                         f"{list(MEMORY_FORMATS)}")
    if memory_format != "auto":
        return memory_format == "channels_last"
    return device.type == "cuda" or (device.type == "cpu" and cpu_has_native_bfloat16())


@contextmanager
def torch_threads(threads: int | None) -> Iterator[int]:
    """Run the block with ``threads`` CPU threads in torch (None: as they are), then restore
    the count; yields the count the block runs with (a CPU result depends on it)."""
    before = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        yield torch.get_num_threads()
    finally:
        torch.set_num_threads(before)


PROC_STAT = "/proc/stat"


def idle_cpu_jiffies(path: str = PROC_STAT) -> tuple[float, float] | None:
    """(idle ticks summed over this process's CPUs, ticks elapsed per CPU) since boot, read
    from ``/proc/stat``; None where that is not available (other systems than Linux)."""
    try:
        with open(path) as stat:
            lines = [line.split() for line in stat if line.startswith("cpu")]
        allowed = {f"cpu{n}" for n in os.sched_getaffinity(0)}
    except (OSError, AttributeError):
        return None
    rows = [[float(v) for v in line[1:]] for line in lines if line[0] in allowed]
    if not rows or any(len(row) < 5 for row in rows):
        return None
    idle = sum(row[3] + row[4] for row in rows)  # idle and waiting for I/O
    return idle, sum(sum(row[:8]) for row in rows) / len(rows)


def fastest_thread_count(probe_step: Callable[[int], object], candidates: Sequence[int], *,
                         warmup: int = 1, repeats: int = 3, give_up: float = 2.0,
                         margin: float = 0.25, spare: float = 0.75,
                         clock: Callable[[], float] = time.perf_counter,
                         idle: Callable[[], tuple[float, float] | None] = idle_cpu_jiffies,
                         ) -> int:
    """The thread count under which ``probe_step`` runs fastest.

    ``probe_step(n)`` does one unit of work with ``n`` threads. The candidates take turns
    (``warmup`` rounds untimed, then ``repeats`` timed ones), so that a change in the machine's
    load during the probe weighs on every candidate alike; each candidate's time is the sum of
    its timed rounds, not their median: a fit pays for every step, and on busy cores the
    threads' waits come as rare long steps that a median would hide. A candidate whose steps
    so far took more than ``give_up`` times the fastest one's is dropped after any timed round
    (on busy cores more threads can be many times slower, and the probe should not pay for
    that long). More threads win only where they save more than ``margin`` of the fewer
    threads' time: they take cores from other work, and on a shared machine the load changes
    under the probe.

    More threads than the fewest are considered only on cores other work leaves free: while
    the fewest threads' steps run, ``idle()`` (ticks of idle CPU, ticks elapsed per CPU; None:
    unknown, then the times alone decide) must show at least ``spare`` of an idle core for
    each thread added. Another process busy on a core makes OpenMP's threads spin-wait for it,
    and a short probe can miss that: a few steps look faster, the whole fit runs slower
    (``docs/benchmarks/speed.md``).
    """
    counts = sorted(set(candidates))
    if not counts or counts[0] < 1:
        raise ValueError(f"thread counts must be positive whole numbers, got {list(candidates)}")
    times: dict[int, list[float]] = {n: [] for n in counts}
    idle_ticks, elapsed_ticks, fewest = 0.0, 0.0, counts[0]
    for round_ in range(warmup + repeats):
        if len(counts) == 1:
            return counts[0]
        for n in list(counts):
            if n not in counts:
                continue
            before, start = (idle() if n == fewest else None), clock()
            probe_step(n)
            times[n].append(clock() - start)
            after = idle() if before is not None else None
            if after is not None:
                idle_ticks, elapsed_ticks = (idle_ticks + after[0] - before[0],
                                             elapsed_ticks + after[1] - before[1])
            if n == fewest and elapsed_ticks > 0:  # no spare core: threads would spin-wait
                free = idle_ticks / elapsed_ticks
                counts = [m for m in counts if m == fewest or free >= spare * (m - fewest)]
        if round_ >= warmup:  # the warm-up's one-off costs fall on whichever count ran first
            least = min(sum(times[n][warmup:]) for n in counts)
            counts = [n for n in counts if sum(times[n][warmup:]) <= give_up * least]
    chosen = counts[0]
    for n in counts[1:]:
        if sum(times[n][warmup:]) < (1 - margin) * sum(times[chosen][warmup:]):
            chosen = n
    return chosen

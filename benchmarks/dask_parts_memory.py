"""Peak memory and time of each task of a stack restored in Dask parts (``--slices-per-task``).

Writes a ZYX uint16 ImageJ stack (``--slices`` planes of ``--side`` pixels square, uniform random
values from 100 to 4000) to a temporary folder, then runs each kind of task of
``batch.dask.submit_in_parts`` on it, each in a fresh Python process (torch imported first), and
prints how long the task took and how far its resident memory rose above what the process held
before it (Linux's peak resident set, VmHWM, reset just before the task):

- ``prepare``: the first task (checks the whole stack and fixes its intensity scaling);
- ``part read``: a part task of ``--slices-per-task`` slices with the fit replaced by a stub that
  returns its input, i.e. what the task spends on reading its slices;
- ``part``: the same part task with its fit (``--iterations`` steps per slice, preset auto,
  one CPU thread);
- ``save``: the last task, given the parts' results (zeros), which writes the output.

With ``--dask local:N`` it also runs the whole batch on a local cluster (a separate
``napari-dip`` process) and prints its wall time and a digest of the output's pixels, to compare
results between two versions. For the code before parts read only their slices, run it with
``PYTHONPATH`` pointing at a worktree of 8989964.

    OMP_NUM_THREADS=1 python benchmarks/dask_parts_memory.py --slices 32 --side 1024 \\
        --slices-per-task 8 --iterations 2 --dask local:2
"""

from __future__ import annotations

import argparse
import hashlib
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TASKS = ("prepare", "part read", "part", "save")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--slices", type=int, default=32)
    parser.add_argument("--side", type=int, default=1024)
    parser.add_argument("--slices-per-task", type=int, default=8)
    parser.add_argument("--iterations", type=int, default=2)
    parser.add_argument("--dask", help="also run the batch on this cluster, e.g. local:2")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--folder", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(_run_task(args.child, Path(args.folder), args)))
        return 0
    import numpy as np
    import tifffile

    import napari_dip

    print(f"napari_dip from {Path(napari_dip.__file__).parent}")
    with tempfile.TemporaryDirectory() as folder:
        source = Path(folder) / "big.tif"
        data = np.random.default_rng(0).integers(100, 4000, (args.slices, args.side, args.side),
                                                 dtype=np.uint16)
        tifffile.imwrite(source, data, imagej=True, metadata={"axes": "ZYX"})
        print(f"input: {args.slices}x{args.side}x{args.side} uint16, "
              f"{source.stat().st_size / 2 ** 20:.1f} MiB; parts of {args.slices_per_task} "
              f"slices, {args.iterations} iterations per slice")
        for task in TASKS:
            command = [sys.executable, __file__, "--child", task, "--folder", folder,
                       "--slices", str(args.slices), "--side", str(args.side),
                       "--slices-per-task", str(args.slices_per_task),
                       "--iterations", str(args.iterations)]
            result = json.loads(subprocess.run(command, check=True, capture_output=True,
                                               text=True).stdout.splitlines()[-1])
            print(f"{task:>9}: {result['seconds']:7.3f} s, peak {result['peak_mib']:7.1f} MiB "
                  f"above the {result['before_mib']:.1f} MiB held before", flush=True)
        if args.dask:
            out = Path(folder) / "dask"
            command = [sys.executable, "-m", "napari_dip.cli", "denoise", str(source), "--out",
                       str(out), "--dask", args.dask, "--slices-per-task",
                       str(args.slices_per_task), "--max-iterations", str(args.iterations),
                       "--threads", "1", "--quiet"]
            start = time.perf_counter()
            subprocess.run(command, check=True, capture_output=True)
            seconds = time.perf_counter() - start
            pixels = tifffile.imread(out / "big.tif")
            print(f"--dask {args.dask}: {seconds:.1f} s, output pixels sha256 "
                  f"{hashlib.sha256(pixels.tobytes()).hexdigest()[:16]}")
    return 0


def _memory(field: str) -> float:
    """A VmRSS or VmHWM figure of this process, in MiB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no {field} in /proc/self/status")


def _run_task(task: str, folder: Path, args) -> dict:
    import numpy as np
    import torch  # noqa: F401 - imported before the measurement, as on a warm worker

    from napari_dip.batch import dask as batch_dask
    from napari_dip.batch.jobs import Job
    from napari_dip.batch.run import _now
    from napari_dip.spec import RunSpec

    spec = RunSpec(task="denoise", overrides={"max_iterations": args.iterations},
                   threads=1, slices_per_task=args.slices_per_task)
    job = Job(input=folder / "big.tif", output=folder / task.replace(" ", "_") / "big.tif",
              mask=None, spec=spec)
    job.output.parent.mkdir()
    prepared = {"intensity_range": (100.0, 3999.0), "started": _now(),
                "clock": time.time()}
    stop = min(args.slices_per_task, args.slices)
    if task == "part read":  # the task without its fit: what it spends on its input
        batch_dask.restore_array = lambda part, *_, **__: (part, None, [], None)
    if task == "save":
        parts = [(np.zeros((min(s + args.slices_per_task, args.slices) - s, args.side,
                            args.side, 1), np.uint16), None, [{"index": [i]}], 1)
                 for i, s in enumerate(range(0, args.slices, args.slices_per_task))]
    before = _memory("VmRSS")
    Path("/proc/self/clear_refs").write_text("5")  # reset the peak resident set (VmHWM)
    start = time.perf_counter()
    if task == "prepare":
        batch_dask._prepare_parts(job)
    elif task == "save":
        outcome = batch_dask._save_parts(job, prepared, *parts)
        assert outcome.status == "written", outcome.reason
    else:
        batch_dask._restore_part(job, 0, stop, prepared)
    seconds = time.perf_counter() - start
    return {"seconds": seconds, "before_mib": before, "peak_mib": _memory("VmHWM") - before}


if __name__ == "__main__":
    sys.exit(main())

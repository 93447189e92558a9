"""Time one large file restored in-process and on a one-worker local Dask cluster.

Dask's nanny starts worker processes with ``MALLOC_TRIM_THRESHOLD_=65536``; napari-dip's tasks
raise glibc's thresholds again (``batch.run.undo_tiny_malloc_trim``). This writes a uint16 image of
uniform random values from 100 to 4000 (``--side`` pixels square, ImageJ TIFF) to a temporary
folder and runs ``napari-dip denoise`` on it as a separate process in each mode, with preset auto
(which tiles it) and ``--max-iterations`` steps per tile, printing the wall time of each.
For the code before the fix, run it with ``PYTHONPATH`` pointing at a worktree of 93a75c0.

    OMP_NUM_THREADS=1 python benchmarks/dask_allocator.py --side 1024 --iterations 20
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--side", type=int, default=1024)
    parser.add_argument("--iterations", type=int, default=20)
    args = parser.parse_args(argv)
    import numpy as np
    import tifffile

    with tempfile.TemporaryDirectory() as folder:
        source = Path(folder) / "big.tif"
        data = np.random.default_rng(0).integers(100, 4000, (1, args.side, args.side),
                                                 dtype=np.uint16)
        tifffile.imwrite(source, data, imagej=True, metadata={"axes": "ZYX"})
        for mode, extra in (("in-process", []), ("--dask local:1", ["--dask", "local:1"])):
            command = [sys.executable, "-m", "napari_dip.cli", "denoise", str(source), "--out",
                       str(Path(folder) / mode.replace(" ", "_")), "--max-iterations",
                       str(args.iterations), "--quiet", *extra]
            start = time.perf_counter()
            subprocess.run(command, check=True, capture_output=True)
            print(f"{mode}: {time.perf_counter() - start:.1f} s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

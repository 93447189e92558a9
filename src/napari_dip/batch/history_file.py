"""An output's history file (``--save-history``): its checkpoints along a first, T axis.

``cells.tif`` gets ``cells.history.tif`` beside it: checkpoint ``k`` of every slice, in the
output's own axes, dtype and pixel size, stacked along a new first axis, written as an ImageJ
hyperstack (Fiji's time slider then moves through the run) when the output's axes and dtype
allow one (no T axis of its own; uint8, uint16 or float32), else as a plain TIFF whose first
axis is ``I``. Slices that kept fewer checkpoints than others repeat their last one. The
iterations, notes and losses of each slice's checkpoints are in the run record (``"history"``)
and, for an ImageJ file, in its Info (Fiji: Image > Show Info); a 2D output's planes are also
labelled with their iteration.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from ..engine.layout import ImageAxes
from ..io.records import atomic_write
from ..io.tiff import IMAGEJ_AXES, TiffImage

IMAGEJ_DTYPES = (np.uint8, np.uint16, np.float32)


def history_path(output: Path) -> Path:
    """The history file of an output: ``out/cells.tif`` -> ``out/cells.history.tif``."""
    return output.with_name(f"{output.stem}.history{output.suffix}")


def write_history(path: Path, image: TiffImage, layout: ImageAxes, result: np.ndarray,
                  histories: dict[tuple[int, ...], list], factor: int | None) -> dict[str, Any]:
    """Write the checkpoints of every slice (``histories``: slice index to its checkpoints,
    estimates in the engine layout of ``result``) as :func:`history_path` describes, atomically;
    returns the run record's ``"history"`` entry."""
    import tifffile

    length = max(len(points) for points in histories.values())
    planes, axes = [], None
    for k in range(length):
        engine = np.array(result, copy=True)
        for index, points in histories.items():
            engine[index] = points[min(k, len(points) - 1)].estimate
        output = image.restored(image.with_alpha(layout.from_engine(engine), factor), factor)
        planes.append(output.data)
        axes = output.axes
    stack = np.stack(planes)
    slices = {json.dumps(list(index)): [
        {"iteration": p.iteration, "note": p.note, "loss": p.loss,
         "seconds": round(p.elapsed, 3)} for p in points] for index, points in histories.items()}
    imagej = "T" not in axes and stack.dtype in IMAGEJ_DTYPES and \
        "".join(a for a in IMAGEJ_AXES if a in axes) == axes
    options: dict[str, Any] = {}
    if output.resolution is not None:
        options["resolution"] = output.resolution
    if imagej:
        metadata: dict[str, Any] = {"axes": "T" + axes, "Info": json.dumps(slices)}
        if output.imagej.get("unit"):
            metadata["unit"] = output.imagej["unit"]
        if not set(axes) - set("YXS"):  # one plane per checkpoint: label each
            (points,) = histories.values()
            metadata["Labels"] = [_label(points[min(k, len(points) - 1)])
                                  for k in range(length)]
        options.update(imagej=True, metadata=metadata)
    else:
        options["metadata"] = {"axes": "I" + axes}
    atomic_write(path, lambda tmp: tifffile.imwrite(tmp, stack, **options))
    return {"path": str(path), "axes": ("T" if imagej else "I") + axes,
            "shape": list(stack.shape), "slices": slices}


def _label(point) -> str:
    return f"iteration {point.iteration}" + (f" ({point.note})" if point.note else "")

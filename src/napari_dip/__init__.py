"""napari-dip: Deep Image Prior restoration (denoising, inpainting, super-resolution) for napari.

The engine is pure PyTorch + NumPy; :func:`restore` and :func:`iter_restore` are its front door.
The engine names are imported on first use (PEP 562), so importing the package, its config or
its napari widget does not pay for importing torch.
"""

from importlib import import_module

from .config import TASKS, DIPConfig, warm_start_config
from .presets import PRESETS, get_config

__version__ = "0.1.0"

_LAZY = {name: "api" for name in ("Snapshot", "StackSnapshot", "iter_restore", "iter_restore_stack",
                                  "restore", "restore_stack", "run_record")}

__all__ = ["PRESETS", "TASKS", "DIPConfig", "Snapshot", "StackSnapshot", "get_config",
           "iter_restore", "iter_restore_stack", "restore", "restore_stack", "run_record",
           "warm_start_config", "__version__"]


def __getattr__(name: str):
    if name in _LAZY:
        value = getattr(import_module(f".{_LAZY[name]}", __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(_LAZY))

"""napari-dip: Deep Image Prior restoration (denoising, inpainting, super-resolution) for napari.

The engine is pure PyTorch + NumPy; :func:`restore` and :func:`iter_restore` are its front door.
"""

from .api import (Snapshot, StackSnapshot, iter_restore, iter_restore_stack, restore,
                  restore_stack, run_record)
from .config import PRESETS, TASKS, DIPConfig, get_config

__version__ = "0.1.0"

__all__ = ["PRESETS", "TASKS", "DIPConfig", "Snapshot", "StackSnapshot", "get_config",
           "iter_restore", "iter_restore_stack", "restore", "restore_stack", "run_record",
           "__version__"]

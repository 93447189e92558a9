"""Learned starting weights for the generator, shipped inside the package.

With ``init="learned"`` a fit starts from weights meta-learned on many short denoising fits
(``benchmarks/train_init.py``; measured in ``docs/benchmarks/learned-init.md``) instead of
random ones. Each file in ``weights/`` holds the weights of one architecture: the generator's
shape (the config fields in :data:`ARCHITECTURE_FIELDS`) and its input and output channels.
Files are read with ``torch.load(..., weights_only=True)``, from the package alone: nothing is
downloaded.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import torch
from torch import nn

from ..config import DIPConfig

WEIGHTS_DIR = Path(__file__).parent / "weights"
"""Where the learned starting weights are shipped, one ``<architecture key>.pt`` each."""

ARCHITECTURE_FIELDS = ("network", "scales", "channels_down", "channels_up", "channels_skip",
                       "top_channels", "kernel_down", "kernel_up", "kernel_skip", "upsample")
"""The config fields that shape the generator (with its input and output channels)."""


def architecture(config: DIPConfig, out_channels: int, in_channels: int) -> dict:
    """The generator's architecture: what a set of learned weights must match."""
    return {**{name: getattr(config, name) for name in ARCHITECTURE_FIELDS},
            "in_channels": int(in_channels), "out_channels": int(out_channels)}


def architecture_key(arch: dict) -> str:
    """The file name (without ``.pt``) of the learned weights of architecture ``arch``."""
    return ("{network}-s{scales}-d{channels_down}-u{channels_up}-k{channels_skip}"
            "-t{top_channels}-kd{kernel_down}-ku{kernel_up}-ks{kernel_skip}-{upsample}"
            "-in{in_channels}-out{out_channels}").format(**arch)


def available_architectures() -> list[str]:
    """The architecture keys that have learned weights in the package."""
    return sorted(path.stem for path in WEIGHTS_DIR.glob("*.pt"))


def has_learned_weights(arch: dict) -> bool:
    """Whether the package ships learned weights for architecture ``arch``."""
    return (WEIGHTS_DIR / f"{architecture_key(arch)}.pt").is_file()


@lru_cache(maxsize=4)
def _load(key: str) -> dict[str, torch.Tensor]:
    saved = torch.load(WEIGHTS_DIR / f"{key}.pt", map_location="cpu", weights_only=True)
    return saved["state_dict"]


def learned_state(arch: dict) -> dict[str, torch.Tensor]:
    """The learned ``state_dict`` of architecture ``arch`` (on the CPU; do not modify it).

    Raises ``ValueError`` naming the architectures that have learned weights when ``arch`` has
    none.
    """
    if not has_learned_weights(arch):
        shipped = available_architectures() or ["none"]
        raise ValueError(f"init='learned': no learned starting weights for this generator "
                         f"({architecture_key(arch)}); learned weights exist for "
                         f"{', '.join(shipped)} (the denoising generator of presets auto and "
                         f"fast, greyscale); use init='random' for any other network")
    return _load(architecture_key(arch))


def load_learned_weights(network: nn.Module, arch: dict) -> None:
    """Overwrite ``network``'s weights (and BatchNorm statistics) with the learned ones."""
    network.load_state_dict(learned_state(arch))

"""A deconvolution's PSF as a run gets it: an array, a model's description, or a TIFF file."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from ..engine.psf import check_psf_description, described_psf, psf_description
from .tiff import read_tiff


def psf_source(psf) -> tuple[np.ndarray | None, dict | None]:
    """The PSF array (None for a model) and the description a run records, from what
    ``psf=`` was given: an array or a model's description (see
    :func:`napari_dip.engine.psf.described_psf`), or a TIFF file's, ``{"path": "psf.tif"}``
    (with the ``"sha256"`` a record gives, which the file must still have)."""
    if not isinstance(psf, Mapping) or "path" not in psf:
        return described_psf(psf)  # checks a description once
    description = check_psf_description(psf)
    array = read_tiff(description["path"]).data
    described = {"path": str(description["path"]), **psf_description(array)}
    if description.get("sha256") not in (None, described["sha256"]):
        raise ValueError(f"the PSF file {description['path']} changed since the run: its "
                         f"digest is {described['sha256'][:12]}..., the run's "
                         f"{description['sha256'][:12]}...")
    return array, described

"""Where a run reads its slice and where its outputs go in the viewer, through napari's public
layer API (no Qt): the slice on screen, the geometry and look of the preview, result and
uncertainty layers, and the metadata that lets a result be repeated."""

from __future__ import annotations

from typing import Any

import numpy as np

from ..engine.layout import Geometry, ImageAxes, RunPlan, output_geometry
from .psf_picker import describe_psf

PREVIEW_KEY = "napari_dip_preview"
"""Metadata flag of a run's preview layer, which is never offered as an input."""


def shown_point(layer, dims) -> np.ndarray:
    """The data coordinates of the slice the layer shows at the viewer's position: the world
    point in the viewer's units converted to the layer's (a layer in um beside one in nm, as
    napari slices it), then through the layer's world-to-data transform."""
    point = np.asarray(dims.point, dtype=float)[-layer.ndim:]
    world_units = getattr(dims, "units", None)
    if world_units is not None and len(world_units) >= layer.ndim:
        import pint

        registry = pint.get_application_registry()
        point = point * np.array([
            registry.get_base_units(world)[0] / registry.get_base_units(own)[0]
            for world, own in zip(world_units[-layer.ndim:], layer.units)])
    return np.asarray(layer.world_to_data(point), dtype=float)


def linear_part(layer):
    """A layer's data-to-world map without its translate and extra affine (scale, then shear,
    then rotate): where a shift of the data lands, for the output layer's translate."""
    from napari.utils.transforms import CompositeAffine

    transform = CompositeAffine(scale=layer.scale, translate=np.zeros(layer.ndim),
                                rotate=layer.rotate, shear=layer.shear, ndim=layer.ndim)
    return lambda shift: np.asarray(transform(np.asarray(shift, dtype=float)))


def output_style(layer, plan: RunPlan) -> dict[str, Any]:
    """Geometry and look of an output layer: it overlays ``layer`` (the same units and axis
    labels, so the viewer's units stay consistent) and looks like it."""
    geometry = output_geometry(Geometry(tuple(layer.scale), tuple(layer.translate)), plan,
                               linear_part(layer))
    style = {"scale": geometry.scale, "translate": geometry.translate,
             "rotate": layer.rotate, "shear": layer.shear, "affine": layer.affine,
             "rgb": bool(getattr(layer, "rgb", False)), "blending": "translucent",
             "axis_labels": tuple(layer.axis_labels),
             "units": tuple(str(unit) for unit in layer.units),
             "contrast_limits": tuple(layer.contrast_limits)}
    if not style["rgb"]:
        style["colormap"] = layer.colormap
    return style


def slice_index(axes: ImageAxes, stack_index: tuple[int, ...]) -> tuple:
    """Index of one 2D slice in the output region, from the engine's index over the leading
    (non-channel, non-plane) axes."""
    index: list[Any] = [slice(None)] * axes.ndim
    for axis, i in zip(axes.leading, stack_index):
        index[axis] = i
    return tuple(index)


def add_uncertainty(viewer, uncertainty: np.ndarray, layer, plan: RunPlan, name: str,
                    metadata: dict[str, Any]):
    """An uncertainty layer from the run's map (Bayesian DIP; slices not reached are 0): one
    map for a colour image (the channels' mean), else the map itself, over the input."""
    stack = uncertainty.mean(axis=plan.axes.channel) if plan.axes.rgb else uncertainty.copy()
    style = output_style(layer, plan)
    style.update(colormap="magma", rgb=False, blending="additive")
    style.pop("contrast_limits")
    return viewer.add_image(stack, name=name, metadata=metadata, **style)


def result_metadata(layer, request, state) -> dict[str, Any]:
    """The result layer's ``napari_dip`` record: the run's choices and settings, enough to
    repeat it from Python or the command line (``--config``)."""
    from napari_dip import run_record

    last, plan = state.last, request.plan
    return {"napari_dip": {
        "source_layer": layer.name, "task": request.task, "factor": plan.factor,
        "preset": request.preset, "seed": request.seed, "device_choice": request.device,
        "overrides": request.overrides, "region": {str(a): i for a, i in plan.fixed.items()},
        "psf": describe_psf(request.psf),
        "stack_axes": list(plan.looped), "finished": bool(last.done),
        # in the backward pass (stack_passes=2) every slice has its forward result already
        "slices_done": last.n_slices if last.pass_number else
        last.slice_number + 1 - (0 if last.snapshot.done else len(last.group)),
        "n_slices": last.n_slices, **run_record(last.snapshot),
        # the run's settings, not the shorter schedule of a stack's later slices
        "config": state.config, "threads": state.threads,
        "channel_axis": plan.axes.channel, "rgb": plan.axes.rgb,
        "intensity_range": list(last.intensity_range)}}

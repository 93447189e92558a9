"""napari finds the plugin of an installed napari-dip (editable or not): its manifest, its
widget and its samples."""

from importlib import metadata
from pathlib import Path

import pytest

import napari_dip

REPOSITORY = Path(__file__).resolve().parents[1]


def _installed_manifest():
    """The manifest napari reads for the installed distribution, found as napari finds it
    (through the distribution's ``napari.manifest`` entry point)."""
    npe2 = pytest.importorskip("npe2", reason="npe2 (installed with napari) reads plugin "
                                              "manifests: pip install -e '.[test]'")
    try:
        metadata.distribution("napari-dip")
    except metadata.PackageNotFoundError:
        pytest.skip("napari-dip is not installed; napari finds plugins through installed "
                    "distributions: pip install -e '.[test]'")
    return npe2.PluginManifest.from_distribution("napari-dip")


def test_napari_finds_the_installed_plugin_its_widget_and_its_samples():
    manifest = _installed_manifest()
    manifest.validate_imports()  # every command's python_name imports and is callable
    commands = {command.id for command in manifest.contributions.commands}
    widgets = [widget.command for widget in manifest.contributions.widgets]
    samples = {sample.key: sample.command for sample in manifest.contributions.sample_data}
    assert widgets and set(widgets) <= commands
    assert {"noisy_cell", "noisy_nuclei", "noisy_nuclei_stack", "damaged_cell"} <= set(samples)
    assert set(samples.values()) <= commands


def test_the_package_ships_the_repository_s_manifest():
    """The manifest lives at the top of the repository; the package's napari.yaml (which wheels
    and editable installs both use) is that same file, not a copy that could drift."""
    shipped = Path(napari_dip.__file__).parent / "napari.yaml"
    top_level = REPOSITORY / "napari.yaml"
    if not top_level.is_file():
        pytest.skip("tests run outside the repository (no top-level napari.yaml)")
    assert shipped.read_text(encoding="utf-8") == top_level.read_text(encoding="utf-8")

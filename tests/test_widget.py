"""The dock widget, driven in a real napari viewer (under Xvfb when there is no display).

Images are tiny and runs short ("quick" preset, tens of iterations) so the file stays fast on a
2-core CPU.
"""

import re

import numpy as np
import pytest
from qtpy.QtCore import Qt

from napari_dip._sample_data import make_damaged_cell, make_noisy_nuclei
from napari_dip.engine.measures import psnr

RUN_TIMEOUT_MS = 60_000


# ----------------------------------------------------------------------------- without a viewer

def test_the_manifest_is_valid_and_names_the_widget_and_samples():
    from npe2 import PluginManifest

    manifest = PluginManifest.from_distribution("napari-dip")
    assert [w.display_name for w in manifest.contributions.widgets] == ["Deep Image Prior"]
    assert {s.key for s in manifest.contributions.sample_data} >= {
        "noisy_nuclei", "noisy_nuclei_stack", "damaged_cell"}


# ----------------------------------------------------------------------------- in a viewer

@pytest.fixture(autouse=True)
def private_settings(tmp_path, monkeypatch):
    """Each test reads and writes its own settings file, never the user's."""
    path = tmp_path / "widget.json"
    monkeypatch.setenv("NAPARI_DIP_SETTINGS", str(path))
    return path


@pytest.fixture
def notifications():
    """Messages of the napari notifications dispatched during the test."""
    from napari.utils.notifications import notification_manager

    seen = []

    def record(event):
        seen.append(event.message if hasattr(event, "message") else str(event))

    notification_manager.notification_ready.connect(record)
    yield seen
    notification_manager.notification_ready.disconnect(record)


@pytest.fixture
def dock(make_napari_viewer, qtbot):
    """A viewer with the widget docked from the plugin manifest: ``(viewer, widget)``."""
    viewer = make_napari_viewer()
    _, widget = viewer.window.add_plugin_dock_widget("napari-dip", "Deep Image Prior")
    yield viewer, widget
    if widget.running:
        widget.stop()
        qtbot.waitUntil(lambda: not widget.running, timeout=RUN_TIMEOUT_MS)


def configure(widget, *, task="denoise", max_iterations=40, **knobs):
    """Pick the task and the 'quick' preset, then change single knobs under Advanced."""
    from napari_dip._qt.status import task_label

    widget.task_combo.setCurrentText(task_label(task))
    widget.preset_combo.setCurrentText("quick")
    widget.device_combo.choose("cpu")
    for name, value in dict(max_iterations=max_iterations, **knobs).items():
        widget.settings_panel.set_value(name, value)


def configure_bayesian(widget):
    """Preset 'bayesian', cut to a tiny network and 30 steps that still draw samples."""
    configure(widget, max_iterations=30)
    widget.preset_combo.setCurrentText("bayesian")
    for name, value in dict(max_iterations=30, burn_in=10, sample_every=5, scales=3,
                            channels_down=16, channels_up=16).items():
        widget.settings_panel.set_value(name, value)


def run_to_end(qtbot, widget):
    qtbot.mouseClick(widget.run_button, Qt.MouseButton.LeftButton)
    assert widget.running and widget.run_button.text() == "Stop"
    qtbot.waitUntil(lambda: not widget.running, timeout=RUN_TIMEOUT_MS)
    assert widget.run_button.text() == "Run"
    return widget.result_layer


qt = pytest.mark.qt


@qt
def test_the_widget_opens_from_the_manifest(dock):
    from napari_dip._qt.main_widget import RestoreWidget
    from napari_dip.config import describe_fields

    viewer, widget = dock
    assert isinstance(widget, RestoreWidget)
    assert widget.preset_combo.currentText() in ("auto", "quick")
    names = {spec["name"] for spec in describe_fields()}
    assert set(widget.settings_panel.controls) == names


@qt
def test_denoising_a_2d_image_beats_the_input_psnr(dock, qtbot):
    viewer, widget = dock
    clean, noisy = make_noisy_nuclei((32, 32))
    layer = viewer.add_image(noisy, name="noisy", colormap="green", scale=(0.5, 0.5),
                             translate=(3.0, 4.0), contrast_limits=(0.0, 0.9))
    before = noisy.copy()
    configure(widget, max_iterations=40)
    result = run_to_end(qtbot, widget)
    assert result.name == "noisy [denoise]"
    assert psnr(result.data, clean) > psnr(noisy, clean) + 2.0
    np.testing.assert_array_equal(layer.data, before)  # the input layer is never changed
    assert tuple(result.scale) == (0.5, 0.5) and tuple(result.translate) == (3.0, 4.0)
    assert result.colormap.name == "green" and tuple(result.contrast_limits) == (0.0, 0.9)
    record = result.metadata["napari_dip"]
    assert record["task"] == "denoise" and record["seed"] == 0 and record["finished"]
    assert record["iterations"] == 40 and record["config"]["max_iterations"] == 40
    assert "[preview]" not in " ".join(layer.name for layer in viewer.layers)


@qt
def test_inpainting_changes_the_masked_pixels_much_more_than_the_rest(dock, qtbot):
    viewer, widget = dock
    clean, damaged, mask = make_damaged_cell(48)
    viewer.add_image(damaged, name="damaged")
    viewer.add_labels(mask, name="damage")
    configure(widget, task="inpaint", max_iterations=40)
    widget.labels_combo.setCurrentText("damage")
    widget.image_combo.setCurrentText("damaged")
    result = run_to_end(qtbot, widget)
    change = np.abs(result.data - damaged)
    assert change[mask > 0].mean() > 5 * change[mask == 0].mean()
    # and the masked pixels moved towards the truth, not anywhere
    assert (np.abs(result.data - clean)[mask > 0].mean()
            < 0.5 * np.abs(damaged - clean)[mask > 0].mean())


@qt
def test_super_resolution_doubles_the_shape_and_overlays_the_input(dock, qtbot):
    viewer, widget = dock
    _, low = make_noisy_nuclei((16, 16), sigma=0.0)
    layer = viewer.add_image(low, name="low", scale=(2.0, 3.0), translate=(10.0, 20.0))
    configure(widget, task="super_resolve", max_iterations=5)
    widget.factor_combo.setCurrentText("2")
    result = run_to_end(qtbot, widget)
    assert result.name == "low [super-resolve]" and result.data.shape == (32, 32)
    assert tuple(result.scale) == (1.0, 1.5)
    # the world position of an input pixel's centre lands on the centre of its 2x2 block
    for pixel in [(0, 0), (5, 11), (15, 15)]:
        world = layer.data_to_world(pixel)
        np.testing.assert_allclose(result.world_to_data(world), 2 * np.array(pixel) + 0.5)


@pytest.fixture
def noisy_stack(dock):
    viewer, widget = dock
    clean, noisy = make_noisy_nuclei((3, 32, 32))
    layer = viewer.add_image(noisy, name="stack", scale=(2.0, 0.5, 0.5),
                             axis_labels=("z", "y", "x"))
    return clean, noisy, layer


@qt
def test_a_current_slice_run_restores_the_slice_on_screen_only(dock, qtbot, noisy_stack):
    viewer, widget = dock
    clean, noisy, _ = noisy_stack
    viewer.dims.set_current_step(0, 2)
    configure(widget, max_iterations=80)
    widget.set_scope(False)
    result = run_to_end(qtbot, widget)
    assert result.data.shape == (1, 32, 32)
    assert tuple(result.translate) == (4.0, 0.0, 0.0)  # slice 2 at 2 units per slice
    assert tuple(result.axis_labels) == ("z", "y", "x")
    assert psnr(result.data[0], clean[2]) > psnr(noisy[2], clean[2]) + 2.0
    # where it ran and in which arithmetic (a 32x32 slice stays in float32 on any CPU)
    assert re.fullmatch(r"runs on: CPU, \d+ threads?, float32", widget.device_label.text())


@qt
def test_a_whole_stack_run_restores_every_slice(dock, qtbot, noisy_stack):
    viewer, widget = dock
    clean, noisy, _ = noisy_stack
    configure(widget, max_iterations=40, warm_start_fraction=0.5)
    widget.set_scope(True, axis=0)
    assert widget.scope_combo.currentText() == "whole stack along z"
    result = run_to_end(qtbot, widget)
    assert result.data.shape == noisy.shape and tuple(result.translate) == (0.0, 0.0, 0.0)
    assert result.metadata["napari_dip"]["slices_done"] == 3
    for k in range(3):
        assert psnr(result.data[k], clean[k]) > psnr(noisy[k], clean[k]) + 1.0, k


@qt
def test_a_stack_run_with_slices_in_one_batch(dock, qtbot, noisy_stack, monkeypatch):
    """slice_batch=2 on 3 slices: slices 1-2 fitted together, then slice 3; the progress names
    the group, the preview shows both slices of it, and every slice counts as done."""
    import napari_dip._qt.worker as worker_module

    monkeypatch.setattr(worker_module, "PREVIEW_INTERVAL_S", 0.0)
    viewer, widget = dock
    clean, noisy, _ = noisy_stack
    configure(widget, max_iterations=100, warm_start_fraction=0.5, slice_batch=2)
    widget.set_scope(True, axis=0)
    seen, texts = [], []
    widget.progress_bar.valueChanged.connect(lambda _: texts.append(widget.progress_bar.format()))
    widget.run()
    widget.worker.yielded.connect(
        lambda progress: seen.append((progress.group_size, [i for i, _ in progress.previews])))
    qtbot.waitUntil(lambda: not widget.running, timeout=RUN_TIMEOUT_MS)
    assert (2, [(0,), (1,)]) in seen and (1, [(2,)]) in seen
    assert any(text.startswith("slices 1-2/3") for text in texts)
    result = widget.result_layer
    assert result.metadata["napari_dip"]["slices_done"] == 3
    for k in range(3):
        assert psnr(result.data[k], clean[k]) > psnr(noisy[k], clean[k]) + 1.0, k


@qt
def test_the_preview_layer_updates_during_a_run(dock, qtbot, monkeypatch):
    import napari_dip._qt.worker as worker_module

    monkeypatch.setattr(worker_module, "PREVIEW_INTERVAL_S", 0.0)
    viewer, widget = dock
    _, noisy = make_noisy_nuclei((32, 32))
    viewer.add_image(noisy, name="noisy")
    configure(widget, max_iterations=100_000, report_every=1)
    widget.run()
    preview = widget.preview_layer
    assert preview is not None and preview.name == "noisy [preview]"
    qtbot.waitUntil(lambda: preview.data.any(), timeout=RUN_TIMEOUT_MS)
    first = preview.data.copy()
    qtbot.waitUntil(lambda: not np.array_equal(preview.data, first), timeout=RUN_TIMEOUT_MS)
    assert widget.running and preview in viewer.layers
    widget.stop()
    qtbot.waitUntil(lambda: not widget.running, timeout=RUN_TIMEOUT_MS)
    # the preview layer itself becomes the result layer: no preview is left behind
    assert [layer.name for layer in viewer.layers] == ["noisy", "noisy [denoise]"]
    assert widget.result_layer is preview


@qt
def test_stop_ends_the_run_and_keeps_the_result_so_far(dock, qtbot):
    viewer, widget = dock
    _, noisy = make_noisy_nuclei((32, 32))
    layer = viewer.add_image(noisy, name="noisy")
    before = noisy.copy()
    configure(widget, max_iterations=100_000, report_every=1)
    widget.run()
    qtbot.waitUntil(lambda: widget.state.last is not None, timeout=RUN_TIMEOUT_MS)
    qtbot.mouseClick(widget.run_button, Qt.MouseButton.LeftButton)  # it reads Stop now
    qtbot.waitUntil(lambda: not widget.running, timeout=30_000)
    result = widget.result_layer
    assert result is not None and result.name == "noisy [denoise]"
    assert result.data.shape == noisy.shape and result.data.any()
    record = result.metadata["napari_dip"]
    assert not record["finished"] and 1 <= record["iterations"] < 100_000
    assert widget.run_button.text() == "Run" and "stopped" in widget.progress_bar.format()
    np.testing.assert_array_equal(layer.data, before)


@qt
def test_a_mismatched_mask_gives_a_notification_and_no_run(dock, qtbot, notifications):
    viewer, widget = dock
    viewer.add_image(np.random.default_rng(0).random((32, 32), dtype=np.float32), name="image")
    viewer.add_labels(np.ones((20, 20), dtype=np.uint8), name="wrong")
    configure(widget, task="inpaint")
    widget.labels_combo.setCurrentText("wrong")
    widget.image_combo.setCurrentText("image")
    n_layers = len(viewer.layers)
    qtbot.mouseClick(widget.run_button, Qt.MouseButton.LeftButton)
    assert not widget.running and widget.run_button.text() == "Run"
    assert len(viewer.layers) == n_layers
    assert any("(20, 20)" in m and "(32, 32)" in m for m in notifications), notifications


@qt
def test_an_error_in_the_worker_is_notified_and_the_widget_is_ready_again(dock, qtbot,
                                                                          notifications):
    viewer, widget = dock
    viewer.add_image(np.zeros((32, 32), dtype=np.float32), name="image")
    configure(widget, max_iterations=5)
    widget.device_combo.choose("cuda:7")  # no such GPU here
    run_to_end(qtbot, widget)
    assert any("cuda:7" in m for m in notifications), notifications
    assert widget.result_layer is None and [layer.name for layer in viewer.layers] == ["image"]
    widget.device_combo.choose("cpu")
    assert run_to_end(qtbot, widget).data.shape == (32, 32)


@qt
def test_settings_persist_to_the_next_widget(dock, make_napari_viewer, private_settings):
    from napari_dip._qt.main_widget import RestoreWidget

    _, widget = dock
    configure(widget, task="super_resolve", max_iterations=123)
    widget.factor_combo.setCurrentText("4")
    widget.seed_spin.setValue(7)
    again = RestoreWidget(make_napari_viewer())
    assert again.task == "super_resolve" and again.factor == 4
    assert again.seed_spin.value() == 7 and again.device_combo.currentText() == "cpu"
    assert again.settings_panel.overrides() == {"max_iterations": 123}
    assert private_settings.exists()


@qt
@pytest.mark.parametrize("key, kinds", [
    ("noisy_cell", ["image"]), ("noisy_nuclei", ["image"]), ("noisy_nuclei_stack", ["image"]),
    ("damaged_cell", ["image", "labels"])])
def test_sample_data_open(make_napari_viewer, key, kinds):
    viewer = make_napari_viewer()
    viewer.open_sample("napari-dip", key)
    assert [layer._type_string for layer in viewer.layers] == kinds
    shapes = {layer.data.shape for layer in viewer.layers}
    assert len(shapes) == 1  # a mask has the shape of its image
    assert all(layer.data.any() for layer in viewer.layers)


@qt
def test_a_rotated_sheared_layer_gets_a_result_that_lies_on_it(dock, qtbot):
    viewer, widget = dock
    _, low = make_noisy_nuclei((16, 16), sigma=0.0)
    layer = viewer.add_image(low, name="low", scale=(2.0, 3.0), translate=(5.0, 7.0),
                             rotate=30, shear=[0.2],
                             affine=np.array([[1.0, 0.5, 3.0], [0.0, 1.0, 4.0], [0, 0, 1]]))
    configure(widget, task="super_resolve", max_iterations=3)
    widget.factor_combo.setCurrentText("2")
    result = run_to_end(qtbot, widget)
    assert result.data.shape == (32, 32)
    for pixel in ((0, 0), (5, 11), (15, 3)):
        # input pixel p's centre is output pixel (p + 0.5) x 2 - 0.5
        finer = tuple((c + 0.5) * 2 - 0.5 for c in pixel)
        np.testing.assert_allclose(result.data_to_world(finer), layer.data_to_world(pixel),
                                   atol=1e-9)


@qt
def test_closing_the_widget_stops_its_run(dock, qtbot):
    viewer, widget = dock
    _, noisy = make_noisy_nuclei((32, 32))
    viewer.add_image(noisy, name="noisy")
    configure(widget, max_iterations=100_000, report_every=1)
    widget.run()
    qtbot.waitUntil(lambda: widget.state.last is not None, timeout=RUN_TIMEOUT_MS)
    viewer.window.remove_dock_widget(widget.parent())  # the dock's close button does this
    qtbot.waitUntil(lambda: not widget.running, timeout=30_000)
    assert widget.state.last.snapshot.iteration < 100_000


@qt
def test_layer_choices_follow_renames_and_keep_the_scope_and_channels_chosen(dock, qtbot):
    viewer, widget = dock
    rng = np.random.default_rng(0)
    stack = viewer.add_image(rng.random((2, 3, 32, 32), dtype=np.float32), name="tzyx",
                             axis_labels=("t", "z", "y", "x"))
    assert widget.image_combo.currentText() == "tzyx"
    stack.name = "renamed"
    assert widget.image_combo.currentText() == "renamed" and widget.image_layer() is stack
    viewer.add_image(rng.random((32, 32), dtype=np.float32), name="tzyx")  # a namesake
    widget.image_combo.setCurrentText("renamed")
    assert widget.image_layer() is stack

    widget.set_scope(True, axis=0)
    assert widget.scope_combo.currentText() == "whole stack along t"
    viewer.add_points(np.zeros((1, 4)))
    assert widget.scope_combo.currentText() == "whole stack along t"

    widget.channel_combo.setCurrentIndex(widget.channel_combo.findData(1))  # z as channels
    other = viewer.add_image(rng.random((9, 32, 32), dtype=np.float32), name="zstack")
    widget.image_combo.setCurrentText("zstack")
    assert widget.image_layer() is other and widget.channel_combo.currentData() is None
    assert "whole stack along axis 0" in [widget.scope_combo.itemText(i)
                                          for i in range(widget.scope_combo.count())]

    widget.image_combo.setCurrentText("renamed")
    widget.set_scope(True, axis=0)
    configure(widget, max_iterations=2)
    widget.run()
    assert widget.preview_layer.name not in [widget.image_combo.itemText(i)
                                             for i in range(widget.image_combo.count())]
    assert widget.scope_combo.currentText() == "whole stack along t"
    qtbot.waitUntil(lambda: not widget.running, timeout=RUN_TIMEOUT_MS)
    assert widget.result_layer.data.shape == (2, 1, 32, 32)  # every t, the z on screen


@qt
def test_an_rgb_bayesian_run_gets_one_uncertainty_map(dock, qtbot):
    viewer, widget = dock
    rgb = (np.random.default_rng(0).random((32, 32, 3)) * 255).astype(np.uint8)
    layer = viewer.add_image(rgb, name="colour", rgb=True)
    configure_bayesian(widget)
    run_to_end(qtbot, widget)
    assert widget.uncertainty_layer is not None and not widget.uncertainty_layer.rgb
    assert widget.uncertainty_layer.data.shape == (32, 32)
    assert (widget.uncertainty_layer.data >= 0).all() and layer.rgb


@qt
def test_a_bayesian_stack_gets_an_uncertainty_layer_for_every_slice(dock, qtbot):
    viewer, widget = dock
    stack = np.random.default_rng(0).random((3, 32, 32)).astype(np.float32)
    viewer.add_image(stack, name="stack", scale=(2.0, 0.5, 0.5))
    widget.set_scope(True, axis=0)
    configure_bayesian(widget)
    run_to_end(qtbot, widget)
    uncertainty = widget.uncertainty_layer
    assert uncertainty is not None and uncertainty.data.shape == (3, 32, 32)
    assert (uncertainty.data >= 0).all() and (uncertainty.data > 0).any(axis=(1, 2)).all()
    assert tuple(uncertainty.scale) == (2.0, 0.5, 0.5)  # lies on the image


@qt
def test_an_rgba_layer_keeps_its_alpha_and_gets_its_colours_restored(dock, qtbot):
    viewer, widget = dock
    rng = np.random.default_rng(0)
    rgba = (rng.random((16, 16, 4)) * 255).astype(np.uint8)
    rgba[..., 3] = np.arange(16, dtype=np.uint8)[:, None] * 16  # a ramp of transparency
    viewer.add_image(rgba, name="rgba", rgb=True)
    configure(widget, task="super_resolve", max_iterations=3)
    widget.factor_combo.setCurrentText("2")
    layer = viewer.layers["rgba"]
    layer.contrast_limits = (10, 200)
    result = run_to_end(qtbot, widget)
    assert result.data.shape == (32, 32, 4) and result.rgb
    np.testing.assert_array_equal(result.data[..., 3], rgba[..., 3].repeat(2, 0).repeat(2, 1))
    assert tuple(result.contrast_limits) == (10, 200)  # an RGB layer's look is kept too


@qt
def test_a_lazy_layer_is_read_by_the_worker_not_at_the_run_click(dock, qtbot):
    da = pytest.importorskip("dask.array")
    viewer, widget = dock
    _, noisy = make_noisy_nuclei((2, 32, 32))
    viewer.add_image(da.from_array(noisy, chunks=(1, 32, 32)), name="lazy")
    configure(widget, max_iterations=3)
    widget.set_scope(True)
    assert not isinstance(widget._request().data, np.ndarray)  # still lazy on the GUI thread
    assert run_to_end(qtbot, widget).data.shape == (2, 32, 32)


@qt
def test_a_current_slice_run_on_a_transposed_view_is_refused_with_the_fix(dock, qtbot,
                                                                          notifications):
    viewer, widget = dock
    viewer.add_image(np.random.default_rng(0).random((3, 32, 32), dtype=np.float32),
                     name="zyx", axis_labels=("z", "y", "x"))
    configure(widget, max_iterations=2)
    viewer.dims.order = (1, 0, 2)  # the screen shows z x x
    qtbot.mouseClick(widget.run_button, Qt.MouseButton.LeftButton)
    assert not widget.running
    assert any("the view shows the z × x plane" in m for m in notifications), notifications
    viewer.dims.order = (0, 1, 2)
    assert run_to_end(qtbot, widget).data.shape == (1, 32, 32)


@qt
def test_a_stop_in_the_backward_pass_keeps_every_slice(dock, qtbot, noisy_stack, notifications):
    """With stack_passes=2 every slice has its forward result before the backward pass begins:
    a stop there keeps a result for each slice and does not say some were left at 0."""
    _, widget = dock
    _, noisy, _ = noisy_stack
    configure(widget, max_iterations=30, report_every=1, stopping="none",
              warm_start_fraction=0.0, stack_passes=2)
    widget.set_scope(True, axis=0)
    widget.run()
    widget.worker.yielded.connect(lambda progress: progress.backward and widget.stop())
    qtbot.waitUntil(lambda: not widget.running, timeout=RUN_TIMEOUT_MS)
    last = widget.state.last
    assert last.pass_number == 1 and not last.done  # stopped in the backward pass
    result = widget.result_layer
    record = result.metadata["napari_dip"]
    assert not record["finished"] and record["slices_done"] == record["n_slices"] == 3
    assert result.data.shape == noisy.shape
    assert all(result.data[k].any() for k in range(3))
    stopped = [m for m in notifications if "stopped; kept the result so far" in m]
    assert stopped and not any("left at 0" in m for m in stopped), notifications


@qt
def test_a_current_slice_run_restores_the_slice_shown_when_layers_differ_in_units(dock):
    viewer, widget = dock
    rng = np.random.default_rng(0)
    micrometres = viewer.add_image(rng.random((10, 32, 32), dtype=np.float32), name="um",
                                   units="um")
    viewer.add_image(rng.random((10, 32, 32), dtype=np.float32), name="nm",
                     scale=(500, 1000, 1000), units="nm")
    viewer.dims.set_current_step(0, 3)
    shown = int(np.round(micrometres._data_slice.point[0]))
    assert shown == 2  # napari shows slice 2 of the layer in um at 1.5 um
    widget.image_combo.setCurrentText("um")
    configure(widget, max_iterations=3)
    widget.set_scope(False)
    assert widget._request().region.fixed == {0: shown}


@qt
def test_a_current_slice_run_is_refused_where_the_layer_shows_no_slice(dock, qtbot,
                                                                      notifications):
    viewer, widget = dock
    rng = np.random.default_rng(0)
    viewer.add_image(rng.random((10, 32, 32), dtype=np.float32), name="long")
    viewer.add_image(rng.random((3, 32, 32), dtype=np.float32), name="short")
    viewer.dims.set_current_step(0, 8)  # beyond the short stack: napari draws none of it
    widget.image_combo.setCurrentText("short")
    configure(widget, max_iterations=3)
    widget.set_scope(False)
    widget.run()
    assert not widget.running and widget.result_layer is None
    assert any("outside this layer" in m and "move the slider" in m for m in notifications)


@qt
@pytest.mark.parametrize("text", ['{"preset": ["quick"]}', '{"preset": {"a": 1}}',
                                  '{"seed": 4294967296}', '{"seed": true, "whole_stack": 1}'])
def test_a_hand_edited_settings_file_falls_back_to_the_defaults(make_napari_viewer,
                                                                 private_settings, text):
    from napari_dip._qt.main_widget import RestoreWidget

    private_settings.write_text(text)
    widget = RestoreWidget(make_napari_viewer())
    assert widget.preset_combo.currentText() == "auto" and widget.seed_spin.value() == 0


@qt
def test_a_saved_whole_stack_scope_comes_back_when_a_stack_is_opened_later(
        make_napari_viewer, private_settings):
    import json

    from napari_dip._qt.main_widget import RestoreWidget

    private_settings.write_text(json.dumps({"whole_stack": True}))
    viewer = make_napari_viewer()
    widget = RestoreWidget(viewer)  # opened before the data, as from the Plugins menu
    viewer.add_image(np.zeros((3, 32, 32), np.float32), name="stack")
    assert widget.scope_combo.currentData() == (0,)
    widget.seed_spin.setValue(1)  # any change saves the settings
    assert json.loads(private_settings.read_text())["whole_stack"] is True
    viewer.add_image(np.zeros((32, 32), np.float32), name="plane")  # no stack to loop over
    widget.image_combo.setCurrentText("plane")
    widget.image_combo.setCurrentText("stack")
    assert widget.scope_combo.currentData() == (0,)  # the choice came back with the stack
    widget.set_scope(False)
    widget.image_combo.setCurrentText("plane")
    widget.image_combo.setCurrentText("stack")
    assert widget.scope_combo.currentData() is None  # and so does "current slice"


@qt
def test_the_backward_pass_names_the_slice_it_fits(dock, qtbot):
    viewer, widget = dock
    viewer.add_image(np.random.default_rng(0).random((4, 32, 32), dtype=np.float32),
                     name="stack")
    configure(widget, max_iterations=10, report_every=5, stack_passes=2,
              warm_start_fraction=0.0)
    widget.set_scope(True)
    widget.run()
    seen = []
    widget.worker.yielded.connect(lambda progress: progress.backward and progress.previews and (
        seen.append((widget.progress_bar.format().split(" · ")[1],
                     progress.previews[0][0][0]))))
    qtbot.waitUntil(lambda: not widget.running, timeout=RUN_TIMEOUT_MS)
    assert {index for _, index in seen} == {2, 1, 0}
    assert all(text == f"slice {index + 1}/4" for text, index in seen), seen


@qt
def test_new_labels_on_an_image_with_channels_is_a_mask(dock, qtbot, notifications):
    viewer, widget = dock
    image = np.random.default_rng(0).random((2, 32, 32), dtype=np.float32)
    viewer.add_image(image, name="channels")
    viewer._new_labels()  # the layer list's New Labels button: shaped like the image
    labels = viewer.layers[-1]
    assert labels.data.shape == (2, 32, 32)
    labels.data[1, 10:14, 10:14] = 1  # painted on one channel's plane
    configure(widget, task="inpaint", max_iterations=3)
    widget.image_combo.setCurrentText("channels")
    widget.channel_combo.setCurrentIndex(widget.channel_combo.findData(0))
    widget.labels_combo.setCurrentText(labels.name)
    assert run_to_end(qtbot, widget) is not None, notifications
    missing = np.zeros((32, 32), bool)
    missing[10:14, 10:14] = True  # missing in every channel: the fit has no data there
    np.testing.assert_array_equal(widget._run_context["request"].mask, missing)


@qt
def test_the_layer_metadata_repeats_the_run_from_python(dock, qtbot, noisy_stack):
    """The settings, threads, channel axis and region in the result's metadata give the same
    pixels through the Python API (on a CPU the widget leaves one core to the viewer)."""
    import torch

    import napari_dip

    _, widget = dock
    _, noisy, layer = noisy_stack
    configure(widget, max_iterations=12, report_every=4)
    widget.set_scope(True, axis=0)
    result = run_to_end(qtbot, widget)
    record = result.metadata["napari_dip"]
    assert record["config"]["max_iterations"] == 12  # the run's, not a later slice's schedule
    assert record["channel_axis"] is None and record["threads"] >= 1
    region = tuple(slice(record["region"][str(a)], record["region"][str(a)] + 1)
                   if str(a) in record["region"] else slice(None) for a in range(noisy.ndim))
    previous = torch.get_num_threads()
    torch.set_num_threads(record["threads"])
    try:
        again = napari_dip.restore_stack(layer.data[region], preset=record["preset"],
                                         seed=record["seed"], device=record["device_choice"],
                                         channel_axis=record["channel_axis"],
                                         **record["overrides"])
    finally:
        torch.set_num_threads(previous)
    np.testing.assert_array_equal(again, result.data)
    low, high = record["intensity_range"]
    assert low < high


@qt
def test_the_layer_metadata_repeats_the_run_on_the_command_line(dock, qtbot, noisy_stack,
                                                                 tmp_path):
    import json

    import tifffile

    from napari_dip.cli import main

    _, widget = dock
    _, noisy, layer = noisy_stack
    configure(widget, max_iterations=12, report_every=4)
    widget.set_scope(True, axis=0)
    result = run_to_end(qtbot, widget)
    (tmp_path / "run.json").write_text(json.dumps(result.metadata))  # the layer's, saved whole
    tifffile.imwrite(tmp_path / "stack.tif", np.asarray(layer.data), photometric="minisblack",
                     metadata={"axes": "ZYX"})
    assert main(["denoise", str(tmp_path / "stack.tif"), "--out", str(tmp_path / "out"),
                 "--config", str(tmp_path / "run.json"), "--quiet"]) == 0
    again = tifffile.imread(tmp_path / "out" / "stack.tif")
    np.testing.assert_array_equal(again, result.data)


# ----------------------------------------------------------------------------- as a user meets it

@qt
def test_the_progress_of_an_automatic_stop_counts_toward_the_stop_not_the_cap(dock, qtbot):
    viewer, widget = dock
    _, noisy = make_noisy_nuclei((32, 32))
    viewer.add_image(noisy, name="noisy")
    configure(widget, max_iterations=100_000, report_every=5, stopping="variance",
              variance_window=10, patience=200)
    widget.run()
    qtbot.waitUntil(lambda: "best at iteration" in widget.progress_view.status_label.text(),
                    timeout=RUN_TIMEOUT_MS)
    text = widget.progress_bar.format()
    iteration, expected = map(int, re.search(r"iteration (\d+)/~(\d+)", text).groups())
    assert iteration < expected <= iteration + 200 + 10, text
    assert widget.progress_bar.value() > 0.02 * widget.progress_bar.maximum()
    assert "stops after 200 without a better one" in widget.progress_view.status_label.text()
    widget.stop()
    qtbot.waitUntil(lambda: not widget.running, timeout=RUN_TIMEOUT_MS)


@qt
def test_a_whole_stack_preview_shows_the_input_until_a_slice_is_fitted(dock, qtbot,
                                                                      noisy_stack):
    viewer, widget = dock
    _, noisy, _ = noisy_stack
    configure(widget, max_iterations=20, report_every=5)
    widget.set_scope(True, axis=0)
    widget.run()
    preview = widget.preview_layer
    assert not preview.visible  # nothing to show before the worker sends the input
    seen = []
    widget.worker.yielded.connect(lambda progress: seen.append(
        (progress.slice_number, preview.visible, np.array_equal(preview.data[2], noisy[2]))))
    qtbot.waitUntil(lambda: not widget.running, timeout=RUN_TIMEOUT_MS)
    assert seen[0] == (0, True, True)  # slice 3 shows the input while slice 1 is fitted
    assert not np.array_equal(widget.result_layer.data[2], noisy[2])


@qt
def test_the_samples_and_a_run_on_them_raise_no_unit_warning(dock, qtbot, notifications):
    viewer, widget = dock
    for key in ("noisy_cell", "noisy_nuclei_stack", "damaged_cell"):
        viewer.open_sample("napari-dip", key)
    widget.image_combo.setCurrentText("noisy nuclei stack")
    configure(widget, max_iterations=3)
    widget.set_scope(False)
    assert run_to_end(qtbot, widget) is not None
    assert not any("units" in m.lower() for m in notifications), notifications


@qt
def test_a_refused_run_shows_its_whole_message_and_clears_the_last_outcome(dock, qtbot,
                                                                           notifications):
    viewer, widget = dock
    viewer.add_image(np.random.default_rng(0).random((32, 32), dtype=np.float32), name="image")
    configure(widget, max_iterations=100_000, report_every=1)
    widget.run()
    qtbot.waitUntil(lambda: widget.state.last is not None, timeout=RUN_TIMEOUT_MS)
    widget.stop()
    qtbot.waitUntil(lambda: not widget.running, timeout=RUN_TIMEOUT_MS)
    assert "stopped" in widget.progress_bar.format()
    configure(widget, task="inpaint")  # no Labels layer: refused
    widget.run()
    assert not widget.running and "stopped" not in widget.progress_bar.format()
    shown = widget.progress_view.status_label.text()
    assert "needs a Labels layer" in shown and "choose it as the mask" in shown
    title = notifications[-1].splitlines()[0]
    assert len(title) < 80 and "choose it as the mask" in notifications[-1]


@qt
def test_run_and_progress_stay_in_view_with_every_setting_open(dock):
    viewer, widget = dock
    widget.advanced.expand(animate=False)
    for section in widget.settings_panel.sections.values():
        section.expand(animate=False)
    assert list(widget.settings_panel.sections)[0] == "Run length and stopping"
    scroll = widget.scroll_area
    assert scroll.widget().isAncestorOf(widget.settings_panel)
    for part in (widget.run_button, widget.progress_bar, widget.loss_plot):
        assert not scroll.isAncestorOf(part)
    assert widget.minimumSizeHint().height() < 600  # the settings scroll, not the window

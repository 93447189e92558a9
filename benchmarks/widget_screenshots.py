"""Screenshots of the "Deep Image Prior" widget in a real napari viewer, for docs/user-guide.md.

Each scene opens one of the plugin's sample data sets, runs the widget on it and saves the
whole window (canvas, layer list and dock widget). Needs a display:

    xvfb-run -a -s "-screen 0 1600x1000x24" python benchmarks/widget_screenshots.py

Writes docs/images/widget-{denoise,inpaint,super-resolve,stack,history}.png. Runs use the "quick"
preset with the iterations given below, so the pictures show what a short CPU run gives.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

OUT = Path(__file__).resolve().parents[1] / "docs" / "images"


def wait_for(widget, timeout_s: float = 1800.0) -> None:
    """Process GUI events until the widget's run ends."""
    from qtpy.QtCore import QEventLoop, QTimer

    if widget.worker is None:
        return
    loop = QEventLoop()
    widget.worker.finished.connect(loop.quit)
    QTimer.singleShot(int(timeout_s * 1000), loop.quit)
    loop.exec()


def settle(seconds: float = 0.5) -> None:
    from qtpy.QtCore import QEventLoop, QTimer

    loop = QEventLoop()
    QTimer.singleShot(int(seconds * 1000), loop.quit)
    loop.exec()


def open_scene(sample: str):
    import napari

    viewer = napari.Viewer()
    viewer.window._qt_window.resize(1500, 900)
    viewer.open_sample("napari-dip", sample)
    _, widget = viewer.window.add_plugin_dock_widget("napari-dip", "Deep Image Prior")
    widget.preset_combo.setCurrentText("quick")
    widget.device_combo.choose(DEVICE)
    return viewer, widget


def configure(widget, task: str, iterations: int, image: str) -> None:
    from napari_dip._qt.status import task_label

    widget.task_combo.setCurrentText(task_label(task))
    widget.image_combo.setCurrentText(image)
    widget.settings_panel.set_value("max_iterations", iterations)


def save(viewer, name: str) -> None:
    settle()
    path = OUT / f"widget-{name}.png"
    viewer.window.screenshot(str(path), canvas_only=False)
    print("wrote", path)
    viewer.close()


def denoise(iterations: int) -> None:
    viewer, widget = open_scene("noisy_nuclei")
    configure(widget, "denoise", iterations, "noisy nuclei")
    widget.run()
    wait_for(widget)
    viewer.grid.enabled = True  # input and result side by side
    save(viewer, "denoise")


def inpaint(iterations: int) -> None:
    viewer, widget = open_scene("damaged_cell")
    configure(widget, "inpaint", iterations, "damaged cell")
    widget.labels_combo.setCurrentText("damage mask")
    widget.run()
    wait_for(widget)
    viewer.layers["damage mask"].visible = False
    viewer.grid.enabled = True
    save(viewer, "inpaint")


def super_resolve(iterations: int) -> None:
    import numpy as np

    from napari_dip._sample_data import cell_image

    viewer, widget = open_scene("noisy_cell")
    viewer.layers.clear()
    small = cell_image(256)[::4, ::4].copy()  # a 64x64 low-resolution view of the cell
    viewer.add_image(small, name="low-res cell", scale=(4.0, 4.0), colormap="gray")
    configure(widget, "super_resolve", iterations, "low-res cell")
    widget.factor_combo.setCurrentText("4")
    widget.run()
    wait_for(widget)
    # the left half shows the input, the right half the 4x result, overlaid in world space
    result = widget.result_layer
    half = np.zeros(result.data.shape, dtype=bool)
    half[:, half.shape[1] // 2:] = True
    result.data = np.where(half, result.data, np.nan).astype(np.float32)
    viewer.camera.zoom *= 2.5
    viewer.camera.center = (0, 128, 128)
    save(viewer, "super-resolve")


def stack(iterations: int) -> None:
    viewer, widget = open_scene("noisy_nuclei_stack")
    configure(widget, "denoise", iterations, "noisy nuclei stack")
    widget.set_scope(True)
    widget.run()
    # photograph the run in progress: preview layer, progress bar and loss plot
    from qtpy.QtCore import QEventLoop, QTimer

    loop = QEventLoop()
    timer = QTimer()
    timer.timeout.connect(lambda: widget.state.last is not None
                          and widget.state.last.slice_number >= 2 and loop.quit())
    timer.start(200)
    widget.worker.finished.connect(loop.quit)
    loop.exec()
    timer.stop()
    viewer.dims.set_current_step(0, widget.state.last.slice_number)
    settle(1.0)
    viewer.window.screenshot(str(OUT / "widget-stack-running.png"), canvas_only=False)
    print("wrote", OUT / "widget-stack-running.png")
    wait_for(widget)
    viewer.grid.enabled = True
    save(viewer, "stack")


def history(iterations: int) -> None:
    """The history slider after a run with the variance rule, moved back to an early
    checkpoint: the preview layer shows it and the loss plot marks it beside the rule's best
    point."""
    viewer, widget = open_scene("noisy_nuclei")
    configure(widget, "denoise", max(iterations, 1000), "noisy nuclei")
    for name, value in dict(stopping="variance", variance_window=20, patience=100,
                            report_every=10).items():
        widget.settings_panel.set_value(name, value)
    widget.run()
    wait_for(widget)
    slider = widget.history_view.slider
    slider.setValue(slider.maximum() // 4)
    widget.scroll_area.verticalScrollBar().setValue(0)
    save(viewer, "history")


SCENES = {"denoise": denoise, "inpaint": inpaint, "super-resolve": super_resolve,
          "stack": stack, "history": history}
DEVICE = "cpu"


def main() -> None:
    global DEVICE
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("scenes", nargs="*", help=f"some of {list(SCENES)} (default: all)")
    parser.add_argument("--iterations", type=int, default=150)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    unknown = set(args.scenes) - set(SCENES)
    if unknown:
        parser.error(f"unknown scene(s) {sorted(unknown)}; choose from {list(SCENES)}")
    DEVICE = args.device
    os.environ.setdefault("NAPARI_DIP_SETTINGS", os.devnull)  # leave the user's settings alone
    OUT.mkdir(parents=True, exist_ok=True)
    for scene in args.scenes or list(SCENES):
        SCENES[scene](args.iterations)


if __name__ == "__main__":
    main()

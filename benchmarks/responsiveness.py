"""How long GUI events wait while the widget runs a restoration.

A QTimer fires every 20 ms on the GUI thread of a real napari viewer; each firing's lateness
(time since the previous firing, minus 20 ms) is how long an event (a click, a slider move, a
repaint) would have waited. It is recorded for a few idle seconds and then during a run of the
"Deep Image Prior" widget (preview layer, progress bar and loss plot all live). Needs a display:

    xvfb-run -a python benchmarks/responsiveness.py --size 256 --iterations 200

Prints a Markdown table row per phase (idle, run) with the 50th/95th percentile and the maximum.
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np

TICK_MS = 20


class LatenessProbe:
    """Records how late a 20 ms QTimer fires on the GUI thread."""

    def __init__(self) -> None:
        from qtpy.QtCore import Qt, QTimer

        self.timer = QTimer()
        self.timer.setTimerType(Qt.TimerType.PreciseTimer)
        self.timer.setInterval(TICK_MS)
        self.timer.timeout.connect(self._tick)
        self.samples: list[float] = []
        self.times: list[float] = []
        self._last: float | None = None

    def _tick(self) -> None:
        now = time.perf_counter()
        if self._last is not None:
            self.samples.append(max(0.0, (now - self._last) * 1000.0 - TICK_MS))
            self.times.append(self._last - self._start)
        self._last = now

    def start(self) -> None:
        self.samples, self.times, self._last = [], [], None
        self._start = time.perf_counter()
        self.timer.start()

    def stop(self) -> list[float]:
        self.timer.stop()
        return self.samples


def summarise(name: str, samples: list[float], seconds: float) -> str:
    values = np.asarray(samples)
    return (f"| {name} | {seconds:.1f} | {len(values)} | {np.percentile(values, 50):.1f} | "
            f"{np.percentile(values, 95):.1f} | {values.max():.1f} |")


def wait(seconds: float) -> None:
    from qtpy.QtCore import QEventLoop, QTimer

    loop = QEventLoop()
    QTimer.singleShot(int(seconds * 1000), loop.quit)
    loop.exec()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=256, help="side of the noisy 2D image")
    parser.add_argument("--iterations", type=int, default=200)
    parser.add_argument("--preset", default="quick")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--idle", type=float, default=3.0, help="seconds measured before the run")
    args = parser.parse_args()
    os.environ.setdefault("NAPARI_DIP_SETTINGS", os.devnull)  # leave the user's settings alone

    import napari
    from qtpy.QtCore import QEventLoop

    from napari_dip._sample_data import make_noisy_nuclei

    viewer = napari.Viewer()
    viewer.window._qt_window.resize(1400, 900)
    _, widget = viewer.window.add_plugin_dock_widget("napari-dip", "Deep Image Prior")
    _, noisy = make_noisy_nuclei((args.size, args.size))
    viewer.add_image(noisy, name="noisy nuclei", colormap="green")
    widget.task_combo.setCurrentText("denoise")
    widget.preset_combo.setCurrentText(args.preset)
    widget.device_combo.choose(args.device)
    widget.settings_panel.set_value("max_iterations", args.iterations)
    probe = LatenessProbe()
    wait(1.0)  # let the window settle

    probe.start()
    wait(args.idle)
    idle = probe.stop()

    import napari_dip.api  # noqa: F401  (torch is imported before the clock starts, as on a 2nd run)

    updates = []
    loop = QEventLoop()
    probe.start()
    start = time.perf_counter()
    widget.run()
    widget.worker.yielded.connect(lambda progress: updates.append(bool(progress.previews)))
    widget.worker.finished.connect(loop.quit)
    loop.exec()
    seconds = time.perf_counter() - start
    running = probe.stop()

    print(f"{args.size}x{args.size} denoise, preset {args.preset}, {args.iterations} iterations, "
          f"device {widget.device_label.text()}; {len(updates)} progress updates, "
          f"{sum(updates)} preview updates")
    print("| phase | seconds | timer firings | lateness p50 (ms) | p95 (ms) | max (ms) |")
    print("|---|---|---|---|---|---|")
    print(summarise("idle", idle, args.idle))
    print(summarise("during the run", running, seconds))
    worst = np.argsort(running)[::-1][:3]
    print("longest waits (ms, at seconds after Run was pressed): " + ", ".join(
        f"{running[i]:.0f} at {probe.times[i]:.2f}" for i in worst))
    viewer.close()


if __name__ == "__main__":
    main()

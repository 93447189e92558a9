"""The run's progress as the user sees it: a bar with one line of text, the device the run
uses, and a status line (the stopping rule's state, or the full text of an error), all kept in
step with a :class:`~napari_dip._qt.status.RunStatus`."""

from __future__ import annotations

from qtpy.QtCore import Qt
from qtpy.QtWidgets import QLabel, QProgressBar, QVBoxLayout, QWidget

from .status import RunStatus

BAR_STEPS = 1000


class ProgressView(QWidget):
    """Progress bar, device label and status line, bound to ``status``."""

    def __init__(self, status: RunStatus, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.status = status
        self.progress_bar = QProgressBar()
        self.progress_bar.setRange(0, BAR_STEPS)
        self.device_label = QLabel()
        self.status_label = QLabel(wordWrap=True)
        self.status_label.setTextInteractionFlags(
            Qt.TextInteractionFlag.TextSelectableByMouse)  # an error can be copied
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        for widget in (self.progress_bar, self.device_label, self.status_label):
            layout.addWidget(widget)
        events = status.events
        events.fraction.connect(self._show_fraction)
        events.progress.connect(self._show_progress)
        events.device.connect(self._show_device)
        events.message.connect(self._show_message)
        events.failed.connect(self._show_message)
        self._show_fraction(status.fraction)
        self.progress_bar.setFormat(status.progress)
        self._show_device(status.device)
        self._show_message()

    def _show_progress(self, text: str) -> None:
        self.progress_bar.setFormat(text)

    def _show_fraction(self, fraction: float) -> None:
        self.progress_bar.setValue(round(BAR_STEPS * fraction))

    def _show_device(self, device: str) -> None:
        self.device_label.setText(f"runs on: {device}")

    def _show_message(self, *_) -> None:
        message = self.status.message
        self.status_label.setText(message)
        self.status_label.setVisible(bool(message))
        self.status_label.setStyleSheet("color: #f07070;" if self.status.failed else "")

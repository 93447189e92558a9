"""The device choice, which finds GPUs only when the user opens it."""

from __future__ import annotations

from qtpy.QtWidgets import QComboBox, QWidget


class DeviceCombo(QComboBox):
    """Device choice. Lists "auto" and "cpu" until opened: finding CUDA or MPS means importing
    torch, which is deferred until the user looks (or a run has imported it anyway)."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.addItems(["auto", "cpu"])
        self.detected = False
        self.setToolTip("where the fit runs: auto picks CUDA, then Apple MPS, then the CPU")

    def detect(self) -> None:
        """Add every device this machine has (imports torch)."""
        if self.detected:
            return
        from ..engine.device import available_devices

        for name in available_devices():
            if self.findText(name) < 0:
                self.addItem(name)
        self.detected = True

    def choose(self, name: str) -> None:
        """Select ``name``, adding it when it is not listed (a saved or typed device)."""
        if self.findText(name) < 0:
            self.addItem(name)
        self.setCurrentText(name)

    def showPopup(self) -> None:  # noqa: N802 (Qt's name)
        self.detect()
        super().showPopup()

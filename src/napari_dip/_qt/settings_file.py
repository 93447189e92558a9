"""Where the widget keeps its choices between sessions: a small JSON file."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from qtpy.QtCore import QStandardPaths

SETTINGS_ENV = "NAPARI_DIP_SETTINGS"
"""Environment variable naming the settings file (tests point it at a temporary file)."""


def settings_path() -> Path:
    """Where the widget's settings live: ``$NAPARI_DIP_SETTINGS``, or ``napari-dip/widget.json``
    in the user's configuration folder."""
    if os.environ.get(SETTINGS_ENV):
        return Path(os.environ[SETTINGS_ENV])
    base = QStandardPaths.writableLocation(QStandardPaths.StandardLocation.GenericConfigLocation)
    return Path(base) / "napari-dip" / "widget.json"


def load_settings() -> dict[str, Any]:
    """The saved settings, or ``{}`` when there are none or the file is unreadable."""
    try:
        saved = json.loads(settings_path().read_text())
    except (OSError, ValueError):
        return {}
    return saved if isinstance(saved, dict) else {}


def save_settings(settings: dict[str, Any]) -> None:
    """Write the settings (atomically); a read-only home must not break the widget."""
    path = settings_path()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(path.name + ".partial")
        partial.write_text(json.dumps(settings, indent=1))
        partial.replace(path)
    except OSError:
        pass

"""The documentation builds without a warning: every page in the navigation exists, every link
between pages resolves, and the API reference renders from the docstrings."""

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_the_docs_build_without_warnings(tmp_path):
    pytest.importorskip("mkdocs", reason="mkdocs is not installed (pip install '.[docs]')")
    pytest.importorskip("mkdocstrings_handlers.python",
                        reason="mkdocstrings[python] is not installed (pip install '.[docs]')")
    site = tmp_path / "site"
    result = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir",
                             str(site)], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr
    reference = (site / "api" / "index.html").read_text(encoding="utf-8")
    for name in ("restore_stack", "iter_restore", "StackSnapshot", "run_record", "DIPConfig"):
        assert name in reference, f"{name} is missing from the API reference"

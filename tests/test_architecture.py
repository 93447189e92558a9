"""The layout holds: the import contracts of pyproject.toml, short functions, an engine that
imports no GUI and no front door."""

import ast
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import napari_dip

REPOSITORY = Path(__file__).resolve().parents[1]
PACKAGE = Path(napari_dip.__file__).resolve().parent
MAX_FUNCTION_LINES = 80
ENGINE_MODULES = ("napari_dip.engine", "napari_dip.config", "napari_dip.presets",
                  "napari_dip.spec")
GUI_PACKAGES = ("qtpy", "PyQt5", "PyQt6", "PySide2", "PySide6", "superqt", "magicgui", "napari",
                "vispy")
FRONT_DOORS = ("napari_dip._qt", "napari_dip.api", "napari_dip.batch", "napari_dip.cli")


def _with_package_on_path() -> dict[str, str]:
    """The environment of a child Python that imports the napari-dip these tests import."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(PACKAGE.parent),
                                                      env.get("PYTHONPATH")]))
    return env


def test_the_import_contracts_hold():
    """import-linter's ``lint-imports`` checks the contracts in pyproject.toml (the engine
    imports neither Qt, napari nor a front door; front doors do not import one another)."""
    if not (REPOSITORY / "pyproject.toml").is_file():
        pytest.skip("tests run outside the repository (no pyproject.toml with the contracts)")
    lint_imports = shutil.which("lint-imports", path=str(Path(sys.executable).parent)) or \
        shutil.which("lint-imports")
    if lint_imports is None:
        pytest.skip("import-linter is not installed: pip install -e '.[test]'")
    result = subprocess.run([lint_imports, "--no-cache"], cwd=REPOSITORY, capture_output=True,
                            text=True, env=_with_package_on_path(), timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr


def _long_functions(root: Path) -> list[str]:
    """Every function or method under ``root`` longer than :data:`MAX_FUNCTION_LINES`, as
    ``path:line name (n lines)``."""
    found = []
    for path in sorted(root.rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                lines = node.end_lineno - node.lineno + 1
                if lines > MAX_FUNCTION_LINES:
                    found.append(f"{path.relative_to(root.parent)}:{node.lineno} {node.name} "
                                 f"({lines} lines)")
    return found


def test_no_function_is_longer_than_a_screen():
    source = REPOSITORY / "src" / "napari_dip"
    too_long = _long_functions(source if source.is_dir() else PACKAGE)
    assert not too_long, f"over {MAX_FUNCTION_LINES} lines:\n" + "\n".join(too_long)


def test_the_long_function_check_finds_a_long_function(tmp_path):
    body = "\n".join(f"    x{i} = {i}" for i in range(MAX_FUNCTION_LINES))
    (tmp_path / "long.py").write_text(f"def short():\n    pass\n\n\ndef long():\n{body}\n")
    assert _long_functions(tmp_path) == [f"{tmp_path.name}/long.py:5 long (81 lines)"]


def test_importing_the_engine_loads_no_gui_and_no_front_door():
    """What the contracts cannot see (imports by name at run time): importing every engine
    module, torch included, leaves Qt, napari and the front doors unloaded."""
    script = f"""
import importlib, json, pkgutil, sys
for name in {ENGINE_MODULES!r}:
    module = importlib.import_module(name)
    for sub in pkgutil.walk_packages(getattr(module, "__path__", []), name + "."):
        importlib.import_module(sub.name)
print(json.dumps(sorted(m for m in sys.modules
                        if m.split(".")[0] in {GUI_PACKAGES!r}
                        or m.startswith({FRONT_DOORS!r}))))
"""
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                            env={**_with_package_on_path(), "OMP_NUM_THREADS": "1"},
                            timeout=300)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout.strip().splitlines()[-1]) == []

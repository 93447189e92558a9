"""The Examples sections of the docstrings run as written (the API reference shows them)."""

import doctest
import importlib
import pkgutil

import pytest

import napari_dip


def _modules_with_examples():
    names = [name for _, name, _ in pkgutil.walk_packages(napari_dip.__path__, "napari_dip.")
             if not name.startswith("napari_dip._qt")]
    return [name for name in names
            if ">>> " in (importlib.util.find_spec(name).loader.get_source(name) or "")]


@pytest.mark.parametrize("name", _modules_with_examples())
def test_the_docstring_examples_of_each_module_run_as_written(name):
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert result.attempted > 0
    assert result.failed == 0, f"{result.failed} of {result.attempted} examples in {name} failed"

"""Repository-wide pytest setup (the runtime's test kit fixtures: stadtlink/adapters/core/pytest_plugin.py).

The families' tests live inside their packages (``adapters/<family>/tests/``), and pytest names a test
module after its folders: ``adapters.parking.tests.test_mapper``. Without the aliases below, importing
such a module would load ``adapters/__init__.py`` and ``adapters/parking/__init__.py`` a second time as
top-level packages ``adapters`` and ``adapters.parking`` — a second copy of the family's modules beside
the installed ``stadtlink.adapters.parking``. Binding the folder names to the installed packages first
makes pytest's import find them, so every family module exists once, under its ``stadtlink.`` name.
"""
import importlib
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent


def _bind(folder_name: str) -> None:
    sys.modules.setdefault(folder_name, importlib.import_module(f"stadtlink.{folder_name}"))


_bind("adapters")
for _tests_init in sorted(ROOT.glob("adapters/*/tests/__init__.py")):
    _family = _tests_init.parent.parent.name
    _bind(f"adapters.{_family}")
    _bind(f"adapters.{_family}.tests")

pytest_plugins = ["stadtlink.adapters.core.pytest_plugin"]

"""``stadtlink.sdk``: the adapter author's one import. Thin (imports and ``__all__`` only, each name
the very object the runtime uses), documented (every name in its docstring), and free of the
runtime's machinery (sources, pipeline, outbox, runner are not imported with it)."""
from __future__ import annotations

import ast
import importlib
import re
import subprocess
import sys
from pathlib import Path

import stadtlink.sdk as sdk

SDK_FILE = Path(sdk.__file__)


def test_only_imports_and_all():
    tree = ast.parse(SDK_FILE.read_text(encoding="utf-8"))
    body = tree.body[1:] if isinstance(tree.body[0], ast.Expr) else tree.body       # the docstring
    for node in body:
        ok = isinstance(node, (ast.Import, ast.ImportFrom)) or (
            isinstance(node, ast.Assign) and [getattr(t, "id", None) for t in node.targets] == ["__all__"])
        assert ok, f"line {node.lineno}: the facade only re-exports ({ast.unparse(node)[:60]})"


def test_every_name_is_the_runtime_object():
    tree = ast.parse(SDK_FILE.read_text(encoding="utf-8"))
    homes = {a.asname or a.name: node.module for node in tree.body if isinstance(node, ast.ImportFrom)
             for a in node.names}
    assert set(sdk.__all__) <= set(homes) and len(sdk.__all__) == len(set(sdk.__all__))
    for name in sdk.__all__:
        home = importlib.import_module(homes[name])
        assert getattr(sdk, name) is getattr(home, name), name


def test_every_name_is_documented():
    doc = sdk.__doc__ or ""
    undocumented = [n for n in sdk.__all__ if not re.search(rf"(:\w+:`|``){re.escape(n)}[`.(]", doc)]
    assert undocumented == []


def test_what_an_adapter_needs_is_there():
    for name in ("AdapterSpec", "LoRaWANProfile", "FunctionProfile", "Reading", "MapContext", "Measure",
                 "entity_id", "new_entity", "prop", "DecodeError", "MappingError", "ReadingDropped", "reasons",
                 "parse_time", "iso_ms", "run_profile", "map_fixture", "assert_entities_match", "SmartDataModel"):
        assert name in sdk.__all__, name
    assert sdk.reasons.UNKNOWN_FPORT == "unknown-fport"


def test_importing_it_leaves_the_runtime_machinery_alone():
    probe = ("import sys, stadtlink.sdk\n"
             "heavy = [m for m in ('stadtlink.adapters.core.runner', 'stadtlink.adapters.core.pipeline', "
             "'stadtlink.adapters.core.sources', 'stadtlink.adapters.core.outbox', 'stadtlink.broker_client.client', "
             "'aiohttp', 'pytest') if m in sys.modules]\nprint(heavy)\n")
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120, cwd="/")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"

"""The package's layers point one way, nothing imports in a circle, and only ``stadtlink`` is imported.

Layers, lowest first: the root package's helpers (``stadtlink.timeutil``) → ``stadtlink.schemas``
(models, contexts, the entity check) → ``stadtlink.broker_client`` (brokers over HTTP, the local
broker) → ``stadtlink.adapters`` (runtime and families) → ``stadtlink.sdk`` (the facade for adapter
authors). A module may import its own layer and those below it.

The import graph is read from the source (every ``import``, also those inside functions, which run
at run time; imports under ``if TYPE_CHECKING:`` never run and are left out). A subprocess then
imports every module, so a module that cannot be imported on its own fails here too.
"""
from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

#: import prefix → repository folder, as setup.py maps them
FOLDERS = {"stadtlink": ROOT / "stadtlink", "stadtlink.adapters": ROOT / "adapters",
           "stadtlink.schemas": ROOT / "schemas", "stadtlink.broker_client": ROOT / "broker_client"}
NOT_MODULES = {"tests", "testdata", "__pycache__", "scaffold_templates"}

#: (prefix, rank): a module's layer is its longest matching prefix
LAYERS = [("stadtlink", 0), ("stadtlink.timeutil", 0), ("stadtlink.schemas", 1), ("stadtlink.broker_client", 2),
          ("stadtlink.adapters", 3), ("stadtlink.sdk", 4)]


def test_folders_match_setup_py():
    tree = ast.parse((ROOT / "setup.py").read_text(encoding="utf-8"))
    folders = next(ast.literal_eval(node.value) for node in ast.walk(tree)
                   if isinstance(node, ast.Assign) and getattr(node.targets[0], "id", "") == "SUBPACKAGE_FOLDERS")
    assert {f"stadtlink.{f}" for f in folders} | {"stadtlink"} == set(FOLDERS)


def modules() -> dict[str, Path]:
    found: dict[str, Path] = {}
    for prefix, folder in FOLDERS.items():
        for path in folder.rglob("*.py"):
            parts = path.relative_to(folder).with_suffix("").parts
            if NOT_MODULES & set(parts) or (prefix == "stadtlink" and parts[0] in ("adapters", "schemas",
                                                                                   "broker_client")):
                continue
            found[".".join((prefix, *(p for p in parts if p != "__init__")))] = path
    return found


def _type_checking_only(node: ast.AST, parents: dict[ast.AST, ast.AST]) -> bool:
    while node in parents:
        parent = parents[node]
        if isinstance(parent, ast.If) and node in parent.body and "TYPE_CHECKING" in ast.unparse(parent.test):
            return True
        node = parent
    return False


def import_graph(mods: dict[str, Path]) -> dict[str, set[str]]:
    """module → the stadtlink modules it imports (``from pkg import name`` counts as ``pkg.name``
    when that is a module, else as ``pkg``)."""
    graph: dict[str, set[str]] = {}
    for name, path in mods.items():
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        parents = {child: node for node in ast.walk(tree) for child in ast.iter_child_nodes(node)}
        package = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
        out: set[str] = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = ".".join(package[:len(package) - node.level + 1] + [node.module or ""]).rstrip(".") \
                    if node.level else node.module or ""
                targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in mods else base for a in node.names]
            else:
                continue
            if _type_checking_only(node, parents):
                continue
            out.update(t for t in targets if t == "stadtlink" or t.startswith("stadtlink."))
        graph[name] = out
    return graph


def layer(module: str) -> int:
    return max((len(p), rank) for p, rank in LAYERS if module == p or module.startswith(p + "."))[1]


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, ()):
            if w not in graph:
                continue
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


@pytest.fixture(scope="module")
def graph():
    mods = modules()
    assert len(mods) > 80 and "stadtlink.adapters.core.runner" in mods and "stadtlink.schemas.contexts" in mods
    return import_graph(mods)


def test_no_module_imports_a_higher_layer(graph):
    upward = sorted(f"{a} imports {b}" for a, targets in graph.items() for b in targets if layer(b) > layer(a))
    assert upward == []


def test_no_import_cycles(graph):
    assert cycles(graph) == []


def test_the_checks_see_what_they_look_for(tmp_path):
    """The graph reader and both checks on a planted example (a check that finds nothing must be able to)."""
    planted = {"stadtlink.broker_client.x": "from stadtlink.adapters.core import timeutil\n",
               "stadtlink.adapters.core.a": "def f():\n    from . import b\n",
               "stadtlink.adapters.core.b": "from .a import f\nfrom typing import TYPE_CHECKING\n"
                                            "if TYPE_CHECKING:\n    from stadtlink.sdk import X\n",
               "stadtlink.adapters.core": "", "stadtlink.adapters.core.timeutil": ""}
    paths = {}
    for name, text in planted.items():
        path = tmp_path / (name.replace(".", "/") + ("/__init__.py" if name == "stadtlink.adapters.core" else ".py"))
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        paths[name] = path
    g = import_graph(paths)
    assert g["stadtlink.broker_client.x"] == {"stadtlink.adapters.core.timeutil"}
    assert g["stadtlink.adapters.core.b"] == {"stadtlink.adapters.core.a"}       # TYPE_CHECKING left out
    assert layer("stadtlink.adapters.core.timeutil") > layer("stadtlink.broker_client.x")
    assert cycles(g) == [["stadtlink.adapters.core.a", "stadtlink.adapters.core.b"]]


def test_every_module_imports(graph):
    """In a fresh interpreter (not this one, which the tests' conftest already filled)."""
    script = ("import importlib, sys, traceback\nfailed = []\n"
              "for name in sys.argv[1:]:\n"
              "    try:\n        importlib.import_module(name)\n"
              "    except BaseException:\n        failed.append(name + ': ' + traceback.format_exc(limit=3))\n"
              "print('\\n'.join(failed))\nsys.exit(1 if failed else 0)\n")
    names = sorted(n for n in graph if not n.endswith("__main__"))
    done = subprocess.run([sys.executable, "-c", script, *names], cwd="/", capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr


# --- only ``stadtlink`` is imported -------------------------------------------------------------------

TOP_LEVEL_IMPORT = re.compile(
    r"^\s*(?:>>>\s*|\$\s*)?(?:import\s+(?:adapters|schemas|broker_client)\b"
    r"|from\s+(?:adapters|schemas|broker_client)(?:\.|\s+import\b))"
    r"|-m\s+(?:adapters|schemas|broker_client)\b"
    r"|(?:^|[\s\"'=,])(?:adapters|schemas|broker_client)(?:\.\w+)*:[A-Za-z_]", re.MULTILINE)


def tracked_text_files() -> list[Path]:
    listed = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True).stdout
    out = []
    for name in filter(None, listed.decode().split("\0")):
        path = ROOT / name
        if path.suffix in {".json", ".jsonld", ".csv", ".png", ".bin", ".gz", ".tgz"} or not path.is_file() \
                or path == Path(__file__).resolve():                  # the examples below
            continue
        out.append(path)
    return out


def test_no_top_level_adapters_schemas_or_broker_client_import():
    """From the repository root ``import adapters`` would silently load a second copy of the code
    (and ``adapters`` is another PyPI package's name): code, doc snippets, templates, chart, Dockerfile
    and entry points all say ``stadtlink.…``."""
    files = tracked_text_files()
    assert any(p.name == "README.md.txt" for p in files) and any(p.suffix == ".md" for p in files)
    hits = []
    for path in files:
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            continue
        for m in TOP_LEVEL_IMPORT.finditer(text):
            line = text.count("\n", 0, m.start()) + 1
            hits.append(f"{path.relative_to(ROOT)}:{line}: {text.splitlines()[line - 1].strip()}")
    assert hits == []


@pytest.mark.parametrize("line, bad", [
    ("import adapters", True), ("    from schemas import check_entity", True), (">>> import broker_client", True),
    ("from adapters.core import Runner", True), ("python -m adapters.core.cli run", True),
    ('parking = "adapters.parking:ADAPTER"', True),
    ("from stadtlink import schemas", False), ("import stadtlink.adapters", False),
    ("from stadtlink.broker_client import NGSILDClient", False), ("adapters:", False),
    ('parking = "stadtlink.adapters.parking:ADAPTER"', False), ("the adapters import their schemas", False),
])
def test_the_top_level_import_pattern(line, bad):
    assert bool(TOP_LEVEL_IMPORT.search(line)) is bad

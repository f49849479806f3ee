"""One family contract: the four built-in families and a freshly scaffolded one have the same
package layout, the same README sections in the same order, and declare themselves the same way;
a family scaffolded for a model stadtlink does not bundle (``--model WasteContainer``) passes its
own tests and joins ``stadtlink demo`` without a change to the core."""
from __future__ import annotations

import importlib
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from stadtlink.adapters.core.adapter import AdapterSpec, DemoSimulators
from stadtlink.adapters.core.scaffold import REQUIRED_MODEL_FILES, generate, main

ROOT = Path(__file__).resolve().parents[2]
WASTE_CONTAINER_FILES = Path(__file__).resolve().parent / "fixtures" / "WasteContainer"
BUILT_IN = ("parking", "climate", "water_level", "pv")

#: the H2 sections of every family README, in this order
README_SECTIONS = ["Devices and profiles", "Entities and mapping", "Valid ranges and sentinels", "Settings",
                   "Sample config", "Example output", "Demo simulators", "Tests"]
#: modules every family package has (decoders: a module or a package)
MODULES = ("__init__.py", "profiles.py", "mapper.py", "settings.py", "simulator.py")


def _env(*paths: Path, **extra: str) -> dict[str, str]:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), *map(str, paths)]), **extra)
    env.pop("PYTEST_ADDOPTS", None)
    return env


@pytest.fixture(scope="module")
def waste_bins(tmp_path_factory) -> Path:
    """``stadtlink new-adapter waste-bins --model WasteContainer`` with the model's files at hand."""
    target = tmp_path_factory.mktemp("scaffold") / "waste-bins"
    assert main(["waste-bins", "--model", "WasteContainer", "--model-files", str(WASTE_CONTAINER_FILES),
                 "--repository", "dataModel.WasteManagement", "--dir", str(target)]) == 0
    return target


def _family_dirs(waste_bins: Path) -> dict[str, Path]:
    dirs = {name: ROOT / "adapters" / name for name in BUILT_IN}
    dirs["waste_bins (scaffolded)"] = waste_bins / "waste_bins"
    return dirs


def _h2(readme: Path) -> list[str]:
    sections, fence = [], False
    for line in readme.read_text(encoding="utf-8").splitlines():
        if line.startswith("```"):
            fence = not fence
        elif not fence and line.startswith("## "):
            sections.append(line[3:].strip())
    return sections


def test_every_family_has_the_same_layout(waste_bins):
    for name, folder in _family_dirs(waste_bins).items():
        missing = [m for m in MODULES if not (folder / m).is_file()]
        if not ((folder / "decoders.py").is_file() or (folder / "decoders" / "__init__.py").is_file()):
            missing.append("decoders.py or decoders/")
        for extra in ("README.md", "example-config.yaml", "tests/__init__.py"):
            if not (folder / extra).is_file():
                missing.append(extra)
        assert not missing, f"{name}: missing {missing}"
        assert any((folder / "testdata").glob("*")), f"{name}: testdata/ is empty"
        assert list((folder / "tests").glob("test_*.py")), f"{name}: no tests"
        config = yaml.safe_load((folder / "example-config.yaml").read_text(encoding="utf-8"))
        registries = [f for f in config.get("registry_files", []) if f.endswith(".csv")]
        assert len(registries) == 1 and (folder / registries[0]).is_file(), \
            f"{name}: example-config.yaml names no registry CSV beside it ({registries})"


def test_every_readme_has_the_same_sections_in_the_same_order(waste_bins):
    for name, folder in _family_dirs(waste_bins).items():
        assert _h2(folder / "README.md") == README_SECTIONS, f"{name}/README.md"


def test_every_family_declares_itself_the_same_way(waste_bins, monkeypatch):
    monkeypatch.syspath_prepend(str(waste_bins))
    try:
        for module in [f"stadtlink.adapters.{n}" for n in BUILT_IN] + ["waste_bins"]:
            package = importlib.import_module(module)
            spec = package.ADAPTER
            assert isinstance(spec, AdapterSpec), module
            profiles = importlib.import_module(f"{module}.profiles").PROFILES
            assert dict(spec.profiles) == dict(profiles), f"{module}: ADAPTER.profiles is not profiles.PROFILES"
            assert all(key == profile.name for key, profile in profiles.items()), f"{module}: keys are not the names"
            assert spec.settings_model is not None, f"{module}: no settings model"
            spec.settings_model()          # the defaults are valid
            assert isinstance(spec.demo, DemoSimulators), f"{module}: no demo simulators"
            assert spec.demo is importlib.import_module(f"{module}.simulator").DEMO
            assert spec.example_config is not None and spec.example_config.is_file()
    finally:
        for name in [m for m in sys.modules if m == "waste_bins" or m.startswith("waste_bins.")]:
            del sys.modules[name]


def test_scaffolded_waste_container_family_passes_its_own_tests(waste_bins):
    for file in REQUIRED_MODEL_FILES:
        assert (waste_bins / "waste_bins" / "models" / "WasteContainer" / file).is_file()
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"], cwd=waste_bins,
                          env=_env(waste_bins), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    assert "test_model_files_are_present" not in proc.stdout and " passed" in proc.stdout


def test_without_the_model_files_the_scaffold_names_them_and_its_tests_fail(tmp_path, capsys):
    target = tmp_path / "bins"
    assert main(["bins", "--model", "WasteContainer", "--dir", str(target)]) == 0
    out = capsys.readouterr().out
    model_dir = target / "bins" / "models" / "WasteContainer"
    for file in REQUIRED_MODEL_FILES:
        assert str(model_dir / file) in out
    assert (model_dir / "FILES.md").is_file()
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-k", "model_files"],
                          cwd=target, env=_env(target), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 1
    assert "add schema.json, context.jsonld, LICENSE.md, SOURCE.md" in proc.stdout


def test_scaffold_uses_a_bundled_model_as_it_is(tmp_path):
    result = generate("street-weather", tmp_path / "sw", model="WeatherObserved")
    assert result.bundled and not result.missing_model_files
    assert not (tmp_path / "sw" / "street_weather" / "models.py").exists()
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"], cwd=tmp_path / "sw",
                          env=_env(tmp_path / "sw"), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]


def test_scaffolded_family_joins_the_demo(waste_bins, tmp_path):
    """``stadtlink demo`` with the package importable and named: no change of the core is needed."""
    report = tmp_path / "demo.json"
    env = _env(waste_bins, STADTLINK_EXTRA_ADAPTERS="waste_bins:ADAPTER")
    listed = subprocess.run([sys.executable, "-m", "stadtlink.adapters.core.cli", "demo", "--help"], cwd=tmp_path,
                            env=env, capture_output=True, text=True, timeout=120)
    assert "waste_bins" in listed.stdout
    proc = subprocess.run([sys.executable, "-m", "stadtlink.adapters.core.cli", "demo", "--only", "waste_bins",
                           "--only", "parking", "--duration", "10", "--report", str(report), "--broker-port", "0",
                           "--twin-port", "0", "--no-open", "--quiet"],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    data = json.loads(report.read_text())
    assert data["adapters"]["waste_bins"]["upserted"] > 0 and data["adapters"]["waste_bins"]["errors"] == 0
    assert data["entities"]["WasteContainer"] >= 2 and data["entities"]["ParkingSpot"] > 0


#: The exceptions whose first argument is a reason tag (a dead-letter reason and a metric label).
REASON_EXCEPTIONS = {"DecodeError", "MappingError", "ReadingDropped"}


def literal_reason_tags(source: str) -> list[tuple[int, str]]:
    """(line, text) of every reason passed as a string literal (or f-string) to a reason-carrying exception."""
    import ast

    found = []
    for node in ast.walk(ast.parse(source)):
        if not isinstance(node, ast.Call):
            continue
        func = node.func
        name = func.id if isinstance(func, ast.Name) else func.attr if isinstance(func, ast.Attribute) else None
        if name not in REASON_EXCEPTIONS:
            continue
        reason = node.args[0] if node.args else next((k.value for k in node.keywords if k.arg == "reason"), None)
        if isinstance(reason, ast.JoinedStr) or (isinstance(reason, ast.Constant) and isinstance(reason.value, str)):
            found.append((node.lineno, ast.unparse(reason)))
    return found


def test_reason_tags_of_the_families_are_named_constants():
    """The same fact has one reason tag in every family (metric labels, dead-letter reasons): a family
    raises ``DecodeError(UNKNOWN_FPORT, …)`` with a named constant (adapters/core/reasons.py for shared
    facts, the family's ``reasons.py`` for its own), never a spelled-out tag."""
    offenders = [f"{p.relative_to(ROOT)}:{line}: {text}"
                 for name in BUILT_IN for p in sorted((ROOT / "adapters" / name).rglob("*.py")) if "tests" not in p.parts
                 for line, text in literal_reason_tags(p.read_text(encoding="utf-8"))]
    assert offenders == [], "reason tags spelled as literals:\n" + "\n".join(offenders)


def test_the_reason_tag_guard_sees_literals():
    planted = ("from x import DecodeError, errors\n"
               "raise DecodeError('bad-thing', 'detail')\n"
               "raise errors.MappingError(f'late-{kind}')\n"
               "raise ReadingDropped(reason='quiet')\n"
               "raise DecodeError(BAD_LENGTH, 'named')\n")
    assert [line for line, _ in literal_reason_tags(planted)] == [2, 3, 4]


def test_mapping_tables_are_rows_of_the_one_core_type(waste_bins, monkeypatch):
    """Every family maps by tables of core ``Measure`` rows; none defines a row type of its own."""
    import dataclasses
    import inspect

    from stadtlink.adapters.core.entity import Measure

    monkeypatch.syspath_prepend(str(waste_bins))
    try:
        for module in [f"stadtlink.adapters.{n}.mapper" for n in BUILT_IN] + ["waste_bins.mapper"]:
            mapper = importlib.import_module(module)
            tables = [name for name, value in vars(mapper).items()
                      if name.isupper() and isinstance(value, (tuple, dict)) and value
                      and all(isinstance(row, Measure) for row in (value.values() if isinstance(value, dict) else value))]
            assert tables, f"{module}: no measure table"
            own_rows = [name for name, cls in vars(mapper).items()
                        if inspect.isclass(cls) and cls.__module__ == mapper.__name__ and dataclasses.is_dataclass(cls)
                        and {"attribute", "unit"} & {f.name for f in dataclasses.fields(cls)}]
            assert not own_rows, f"{module}: a row type of its own: {own_rows}"
    finally:
        for name in [m for m in sys.modules if m == "waste_bins" or m.startswith("waste_bins.")]:
            del sys.modules[name]

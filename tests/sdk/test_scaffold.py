"""``stadtlink new-adapter``: the generated package's own tests pass as generated, and it plugs in."""
from __future__ import annotations

import importlib
import os
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from stadtlink.adapters.core.adapter import AdapterSpec
from stadtlink.adapters.core.scaffold import ScaffoldError, generate, main, names

ROOT = Path(__file__).resolve().parents[2]


def test_generated_package_tests_pass(tmp_path):
    target = tmp_path / "soil-moisture"
    assert main(["soil-moisture", "--dir", str(target)]) == 0
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), str(target)]))
    env.pop("PYTEST_ADDOPTS", None)
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"], cwd=target,
                          env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    assert " passed" in proc.stdout and "failed" not in proc.stdout


def test_generated_package_plugs_in(tmp_path, monkeypatch):
    target = tmp_path / "proj"
    generate("river-temp", target)
    meta = tomllib.loads((target / "pyproject.toml").read_text())
    assert meta["project"]["name"] == "stadtlink-adapter-river-temp"
    assert meta["project"]["entry-points"]["stadtlink.adapters"] == {"river_temp": "river_temp:ADAPTER"}

    monkeypatch.syspath_prepend(str(target))
    module = importlib.import_module("river_temp")
    try:
        spec = module.ADAPTER
        assert isinstance(spec, AdapterSpec) and spec.name == "river_temp"
        assert set(spec.profiles) == {"river-temp-v1", "json-map"}
        assert spec.example_config.exists()

        from stadtlink.adapters.core.config import load_config
        from stadtlink.adapters.core.registry import DeviceRegistry

        config, base = load_config(spec.example_config, adapter=spec)
        registry = DeviceRegistry.load(inline=config.devices, files=config.registry_files, base_dir=base)
        assert registry.lookup("river_temp-001") is not None
        assert registry.lookup("70b3d57ed0000002").id == "river_temp-002"
        assert config.settings == spec.settings_model()
    finally:
        for name in [m for m in sys.modules if m == "river_temp" or m.startswith("river_temp.")]:
            del sys.modules[name]


@pytest.mark.parametrize("bad", ["", "My-Sensor", "9lives", "with space", "a--b", "class", "adapters", "x/y"])
def test_bad_names(bad, tmp_path, capsys):
    with pytest.raises(ScaffoldError):
        names(bad)
    assert main([bad, "--dir", str(tmp_path / "out")]) == 2
    assert "new-adapter" in capsys.readouterr().err


def test_refuses_non_empty_directory_unless_forced(tmp_path):
    (tmp_path / "keep.txt").write_text("mine")
    assert main(["gauge", "--dir", str(tmp_path)]) == 2
    assert main(["gauge", "--dir", str(tmp_path), "--force"]) == 0
    assert (tmp_path / "keep.txt").read_text() == "mine"
    assert (tmp_path / "gauge" / "__init__.py").exists() and (tmp_path / "gauge" / "tests" / "test_gauge.py").exists()


def test_default_directory_is_the_name(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(["noise-level"]) == 0
    assert (tmp_path / "noise-level" / "noise_level" / "decoders.py").exists()

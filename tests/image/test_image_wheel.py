"""The container image's build, without a Docker engine: the same steps as the Dockerfile.

Stage 1 of the Dockerfile copies a few paths, builds the wheel with ``pip wheel --no-deps`` and
installs it into a fresh virtual environment; the final image runs ``stadtlink`` from that venv
(ENTRYPOINT). This test copies the paths the Dockerfile's COPY lines name (parsed from the file, so
the two cannot drift apart), builds the wheel from that copy, installs it into a new venv (pip's
download cache is reused) and runs the commands the chart runs, from a directory outside the
source tree so nothing is imported from it.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "Dockerfile"
BUILTIN = {"parking", "climate", "water_level", "pv"}

pytestmark = pytest.mark.timeout(600)


def build_stage_copies() -> list[str]:
    """Source paths of the COPY lines of the Dockerfile's first (build) stage."""
    paths: list[str] = []
    stage = 0
    for raw in DOCKERFILE.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if line.upper().startswith("FROM "):
            stage += 1
            continue
        if stage == 1 and line.upper().startswith("COPY ") and "--from" not in line:
            parts = line.split()[1:]
            paths.extend(parts[:-1])
    return paths


def _run(cmd, *, cwd, env=None, timeout=300) -> subprocess.CompletedProcess:
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, f"{' '.join(map(str, cmd))} → {proc.returncode}\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc


@pytest.fixture(scope="module")
def image_venv(tmp_path_factory):
    """(wheel path, venv dir, environment to run it with) — built once for this module."""
    work = tmp_path_factory.mktemp("image")
    src = work / "src"
    src.mkdir()
    copies = build_stage_copies()
    assert copies, "no COPY in the Dockerfile's build stage"
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", ".pytest_cache", ".hypothesis", "*.egg-info")
    for rel in copies:
        source = ROOT / rel.rstrip("/")
        target = src / source.name
        if source.is_dir():
            shutil.copytree(source, target, ignore=ignore)
        else:
            shutil.copy2(source, target)
    wheels = work / "wheels"
    _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "--wheel-dir", str(wheels), str(src)],
         cwd=work)
    [wheel] = sorted(wheels.glob("stadtlink-*.whl"))
    venv = work / "venv"
    # a venv from the base interpreter, not from the project's venv: nothing of the project leaks in
    base_python = getattr(sys, "_base_executable", sys.executable)
    _run([base_python, "-m", "venv", str(venv)], cwd=work)
    py = venv / "bin" / "python"
    _run([str(py), "-m", "pip", "install", "--quiet", "--disable-pip-version-check", str(wheel)], cwd=work,
         timeout=480)
    env = {"PATH": f"{venv / 'bin'}:/usr/bin:/bin", "HOME": str(work), "LANG": "C.UTF-8",
           "PYTHONDONTWRITEBYTECODE": "1", "PYTHONUNBUFFERED": "1"}
    run_dir = work / "run"     # like the image's WORKDIR /tmp: no source tree around
    run_dir.mkdir()
    return wheel, venv, env, run_dir


def test_dockerfile_follows_the_rules():
    text = DOCKERFILE.read_text(encoding="utf-8")
    froms = re.findall(r"^FROM\s+(\S+)", text, flags=re.M)
    assert len(froms) == 2, "multi-stage: build + runtime"
    base = re.search(r"^ARG PYTHON_IMAGE=(\S+)", text, flags=re.M).group(1)
    assert re.fullmatch(r"python:3\.11\.\d+-slim-\w+(@sha256:[0-9a-f]{64})?", base), base
    runtime = text.split("\nFROM ")[-1]
    assert re.search(r"^USER 10001:10001$", runtime, flags=re.M), "numeric non-root user"
    assert 'ENTRYPOINT ["stadtlink"]' in runtime
    assert "COPY --from=build /opt/stadtlink /opt/stadtlink" in runtime
    for tool in ("apt-get install", "gcc", "build-essential", "pip install"):
        assert tool not in runtime, f"final stage must not install/build ({tool})"
    ignore = (ROOT / ".dockerignore").read_text(encoding="utf-8")
    for rel in build_stage_copies():
        assert f"!{rel.rstrip('/')}" in ignore or f"!{rel.rstrip('/')}/" in ignore, f".dockerignore keeps {rel} out of the build context"


def test_wheel_carries_the_package_data(image_venv):
    wheel, *_ = image_venv
    names = set(zipfile.ZipFile(wheel).namelist())
    expected = [
        "stadtlink/schemas/ParkingSpot/schema.json",
        "stadtlink/schemas/WeatherObserved/schema.json",
        "stadtlink/schemas/common/contexts/dataModel.Parking/context.jsonld",
        "stadtlink/schemas/common/contexts/data-models/common-context.jsonld",
        "stadtlink/schemas/contexts/stadtlink-context.jsonld",
        "stadtlink/schemas/contexts/ngsi-ld-core-context.jsonld",   # the local broker reads it from here
        "stadtlink/adapters/pv/example-config.yaml",
        "stadtlink/adapters/climate/example-config.yaml",
        "stadtlink/adapters/pv/decoders/sunspec_models/model_1.json",
        "stadtlink/broker_client/twin/static/index.html",
        "stadtlink/broker_client/twin/static/app.js",
        "stadtlink/adapters/core/context_server.py",
    ]
    missing = [n for n in expected if n not in names]
    assert not missing, f"missing from {wheel.name}: {missing}"
    entry_points = zipfile.ZipFile(wheel).read(
        next(n for n in names if n.endswith(".dist-info/entry_points.txt"))).decode()
    assert "stadtlink = stadtlink.adapters.core.cli:main" in entry_points
    for name in BUILTIN:
        assert f"{name} = stadtlink.adapters.{name}:ADAPTER" in entry_points


def test_every_tracked_data_file_is_in_the_wheel(image_venv):
    """No file of the packages is silently left out (package-data patterns, dotted directory names)."""
    wheel, *_ = image_venv
    if not (ROOT / ".git").exists() or shutil.which("git") is None:
        pytest.skip("needs a git checkout to know the tracked files")
    tracked = subprocess.run(["git", "ls-files", "adapters", "broker_client", "schemas"], cwd=ROOT,
                             capture_output=True, text=True, check=True).stdout.split()
    names = set(zipfile.ZipFile(wheel).namelist())
    # tests and their sample payloads are not part of the runtime; a file tracked but deleted in the
    # work tree does not count
    missing = [f for f in tracked if f"stadtlink/{f}" not in names and not _test_only(f) and (ROOT / f).exists()]
    assert not missing, f"{len(missing)} files missing from {wheel.name}: {missing[:20]}"


def _test_only(path: str) -> bool:
    return "/tests/" in path or "/testdata/" in path


def test_tests_and_testdata_stay_out_of_the_wheel(image_venv):
    """The image ships the runtime only: the families' tests and sample payloads stay in the repository."""
    wheel, *_ = image_venv
    names = zipfile.ZipFile(wheel).namelist()
    shipped = [n for n in names if _test_only(n)]
    assert not shipped, f"{len(shipped)} test files in {wheel.name}: {shipped[:10]}"
    assert any(n.startswith("stadtlink/adapters/parking/") for n in names)  # the family itself is there


def test_run_help_from_the_installed_wheel(image_venv):
    _, venv, env, run_dir = image_venv
    out = _run([str(venv / "bin" / "stadtlink"), "run", "--help"], cwd=run_dir, env=env).stdout
    assert "--config" in out and "adapter" in out


def test_adapters_are_installed_from_the_wheel_not_the_source_tree(image_venv):
    _, venv, env, run_dir = image_venv
    listing = json.loads(_run([str(venv / "bin" / "stadtlink"), "adapters", "--json"], cwd=run_dir, env=env).stdout)
    assert {a["name"] for a in listing["adapters"]} >= BUILTIN
    assert listing["broken"] == []
    where = _run([str(venv / "bin" / "python"), "-c", "import stadtlink.adapters, stadtlink.schemas; print(stadtlink.adapters.__file__)"],
                 cwd=run_dir, env=env).stdout.strip()
    assert where.startswith(str(venv)), where


def test_the_chart_commands_work_from_the_wheel(image_venv, tmp_path):
    _, venv, env, run_dir = image_venv
    # the context server's files (what the chart's context-server pod serves)
    listing = _run([str(venv / "bin" / "python"), "-m", "stadtlink.adapters.core.context_server", "--list"],
                   cwd=run_dir, env=env).stdout
    assert "/raw.githubusercontent.com/smart-data-models/dataModel.Parking/master/context.jsonld" in listing
    # the packaged SDM schemas answer a validation
    entity = ROOT / "schemas" / "ParkingSpot" / "examples" / "example-normalized.jsonld"
    shutil.copy(entity, tmp_path / "spot.jsonld")
    out = _run([str(venv / "bin" / "stadtlink"), "validate", str(tmp_path / "spot.jsonld")], cwd=run_dir, env=env)
    assert "0 invalid" in out.stdout + out.stderr
    # a config the runtime refuses exits 2 with the offending key named (not a traceback)
    bad = tmp_path / "bad.yaml"
    bad.write_text("namespace: x\nbroker: {url: 'orion:1026'}\n")
    proc = subprocess.run([str(venv / "bin" / "stadtlink"), "run", "pv", "--config", str(bad)], cwd=run_dir,
                          env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2, proc.stderr
    assert "broker" in proc.stderr and "Traceback" not in proc.stderr


def test_the_only_top_level_import_package_is_stadtlink(image_venv):
    """``adapters`` is another PyPI package's import name; ``schemas`` and ``broker_client`` are as
    generic: the wheel installs ``stadtlink`` and nothing else at the top of site-packages."""
    wheel, venv, env, run_dir = image_venv
    names = zipfile.ZipFile(wheel).namelist()
    top = {n.split("/", 1)[0] for n in names if not n.split("/", 1)[0].endswith((".dist-info", ".data"))}
    assert top == {"stadtlink"}, sorted(top)
    top_level_txt = [n for n in names if n.endswith(".dist-info/top_level.txt")]
    if top_level_txt:
        assert zipfile.ZipFile(wheel).read(top_level_txt[0]).decode().split() == ["stadtlink"]
    # and in the installed environment: what the wheel's RECORD put into site-packages
    site = _run([str(venv / "bin" / "python"), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                cwd=run_dir, env=env).stdout.strip()
    record = next(Path(site).glob("stadtlink-*.dist-info/RECORD")).read_text(encoding="utf-8")
    installed = {line.split(",", 1)[0].split("/", 1)[0] for line in record.splitlines() if line}
    assert {n for n in installed if not n.endswith(".dist-info") and not n.startswith("..")} == {"stadtlink"}
    for generic in ("adapters", "schemas", "broker_client"):
        probe = subprocess.run([str(venv / "bin" / "python"), "-c", f"import {generic}"], cwd=run_dir, env=env,
                               capture_output=True, text=True, timeout=60)
        assert probe.returncode != 0 and "ModuleNotFoundError" in probe.stderr, f"import {generic} worked"

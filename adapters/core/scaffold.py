"""``stadtlink new-adapter NAME``: the skeleton of a new device family as its own package.

It writes a pip-installable package that plugs into stadtlink through the ``stadtlink.adapters``
entry point: a LoRaWAN decoder for an example byte layout, a mapper producing a Smart Data Models
``WeatherObserved``, an example config with a device registry, a README and tests (with fixtures)
that pass as generated. The templates live in ``scaffold_templates/``.
"""
from __future__ import annotations

import argparse
import keyword
import re
import sys
from pathlib import Path

import orjson

from .lorawan import tts_uplink

TEMPLATES = Path(__file__).resolve().parent / "scaffold_templates"

#: template file → path in the generated project (``{pkg}`` = the Python package name)
FILES = {
    "pyproject.toml.txt": "pyproject.toml",
    "README.md.txt": "README.md",
    "package__init__.py.txt": "{pkg}/__init__.py",
    "package_decoder.py.txt": "{pkg}/decoder.py",
    "package_mapper.py.txt": "{pkg}/mapper.py",
    "example.yaml.txt": "{pkg}/example.yaml",
    "devices.csv.txt": "{pkg}/devices.csv",
    "conftest.py.txt": "tests/conftest.py",
    "test_adapter.py.txt": "tests/test_{pkg}.py",
}

#: the example frame: 21.95 °C, 55 %, 3.4 V (see the decoder's layout table)
EXAMPLE_FRAME = bytes.fromhex("08936E0D48")

_NAME = re.compile(r"^[a-z][a-z0-9]*(?:[-_][a-z0-9]+)*$")


class ScaffoldError(Exception):
    pass


def names(name: str) -> dict[str, str]:
    """``my-sensor`` → package ``my_sensor``, distribution ``stadtlink-adapter-my-sensor`` …"""
    if not _NAME.match(name):
        raise ScaffoldError(f"adapter name {name!r}: use lower-case letters, digits and '-' or '_', "
                            "starting with a letter (e.g. 'soil-moisture')")
    pkg = name.replace("-", "_")
    if keyword.iskeyword(pkg) or pkg in {"adapters", "schemas", "broker_client", "test", "tests", "stadtlink"}:
        raise ScaffoldError(f"adapter name {name!r} clashes with a Python or stadtlink name")
    dash = pkg.replace("_", "-")
    return {
        "__NAME__": name,
        "__PKG__": pkg,
        "__DIST__": f"stadtlink-adapter-{dash}",
        "__PROFILE__": f"{dash}-v1",
        "__TITLE__": " ".join(w.capitalize() for w in re.split(r"[-_]", name)) + " sensor",
    }


def render(text: str, values: dict[str, str]) -> str:
    for key, value in values.items():
        text = text.replace(key, value)
    return text


def generate(name: str, target: Path, *, force: bool = False) -> list[Path]:
    """Write the project into ``target`` (created; must be empty unless ``force``). Returns the files."""
    values = names(name)
    pkg = values["__PKG__"]
    target = Path(target)
    if target.exists() and any(target.iterdir()) and not force:
        raise ScaffoldError(f"{target} exists and is not empty (use --force to write into it)")
    written: list[Path] = []
    for template, dest in FILES.items():
        path = target / dest.format(pkg=pkg)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(render((TEMPLATES / template).read_text(encoding="utf-8"), values), encoding="utf-8")
        written.append(path)
    fixtures = target / "tests" / "fixtures"
    fixtures.mkdir(parents=True, exist_ok=True)
    (fixtures / "frame.hex").write_text(EXAMPLE_FRAME.hex().upper() + "\n")
    _topic, envelope = tts_uplink("env-001", EXAMPLE_FRAME, f_port=1, f_cnt=42,
                                  received_at="2024-05-01T12:00:00.123456789Z", application_id=values["__DIST__"],
                                  dev_eui="70b3d57ed0000001")
    # the network server's receive time is the observation time; make it a round value for the test
    envelope["uplink_message"]["received_at"] = "2024-05-01T12:00:00.000000000Z"
    (fixtures / "uplink-tts.json").write_bytes(orjson.dumps(envelope, option=orjson.OPT_INDENT_2) + b"\n")
    written += [fixtures / "frame.hex", fixtures / "uplink-tts.json"]
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="stadtlink new-adapter",
                                     description="Create a new adapter package (decoder, mapper, config, tests).")
    parser.add_argument("name", help="adapter name, e.g. soil-moisture")
    parser.add_argument("--dir", default=None, help="target directory (default: ./<name>)")
    parser.add_argument("--force", action="store_true", help="write into a non-empty directory")
    args = parser.parse_args(argv)
    target = Path(args.dir) if args.dir else Path.cwd() / args.name
    try:
        files = generate(args.name, target, force=args.force)
    except ScaffoldError as exc:
        print(f"stadtlink new-adapter: {exc}", file=sys.stderr)
        return 2
    pkg = names(args.name)["__PKG__"]
    print(f"created {target} ({len(files)} files)")
    print(f"  cd {target} && pip install -e . && pytest")
    print(f"  stadtlink run {pkg} --config {pkg}/example.yaml")
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())

"""``stadtlink new-adapter NAME --model MODEL``: a new device family as its own package.

It writes a pip-installable project whose package has the layout of stadtlink's built-in families
(``profiles.py``, ``decoders.py``, ``mapper.py`` with a declarative measure table, ``settings.py``,
``simulator.py`` for ``stadtlink demo``, ``example-config.yaml``, a registry CSV, ``README.md`` with
the families' sections, ``testdata/``, ``tests/``) and plugs into stadtlink through the
``stadtlink.adapters`` entry point. The entities are of the requested Smart Data Models type:

* a model stadtlink bundles (or one already registered) is used as it is;
* any other model is brought by the package: ``models.py`` declares it (``AdapterSpec.models`` and
  the ``stadtlink.models`` entry point) and ``models/<Type>/`` holds its files. Nothing is fetched:
  with ``--model-files DIR`` (a folder holding the model's ``schema.json``, ``context.jsonld``,
  ``LICENSE.md``, ``SOURCE.md``) they are copied in; without it the scaffold lists exactly which
  files to add, and the generated tests fail, naming them, until they are there.

The measured quantity of the example frame is a numeric attribute of the model's schema (bounded
ones first): its bounds become the measure row's valid range, the frame's all-ones word its
sentinel. The templates live in ``scaffold_templates/``.
"""
from __future__ import annotations

import argparse
import json
import keyword
import re
import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

TEMPLATES = Path(__file__).resolve().parent / "scaffold_templates"
DEFAULT_MODEL = "WeatherObserved"

#: template → path in the generated project (``{pkg}`` = the Python package name)
FILES = {
    "pyproject.toml.txt": "pyproject.toml",
    "README.md.txt": "README.md",
    "conftest.py.txt": "conftest.py",
    "package__init__.py.txt": "{pkg}/__init__.py",
    "package_profiles.py.txt": "{pkg}/profiles.py",
    "package_decoders.py.txt": "{pkg}/decoders.py",
    "package_mapper.py.txt": "{pkg}/mapper.py",
    "package_settings.py.txt": "{pkg}/settings.py",
    "package_simulator.py.txt": "{pkg}/simulator.py",
    "package_README.md.txt": "{pkg}/README.md",
    "example-config.yaml.txt": "{pkg}/example-config.yaml",
    "devices.csv.txt": "{pkg}/{pkg}-devices.csv",
    "test_adapter.py.txt": "{pkg}/tests/test_{pkg}.py",
}
#: only for a model the package brings
MODEL_FILES = {
    "package_models.py.txt": "{pkg}/models.py",
    "model_FILES.md.txt": "{pkg}/models/{type}/FILES.md",
}
#: what the integrator adds to ``models/<Type>/`` (and what ``--model-files`` copies)
REQUIRED_MODEL_FILES = ("schema.json", "context.jsonld", "LICENSE.md", "SOURCE.md")

_NAME = re.compile(r"^[a-z][a-z0-9]*(?:[-_][a-z0-9]+)*$")
_TYPE = re.compile(r"^[A-Z][A-Za-z0-9]*$")
#: a few units Smart Data Models descriptions name → UN/CEFACT common codes
_UNIT_WORDS = {"celsius": "CEL", "degree celsius": "CEL", "meter": "MTR", "meters": "MTR", "metre": "MTR",
               "kilogram": "KGM", "kilograms": "KGM", "kg": "KGM", "litre": "LTR", "liter": "LTR",
               "liters": "LTR", "percent": "P1", "%": "P1", "watt": "WTT", "w": "WTT", "volt": "VLT",
               "ppm": "59", "lux": "LUX", "hpa": "A97", "m3": "MTQ", "cubic meters": "MTQ"}


class ScaffoldError(Exception):
    pass


@dataclass
class Measured:
    """The quantity of the example frame: an attribute of the model and how the frame carries it."""

    attribute: str
    unit: str | None
    low: float
    high: float
    scale: int
    range_source: str

    @property
    def key(self) -> str:
        """The reading key: the attribute in snake_case (the families' vocabulary)."""
        return re.sub(r"(?<!^)(?=[A-Z])", "_", self.attribute).lower()

    @property
    def example(self) -> float:
        return round(self.low + (self.high - self.low) * 0.55, 3)


@dataclass
class Result:
    target: Path
    files: list[Path]
    model: str
    bundled: bool
    #: files still to add to ``models/<Type>/`` (empty when the model is bundled or they were copied)
    missing_model_files: list[Path] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


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
        "__APP__": f"stadtlink-{dash}",
        "__TITLE__": " ".join(w.capitalize() for w in re.split(r"[-_]", name)) + " sensor",
        "__DEVICE__": f"{pkg}-001",
    }


def render(text: str, values: dict[str, str]) -> str:
    for key in sorted(values, key=len, reverse=True):
        text = text.replace(key, values[key])
    return text


# ------------------------------------------------------------------------------------------ the model

def _properties(schema: dict[str, Any]) -> dict[str, dict]:
    props: dict[str, dict] = {}
    for part in schema.get("allOf") or ():
        if isinstance(part, dict):
            props.update(part.get("properties") or {})
    props.update(schema.get("properties") or {})
    return props


def _unit(prop: dict, low: float, high: float) -> str | None:
    if (low, high) == (0, 1):
        return "C62"              # a fraction
    match = re.search(r"Units?:\s*'([^']+)'", str(prop.get("description", "")))
    return _UNIT_WORDS.get(match.group(1).strip().lower()) if match else None


def choose_measured(schema: dict[str, Any], model: str) -> Measured:
    """The numeric attribute the example frame carries: bounded ones first, then those with a minimum."""
    numeric = [(name, p) for name, p in _properties(schema).items()
               if isinstance(p, dict) and p.get("type") in ("number", "integer")]
    if not numeric:
        raise ScaffoldError(f"model {model!r} has no numeric attribute for the example frame to measure")

    def rank(item):
        p = item[1]
        return (0 if "minimum" in p and "maximum" in p else 1 if "minimum" in p else 2)

    name, prop = sorted(numeric, key=rank)[0]
    low = float(prop.get("minimum", 0))
    if "maximum" in prop:
        high = float(prop["maximum"])
        source = f"the {model} schema's bounds"
    else:
        high = low + 6553.4
        source = (f"minimum from the {model} schema, maximum the largest the example frame carries: "
                  "narrow it to your device's datasheet")
    span = high - low
    scale = 1000 if high <= 65.0 and span <= 65.0 else 10 if high <= 6553.4 else 1
    return Measured(name, _unit(prop, low, high), low, high, scale, source)


def _bundled_model(model: str):
    from stadtlink.schemas.registry import model_for

    return model_for(model)


def _common_files(schema: dict[str, Any]) -> list[str]:
    """The common schemas the model's ``$ref``s reach that stadtlink does not bundle."""
    from stadtlink.schemas.validation import COMMON_SCHEMAS

    refs = set(re.findall(r'"\$ref":\s*"([^"#]+)', json.dumps(schema)))
    return sorted(ref.rsplit("/", 1)[-1] for ref in refs if ref.startswith("http") and ref not in COMMON_SCHEMAS)


# ------------------------------------------------------------------------------------------ generate

def generate(name: str, target: Path, *, model: str = DEFAULT_MODEL, model_files: Path | None = None,
             context_url: str | None = None, repository: str | None = None, force: bool = False) -> Result:
    """Write the project into ``target`` (created; must be empty unless ``force``)."""
    values = names(name)
    pkg = values["__PKG__"]
    if not _TYPE.match(model or ""):
        raise ScaffoldError(f"--model {model!r}: a Smart Data Models type name such as WasteContainer")
    target = Path(target)
    if target.exists() and any(target.iterdir()) and not force:
        raise ScaffoldError(f"{target} exists and is not empty (use --force to write into it)")
    known = _bundled_model(model)
    bundled = known is not None
    warnings: list[str] = []
    schema: dict[str, Any] | None = None
    if bundled:
        schema = json.loads(Path(known.schema).read_text(encoding="utf-8"))
        if model_files is not None:
            warnings.append(f"{model} is bundled with stadtlink: --model-files is not used")
    elif model_files is not None:
        model_files = Path(model_files)
        if not (model_files / "schema.json").is_file():
            raise ScaffoldError(f"--model-files {model_files}: no schema.json there")
        schema = json.loads((model_files / "schema.json").read_text(encoding="utf-8"))
    if schema is not None:
        measured = choose_measured(schema, model)
        required = [r for r in schema.get("required") or () if r not in ("id", "type", "location", "name",
                                                                          "dateObserved")]
        if required:
            warnings.append(f"{model} requires {', '.join(required)}: set them in {pkg}/mapper.py, the entity "
                            "check fails without them")
        has_date = "dateObserved" in _properties(schema)
    else:
        # the schema is not here yet: a bounded fraction stands in until the files are added
        measured = Measured("level", "C62", 0.0, 1.0, 1000,
                            f"a stand-in until models/{model}/schema.json is added")
        warnings.append(f"{model} is not bundled and no --model-files were given: the measure row maps a "
                        "stand-in attribute `level`; pick the model's attribute in mapper.py")
        has_date = True
    if context_url is None:
        if bundled:
            context_url = known.context_url
        elif repository:
            context_url = f"https://raw.githubusercontent.com/smart-data-models/{repository}/master/context.jsonld"
        else:
            context_url = (f"https://raw.githubusercontent.com/smart-data-models/dataModel.REPOSITORY/master/"
                           "context.jsonld")
            warnings.append("no --repository: set the model's context_url in models.py "
                            "(https://raw.githubusercontent.com/smart-data-models/<repository>/master/context.jsonld)")

    common = _common_files(schema) if (schema is not None and not bundled) else []
    values.update({
        "__TYPE__": model,
        "__TYPE_UPPER__": re.sub(r"(?<!^)(?=[A-Z])", "_", model).upper(),
        "__ATTR__": measured.attribute,
        "__KEY__": measured.key,
        "__UNIT__": repr(measured.unit),
        "__UNIT_TEXT__": measured.unit or "(none: set it in mapper.py)",
        "__LO__": repr(measured.low),
        "__HI__": repr(measured.high),
        "__OUTSIDE__": repr(measured.high + max(1.0, measured.high - measured.low)),
        "__SCALE__": str(measured.scale),
        "__RANGE_SOURCE__": measured.range_source,
        "__SENTINEL_TEXT__": f"{0xFFFF / measured.scale:g} after scaling",
        "__DATE_OBSERVED__": "        dateObserved=datetime_prop(observed),\n" if has_date else "",
        "__MODEL_ORIGIN__": ("bundled with stadtlink" if bundled else
                             f"brought by this package: `models.py`, files in `models/{model}/`"),
        "__MODELS_IMPORT__": "" if bundled else "from .models import MODELS\n",
        "__MODELS_ARG__": (f"    # the model's own @context: its attributes expand to its own IRIs (a compound\n"
                           f"    # context gives clashing terms such as refDevice or temperature to another model)\n"
                           f"    context=\"{context_url}\",\n") if bundled else (
                              f"    # {model} is not bundled with stadtlink: this package brings it\n"
                              f"    context=MODELS[0].context_url,\n    models=MODELS,\n"),
        "__ENTRY_MODELS__": "" if bundled else (f'\n# the Smart Data Model this package brings ({pkg}/models.py)\n'
                                                f'[project.entry-points."stadtlink.models"]\n{pkg} = "{pkg}.models:MODELS"\n'),
        "__MODEL_FILES_NOTE__": "" if bundled else f"  (once models/{model}/ holds the model's files)",
        "__MODEL_TEST_NOTE__": "" if bundled else f", and the files of the model in `models/{model}/`",
        "__MODEL_FILE_TEST__": "" if bundled else _MODEL_FILE_TEST,
        "__CONTEXT_URL__": context_url,
        "__SOURCE__": (f"smart-data-models/{repository} (see models/{model}/SOURCE.md)" if repository
                       else f"see models/{model}/SOURCE.md"),
        "__COMMON__": "".join(f'MODEL_DIR / "common" / "{c}", ' for c in common),
        "__REPOSITORY_TEXT__": (f"https://github.com/smart-data-models/{repository}" if repository else
                                "https://github.com/smart-data-models/dataModel.<Domain>; smartdatamodels.org lists "
                                "which repository holds the model"),
    })
    raw = round(measured.example * measured.scale)
    frame = raw.to_bytes(2, "big") + (3600).to_bytes(2, "big")
    values["__EXAMPLE_HEX__"] = frame.hex().upper()
    values["__EXAMPLE_ENTITY__"] = _example_entity(values, measured, raw / measured.scale, has_date)

    written: list[Path] = []
    templates = dict(FILES)
    if not bundled:
        templates.update(MODEL_FILES)
    for template, dest in templates.items():
        path = target / dest.format(pkg=pkg, type=model)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(render((TEMPLATES / template).read_text(encoding="utf-8"), values), encoding="utf-8")
        written.append(path)
    tests_init = target / pkg / "tests" / "__init__.py"
    tests_init.write_text("")
    written.append(tests_init)
    sample = target / pkg / "testdata" / "example-frame.json"
    sample.parent.mkdir(parents=True, exist_ok=True)
    sample.write_bytes(orjson.dumps({
        "source": "constructed by stadtlink new-adapter: replace it with a real frame of your device",
        "description": f"the example frame of decoders.py: {measured.key} {raw / measured.scale}, battery 3.6 V",
        "transport": "LoRaWAN uplink, fPort 1",
        "raw": {"f_port": 1, "hex": frame.hex().upper()},
        "expected": {measured.key: raw / measured.scale, "battery_voltage": 3.6},
    }, option=orjson.OPT_INDENT_2) + b"\n")
    written.append(sample)

    missing: list[Path] = []
    if not bundled:
        model_dir = target / pkg / "models" / model
        for file in REQUIRED_MODEL_FILES:
            if model_files is not None and (Path(model_files) / file).is_file():
                shutil.copyfile(Path(model_files) / file, model_dir / file)
                written.append(model_dir / file)
            else:
                missing.append(model_dir / file)
        for file in common:
            dest = model_dir / "common" / file
            source = Path(model_files) / "common" / file if model_files is not None else None
            if source is not None and source.is_file():
                dest.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(source, dest)
                written.append(dest)
            else:
                missing.append(dest)
    return Result(target, written, model, bundled, missing, warnings)


def _example_entity(values: dict[str, str], measured: Measured, value: float, has_date: bool) -> str:
    observed = "2024-05-01T12:00:00.000Z"
    entity: dict[str, Any] = {
        "id": f"urn:ngsi-ld:{values['__TYPE__']}:mytown:{values['__DEVICE__']}", "type": values["__TYPE__"],
        "name": {"type": "Property", "value": "Rathausplatz"},
        "location": {"type": "GeoProperty", "value": {"type": "Point", "coordinates": [10.7865, 52.4227]}},
    }
    if has_date:
        entity["dateObserved"] = {"type": "Property", "value": {"@type": "DateTime", "@value": observed}}
    attr: dict[str, Any] = {"type": "Property", "value": value}
    if measured.unit:
        attr["unitCode"] = measured.unit
    attr["observedAt"] = observed
    entity[measured.attribute] = attr
    return orjson.dumps(entity, option=orjson.OPT_INDENT_2).decode()


_MODEL_FILE_TEST = '''

def test_model_files_are_present():
    """The files of the Smart Data Model this package brings (models/<Type>/FILES.md says where from)."""
    from __PKG__.models import MODEL_DIR, MODELS, REQUIRED_FILES

    missing = [name for name in REQUIRED_FILES if not (MODEL_DIR / name).is_file()]
    assert not missing, f"add {', '.join(missing)} to {MODEL_DIR} (see FILES.md there)"
    for model in MODELS:
        assert model.problems() == [], model.problems()
'''


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="stadtlink new-adapter",
        description="Create a new device family as its own package, laid out like stadtlink's built-in families.")
    parser.add_argument("name", help="adapter name, e.g. waste-bins")
    parser.add_argument("--model", default=DEFAULT_MODEL,
                        help=f"the Smart Data Models type of the entities (default {DEFAULT_MODEL}); a type "
                             "stadtlink does not bundle is brought by the new package")
    parser.add_argument("--model-files", type=Path, default=None,
                        help="a folder with the model's schema.json, context.jsonld, LICENSE.md, SOURCE.md "
                             "(copied in; nothing is downloaded)")
    parser.add_argument("--repository", default=None,
                        help="the model's Smart Data Models repository, e.g. dataModel.WasteManagement "
                             "(gives its @context URL)")
    parser.add_argument("--dir", default=None, help="target directory (default: ./<name>)")
    parser.add_argument("--force", action="store_true", help="write into a non-empty directory")
    args = parser.parse_args(argv)
    target = Path(args.dir) if args.dir else Path.cwd() / args.name
    try:
        result = generate(args.name, target, model=args.model, model_files=args.model_files,
                          repository=args.repository, force=args.force)
    except ScaffoldError as exc:
        print(f"stadtlink new-adapter: {exc}", file=sys.stderr)
        return 2
    pkg = names(args.name)["__PKG__"]
    print(f"created {target} ({len(result.files)} files): {pkg} → {result.model} "
          f"({'bundled model' if result.bundled else 'model brought by the package'})")
    for warning in result.warnings:
        print(f"  note: {warning}")
    if result.missing_model_files:
        print(f"  {result.model} is not bundled with stadtlink and nothing is downloaded: add these files "
              f"(verbatim from the model's Smart Data Models repository, see {pkg}/models/{result.model}/FILES.md):")
        for path in result.missing_model_files:
            print(f"    {path}")
    print(f"  cd {target} && pip install -e . && pytest")
    print(f"  stadtlink run {pkg} --config {pkg}/example-config.yaml")
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())

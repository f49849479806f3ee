"""The bundled upstream files: complete, self-contained, licensed, and their examples validate."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from stadtlink import schemas
from stadtlink.schemas import check_entity, check_key_values, known_models
from stadtlink.schemas.validation import COMMON_SCHEMAS, PACKAGE_DIR, validator_for

ADAPTER_MODELS = [
    "Alert", "Device", "DeviceMeasurement", "FloodMonitoring", "InverterDevice", "OffStreetParking",
    "ParkingGroup", "ParkingSpot", "PhotovoltaicDevice", "PhotovoltaicMeasurement", "SolarEnergy",
    "ThreePhaseAcMeasurement", "WaterObserved", "WeatherObserved",
]

KEY_VALUE_EXAMPLES = sorted(
    f for model in ADAPTER_MODELS for f in (PACKAGE_DIR / model / "examples").glob("example.json*")
)


def _load(path: Path):
    return json.loads(path.read_text(encoding="utf-8"))


def test_every_adapter_model_is_bundled():
    from stadtlink.schemas.bundled import MODELS

    assert sorted(MODELS) == sorted(ADAPTER_MODELS)
    assert set(ADAPTER_MODELS) <= set(known_models())  # plus any model an installed package brings
    for model in ADAPTER_MODELS:
        folder = PACKAGE_DIR / model
        for name in ("schema.json", "LICENSE.md", "examples/example.json", "examples/example.jsonld",
                     "examples/example-normalized.jsonld"):
            assert (folder / name).is_file(), f"{model}/{name} missing"
    assert len(KEY_VALUE_EXAMPLES) == 2 * len(ADAPTER_MODELS)


def test_licences_as_upstream():
    for model in ADAPTER_MODELS:
        text = (PACKAGE_DIR / model / "LICENSE.md").read_text(encoding="utf-8")
        if model == "SolarEnergy":
            assert "Apache License" in text and "Version 2.0" in text
        else:
            assert "Creative Commons Attribution 4.0" in text
    sources = (PACKAGE_DIR / "SOURCES.md").read_text(encoding="utf-8")
    assert "CC-BY-4.0" in sources and "Apache-2.0" in sources
    assert (PACKAGE_DIR / "common" / "LICENSE-dataModel.Environment").is_file()


def test_sources_lists_every_copied_file_with_its_commit():
    sources = (PACKAGE_DIR / "SOURCES.md").read_text(encoding="utf-8")
    rows = dict(re.findall(r"^\| (\S+) \| smart-data-models/\S+ \| ([0-9a-f]{40}) \|", sources, re.M))
    copied = [
        p.relative_to(PACKAGE_DIR).as_posix()
        for folder in [*ADAPTER_MODELS, "common"]
        for p in (PACKAGE_DIR / folder).rglob("*")
        if p.is_file() and "__pycache__" not in p.parts
    ]
    assert copied
    assert sorted(set(copied) - set(rows)) == []


def test_every_ref_target_is_registered_locally():
    """Offline: each absolute $ref of every bundled schema points at a registered local file."""
    refs: set[str] = set()

    def walk(node):
        if isinstance(node, dict):
            ref = node.get("$ref")
            if isinstance(ref, str) and not ref.startswith("#"):
                refs.add(ref.split("#", 1)[0])
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    for path in [*(PACKAGE_DIR / m / "schema.json" for m in ADAPTER_MODELS), *COMMON_SCHEMAS.values()]:
        walk(_load(path))
    assert refs and refs <= set(COMMON_SCHEMAS)
    assert all(path.is_file() for path in COMMON_SCHEMAS.values())


def test_package_code_does_not_read_shared_material():
    for source in PACKAGE_DIR.glob("*.py"):
        assert "/work/shared" not in source.read_text(encoding="utf-8"), source.name


def test_validators_are_compiled_once():
    assert validator_for("WeatherObserved") is validator_for("WeatherObserved")


@pytest.mark.parametrize("path", KEY_VALUE_EXAMPLES, ids=lambda p: f"{p.parent.parent.name}/{p.name}")
def test_upstream_key_values_examples_validate(path: Path):
    document = _load(path)
    entities = document if isinstance(document, list) else [document]
    assert entities
    for entity in entities:
        assert check_key_values(entity, path.parent.parent.name) == []
        assert check_key_values(entity) == []  # model from the entity's own type


# Upstream normalized examples carry known bugs (schemas/SOURCES.md). This pins which ones fail
# and why, so a regression in the structural check shows up here.
NORMALIZED_DEFECTS = {
    "DeviceMeasurement": {"$.location": "must be a GeoProperty"},
    "FloodMonitoring": {"$.floodLevelStatus": "attribute type 'string'",
                        "$.observationDateTime": "attribute type 'string'",
                        "$.stationID": "attribute type 'string'"},
    "InverterDevice": {"$.location.coordinates": "[longitude, latitude]",
                       "$.dateLastReported": "is not of type 'string'",
                       '$["nominalAmpereAC "]': "character brokers refuse",
                       '$["nominalAmpereDC "]': "character brokers refuse"},
    "ParkingGroup": {"$.category[0]": "'onstreet' is not one of",
                     "$.permitActiveHours": "is not of type 'object'",
                     "$.requiredPermit": "is not of type 'array'"},
    "PhotovoltaicDevice": {"$.refDevice": "Relationship has no 'object'",
                           "$.refDevice.value": "does not belong to a Relationship",
                           "$.dateLastReported": "is not of type 'string'"},
    "PhotovoltaicMeasurement": {"$.refPhotovoltaicDevice": "Relationship has no 'object'",
                                "$.refPhotovoltaicDevice.Object": "attribute must be an object"},
    "SolarEnergy": {"$.location.coordinates": "[longitude, latitude]"},
    "WaterObserved": {"$.dateObserved": "Relationship object '2020-03-17T08:45:00.209Z' is not a URI"},
}


@pytest.mark.parametrize("model", ADAPTER_MODELS)
def test_upstream_normalized_examples(model: str):
    entity = _load(PACKAGE_DIR / model / "examples" / "example-normalized.jsonld")
    problems = check_entity(entity)
    expected = NORMALIZED_DEFECTS.get(model, {})
    assert {p.path for p in problems} == set(expected), [str(p) for p in problems]
    for problem in problems:
        assert expected[problem.path] in problem.message


def test_public_api_is_exported():
    for name in ("check_entity", "check_key_values", "to_key_values", "known_models", "assert_valid",
                 "InvalidEntity", "Problem", "context_url", "load_context", "CONTEXTS"):
        assert hasattr(schemas, name), name


@pytest.mark.parametrize("model", ADAPTER_MODELS)
def test_inlined_schema_means_the_same_as_the_original(model: str):
    """The cached validators use $ref-inlined schemas; they must judge exactly like the originals."""
    from jsonschema import Draft202012Validator

    from stadtlink.schemas.validation import inline_refs, registry, schema_problems

    original = _load(PACKAGE_DIR / model / "schema.json")
    inlined = inline_refs(original)
    assert '"$ref"' not in json.dumps(inlined)
    reference = Draft202012Validator(original, registry=registry(),
                                     format_checker=Draft202012Validator.FORMAT_CHECKER)
    samples = [schemas.to_key_values(_load(PACKAGE_DIR / model / "examples" / "example-normalized.jsonld"))]
    samples += [_load(p) for p in (PACKAGE_DIR / model / "examples").glob("example.json*")]
    samples.append({"id": "urn:ngsi-ld:X:1", "type": model, "location": {"type": "Point", "coordinates": "x"},
                    "dateObserved": "2019-06-06T12:06:06", "refDevice": 5, "name": 7})
    for sample in samples:
        expected = sorted((tuple(e.absolute_path), e.message) for e in reference.iter_errors(sample))
        got = sorted((tuple(e.absolute_path), e.message) for e in validator_for(model).iter_errors(sample))
        assert got == expected
    assert validator_for(model).schema == inlined
    assert isinstance(schema_problems(samples[-1], model), list)

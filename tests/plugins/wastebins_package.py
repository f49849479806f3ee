"""The files of a throwaway adapter package that brings its own Smart Data Model, written by the
test into a temporary folder (the layout docs/adding-a-model.md describes).

``WasteContainer`` here is a small model written for the test (the Smart Data Models
WasteContainer is not among the copies this machine holds): ``fillingLevel`` exists in no bundled
model, and ``temperature`` / ``refDevice`` clash with bundled ones (Weather, Parking, ...).
"""
from __future__ import annotations

import json
from pathlib import Path

IRI = "https://example.org/stadtlink-test/dataModel.WasteManagement/"
CONTEXT_URL = IRI + "context.jsonld"

PYPROJECT = """\
[build-system]
requires = ["setuptools>=61"]
build-backend = "setuptools.build_meta"

[project]
name = "stadtlink-wastebins"
version = "0.1.0"
dependencies = []

[project.entry-points."stadtlink.adapters"]
wastebins = "stadtlink_wastebins:ADAPTER"

[project.entry-points."stadtlink.models"]
wastebins = "stadtlink_wastebins.models:MODELS"

[tool.setuptools]
packages = ["stadtlink_wastebins"]

[tool.setuptools.package-data]
stadtlink_wastebins = ["sdm/*.jsonld", "sdm/*/*.json", "sdm/*/*.md"]
"""

MODELS_PY = '''\
"""The Smart Data Models this package brings (found by stadtlink through the entry point)."""
from pathlib import Path

from stadtlink.schemas import SmartDataModel

SDM = Path(__file__).resolve().parent / "sdm"

WASTE_CONTAINER = SmartDataModel(
    type="WasteContainer",
    schema=SDM / "WasteContainer" / "schema.json",
    context=SDM / "context.jsonld",
    context_url="%(context_url)s",
    source="written for stadtlink's plugin test",
    licence=SDM / "WasteContainer" / "LICENSE.md",
)
MODELS = (WASTE_CONTAINER,)
''' % {"context_url": CONTEXT_URL}

INIT_PY = '''\
"""Waste-container fill-level sensors: 3 bytes = filling level (%%), temperature (degC, signed)."""
from stadtlink.adapters.core import (AdapterSpec, DecodeError, LoRaWANProfile, MapContext, Reading, entity_id,
                                     geo_point, new_entity, prop, rel)

from .models import MODELS, WASTE_CONTAINER


def decode(payload: bytes, f_port):
    if len(payload) != 2:
        raise DecodeError("bad-length", f"expected 2 bytes, got {len(payload)}")
    return {"fillingLevel": payload[0] / 100, "temperature": int.from_bytes(payload[1:], "big", signed=True)}


def mapper(reading: Reading, ctx: MapContext) -> list[dict]:
    rec = ctx.require_device(reading)
    return [new_entity(
        entity_id("WasteContainer", ctx.namespace, rec.id), "WasteContainer",
        fillingLevel=prop(reading.values["fillingLevel"], observed_at=reading.observed_at),
        temperature=prop(reading.values["temperature"], unit="CEL", observed_at=reading.observed_at),
        refDevice=rel(entity_id("Device", ctx.namespace, rec.id)),
        location=geo_point(*ctx.require(rec, "location")))]


ADAPTER = AdapterSpec(
    name="wastebins",
    description="waste-container fill level (plugin test)",
    profiles={"wastebins-lora": LoRaWANProfile("wastebins-lora", "fill level + temperature", decode)},
    mapper=mapper,
    entity_types=("WasteContainer",),
    models=MODELS,
    context=WASTE_CONTAINER.context_url,
)
'''

SCHEMA = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "$id": IRI + "WasteContainer/schema.json",
    "title": "WasteContainer (plugin test)",
    "type": "object",
    "allOf": [
        {"$ref": "https://smart-data-models.github.io/data-models/common-schema.json#/definitions/GSMA-Commons"},
        {"$ref": "https://smart-data-models.github.io/data-models/common-schema.json#/definitions/Location-Commons"},
        {"properties": {
            "type": {"type": "string", "enum": ["WasteContainer"]},
            "fillingLevel": {"type": "number", "minimum": 0, "maximum": 1},
            "temperature": {"type": "number"},
            "refDevice": {"type": "string", "format": "uri"},
        }},
    ],
    "required": ["id", "type", "fillingLevel"],
}

#: like every Smart Data Models repository context: the common terms (GSMA-Commons,
#: Location-Commons: name, address, ...) and the model's own
CONTEXT = {"@context": {
    **{term: iri for term, iri in json.loads(
        (Path(__file__).resolve().parents[2] / "schemas/common/contexts/data-models/common-context.jsonld")
        .read_text())["@context"].items()},
    "WasteContainer": IRI + "WasteContainer",
    "fillingLevel": IRI + "fillingLevel",
    "temperature": IRI + "temperature",
    "refDevice": IRI + "refDevice",
}}


def write_package(root: Path) -> Path:
    """Write the package source tree under ``root``; returns its folder."""
    pkg = root / "stadtlink-wastebins"
    src = pkg / "stadtlink_wastebins"
    (src / "sdm" / "WasteContainer").mkdir(parents=True)
    (pkg / "pyproject.toml").write_text(PYPROJECT)
    (src / "__init__.py").write_text(INIT_PY)
    (src / "models.py").write_text(MODELS_PY)
    (src / "sdm" / "WasteContainer" / "schema.json").write_text(json.dumps(SCHEMA, indent=2))
    (src / "sdm" / "WasteContainer" / "LICENSE.md").write_text("Written for stadtlink's tests; CC0.\n")
    (src / "sdm" / "context.jsonld").write_text(json.dumps(CONTEXT, indent=2))
    return pkg

"""The model registry: bundled models registered like any other, run-time registration, conflicts."""
from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest

from stadtlink.schemas import (CONTEXTS, ModelConflict, SmartDataModel, check_entity, context_url, known_models,
                               model_for, register_model, registered_models)
from stadtlink.schemas.bundled import MODELS
from stadtlink.schemas.registry import model_origin, models_of, unregister_model


def _model(tmp_path: Path, type_: str = "StreetSweeper") -> SmartDataModel:
    (tmp_path / "schema.json").write_text(json.dumps({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": f"https://example.org/{type_}/schema.json",
        "type": "object",
        "allOf": [{"$ref": "https://smart-data-models.github.io/data-models/common-schema.json#/definitions/GSMA-Commons"},
                  {"properties": {"type": {"enum": [type_]}, "brushSpeed": {"type": "number", "minimum": 0}}}],
        "required": ["id", "type"],
    }))
    (tmp_path / "context.jsonld").write_text(json.dumps({"@context": {
        type_: f"https://example.org/dataModel.Test/{type_}",
        "brushSpeed": "https://example.org/dataModel.Test/brushSpeed"}}))
    (tmp_path / "LICENSE.md").write_text("CC-BY-4.0\n")
    return SmartDataModel(type=type_, schema=tmp_path / "schema.json", context=tmp_path / "context.jsonld",
                          context_url=f"https://example.org/dataModel.Test/{type_}/context.jsonld",
                          source="written for this test", licence=tmp_path / "LICENSE.md")


def test_bundled_models_are_registered_from_the_declarative_list():
    models = registered_models()
    assert set(MODELS) <= set(models)
    for name, (repo, common) in MODELS.items():
        m = models[name]
        assert m.schema.is_file() and m.context.is_file() and m.licence.is_file()
        assert repo in m.source and repo in m.context_url
        assert [p.name for p in m.common] == list(common)
        assert model_origin(name) == "bundled"
        assert CONTEXTS[m.context_url] == m.context


def test_a_registered_model_is_checked_and_its_context_is_known(tmp_path):
    model = _model(tmp_path)
    try:
        assert "StreetSweeper" not in known_models()
        register_model(model)
        assert model_for("StreetSweeper") is model
        assert "StreetSweeper" in known_models()
        assert context_url("StreetSweeper") == model.context_url
        assert CONTEXTS[model.context_url] == model.context
        entity = {"id": "urn:ngsi-ld:StreetSweeper:t:1", "type": "StreetSweeper",
                  "brushSpeed": {"type": "Property", "value": 2.5}}
        assert check_entity(entity) == []
        bad = dict(entity, brushSpeed={"type": "Property", "value": -1})
        assert [p.path for p in check_entity(bad)] == ["$.brushSpeed"]
        register_model(replace(model))  # the same definition again: a no-op
    finally:
        unregister_model("StreetSweeper")
    assert model_for("StreetSweeper") is None
    assert [p.path for p in check_entity(entity)] == ["$.type"]


def test_a_second_definition_of_a_type_is_refused(tmp_path):
    bundled = model_for("WeatherObserved")
    with pytest.raises(ModelConflict, match="WeatherObserved"):
        register_model(replace(_model(tmp_path), type="WeatherObserved"))
    assert model_for("WeatherObserved") is bundled
    with pytest.raises(ValueError, match="bundled"):
        unregister_model("WeatherObserved")


def test_a_declaration_with_missing_files_is_refused(tmp_path):
    model = replace(_model(tmp_path), schema=tmp_path / "nope.json")
    with pytest.raises(ValueError, match="nope.json"):
        register_model(model)
    assert model_for("StreetSweeper") is None


def test_entry_point_objects_may_be_a_model_a_tuple_or_a_callable(tmp_path):
    model = _model(tmp_path)
    assert models_of(model) == [model]
    assert models_of((model,)) == [model]
    assert models_of(lambda: [model]) == [model]
    with pytest.raises(TypeError):
        models_of("WasteContainer")

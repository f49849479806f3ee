"""Attribute IRIs are a checked fact: own contexts are clash-free, fallbacks and clashes are named."""
from __future__ import annotations

import io
import json
import logging

import pytest

from stadtlink.adapters.core.metrics import Metrics
from stadtlink.adapters.core.testing import assert_terms_expand
from stadtlink.adapters.core.vocabulary_watch import VocabularyWatch
from stadtlink.schemas import SmartDataModel, register_model, registered_models, vocabulary
from stadtlink.schemas.bundled import MODELS
from stadtlink.schemas.contexts import STADTLINK_CONTEXT_URL, context_url, load_context
from stadtlink.schemas.registry import unregister_model
from stadtlink.schemas.validate_cli import main as validate

WEATHER = "https://raw.githubusercontent.com/smart-data-models/dataModel.Weather/master/context.jsonld"
DEFAULT = "https://uri.etsi.org/ngsi-ld/default-context/"


def weather(**extra) -> dict:
    entity = {"id": "urn:ngsi-ld:WeatherObserved:t:1", "type": "WeatherObserved",
              "temperature": {"type": "Property", "value": 9.8},
              "location": {"type": "GeoProperty", "value": {"type": "Point", "coordinates": [8.47, 49.48]}},
              "dateObserved": {"type": "Property", "value": "2026-12-07T10:00:00Z"}}
    entity.update(extra)
    return entity


@pytest.fixture
def clashing_model(tmp_path):
    """A package's model whose context redefines a Weather term (temperature)."""
    (tmp_path / "schema.json").write_text(json.dumps({
        "$schema": "https://json-schema.org/draft/2020-12/schema", "$id": "https://example.org/Bin/schema.json",
        "type": "object", "properties": {"type": {"enum": ["TestBin"]}, "temperature": {"type": "number"}}}))
    (tmp_path / "context.jsonld").write_text(json.dumps({"@context": {
        "TestBin": "https://example.org/dataModel.Bins/TestBin",
        "temperature": "https://example.org/dataModel.Bins/temperature"}}))
    (tmp_path / "LICENSE.md").write_text("test\n")
    model = register_model(SmartDataModel("TestBin", tmp_path / "schema.json", tmp_path / "context.jsonld",
                                          "https://example.org/dataModel.Bins/context.jsonld", "test",
                                          tmp_path / "LICENSE.md"))
    yield model
    unregister_model("TestBin")


@pytest.mark.parametrize("model", sorted(registered_models()))
def test_every_model_expands_to_its_own_iris_through_its_own_context(model):
    assert vocabulary.clashes(context_url(model), [model]) == []
    own = load_context(context_url(model))["@context"]
    core = vocabulary.core_terms()
    for name in vocabulary.model_attributes(model):
        if name not in core:
            assert vocabulary.own_iri(model, name) == (own[name] if isinstance(own[name], str) else own[name]["@id"])


def test_an_attribute_falling_back_to_the_default_vocabulary_is_reported():
    entity = weather(fillingLevel={"type": "Property", "value": 0.4})
    [problem] = vocabulary.vocabulary_problems(entity, WEATHER)
    assert (problem.attribute, problem.iri) == ("fillingLevel", DEFAULT + "fillingLevel")
    assert problem.falls_back
    assert "fillingLevel" in str(problem) and DEFAULT + "fillingLevel" in str(problem)
    with pytest.raises(AssertionError, match="fillingLevel.*default-context/fillingLevel"):
        assert_terms_expand(entity, WEATHER)
    assert_terms_expand(weather(), WEATHER)


def test_validate_reports_the_fallback_with_the_iri_and_fails(tmp_path):
    path = tmp_path / "e.json"
    path.write_text(json.dumps(weather(fillingLevel={"type": "Property", "value": 0.4})))
    out, err = io.StringIO(), io.StringIO()
    assert validate([str(path)], stdout=out, stderr=err) == 1
    assert out.getvalue().splitlines() == [
        f"{path}: urn:ngsi-ld:WeatherObserved:t:1: $.fillingLevel: vocabulary: attribute 'fillingLevel' of "
        f"WeatherObserved is not defined by the model's own @context (it expands to {DEFAULT}fillingLevel)"]
    assert validate([str(path), "--no-vocabulary"], stdout=io.StringIO(), stderr=io.StringIO()) == 0
    path.write_text(json.dumps(weather()))
    assert validate([str(path)], stdout=io.StringIO(), stderr=io.StringIO()) == 0


def test_a_context_put_after_weather_that_redefines_temperature_is_caught(clashing_model):
    compound_plus = [STADTLINK_CONTEXT_URL, clashing_model.context_url]
    problems = vocabulary.vocabulary_problems(weather(), compound_plus)
    assert [(p.attribute, p.iri) for p in problems] == [("temperature", "https://example.org/dataModel.Bins/temperature")]
    assert "temperature" in [p.attribute for p in vocabulary.clashes(compound_plus, ["WeatherObserved"])]
    # written with its own context, the package's entity gets the package's IRI, Weather keeps its own
    assert vocabulary.own_iri("TestBin", "temperature") == "https://example.org/dataModel.Bins/temperature"
    assert vocabulary.own_iri("WeatherObserved", "temperature") == "https://smartdatamodels.org/dataModel.Weather/temperature"
    assert vocabulary.vocabulary_problems(weather(), STADTLINK_CONTEXT_URL) == []


def test_the_compound_order_is_the_derived_one_and_its_clashes_are_known():
    urls = load_context(STADTLINK_CONTEXT_URL)["@context"]
    assert urls[0].endswith("/data-models/master/context/common-context.jsonld")
    # what the compound context cannot give its own IRI (a flat list: a later context wins a term)
    facts = {(p.entity_type, p.attribute) for p in vocabulary.clashes(STADTLINK_CONTEXT_URL, MODELS)}
    assert ("WeatherObserved", "temperature") not in facts
    assert ("WeatherObserved", "refDevice") in facts  # refDevice has six IRIs among the bundled repositories
    for entity_type, attribute in facts:
        assert vocabulary.expand(STADTLINK_CONTEXT_URL, attribute) != vocabulary.own_iri(entity_type, attribute)


def test_the_runtime_watch_warns_once_and_counts_every_occurrence(caplog):
    metrics = Metrics("t")
    watch = VocabularyWatch(lambda e: [], WEATHER, metrics)
    entity = weather(fillingLevel={"type": "Property", "value": 0.4})
    with caplog.at_level(logging.WARNING, logger="stadtlink.adapters.core.vocabulary_watch"):
        for _ in range(3):
            assert watch(entity) == []
    warnings = [r.getMessage() for r in caplog.records if "fillingLevel" in r.getMessage()]
    assert len(warnings) == 1 and DEFAULT + "fillingLevel" in warnings[0]
    assert metrics.vocabulary == {("WeatherObserved", "fillingLevel", DEFAULT + "fillingLevel"): 3}
    text = metrics.render().decode()
    assert ('stadtlink_vocabulary_mismatches_total{adapter="t",attribute="fillingLevel",entity_type="WeatherObserved",'
            f'iri="{DEFAULT}fillingLevel"}} 3.0') in text


def test_the_watch_maps_an_in_cluster_context_server_url_to_the_local_file():
    assert vocabulary.local_context("http://rel-stadtlink-contexts.iot.svc.cluster.local:8080/stadtlink-context.jsonld") \
        == STADTLINK_CONTEXT_URL
    assert vocabulary.local_context(
        "http://ctx:8080/raw.githubusercontent.com/smart-data-models/dataModel.Weather/master/context.jsonld") == WEATHER
    assert vocabulary.local_context("https://example.org/unknown.jsonld") is None
    watch = VocabularyWatch(lambda e: ["x"], "https://example.org/unknown.jsonld", Metrics("t"))
    assert watch(weather(fillingLevel={"type": "Property", "value": 1})) == ["x"]

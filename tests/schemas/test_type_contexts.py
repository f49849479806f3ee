"""Each entity type is written with its own model's @context: every model's attributes expand to
its own IRIs — checked for every registered model's schema and for the families' real outputs
through the local broker (write, read back expanded, compare IRIs).

Under the one compound context no order can give every model its own IRIs (``refDevice`` alone has
six across the bundled repositories); the last test keeps that fact in view, so the round trip
here is known to be able to fail.
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from stadtlink.adapters.core.testing import assert_terms_expand, query_entities
from stadtlink.broker_client import NGSILDClient
from stadtlink.broker_client.backends import make_backend
from stadtlink.schemas import registered_models, vocabulary
from stadtlink.schemas.contexts import STADTLINK_CONTEXT_URL, mirrored_url, type_context, type_contexts
from stadtlink.schemas.registry import model_for

ROOT = Path(__file__).resolve().parents[2]
GOLDEN = ROOT / "tests" / "families" / "golden"
DEFAULT = vocabulary.DEFAULT_VOCAB

#: attributes the families write that their model's own @context does not define and no attribute
#: of the model is an equivalent of: stadtlink's extension contexts (schemas/bundled.py
#: EXTENSION_FILES) give them IRIs under its own namespace instead of the NGSI-LD default
#: vocabulary. A new one (an attribute that would fall back) fails the round-trip test below.
EXTENDED = {
    ("DeviceMeasurement", "current"), ("DeviceMeasurement", "voltage"), ("DeviceMeasurement", "power"),
    ("ParkingGroup", "floor"),
    ("WaterObserved", "stateMnwMhw"), ("WaterObserved", "stateNswHsw"),
    ("WaterObserved", "waterLevelAboveSeaLevel"), ("WaterObserved", "waterLevelRelativeToGaugeZero"),
}
STADTLINK_TERMS = "https://stadtlink.github.io/terms/"


def golden_entities() -> list[dict]:
    """The last version of every entity the four families produce for their sample inputs."""
    found: dict[str, dict] = {}

    def walk(node) -> None:
        if isinstance(node, dict):
            if isinstance(node.get("type"), str) and str(node.get("id", "")).startswith("urn:ngsi-ld:") \
                    and model_for(node["type"]) is not None:
                found[node["id"]] = node
                return
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    for path in sorted(GOLDEN.glob("*.json")):
        walk(json.loads(path.read_text(encoding="utf-8")))
    return list(found.values())


@pytest.mark.parametrize("model", sorted(registered_models()))
def test_every_registered_model_written_with_its_type_context_gets_its_own_iris(model):
    context = type_context(model)
    # its model's context, last (it wins every term), after the type's extensions if any
    assert (context if isinstance(context, str) else context[-1]) == model_for(model).context_url
    assert vocabulary.clashes(context, [model]) == []
    assert vocabulary.clashes(model_for(model).context_url, [model]) == []


def test_a_package_model_that_clashes_with_a_bundled_one_gets_its_own_context(tmp_path):
    from stadtlink.schemas import SmartDataModel, register_model
    from stadtlink.schemas.registry import unregister_model

    (tmp_path / "schema.json").write_text(json.dumps({
        "$schema": "https://json-schema.org/draft/2020-12/schema", "$id": "https://example.org/Bin2/schema.json",
        "type": "object", "properties": {"type": {"enum": ["TestBin2"]}, "refDevice": {"type": "string"}}}))
    (tmp_path / "context.jsonld").write_text(json.dumps({"@context": {
        "TestBin2": "https://example.org/dataModel.Bins/TestBin2",
        "refDevice": "https://example.org/dataModel.Bins/refDevice"}}))
    (tmp_path / "LICENSE.md").write_text("test\n")
    register_model(SmartDataModel("TestBin2", tmp_path / "schema.json", tmp_path / "context.jsonld",
                                  "https://example.org/dataModel.Bins2/context.jsonld", "test", tmp_path / "LICENSE.md"))
    try:
        assert type_context("TestBin2") == "https://example.org/dataModel.Bins2/context.jsonld"
        assert vocabulary.clashes(type_context("TestBin2"), ["TestBin2"]) == []
        for bundled in ("DeviceMeasurement", "WeatherObserved"):
            assert vocabulary.clashes(type_context(bundled), [bundled]) == []
        entity = {"id": "urn:ngsi-ld:TestBin2:1", "type": "TestBin2", "refDevice": {"type": "Relationship",
                                                                                   "object": "urn:ngsi-ld:Device:1"}}
        assert_terms_expand(entity)                      # judged through its own type's context
        with pytest.raises(AssertionError, match="refDevice"):
            assert_terms_expand(entity, STADTLINK_CONTEXT_URL)
    finally:
        unregister_model("TestBin2")


def test_types_without_a_model_fall_back_and_context_servers_are_followed():
    for_type = type_contexts(STADTLINK_CONTEXT_URL)
    weather = model_for("WeatherObserved").context_url
    assert for_type("WeatherObserved") == weather
    assert for_type("NoSuchModel") == STADTLINK_CONTEXT_URL
    in_cluster = "http://rel-stadtlink-contexts.iot.svc.cluster.local:8080/stadtlink-context.jsonld"
    assert type_contexts(in_cluster)("WeatherObserved") == (
        "http://rel-stadtlink-contexts.iot.svc.cluster.local:8080/raw.githubusercontent.com/"
        "smart-data-models/dataModel.Weather/master/context.jsonld")
    assert type_contexts(in_cluster)("NoSuchModel") == in_cluster
    # the mirrored URL is one the chart's context server serves
    from stadtlink.adapters.core.context_server import packaged_files

    served = {f.path for f in packaged_files()}
    for model in registered_models().values():
        url = mirrored_url(in_cluster, model.context_url)
        assert url.removeprefix("http://rel-stadtlink-contexts.iot.svc.cluster.local:8080") in served
    assert mirrored_url("https://example.org/my-context.jsonld", weather) == weather


class Counting:
    """Counts the HTTP requests a client sends."""

    def __init__(self, client) -> None:
        self.calls: list[tuple[str, str, str | None]] = []
        inner = client.request

        async def request(method, path, **kwargs):
            self.calls.append((method, path, kwargs.get("content_type")))
            return await inner(method, path, **kwargs)

        client.request = request


async def test_the_families_outputs_written_through_the_sink_keep_their_models_iris(local_broker):
    entities = golden_entities()
    types = {e["type"] for e in entities}
    assert {"WeatherObserved", "ParkingSpot", "WaterObserved", "PhotovoltaicMeasurement",
            "ThreePhaseAcMeasurement", "DeviceMeasurement", "Alert", "Device"} <= types

    backend = make_backend({"kind": "orion-ld", "url": local_broker})   # what the runtime builds
    counting = Counting(backend)
    async with backend:
        result = await backend.write(entities)
    assert result.failed == [] and len(result.succeeded) == len(entities)
    # one request for the whole batch of several types (ceil(n / batch_size))
    assert counting.calls == [("POST", "/entityOperations/upsert", "application/ld+json")] * (
        -(-len(entities) // backend.batch_size))

    # read back with the core context only: every attribute name is the IRI the broker stored
    async with NGSILDClient(local_broker) as client:
        stored = {e["id"]: e async for e in client.query_entities(extra_params={"local": "true"})}
    core = vocabulary.core_terms()
    off_own: list[tuple[str, str]] = []
    extended: list[tuple[str, str]] = []
    for entity in entities:
        etype = entity["type"]
        got = stored[entity["id"]]
        assert got["type"] == vocabulary.own_iri(etype, etype)
        expected = set()
        for name in entity:
            if name in ("id", "type"):
                continue
            iri = vocabulary.own_iri(etype, name)
            if name in core or iri.startswith(DEFAULT):
                # core terms, and the default vocabulary (the core context's @vocab), come back short
                expected.add(name)
                if iri.startswith(DEFAULT):
                    off_own.append((etype, name))
            else:
                expected.add(iri)
                if iri.startswith(STADTLINK_TERMS):
                    extended.append((etype, name))
                    assert iri == f"{STADTLINK_TERMS}{etype}/{name}"
        assert set(got) - {"id", "type"} == expected, entity["id"]
    assert off_own == []                  # nothing the families write lands in the default vocabulary
    assert set(extended) == EXTENDED

    # read back as the kit, the twin and the demo do: short names again, as written
    for etype in sorted(types):
        for got in await query_entities(local_broker, etype):
            written = next(e for e in entities if e["id"] == got["id"])
            assert set(got) == set(written), got["id"]
    everything = await query_entities(local_broker)
    by_id = {e["id"]: e for e in entities}
    for got in everything:
        if got["id"] in by_id:
            assert set(got) == set(by_id[got["id"]]), got["id"]


def test_the_compound_context_alone_could_not_do_this():
    """What the families write that the compound context would expand to another model's IRI."""
    written = {(e["type"], name) for e in golden_entities() for name in e if name not in ("id", "type")}
    core = vocabulary.core_terms()
    clashing = {(t, n) for t, n in written if n not in core
                and vocabulary.expand(STADTLINK_CONTEXT_URL, n) != vocabulary.own_iri(t, n)
                and (t, n) not in EXTENDED}
    assert ("DeviceMeasurement", "refDevice") in clashing and ("WeatherObserved", "refDevice") in clashing
    assert len(clashing) >= 5


def test_extension_contexts_only_add_terms_and_are_served_everywhere():
    from stadtlink.adapters.core.context_server import packaged_files, served_path
    from stadtlink.broker_client.local_broker.contexts import packaged_documents
    from stadtlink.schemas.contexts import all_contexts, load_context
    from stadtlink.schemas.registry import all_context_extensions, context_extensions

    assert {t for t, _ in EXTENDED} == {t for t in registered_models() if context_extensions(t)}
    for etype, name in EXTENDED:
        assert vocabulary.expand(model_for(etype).context_url, name) == DEFAULT + name   # the model lacks it
        assert vocabulary.own_iri(etype, name) == f"{STADTLINK_TERMS}{etype}/{name}"
    served = {f.path for f in packaged_files()}
    for url, path in all_context_extensions().items():
        terms = load_context(url)["@context"]
        etype = next(t for t in registered_models() if url in context_extensions(t))
        model_terms = vocabulary.terms(model_for(etype).context_url)
        assert not set(terms) & set(model_terms), f"{url} redefines a term of {etype}'s own context"
        assert all(iri.startswith(STADTLINK_TERMS + etype + "/") for iri in terms.values())
        assert all_contexts()[url] == path and url in packaged_documents() and served_path(url) in served

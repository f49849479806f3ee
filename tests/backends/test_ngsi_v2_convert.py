"""NGSI-LD → NGSI-v2: every model's own example-normalized.jsonld must convert to its own
example-normalized.json, field by field. The few fields where the two published examples do not
describe the same entity are listed here, each with its reason, and repeated in
docs/backends/ngsi-v2.md; the test fails on any difference that is not listed, and on a listed
exception that no longer happens.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from stadtlink.broker_client.backends.ngsi_v2_convert import (
    free_text_attribute,
    from_ngsi_v2,
    identifier_problem,
    percent_encode,
    to_ngsi_v2,
)

SCHEMAS = Path(__file__).resolve().parents[2] / "schemas"
MODELS = sorted(p.parent.parent.name for p in SCHEMAS.glob("*/examples/example-normalized.json"))

# Differences between the two published examples of a model that are not conversion rules:
# path → why. "value" = the examples carry different values; "absent" = an attribute only one of
# them has; "metadata" = the v2 example adds or omits metadata the LD one does not have.
SOURCE_DIFFERENCES: dict[str, dict[str, str]] = {
    "Alert": {
        "/dateCreated": "only the v2 example has dateCreated",
        "/dateModified": "only the v2 example has dateModified",
    },
    "FloodMonitoring": {
        **{f"/{a}/metadata": "the v2 example drops unitCode (MTR); we keep it as metadata unitCode"
           for a in ("alertLevel", "currentLevel", "dangerLevel", "measuredDistance", "referenceLevel")},
    },
    "InverterDevice": {
        "/location/value/coordinates": "LD example Point has nested coordinates [[lat, lon]] (invalid GeoJSON)",
        "/nominalAmpereAC ": "attribute name ends in a space: Orion refuses it (entity refused, see test below)",
        "/nominalAmpereDC ": "attribute name ends in a space: Orion refuses it (entity refused, see test below)",
        "/powerFactorAC/type": "LD example value 1, v2 example true",
        "/powerFactorAC/value": "LD example value 1, v2 example true",
    },
    "OffStreetParking": {
        "/address/value/streetAddress": "v2 example 'Tomás', LD example 'Tomas'",
        "/address/value/type": "LD example address carries type PostalAddress, v2 does not",
        "/dateModified": "only the v2 example has dateModified",
        "/parkingSiteId": "only the LD example has parkingSiteId",
    },
    "ParkingGroup": {
        "/availableSpotNumber/metadata/timestamp/value": "v2 example timestamp has no time zone, LD observedAt has Z",
        "/category/value": "LD example 'onstreet', v2 example 'onStreet'",
        "/permitActiveHours/type": "LD example value 'null', v2 example {'Monday': 'null'}",
        "/permitActiveHours/value": "LD example value 'null', v2 example {'Monday': 'null'}",
        "/requiredPermit/type": "LD example a string, v2 example a list",
        "/requiredPermit/value": "LD example a string, v2 example a list",
    },
    "ParkingSpot": {
        "/status/metadata/timestamp/value": "v2 example timestamp has no time zone, LD observedAt has Z",
    },
    "PhotovoltaicDevice": {
        "/panelNbModules/type": "LD example value 1, v2 example true",
        "/panelNbModules/value": "LD example value 1, v2 example true",
    },
    "PhotovoltaicMeasurement": {
        "/refPhotovoltaicDevice": "LD example spells the member 'Object' (not 'object'): no target to convert",
    },
    "SolarEnergy": {
        "/location/value/coordinates": "LD example Point has nested coordinates [[lon, lat]] (invalid GeoJSON)",
    },
    "ThreePhaseAcMeasurement": {
        "/activePower/metadata": "v2 example has metadata the LD activePower lacks",
        "/current/metadata/measurementInterval": "v2 example has metadata the LD current lacks",
        "/current/metadata/measurementType": "v2 example has metadata the LD current lacks",
        **{f"/{a}/metadata/{m}/type": "v2 example metadata without type (Orion defaults it to the same)"
           for a in ("apparentPower", "displacementPowerFactor", "frequency", "phaseToPhaseVoltage", "phaseVoltage",
                     "powerFactor", "reactivePower", "thdCurrent", "thdVoltage", "totalActivePower",
                     "totalApparentPower", "totalReactivePower")
           for m in ("measurementInterval", "measurementType")},
        "/displacementPowerFactor/metadata/onlyPositive/type": "v2 example metadata without type",
        "/powerFactor/metadata/onlyPositive/type": "v2 example metadata without type",
    },
    "WaterObserved": {
        "/dateObserved/type": "LD example models dateObserved as a Relationship (to a date); a relationship is Text",
        "/id": "LD example id 'urn:ngsi:...' (not urn:ngsi-ld:), v2 example 'WaterObserved:MNCA-001'",
        "/refDevice/value": "LD example target 'uri:ngsi:Device:...' is no urn:ngsi-ld: id",
        "/waterDischarge": "only the v2 example has waterDischarge",
        "/waterLevel": "only the v2 example has waterLevel",
    },
    "WeatherObserved": {
        "/precipitation/value": "LD example 0, v2 example 0.1",
        "/relativeHumidity/value": "LD example 1, v2 example 0.15",
    },
}

# ids="urn" keeps every id as it is; eight models' v2 examples use the id without
# urn:ngsi-ld:<Type>: (as ids="local" produces), so id and reference targets differ there.
URN_MODE_DIFFERENCES: dict[str, dict[str, str]] = {
    "Alert": {"/id": "v2 example uses the local id"},
    "Device": {"/id": "v2 example uses the local id", "/refDeviceModel/value": "v2 example uses the local id",
               "/controlledAsset/value": "v2 example uses the local id"},
    "OffStreetParking": {"/id": "v2 example uses the local id"},
    "ParkingGroup": {"/id": "v2 example uses the local id", "/refParkingSite/value": "v2 example uses the local id"},
    "ParkingSpot": {"/id": "v2 example uses the local id", "/refParkingSite/value": "v2 example uses the local id"},
    "ThreePhaseAcMeasurement": {"/id": "v2 example uses the local id", "/refDevice/value": "v2 example uses the local id"},
    "WeatherObserved": {"/id": "v2 example id 'Valladolid.2016-11-30T07-00-00.00Z' is another id altogether",
                        "/refDevice/value": "v2 example uses the local id"},
}
# ids="local": the other models' v2 examples keep the URN.
LOCAL_MODE_DIFFERENCES: dict[str, dict[str, str]] = {
    "DeviceMeasurement": {"/id": "v2 example keeps the URN id"},
    "FloodMonitoring": {"/id": "v2 example keeps the URN id"},
    "InverterDevice": {"/id": "v2 example keeps the URN id"},
    "PhotovoltaicDevice": {"/id": "v2 example keeps the URN id"},
    "SolarEnergy": {"/id": "v2 example keeps the URN id", "/dataDescriptor/value": "v2 example keeps the URN"},
    "WeatherObserved": {"/id": "v2 example id 'Valladolid.2016-11-30T07-00-00.00Z' is another id altogether"},
}


def field_differences(ours, theirs, path: str = "") -> set[str]:
    if isinstance(ours, dict) and isinstance(theirs, dict):
        out: set[str] = set()
        for key in set(ours) | set(theirs):
            if key not in ours or key not in theirs:
                out.add(f"{path}/{key}")
            else:
                out |= field_differences(ours[key], theirs[key], f"{path}/{key}")
        return out
    if ours != theirs or type(ours) is not type(theirs):
        return {path}
    return set()


def load(model: str) -> tuple[dict, dict]:
    examples = SCHEMAS / model / "examples"
    ld = json.loads((examples / "example-normalized.jsonld").read_text(encoding="utf-8"))
    v2 = json.loads((examples / "example-normalized.json").read_text(encoding="utf-8"))
    return ld, v2


def test_every_model_has_both_examples():
    assert len(MODELS) == 14
    assert set(SOURCE_DIFFERENCES) <= set(MODELS)


SHARED_MODELS = Path(__file__).resolve().parents[3] / "shared" / "smart-data-models"


@pytest.mark.skipif(not SHARED_MODELS.is_dir(), reason="../shared/smart-data-models is not beside the checkout")
def test_the_converted_examples_are_every_example_of_the_shared_models():
    """The issue names ../shared/smart-data-models: every model there is converted above, from
    byte-identical copies of its two normalized examples (schemas/ vendors them)."""
    shared = sorted(p.parent.parent.name for p in SHARED_MODELS.glob("*/examples/example-normalized.json"))
    assert shared == MODELS
    for model in shared:
        for name in ("example-normalized.json", "example-normalized.jsonld"):
            assert (SHARED_MODELS / model / "examples" / name).read_bytes() == \
                (SCHEMAS / model / "examples" / name).read_bytes(), f"{model}/{name} differs from the shared copy"


@pytest.mark.parametrize("ids,mode_differences", [("urn", URN_MODE_DIFFERENCES), ("local", LOCAL_MODE_DIFFERENCES)])
@pytest.mark.parametrize("model", MODELS)
def test_example_converts_to_the_models_own_v2_example(model: str, ids: str, mode_differences):
    ld, v2 = load(model)
    conversion = to_ngsi_v2(ld, ids=ids)
    expected = {**SOURCE_DIFFERENCES.get(model, {}), **mode_differences.get(model, {})}
    found = field_differences(conversion.entity, v2)
    assert found - set(expected) == set(), f"{model}: unexplained differences"
    assert set(expected) - found == set(), f"{model}: listed exceptions that no longer differ"


@pytest.mark.parametrize("model", MODELS)
def test_every_field_outside_the_exceptions_is_equal(model: str):
    """The other direction of the same check: count what matched, so an empty conversion fails."""
    ld, v2 = load(model)
    ours = to_ngsi_v2(ld, ids="urn").entity
    listed = {p.split("/")[1] for p in SOURCE_DIFFERENCES.get(model, {})} | {
        p.split("/")[1] for p in URN_MODE_DIFFERENCES.get(model, {})}
    same = [k for k in v2 if k not in listed]
    assert same, model
    for key in same:
        assert ours[key] == v2[key], (model, key)


def test_inverter_example_is_refused_for_its_attribute_names():
    ld, _ = load("InverterDevice")
    conversion = to_ngsi_v2(ld)
    assert not conversion.ok
    assert any("'nominalAmpereAC '" in p for p in conversion.problems)


def test_rule_table_on_stadtlink_shapes():
    entity = {
        "id": "urn:ngsi-ld:ParkingSpot:wolfsburg:spot-001",
        "type": "ParkingSpot",
        "status": {"type": "Property", "value": "occupied", "observedAt": "2026-11-29T10:00:00.000Z"},
        "temperature": {"type": "Property", "value": 21.5, "unitCode": "CEL", "observedAt": "2026-11-29T10:00:00.000Z"},
        "dateObserved": {"type": "Property", "value": {"@type": "DateTime", "@value": "2026-11-29T10:00:00.000Z"}},
        "location": {"type": "GeoProperty", "value": {"type": "Point", "coordinates": [10.78, 52.42]}},
        "refParkingSite": {"type": "Relationship", "object": "urn:ngsi-ld:OffStreetParking:wolfsburg:pr-nord"},
        "refDevice": {"type": "Relationship", "object": ["urn:ngsi-ld:Device:wolfsburg:a"]},
        "enabled": {"type": "Property", "value": False},
        "name": {"type": "LanguageProperty", "languageMap": {"de": "Nord", "en": "North"}},
        "multi": [{"type": "Property", "value": 1}, {"type": "Property", "value": 2, "datasetId": "urn:x:2"}],
        "@context": "https://example.org/ctx.jsonld",
        "createdAt": "2026-01-01T00:00:00Z",
    }
    c = to_ngsi_v2(entity)
    assert c.ok, c.problems
    e = c.entity
    assert e["id"] == entity["id"] and e["type"] == "ParkingSpot"
    assert e["status"] == {"type": "Text", "value": "occupied",
                           "metadata": {"timestamp": {"type": "DateTime", "value": "2026-11-29T10:00:00.000Z"}}}
    assert e["temperature"]["metadata"]["unitCode"] == {"type": "Text", "value": "CEL"}
    assert e["dateObserved"] == {"type": "DateTime", "value": "2026-11-29T10:00:00.000Z"}
    assert e["location"]["type"] == "geo:json"
    assert e["refParkingSite"] == {"type": "Text", "value": "urn:ngsi-ld:OffStreetParking:wolfsburg:pr-nord"}
    assert e["refDevice"] == {"type": "StructuredValue", "value": ["urn:ngsi-ld:Device:wolfsburg:a"]}
    assert e["enabled"] == {"type": "Boolean", "value": False}
    assert e["name"] == {"type": "StructuredValue", "value": {"de": "Nord", "en": "North"}}
    assert e["multi"] == {"type": "Number", "value": 1}
    assert any("datasetId" in n for n in c.notes)
    assert "@context" not in e and "createdAt" not in e
    local = to_ngsi_v2(entity, ids="local").entity
    assert local["id"] == "wolfsburg:spot-001"
    assert local["refParkingSite"]["value"] == "wolfsburg:pr-nord"


def test_second_geo_attribute_gets_ignore_type():
    entity = {"id": "urn:ngsi-ld:Alert:x:1", "type": "Alert",
              "location": {"type": "GeoProperty", "value": {"type": "Point", "coordinates": [1, 2]}},
              "area": {"type": "GeoProperty", "value": {"type": "Polygon", "coordinates": [[[0, 0], [1, 0], [1, 1], [0, 0]]]}}}
    e = to_ngsi_v2(entity).entity
    assert "metadata" not in e["location"]
    assert e["area"]["metadata"]["ignoreType"] == {"type": "Boolean", "value": True}


def test_forbidden_characters_percent_encoded_in_free_text():
    assert free_text_attribute("ParkingSpot", "description")
    entity = {"id": "urn:ngsi-ld:ParkingSpot:x:1", "type": "ParkingSpot",
              "description": {"type": "Property", "value": "P+R (Nord); \"Ost\" <50% belegt>"}}
    c = to_ngsi_v2(entity)
    assert c.ok
    assert c.entity["description"]["value"] == "P+R %28Nord%29%3B %22Ost%22 %3C50%25 belegt%3E"
    from urllib.parse import unquote

    assert unquote(c.entity["description"]["value"]) == entity["description"]["value"]
    assert any("percent-encoded" in n for n in c.notes)


def test_forbidden_characters_in_a_constrained_attribute_refuse_the_entity():
    # ParkingSpot.status is an enum: replacing characters would change its meaning.
    assert not free_text_attribute("ParkingSpot", "status")
    entity = {"id": "urn:ngsi-ld:ParkingSpot:x:1", "type": "ParkingSpot",
              "status": {"type": "Property", "value": "free;occupied"}}
    c = to_ngsi_v2(entity)
    assert not c.ok
    assert "'status'" in c.problems[0] and "forbids" in c.problems[0]
    # an attribute the model does not know is not replaced either
    other = {"id": "urn:ngsi-ld:ParkingSpot:x:1", "type": "ParkingSpot",
             "vendorNote": {"type": "Property", "value": "a=b"}}
    assert not to_ngsi_v2(other).ok


@pytest.mark.parametrize("text,bad", [
    ("urn:ngsi-ld:Device:a:b", False), ("a b", True), ("a/b", True), ("a#b", True), ("a?b", True), ("a&b", True),
    ("ä", True), ("x" * 256, False), ("x" * 257, True), ("", True), ("a(b", True),
])
def test_identifier_rules(text, bad):
    assert (identifier_problem(text, "id") is not None) is bad


def test_entity_id_with_slash_is_refused():
    c = to_ngsi_v2({"id": "urn:ngsi-ld:Device:town:a/b", "type": "Device"})
    assert not c.ok and "entity id" in c.problems[0]


def test_percent_encode_leaves_clean_text_alone():
    assert percent_encode("50%") == "50%"
    assert percent_encode({"a": ["x=1"]}) == {"a": ["x%3D1"]}


def test_round_trip_back_to_ngsi_ld_for_notifications():
    ld, _ = load("ParkingSpot")
    v2 = to_ngsi_v2(ld).entity
    back = from_ngsi_v2(v2)
    assert back["id"] == ld["id"]
    assert back["location"] == ld["location"]
    assert back["refParkingSite"] == ld["refParkingSite"]
    assert back["status"]["value"] == "free"
    assert back["status"]["observedAt"] == ld["status"]["observedAt"]
    assert back["status"]["parkingPermit"] == {"type": "Property", "value": "yes"}
    assert back["category"] == ld["category"]

"""Typed entity models: URI ids, null refused, GeoJSON [longitude, latitude] ranges."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from stadtlink.broker_client import Entity, GeoProperty, Property, Relationship, validate_entity
from stadtlink.broker_client.models import ValidationError, is_uri

WEATHER = {
    "id": "urn:ngsi-ld:WeatherObserved:klima:dl-atm41-0042",
    "type": "WeatherObserved",
    "temperature": {"type": "Property", "value": 21.4, "unitCode": "CEL", "observedAt": "2024-05-01T12:00:00.000Z"},
    "relativeHumidity": {"type": "Property", "value": 0.48, "unitCode": "P1", "observedAt": "2024-05-01T12:00:00Z",
                         "accuracy": {"type": "Property", "value": 0.02}},
    "location": {"type": "GeoProperty", "value": {"type": "Point", "coordinates": [8.6821, 49.4077]}},
    "refDevice": {"type": "Relationship", "object": "urn:ngsi-ld:Device:klima:dl-atm41-0042"},
}


def error_text(data) -> str:
    with pytest.raises(ValidationError) as info:
        validate_entity(data)
    return str(info.value)


def test_valid_entity_round_trips_to_plain_dict():
    model = validate_entity(WEATHER)
    assert isinstance(model, Entity)
    assert isinstance(model.attributes["temperature"], Property)
    assert isinstance(model.attributes["location"], GeoProperty)
    assert isinstance(model.attributes["refDevice"], Relationship)
    assert model.to_dict() == WEATHER


def test_multi_instance_attribute_with_dataset_ids():
    data = dict(WEATHER, temperature=[
        {"type": "Property", "value": 21.4, "datasetId": "urn:ngsi-ld:dataset:air"},
        {"type": "Property", "value": 14.0, "datasetId": "urn:ngsi-ld:dataset:ground"},
    ])
    assert validate_entity(data).to_dict() == data
    assert "datasetId must be a URI" in error_text(dict(WEATHER, temperature={"type": "Property", "value": 1, "datasetId": "air"}))


@pytest.mark.parametrize("bad_id", ["dl-atm41-0042", "", "urn:has space", "42:x", ":nothing"])
def test_non_uri_id_refused(bad_id):
    assert "entity id must be a URI" in error_text(dict(WEATHER, id=bad_id))


def test_uri_forms_accepted():
    for good in ["urn:ngsi-ld:ParkingSpot:a:b:c", "http://a.b.c/entity/E1", "https://x.org/e?1", "urn:x:1"]:
        assert is_uri(good)
        validate_entity(dict(WEATHER, id=good))


@pytest.mark.parametrize(
    "attr",
    [
        None,
        {"type": "Property", "value": None},
        {"type": "Property", "value": {"min": 1, "max": None}},
        {"type": "Relationship", "object": None},
        {"type": "GeoProperty", "value": None},
    ],
)
def test_null_values_refused_with_clear_message(attr):
    text = error_text(dict(WEATHER, temperature=attr))
    assert "null" in text and "'temperature'" in text


@pytest.mark.parametrize(
    "geometry,fragment",
    [
        ({"type": "Point", "coordinates": [49.4, 181.0]}, "latitude 181.0 outside -90..90"),
        ({"type": "Point", "coordinates": [190.0, 49.4]}, "longitude 190.0 outside -180..180"),
        ({"type": "Point", "coordinates": [8.6]}, "a position is [longitude, latitude]"),
        ({"type": "Point", "coordinates": ["8.6", "49.4"]}, "must be numbers"),
        ({"type": "LineString", "coordinates": [[8.6, 49.4]]}, "at least two positions"),
        ({"type": "Polygon", "coordinates": [[[8.6, 49.4], [8.7, 49.4], [8.7, 49.5], [8.6, 49.5]]]}, "closed"),
        ({"type": "Polygon", "coordinates": [[[8.6, 49.4], [8.7, 99.4], [8.7, 49.5], [8.6, 49.4]]]}, "latitude 99.4"),
        ({"type": "Circle", "coordinates": [8.6, 49.4]}, "Point"),
    ],
)
def test_geojson_checked(geometry, fragment):
    text = error_text(dict(WEATHER, location={"type": "GeoProperty", "value": geometry}))
    assert fragment in text


@given(lon=st.floats(-180, 180), lat=st.floats(-90, 90))
def test_any_in_range_point_is_accepted(lon, lat):
    validate_entity(dict(WEATHER, location={"type": "GeoProperty", "value": {"type": "Point", "coordinates": [lon, lat]}}))


@given(lat=st.floats(min_value=90.0001, max_value=1e6) | st.floats(min_value=-1e6, max_value=-90.0001))
def test_any_out_of_range_latitude_is_refused(lat):
    with pytest.raises(ValidationError):
        validate_entity(dict(WEATHER, location={"type": "GeoProperty", "value": {"type": "Point", "coordinates": [8.0, lat]}}))


@pytest.mark.parametrize(
    "attr,fragment",
    [
        ({"type": "Property"}, "needs a 'value'"),
        ({"type": "Attribute", "value": 1}, "type must be Property, Relationship or GeoProperty"),
        (21.4, "normalized form"),
        ({"type": "Property", "value": 1, "observedAt": "yesterday"}, "ISO 8601"),
        ({"type": "Property", "value": 1, "observedAt": "2024-05-01T12:00:00"}, "time zone"),
        ({"type": "Relationship", "object": "device-7"}, "Relationship object must be a URI"),
        ({"type": "Property", "value": 1, "sub": {"type": "Property", "value": None}}, "null"),
    ],
)
def test_attribute_errors(attr, fragment):
    assert fragment in error_text(dict(WEATHER, temperature=attr))


def test_context_in_body_refused():
    assert "@context" in error_text(dict(WEATHER, **{"@context": "https://x/ctx.jsonld"}))


def test_missing_type_refused():
    data = dict(WEATHER)
    del data["type"]
    assert "type" in error_text(data)

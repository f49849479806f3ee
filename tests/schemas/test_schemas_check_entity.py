"""check_entity: structure → keyValues reduction → JSON Schema, every problem with its path."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from stadtlink.schemas import (
    InvalidEntity,
    Problem,
    assert_valid,
    check_entity,
    check_key_values,
    known_models,
    to_key_values,
)

from sdm_entities import BUILDERS, prop, rel


def only(problems: list[Problem]) -> Problem:
    assert len(problems) == 1, [str(p) for p in problems]
    return problems[0]


# -- valid entities -------------------------------------------------------------------------

@pytest.mark.parametrize("model", sorted(BUILDERS))
def test_hand_built_normalized_entity_is_valid(build, model):
    entity = build(model)
    assert check_entity(entity) == []
    assert check_entity(entity, model=model) == []
    assert_valid(entity)  # does not raise
    assert any(isinstance(a, dict) and "observedAt" in a for a in entity.values())


def test_reduction_to_key_values(build):
    entity = build("WeatherObserved")
    entity["temperature"] = [  # multi-attribute: the default instance (no datasetId) wins
        {"type": "Property", "value": 11.0, "datasetId": "urn:ngsi-ld:Dataset:10min-min"},
        prop(12.7, "CEL"),
    ]
    entity["stationName"] = {"type": "LanguageProperty", "languageMap": {"de": "Mannheim Süd", "en": "Mannheim South"}}
    entity["districts"] = {"type": "ListProperty", "valueList": ["Mannheim", "Rhein-Neckar"]}
    entity["relativeHumidity"]["providedBy"] = rel("urn:ngsi-ld:Device:mannheim:helix-01")
    kv = to_key_values(entity)
    assert kv["id"] == entity["id"] and kv["type"] == "WeatherObserved"
    assert kv["dateObserved"] == "2025-02-07T19:05:34.176Z"
    assert kv["location"] == {"type": "Point", "coordinates": [8.466, 49.4875]}
    assert kv["relativeHumidity"] == 0.568
    assert kv["temperature"] == 12.7
    assert kv["refDevice"] == "urn:ngsi-ld:Device:mannheim:helix-01"
    assert kv["stationName"] == {"de": "Mannheim Süd", "en": "Mannheim South"}
    assert kv["districts"] == ["Mannheim", "Rhein-Neckar"]
    assert kv["@context"] == entity["@context"]
    assert check_entity(entity) == []


def test_key_values_check_matches_normalized_check(build):
    for model in BUILDERS:
        kv = to_key_values(build(model))
        assert check_key_values(kv) == [], model
        assert check_key_values(kv, model) == [], model


# -- known-bad values: rejected with a clear message naming the path -------------------------

def test_relative_humidity_in_percent(build):
    entity = build("WeatherObserved")
    entity["relativeHumidity"]["value"] = 52.4
    problem = only(check_entity(entity))
    assert problem == Problem("$.relativeHumidity", "52.4 is greater than the maximum of 1", "schema")


def test_occupancy_in_percent(build):
    entity = build("OffStreetParking")
    entity["occupancy"]["value"] = 26.43
    problem = only(check_entity(entity))
    assert (problem.path, problem.stage) == ("$.occupancy", "schema")
    assert "26.43" in problem.message and "maximum of 1" in problem.message


def test_date_observed_without_offset_as_datetime_value(build):
    entity = build("WeatherObserved")
    entity["dateObserved"]["value"]["@value"] = "2019-06-06T12:06:06"
    problem = only(check_entity(entity))  # no second "required attribute missing" report
    assert (problem.path, problem.stage) == ("$.dateObserved", "structure")
    assert "2019-06-06T12:06:06" in problem.message and "offset" in problem.message


def test_date_observed_without_offset_as_plain_string(build):
    entity = build("WaterObserved")
    entity["dateObserved"] = prop("2019-06-06T12:06:06", observed_at=None)
    problem = only(check_entity(entity))
    assert (problem.path, problem.stage) == ("$.dateObserved", "schema")
    assert "'2019-06-06T12:06:06' is not an RFC 3339 date-time with offset" in problem.message


def test_null_value_refused(build):
    entity = build("WeatherObserved")
    entity["temperature"]["value"] = None
    problem = only(check_entity(entity))
    assert (problem.path, problem.stage) == ("$.temperature", "structure")
    assert "null" in problem.message and "omit the attribute" in problem.message


def test_negative_water_level(build):
    entity = build("WaterObserved")
    entity["waterLevel"]["value"] = -0.2
    problem = only(check_entity(entity))
    assert problem == Problem("$.waterLevel", "-0.2 is less than the minimum of 0", "schema")


def test_total_spot_number_zero(build):
    entity = build("OffStreetParking")
    entity["totalSpotNumber"]["value"] = 0
    problem = only(check_entity(entity))
    assert problem == Problem("$.totalSpotNumber", "0 is less than the minimum of 1", "schema")


def test_parking_spot_status_vacant(build):
    entity = build("ParkingSpot")
    entity["status"]["value"] = "vacant"
    problem = only(check_entity(entity))
    assert (problem.path, problem.stage) == ("$.status", "schema")
    assert problem.message.startswith("'vacant' is not one of the allowed values:")
    for allowed in ("'closed'", "'free'", "'occupied'", "'unknown'"):
        assert allowed in problem.message


def test_pv_temperature_below_zero(build):
    entity = build("PhotovoltaicMeasurement")
    entity["temperature"]["value"] = -3
    assert only(check_entity(entity)) == Problem("$.temperature", "-3 is less than the minimum of 0", "schema")


def test_latitude_out_of_range(build):
    entity = build("WeatherObserved")
    entity["location"]["value"]["coordinates"] = [8.466, 149.4875]
    problem = only(check_entity(entity))  # location not also reported as missing
    assert (problem.path, problem.stage) == ("$.location.coordinates[1]", "structure")
    assert "latitude 149.4875 is outside [-90, 90]" in problem.message


def test_longitude_out_of_range(build):
    entity = build("ParkingSpot")
    entity["location"]["value"]["coordinates"] = [190.0, 52.42]
    problem = only(check_entity(entity))
    assert problem.path == "$.location.coordinates[0]"
    assert "longitude 190.0 is outside [-180, 180]" in problem.message


def test_swapped_coordinates_detected_when_latitude_leaves_its_range(build):
    # a site at 151.2 E / 33.9 S written as [lat, lon]; pairs with both values within ±90
    # (all of Germany) cannot be told apart from valid ones
    entity = build("Device")
    entity["location"]["value"]["coordinates"] = [-33.87, 151.21]
    problem = only(check_entity(entity))
    assert problem.path == "$.location.coordinates[1]"
    assert "[longitude, latitude]" in problem.message and "swapped" in problem.message


def test_non_uri_id(build):
    entity = build("ParkingSpot")
    entity["id"] = "ParkingSpot-1"
    problem = only(check_entity(entity))
    assert (problem.path, problem.stage) == ("$.id", "structure")
    assert "'ParkingSpot-1' is not a URI" in problem.message and "urn:ngsi-ld:" in problem.message


def test_relationship_without_object(build):
    entity = build("ParkingSpot")
    del entity["refParkingSite"]["object"]
    problem = only(check_entity(entity))  # required refParkingSite not reported a second time
    assert problem == Problem("$.refParkingSite", "Relationship has no 'object'", "structure")


def test_relationship_with_value_instead_of_object(build):
    entity = build("ParkingSpot")
    entity["refParkingSite"] = {"type": "Relationship", "value": "urn:ngsi-ld:OnStreetParking:x:1"}
    paths = {p.path: p.message for p in check_entity(entity)}
    assert set(paths) == {"$.refParkingSite", "$.refParkingSite.value"}
    assert "its content goes in 'object'" in paths["$.refParkingSite.value"]


def test_relationship_object_must_be_uri(build):
    entity = build("ParkingSpot")
    entity["refDevice"]["object"] = ["urn:ngsi-ld:Device:x:1", "tps110 0002"]
    problem = only(check_entity(entity))
    assert problem.path == "$.refDevice[1]" and "'tps110 0002' is not a URI" in problem.message


# -- structural details -----------------------------------------------------------------------

def test_observed_at_and_unit_code_checked(build):
    entity = build("WeatherObserved")
    entity["temperature"]["observedAt"] = "2025-02-07T19:05:34"
    entity["windSpeed"]["unitCode"] = 6
    problems = check_entity(entity)
    assert [(p.path, p.stage) for p in problems] == [
        ("$.temperature.observedAt", "structure"),
        ("$.windSpeed.unitCode", "structure"),
    ]
    assert "offset" in problems[0].message and "UN/CEFACT" in problems[1].message


def test_key_values_entity_given_to_check_entity(build):
    kv = to_key_values(build("WeatherObserved"))
    problems = check_entity(kv)
    assert {p.path for p in problems} >= {"$.temperature", "$.location", "$.dateObserved"}
    assert all(p.stage == "structure" for p in problems)
    assert "use check_key_values" in problems[0].message


def test_unknown_attribute_type_and_missing_type(build):
    entity = build("Device")
    entity["rssi"] = {"type": "Number", "value": -97}
    entity["batteryLevel"] = {"value": 0.9}
    problems = {p.path: p.message for p in check_entity(entity)}
    assert set(problems) == {"$.rssi", "$.batteryLevel"}
    assert "'Number' is not one of Property, GeoProperty, Relationship" in problems["$.rssi"]
    assert "no 'type'" in problems["$.batteryLevel"]


def test_attribute_names_brokers_refuse(build):
    entity = build("Device")
    entity["battery level"] = prop(0.9, "C62")
    entity["rssi(dBm)"] = prop(-97)
    problems = check_entity(entity)
    assert [p.path for p in problems] == ['$["battery level"]', '$["rssi(dBm)"]']
    assert all("character brokers refuse" in p.message for p in problems)


def test_location_must_be_geo_property(build):
    entity = build("ParkingSpot")
    entity["location"]["type"] = "Property"
    problem = only(check_entity(entity))
    assert problem.path == "$.location" and "GeoProperty" in problem.message


def test_geo_property_value_must_be_geojson(build):
    entity = build("WaterObserved")
    entity["location"]["value"] = "POINT(9.92 49.79)"
    problem = only(check_entity(entity))
    assert problem.path == "$.location" and "GeoJSON" in problem.message
    entity["location"]["value"] = {"type": "Circle", "coordinates": [9.9, 49.8]}
    problem = only(check_entity(entity))
    assert problem.path == "$.location.type" and "'Circle'" in problem.message


def test_polygon_location(build):
    entity = build("OffStreetParking")
    ring = [[6.06, 50.77], [6.07, 50.77], [6.07, 50.78], [6.06, 50.77]]
    entity["location"]["value"] = {"type": "Polygon", "coordinates": [ring]}
    assert check_entity(entity) == []
    entity["location"]["value"]["coordinates"] = [ring[:-1] + [[6.06, 50.78]]]
    problem = only(check_entity(entity))
    assert problem.path == "$.location.coordinates[0]" and "closed ring" in problem.message


def test_nested_property_of_property_is_checked(build):
    entity = build("ParkingSpot")
    entity["status"]["parkingPermit"] = {"type": "Property", "value": None}
    problem = only(check_entity(entity))
    assert problem.path == "$.status.parkingPermit" and "null" in problem.message


def test_missing_required_attribute(build):
    entity = build("WeatherObserved")
    del entity["location"]
    assert only(check_entity(entity)) == Problem("$.location", "required attribute 'location' is missing", "schema")


def test_several_problems_are_all_reported(build):
    entity = build("WeatherObserved")
    entity["relativeHumidity"]["value"] = 52.4
    entity["windDirection"]["value"] = "SW"
    entity["precipitation"]["value"] = None
    entity["id"] = "station 7"
    paths = sorted(p.path for p in check_entity(entity))
    assert paths == ["$.id", "$.precipitation", "$.relativeHumidity", "$.windDirection"]


def test_wrong_type_for_forced_model(build):
    entity = build("WeatherObserved")
    problems = check_entity(entity, model="WaterObserved")
    assert [p.path for p in problems] == ["$.type"]
    assert "'WeatherObserved'" in problems[0].message


def test_unknown_type_is_one_problem(build):
    entity = build("Device")
    entity["type"] = "Streetlight"
    problem = only(check_entity(entity))
    assert problem.path == "$.type" and "unknown model 'Streetlight'" in problem.message
    assert "WeatherObserved" in problem.message
    assert only(check_key_values({"id": "x", "type": "Streetlight"})).path == "$.type"


def test_missing_id_and_type():
    problems = check_entity({"temperature": prop(12.0, "CEL")})
    assert [(p.path, p.stage) for p in problems] == [("$.id", "structure"), ("$.type", "structure")]


@pytest.mark.parametrize("garbage", [None, 42, "urn:ngsi-ld:X:1", [], [{"id": "urn:x:1"}], 3.5])
def test_non_object_entity(garbage):
    problem = only(check_entity(garbage))
    assert problem.path == "$" and "JSON object" in problem.message


def test_assert_valid_raises_readable_error(build):
    entity = build("WaterObserved")
    entity["waterLevel"]["value"] = -0.2
    entity["flow"]["value"] = None
    with pytest.raises(InvalidEntity) as info:
        assert_valid(entity)
    err = info.value
    assert err.entity_id == "urn:ngsi-ld:WaterObserved:pegelonline:24300600"
    assert [p.path for p in err.problems] == ["$.flow", "$.waterLevel"]
    text = str(err)
    assert text.splitlines()[0] == "urn:ngsi-ld:WaterObserved:pegelonline:24300600 is invalid (2 problem(s)):"
    assert "$.waterLevel: -0.2 is less than the minimum of 0 [schema]" in text


def test_anyof_failures_explain_the_closest_alternative(build):
    entity = build("Device")
    entity["batteryLevel"]["value"] = 1.5
    problem = only(check_entity(entity))
    assert problem.path == "$.batteryLevel"
    assert "none of the allowed alternatives" in problem.message and "maximum of 1" in problem.message


def test_known_models_is_a_fresh_sorted_list():
    models = known_models()
    assert models == sorted(models) and "ParkingSpot" in models
    models.clear()
    assert known_models()


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(max_size=12),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=20,
)
attribute_like = st.fixed_dictionaries(
    {"type": st.sampled_from(["Property", "GeoProperty", "Relationship", "LanguageProperty",
                              "ListProperty", "Nonsense"])},
    optional={"value": json_values, "object": json_values, "languageMap": json_values,
              "observedAt": json_values, "unitCode": json_values, "valueList": json_values},
)


@settings(max_examples=300, deadline=None)
@given(
    entity=st.dictionaries(
        st.sampled_from(["id", "type", "location", "temperature", "refDevice", "dateObserved", "@context"]),
        json_values | attribute_like,
        max_size=7,
    )
)
def test_never_raises_on_arbitrary_input(entity):
    problems = check_entity(entity)
    assert isinstance(problems, list)
    assert all(isinstance(p, Problem) and p.path.startswith("$") and p.message for p in problems)
    assert all("could not be checked" not in p.message for p in problems)

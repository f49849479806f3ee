"""The SensorThings sink against FROST-Server's answers, where they differ from
django-ogc-sensorthings (a FROST-shaped service from frost_fake.py; sources in its docstring and in
docs/backends/sensorthings.md)."""

from __future__ import annotations

import pytest

from stadtlink.broker_client.client import Response
from stadtlink.broker_client.sensorthings import SensorThingsBackend
from stadtlink.broker_client.sensorthings.backend import entity_path, problem_from

from .frost_fake import start_fake_frost
from .helpers import later, parking_spot, three_phase, weather


@pytest.fixture
async def frost():
    fake, runner = await start_fake_frost()
    yield fake
    await runner.cleanup()


@pytest.fixture
async def frost_without_data_array():
    fake, runner = await start_fake_frost(data_array=False)
    yield fake
    await runner.cleanup()


def count(fake, collection: str) -> int:
    return len(fake.store[collection])


async def test_graph_with_integer_ids_and_one_history_entry(frost):
    entity = weather("town")
    async with SensorThingsBackend(frost.url) as backend:
        assert await backend.data_array() is True            # FROST's "…/req/data-array/data-array"
        assert (await backend.write([entity])).ok
        assert (await backend.write([entity])).ok            # repeat: nothing new
    assert count(frost, "Things") == 1 and count(frost, "Datastreams") == 3 and count(frost, "Observations") == 3
    thing = next(iter(frost.store["Things"].values()))
    assert isinstance(thing["@iot.id"], int) and thing["name"] == entity["id"]
    # FROST records the HistoricalLocation itself on the deep insert: the writer adds none
    assert count(frost, "HistoricalLocations") == 1
    assert frost.requests["POST /HistoricalLocations"] == 0
    assert frost.requests["POST /CreateObservations"] == 1
    assert entity_path("Things", 7) == "/Things(7)"


async def test_codes_are_stored(frost):
    """FROST keeps results of any type: the ParkingSpot status django refuses is written."""
    spot = parking_spot("town")
    async with SensorThingsBackend(frost.url) as backend:
        assert (await backend.write([spot])).ok
    assert [o["result"] for o in frost.observations(spot["id"], "status")] == ["occupied"]


async def test_a_move_gets_the_servers_history_entry_and_unlinks_the_old_location(frost):
    async with SensorThingsBackend(frost.url) as backend:
        assert (await backend.write([weather("town", "m")])).ok
        assert (await backend.write([weather("town", "m", at=later(5), lon=11.0, lat=52.0)])).ok
    thing = next(iter(frost.store["Things"].values()))
    history = frost.related("Things", thing["@iot.id"], "HistoricalLocations")
    assert len(history) == 2                              # one per position, none doubled
    assert frost.requests["POST /HistoricalLocations"] == 0
    linked = frost.related("Things", thing["@iot.id"], "Locations")
    assert [loc["location"]["coordinates"] for loc in linked] == [[11.0, 52.0]]


async def test_row_errors_are_per_row_no_bisection(frost):
    """FROST answers 201 with "error <message>" for a bad row and stores the others. Here the
    bad rows point at a Datastream an operator deleted: the writer writes the rest in the same
    request, finds the Datastream gone, and sends that entity again, which creates it anew."""
    a, b = weather("town", "a"), weather("town", "b")
    async with SensorThingsBackend(frost.url) as backend:
        assert (await backend.write([a, b])).ok
        b_thing = next(t for t in frost.store["Things"].values() if t["name"] == b["id"])
        gone = next(d for d in frost.related("Things", b_thing["@iot.id"], "Datastreams") if d["name"] == "temperature")
        frost.delete("Datastreams", gone["@iot.id"])
        calls = frost.requests["POST /CreateObservations"]
        result = await backend.write([weather("town", "a", at=later(1)), weather("town", "b", at=later(1))])
        assert frost.requests["POST /CreateObservations"] == calls + 1     # no bisection on FROST
        assert result.succeeded == [a["id"]]
        (failure,) = result.failed
        assert failure.entity_id == b["id"] and failure.retryable is True
        assert failure.problem.detail == f"No such entity 'Datastream' with id [{gone['@iot.id']}]"
        # the other rows of b (humidity, pressure) were written in the same request
        assert len(frost.observations(b["id"], "relativeHumidity")) == 2
        retry = await backend.write([weather("town", "b", at=later(1))])
        assert retry.ok, retry.failed
    assert [o["result"] for o in frost.observations(b["id"], "temperature")] == [3.5]
    assert len(frost.observations(b["id"], "relativeHumidity")) == 2     # not doubled by the retry


async def test_a_thing_without_location_gets_its_own_feature_of_interest(frost):
    """FROST cannot generate a FeatureOfInterest for a Thing without Location ("No
    FeatureOfInterest provided, and none can be generated."): the writer names one."""
    entity = three_phase("town")
    del entity["location"]
    async with SensorThingsBackend(frost.url) as backend:
        assert (await backend.write([entity])).ok
        feature = next(f for f in frost.store["FeaturesOfInterest"].values() if f["name"] == entity["id"])
        frost.delete("FeaturesOfInterest", feature["@iot.id"])       # stale cache: found again
        result = await backend.write([three_phase("town", at=later(1)) | {"location": None}])
        assert result.failed and result.failed[0].retryable
        assert "FeatureOfInterest" in result.failed[0].problem.detail
        again = three_phase("town", at=later(1))
        del again["location"]
        assert (await backend.write([again])).ok
    assert sorted(o["result"] for o in frost.observations(entity["id"], "phaseVoltage/L1")) == [231.2, 231.2]


async def test_without_the_data_array_class_observations_go_one_by_one(frost_without_data_array):
    fake = frost_without_data_array
    async with SensorThingsBackend(fake.url) as backend:
        assert await backend.data_array() is False
        assert (await backend.write([weather("town"), three_phase("town")])).ok
    assert fake.requests["POST /CreateObservations"] == 0
    assert fake.requests["POST /Observations"] == 3 + 4
    assert count(fake, "Observations") == 7


async def test_a_stale_sensor_id_is_looked_up_again(frost):
    first, second = weather("town", "s1"), weather("town", "s2")
    second["refDevice"] = first["refDevice"]              # both by the same device: one Sensor
    async with SensorThingsBackend(frost.url) as backend:
        assert (await backend.write([first])).ok
        (sensor,) = frost.store["Sensors"].values()
        frost.delete("Sensors", sensor["@iot.id"])        # an operator cleaned up
        assert (await backend.write([second])).ok
    assert [s["name"] for s in frost.store["Sensors"].values()] == [first["refDevice"]["object"]]


def test_frost_error_bodies_give_the_reason():
    body = b'{"type":"error","code":400,"message":"No such entity \'Sensor\' with id [3]"}'
    problem = problem_from(Response(400, {}, body), "create Thing")
    assert problem.detail == "No such entity 'Sensor' with id [3]" and problem.status == 400
    django = b'{"detail": [{"type": "missing", "msg": "Field required"}]}'
    assert "Field required" in problem_from(Response(422, {}, django), "x").detail
    assert problem_from(Response(503, {}, b"<html>busy</html>"), "x").type.endswith("Transient")

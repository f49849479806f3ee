"""The SensorThings sink against a real SensorThings API server (django-ogc-sensorthings on SQLite)."""

from __future__ import annotations

import asyncio

import aiohttp
import pytest

from stadtlink.adapters.core.timeutil import parse_time
from stadtlink.broker_client.errors import BrokerUnavailable
from stadtlink.broker_client.retry import RetryPolicy
from stadtlink.broker_client.sensorthings import SensorThingsBackend

from .helpers import T0, Sta, later, parking_spot, three_phase, weather

FAST = RetryPolicy(attempts=1)


async def test_first_sight_creates_the_graph(sta_server, ns):
    entity = weather(ns)
    async with SensorThingsBackend(sta_server.url) as backend:
        result = await backend.write([entity])
    assert result.succeeded == [entity["id"]] and not result.failed

    sta = Sta(sta_server.url)
    thing = await sta.thing(entity["id"])
    assert thing["properties"]["ngsiLdId"] == entity["id"]
    assert thing["properties"]["sdmType"] == "WeatherObserved"
    assert thing["properties"]["refDevice"] == entity["refDevice"]["object"]
    assert "temperature" not in thing["properties"]  # measured: a Datastream, not a property
    assert thing["description"] == "Station ws-1"

    locations = await sta.values(f"/Things('{thing['@iot.id']}')/Locations")
    assert [loc["location"] for loc in locations] == [{"type": "Point", "coordinates": [10.78, 52.42]}]
    history = await sta.values(f"/Things('{thing['@iot.id']}')/HistoricalLocations")
    assert len(history) == 1 and parse_time(history[0]["time"]) == T0.replace(microsecond=0)

    streams = await sta.datastreams(thing["@iot.id"])
    assert set(streams) == {"temperature", "relativeHumidity", "atmosphericPressure"}
    temperature = streams["temperature"]
    assert temperature["unitOfMeasurement"]["symbol"] == "Cel"
    assert temperature["observationType"].endswith("OM_Measurement")
    assert temperature["ObservedProperty"]["definition"] == "https://smartdatamodels.org/dataModel.Weather/temperature"
    assert temperature["Sensor"]["name"] == entity["refDevice"]["object"]
    assert streams["atmosphericPressure"]["unitOfMeasurement"]["symbol"] == "hPa"

    observations = await sta.observations(temperature["@iot.id"])
    assert [o["result"] for o in observations] == [3.5]
    assert parse_time(observations[0]["phenomenonTime"]) == T0.replace(microsecond=0)  # this server keeps seconds


async def test_repeats_create_nothing_new(sta_server, ns):
    sta = Sta(sta_server.url)
    entities = [weather(ns, "a"), weather(ns, "b", lon=10.7), three_phase(ns)]
    async with SensorThingsBackend(sta_server.url) as backend:
        assert (await backend.write(entities)).ok
    counts = {c: await sta.count(c) for c in ("Things", "Locations", "HistoricalLocations", "Datastreams",
                                              "Sensors", "ObservedProperties", "Observations")}

    async with SensorThingsBackend(sta_server.url) as backend:
        assert (await backend.write(entities)).ok           # same process, cached graph
        assert (await backend.write(entities)).ok
    async with SensorThingsBackend(sta_server.url) as fresh:  # another process: graph and rows read back
        assert (await fresh.write(entities)).ok
        assert fresh.stats["things_created"] == 0 and fresh.stats["observations_written"] == 0
    assert {c: await sta.count(c) for c in counts} == counts

    # a new reading: one Observation per Datastream, nothing else
    async with SensorThingsBackend(sta_server.url) as backend:
        assert (await backend.write([weather(ns, "a", at=later(5), temperature=4.0)])).ok
    after = {c: await sta.count(c) for c in counts}
    assert after == {**counts, "Observations": counts["Observations"] + 3}
    thing = await sta.thing(weather(ns, "a")["id"])
    streams = await sta.datastreams(thing["@iot.id"])
    assert sorted(o["result"] for o in await sta.observations(streams["temperature"]["@iot.id"])) == [3.5, 4.0]


async def test_per_phase_objects_become_one_datastream_per_phase(sta_server, ns):
    entity = three_phase(ns)
    async with SensorThingsBackend(sta_server.url) as backend:
        assert (await backend.write([entity])).ok
    sta = Sta(sta_server.url)
    streams = await sta.datastreams((await sta.thing(entity["id"]))["@iot.id"])
    assert set(streams) == {"totalActivePower", "phaseVoltage/L1", "phaseVoltage/L2", "phaseVoltage/L3"}
    assert streams["phaseVoltage/L2"]["properties"] == {"ngsiLdAttribute": "phaseVoltage", "member": "L2",
                                                        "unitCode": "VLT"}
    assert streams["phaseVoltage/L2"]["unitOfMeasurement"]["symbol"] == "V"
    assert [o["result"] for o in await sta.observations(streams["phaseVoltage/L2"]["@iot.id"])] == [230.4]
    # the three phases observe the same property
    assert len({s["ObservedProperty"]["@iot.id"] for k, s in streams.items() if k.startswith("phaseVoltage")}) == 1


@pytest.mark.parametrize("data_array", [True, False], ids=["CreateObservations", "one-by-one"])
async def test_a_bad_row_is_isolated(sta_server, ns, data_array):
    """This server stores numbers only (its result column is a float): a ParkingSpot's status is a
    row it refuses. In a CreateObservations batch it answers "error" for every row and stores
    nothing; the writer finds the row, reports it with the server's reason, writes the others."""
    good = [weather(ns, f"w{i}", temperature=float(i)) for i in range(5)]
    bad = parking_spot(ns)
    batch = good[:2] + [bad] + good[2:]
    async with SensorThingsBackend(sta_server.url, data_array=data_array) as backend:
        assert await backend.data_array() is data_array
        result = await backend.write(batch)
    assert result.succeeded == [e["id"] for e in good]
    assert [f.entity_id for f in result.failed] == [bad["id"]]
    failure = result.failed[0]
    assert failure.retryable is False                   # → the runtime dead-letters it
    assert "status" in failure.problem.detail and "'occupied'" in failure.problem.detail
    assert "valid number" in failure.problem.detail     # the server's own words
    assert failure.problem.status == 422

    sta = Sta(sta_server.url)
    for i, entity in enumerate(good):
        streams = await sta.datastreams((await sta.thing(entity["id"]))["@iot.id"])
        assert [o["result"] for o in await sta.observations(streams["temperature"]["@iot.id"])] == [float(i)]
    spot = await sta.datastreams((await sta.thing(bad["id"]))["@iot.id"])
    assert await sta.observations(spot["status"]["@iot.id"]) == []


async def test_server_restart_loses_nothing(own_sta_server, ns):
    server = own_sta_server
    first = [weather(ns, "r1"), weather(ns, "r2")]
    second = [weather(ns, "r1", at=later(1), temperature=5.0), weather(ns, "r2", at=later(1), temperature=6.0)]
    async with SensorThingsBackend(server.url, retry=FAST, timeout=3) as backend:
        assert (await backend.write(first)).ok
        server.stop()
        with pytest.raises(BrokerUnavailable):          # the runtime keeps the batch in its outbox
            await backend.write(second)
        server.start()
        result = await backend.write(second)            # the outbox sends it again
        assert result.ok, result.failed
        assert (await backend.write(second)).ok         # and once more: nothing doubled
    sta = Sta(server.url)
    for entity, values in ((first[0], [3.5, 5.0]), (first[1], [3.5, 6.0])):
        streams = await sta.datastreams((await sta.thing(entity["id"]))["@iot.id"])
        assert sorted(o["result"] for o in await sta.observations(streams["temperature"]["@iot.id"])) == values
    assert await sta.count("Things") == 2


async def test_a_location_move_is_recorded(sta_server, ns):
    sta = Sta(sta_server.url)
    async with SensorThingsBackend(sta_server.url) as backend:
        assert (await backend.write([weather(ns, "mover")])).ok
        assert (await backend.write([weather(ns, "mover", at=later(10), lon=10.9, lat=52.5)])).ok
        assert backend.stats["locations_moved"] == 1
    async with SensorThingsBackend(sta_server.url) as fresh:  # the move is known after a restart too
        assert (await fresh.write([weather(ns, "mover", at=later(11), lon=10.9, lat=52.5)])).ok
        assert fresh.stats["locations_moved"] == 0
        assert (await fresh.write([weather(ns, "mover", at=later(20))])).ok  # and back
        assert fresh.stats["locations_moved"] == 1

    thing = await sta.thing(weather(ns, "mover")["id"])
    history = await sta.values(f"/Things('{thing['@iot.id']}')/HistoricalLocations", **{"$expand": "Locations"})
    moves = sorted((parse_time(h["time"]), tuple(h["Locations"][0]["location"]["coordinates"])) for h in history)
    assert moves == [(T0.replace(microsecond=0), (10.78, 52.42)), (later(10).replace(microsecond=0), (10.9, 52.5)),
                     (later(20).replace(microsecond=0), (10.78, 52.42))]
    linked = await sta.values(f"/Things('{thing['@iot.id']}')/Locations")
    assert {"type": "Point", "coordinates": [10.9, 52.5]} in [loc["location"] for loc in linked]


async def test_two_replicas_starting_at_once_make_one_graph(sta_server, ns):
    sta = Sta(sta_server.url)
    """Each replica gets its own readings of the same devices (the outbox hands each entry to one
    replica); both meet each entity for the first time at once."""
    entities = [weather(ns, f"twin{i}") for i in range(3)]
    next_readings = [weather(ns, f"twin{i}", at=later(1), temperature=4.5) for i in range(3)]
    async with SensorThingsBackend(sta_server.url) as a, SensorThingsBackend(sta_server.url) as b:
        results = await asyncio.gather(a.write(entities), b.write(next_readings))
    assert all(r.ok for r in results)
    for entity in entities:
        thing = await sta.thing(entity["id"])              # exactly one each
        streams = await sta.values(f"/Things('{thing['@iot.id']}')/Datastreams")
        assert sorted(s["name"] for s in streams) == ["atmosphericPressure", "relativeHumidity", "temperature"]
        temperature = next(s for s in streams if s["name"] == "temperature")
        assert sorted(o["result"] for o in await sta.observations(temperature["@iot.id"])) == [3.5, 4.5]
    sensor = entities[0]["refDevice"]["object"]
    assert len(await sta.values("/Sensors", **{"$filter": f"name eq '{sensor}'"})) == 1
    definition = "https://smartdatamodels.org/dataModel.Weather/temperature"
    assert len(await sta.values("/ObservedProperties", **{"$filter": f"definition eq '{definition}'"})) == 1


async def test_a_new_attribute_later_adds_a_datastream(sta_server, ns):
    entity = weather(ns, "grow")
    del entity["atmosphericPressure"]
    async with SensorThingsBackend(sta_server.url) as backend:
        assert (await backend.write([entity])).ok
        assert (await backend.write([weather(ns, "grow", at=later(1))])).ok
        assert backend.stats["datastreams_created"] == 1
    sta = Sta(sta_server.url)
    streams = await sta.datastreams((await sta.thing(entity["id"]))["@iot.id"])
    assert [o["result"] for o in await sta.observations(streams["atmosphericPressure"]["@iot.id"])] == [1013.2]


async def test_refused_before_sending_and_unreachable(sta_server, ns):
    broken = weather(ns, "broken")
    broken["temperature"]["unitCode"] = "XYZ"            # no UCUM conversion: refused, never guessed
    async with SensorThingsBackend(sta_server.url) as backend:
        result = await backend.write([broken, {"type": "WeatherObserved"}])
    assert [f.entity_id for f in result.failed] == [broken["id"], "no entity::id"]
    assert "XYZ" in result.failed[0].problem.detail and not result.failed[0].retryable
    # the other rows of the entity are written
    sta = Sta(sta_server.url)
    streams = await sta.datastreams((await sta.thing(broken["id"]))["@iot.id"])
    assert "temperature" not in streams and len(await sta.observations(streams["relativeHumidity"]["@iot.id"])) == 1

    async with SensorThingsBackend("http://127.0.0.1:9/sta/v1.1", retry=FAST, timeout=1) as nowhere:
        assert await nowhere.health() is False
        with pytest.raises(BrokerUnavailable):
            await nowhere.write([weather(ns)])


async def test_the_later_creator_yields_to_the_earlier_one(sta_server, ns):
    """Replica A looks the Thing up (none yet); before A creates it, replica B creates it and
    writes a reading. A creates its own, reads the filter again, sees B's older Thing, deletes its
    own and writes into B's."""
    entity = weather(ns, "race")
    async with SensorThingsBackend(sta_server.url) as a, SensorThingsBackend(sta_server.url) as b:
        original = a._load_thing
        calls = []

        async def lookup_then_b_is_faster(plan):
            found = await original(plan)
            calls.append(found)
            if len(calls) == 1:
                assert found is None
                assert (await b.write([entity])).ok
            return found

        a._load_thing = lookup_then_b_is_faster
        assert (await a.write([weather(ns, "race", at=later(1), temperature=9.0)])).ok
        assert a.stats["duplicates_removed"] >= 1 and b.stats["duplicates_removed"] == 0
    sta = Sta(sta_server.url)
    thing = await sta.thing(entity["id"])
    streams = await sta.datastreams(thing["@iot.id"])
    assert sorted(o["result"] for o in await sta.observations(streams["temperature"]["@iot.id"])) == [3.5, 9.0]
    assert len(await sta.values(f"/Things('{thing['@iot.id']}')/HistoricalLocations")) == 1


async def test_a_different_value_at_the_same_time_is_kept_a_repeat_is_not(sta_server, ns):
    first, corrected = weather(ns, "c", temperature=3.5), weather(ns, "c", temperature=3.7)
    async with SensorThingsBackend(sta_server.url) as backend:
        assert (await backend.write([first, corrected])).ok
    async with SensorThingsBackend(sta_server.url) as fresh:      # after a restart: asks the server
        assert (await fresh.write([first, corrected])).ok
        assert fresh.stats["observations_written"] == 0
    sta = Sta(sta_server.url)
    streams = await sta.datastreams((await sta.thing(first["id"]))["@iot.id"])
    assert sorted(o["result"] for o in await sta.observations(streams["temperature"]["@iot.id"])) == [3.5, 3.7]
    assert len(await sta.observations(streams["relativeHumidity"]["@iot.id"])) == 1


async def test_a_twin_committed_late_is_merged(sta_server, ns):
    """Two writers created the same entity and both kept theirs (the twin committed after the
    other's check). The next write finds both, keeps the smaller id and folds the twin into it:
    Datastreams it lacks move over, Observations move, repeats are dropped, the twin is deleted."""
    entity = weather(ns, "dup")
    async with SensorThingsBackend(sta_server.url) as backend:
        assert (await backend.write([entity])).ok
        sensor = {"name": "s", "description": "s", "encodingType": "text/html", "metadata": "s"}

        def stream(name: str) -> dict:
            return {"name": name, "description": name, "unitOfMeasurement": {"name": "x", "symbol": "x", "definition": "x"},
                    "observationType": "http://www.opengis.net/def/observationType/OGC-OM/2.0/OM_Measurement",
                    "Sensor": sensor, "ObservedProperty": {"name": name, "definition": f"urn:test:{name}",
                                                           "description": name}}
        twin = {"name": entity["id"], "description": "twin",
                "Locations": [{"name": "l", "description": "l", "encodingType": "application/geo+json",
                               "location": {"type": "Point", "coordinates": [10.78, 52.42]}}],
                "Datastreams": [stream("temperature"), stream("windSpeed")]}
        async with aiohttp.ClientSession() as http:
            async with http.post(sta_server.url + "/Things", json=twin) as answer:
                assert answer.status == 201
            sta = Sta(sta_server.url)
            twin_id = max(t["@iot.id"] for t in await sta.things(entity["id"]))
            twin_streams = await sta.datastreams(twin_id)
            for name, when, value in (("temperature", later(1), 7.0), ("temperature", T0, 3.5), ("windSpeed", T0, 2.0)):
                body = {"phenomenonTime": when.isoformat(), "resultTime": when.isoformat(), "result": value,
                        "Datastream": {"@iot.id": twin_streams[name]["@iot.id"]}}
                async with http.post(sta_server.url + "/Observations", json=body) as answer:
                    assert answer.status == 201, await answer.text()
        assert (await backend.write([weather(ns, "dup", at=later(2), temperature=4.0)])).ok
        assert backend.stats["duplicates_merged"] == 1
    thing = await sta.thing(entity["id"])                  # one left: the first
    assert thing["@iot.id"] != twin_id
    streams = await sta.datastreams(thing["@iot.id"])
    assert sorted(o["result"] for o in await sta.observations(streams["temperature"]["@iot.id"])) == [3.5, 4.0, 7.0]
    assert [o["result"] for o in await sta.observations(streams["windSpeed"]["@iot.id"])] == [2.0]


async def test_a_changed_static_attribute_updates_the_thing(sta_server, ns):
    entity = weather(ns, "ren")
    async with SensorThingsBackend(sta_server.url) as backend:
        assert (await backend.write([entity])).ok
        renamed = weather(ns, "ren", at=later(1))
        renamed["name"]["value"] = "Station am Rathaus"
        assert (await backend.write([renamed])).ok
    sta = Sta(sta_server.url)
    thing = await sta.thing(entity["id"])
    assert thing["description"] == "Station am Rathaus"
    assert thing["properties"]["name"] == "Station am Rathaus"
    assert "dateObserved" not in thing["properties"]       # volatile: the Observations' time, not a property

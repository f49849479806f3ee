"""What the adapters really write (their own test fixtures decoded and mapped) → SensorThings:
every measured value of every entity becomes an Observation of the right Datastream."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from stadtlink.adapters import climate, parking, pv, water_level
from stadtlink.adapters.core.testing import map_fixture
from stadtlink.broker_client.sensorthings import SensorThingsBackend
from stadtlink.broker_client.sensorthings.mapping import plan_entity
from stadtlink.broker_client.sensorthings.models import MEASURED

from .frost_fake import start_fake_frost
from .helpers import Sta

ROOT = Path(__file__).resolve().parents[2]
REGISTRY = [{"id": "test-device", "name": "Test device", "lat": 52.42, "lon": 10.78, "site": "pr-nord",
             "reference_level": 5.0, "alert_level": 2.0, "danger_level": 3.0}]
FIXTURES = [
    (climate.ADAPTER, "adapters/climate/testdata/decentlab-dl-atm41-weather-station.json", "decentlab-dl-atm41"),
    (climate.ADAPTER, "adapters/climate/testdata/barani-meteohelix-iot-pro.json", "barani-meteohelix"),
    (water_level.ADAPTER, "adapters/water_level/testdata/decentlab-dl-mbx-ultrasonic-level.json", "decentlab-dl-mbx"),
    (water_level.ADAPTER, "adapters/water_level/testdata/pegelonline-rest-v2-station-with-timeseries.json",
     "pegelonline"),
    (parking.ADAPTER, "adapters/parking/testdata/bosch-tps110-parking-lot-sensor.json", "bosch-tps110"),
    (parking.ADAPTER, "adapters/parking/testdata/parkapi-v3-mannheim.json", "parkapi"),
    (pv.ADAPTER, "adapters/pv/testdata/fronius-solarapi-v1-inverter-3p-symo-constructed.json", "fronius-solarapi"),
    (pv.ADAPTER, "adapters/pv/testdata/fronius-solarapi-v1-powerflow-symo.json", "fronius-solarapi"),
]


def adapter_entities(namespace: str) -> list[dict]:
    entities: list[dict] = []
    for adapter, fixture, profile in FIXTURES:
        entities += map_fixture(adapter, ROOT / fixture, registry=REGISTRY, profile=profile, namespace=namespace)
    return entities


def expected_values(entity: dict) -> dict[str, object]:
    """Datastream name → value, straight from the entity and the model table."""
    out: dict[str, object] = {}
    for attribute, how in MEASURED.get(entity["type"], {}).items():
        attr = entity.get(attribute)
        if not isinstance(attr, dict) or "value" not in attr:
            continue
        value = attr["value"]
        if how.kind == "phases":
            out.update({f"{attribute}/{member}": v for member, v in value.items()})
        elif entity["type"] == "DeviceMeasurement" and attribute == "numValue":
            out[entity["controlledProperty"]["value"]] = value
        else:
            out[attribute] = value
    return out


def test_the_fixtures_cover_the_adapters_models():
    types = {e["type"] for e in adapter_entities("cover")}
    assert types >= {"WeatherObserved", "Device", "DeviceMeasurement", "FloodMonitoring", "Alert", "WaterObserved",
                     "ParkingSpot", "OffStreetParking", "ThreePhaseAcMeasurement"}


async def test_every_measured_value_arrives_on_frost():
    fake, runner = await start_fake_frost()
    try:
        entities = adapter_entities("town")
        async with SensorThingsBackend(fake.url) as backend:
            result = await backend.write(entities)
            assert result.ok, result.failed
            assert (await backend.write(entities)).ok         # repeat: nothing new
        checked = 0
        for entity in entities:
            for stream, value in expected_values(entity).items():
                results = [o["result"] for o in fake.observations(entity["id"], stream)]
                assert value in results, (entity["id"], stream, value, results)
                checked += 1
        assert checked > 50
        distinct = {(e["id"], row.key, row.time[:19], json.dumps(row.result))  # the server keeps each once
                    for e in entities for row in plan_entity(e).rows}
        assert len(fake.store["Observations"]) == len(distinct)
        assert len(fake.store["Things"]) == len({e["id"] for e in entities})
    finally:
        await runner.cleanup()


async def test_on_a_numbers_only_server_only_the_codes_are_refused(sta_server, ns):
    entities = adapter_entities(ns)
    with_codes = {e["id"] for e in entities
                  if any(isinstance(v, (str, list)) for v in expected_values(e).values())}
    assert with_codes                                      # status, deviceState, floodLevelStatus, ...
    async with SensorThingsBackend(sta_server.url) as backend:
        result = await backend.write(entities)
    assert {f.entity_id for f in result.failed} == with_codes
    assert all(not f.retryable and "valid number" in f.problem.detail for f in result.failed)
    sta = Sta(sta_server.url)
    numeric = next(e for e in entities if e["type"] == "WeatherObserved")
    streams = await sta.datastreams((await sta.thing(numeric["id"]))["@iot.id"])
    for name, value in expected_values(numeric).items():
        results = [o["result"] for o in await sta.observations(streams[name]["@iot.id"])]
        assert pytest.approx(value) in results, (name, value, results)

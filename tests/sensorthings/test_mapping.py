"""Entity → Thing / Datastreams / Observations: every Smart Data Models example that carries
measurements, and the model table against what the adapters emit."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from importlib.metadata import entry_points
from pathlib import Path

import pytest

from stadtlink.adapters.climate.mapper import MEASUREMENT_ROWS, WEATHER_ROWS
from stadtlink.adapters.pv.mapper import AC_PHASES, AC_TOTALS, DC_ATTRIBUTES, PV_ROWS
from stadtlink.broker_client.sensorthings import SensorThingsBackend
from stadtlink.broker_client.sensorthings.mapping import EntityNotMappable, plan_entity
from stadtlink.broker_client.sensorthings.models import MEASURED, OBSERVATION_TYPE, attribute_iri

from .helpers import Sta

SCHEMAS = Path(__file__).resolve().parents[2] / "schemas"
NOW = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)
NOW_ISO = "2026-11-29T12:00:00.000Z"


def example(model: str) -> dict:
    return json.loads((SCHEMAS / model / "examples" / "example-normalized.jsonld").read_text(encoding="utf-8"))


PHASES_3P = {f"{a}/{m}" for a in ("activePower", "apparentPower", "reactivePower", "powerFactor",
                                   "displacementPowerFactor", "thdCurrent", "thdVoltage", "phaseVoltage")
             for m in ("L1", "L2", "L3")}

#: model → (Thing has a Location, Datastream names, {Datastream: (result, phenomenonTime)})
EXPECTED: dict[str, tuple[bool, set[str], dict[str, tuple[object, str]]]] = {
    "Device": (False, {"batteryLevel", "rssi", "deviceState"},
               {"batteryLevel": (0.75, NOW_ISO), "deviceState": ("ok", NOW_ISO)}),
    "DeviceMeasurement": (True, {"humidity"}, {"humidity": (55.2, "2021-09-03T07:33:18.000Z")}),
    "FloodMonitoring": (False, {"alertLevel", "currentLevel", "dangerLevel", "measuredDistance", "referenceLevel"},
                        {"currentLevel": (1.98, "2020-09-16T08:00:00.000Z")}),
    "OffStreetParking": (True, {"availableSpotNumber", "occupancy", "occupiedSpotNumber", "totalSpotNumber",
                                "vehicleEntranceCount", "vehicleExitCount"},
                         {"availableSpotNumber": (132, "2018-09-21T12:00:00.000Z"),
                          "occupancy": (0.68, "2021-03-11T15:51:02.000Z")}),
    "ParkingGroup": (True, {"availableSpotNumber", "totalSpotNumber"},
                     {"availableSpotNumber": (1, "2018-09-12T12:00:00.000Z"), "totalSpotNumber": (2, NOW_ISO)}),
    "ParkingSpot": (True, {"status"}, {"status": ("free", "2018-09-21T12:00:00.000Z")}),
    "PhotovoltaicMeasurement": (True, {"temperature"}, {"temperature": (23.4, "2019-09-05T16:00:00.999Z")}),
    "SolarEnergy": (True, {"totalActivePower", "totalReactivePower", "voltage", "frequency", "energyGenerated",
                           "totalEnergyGenerated", "maxSolarPowerMeasure"}
                    | {f"{a}/{m}" for a in ("activePower", "reactivePower", "phaseVoltage", "phaseCurrent",
                                            "powerFactor") for m in ("L1", "L2", "L3")}
                    | {"current/L1", "current/L2", "current/L3", "current/N"},
                    {"current/N": (0.7, "2022-01-20T20:02:52.000Z"), "totalActivePower": (873.9, "2022-01-20T20:02:52.000Z")}),
    "ThreePhaseAcMeasurement": (False, PHASES_3P | {"current/L1", "current/L2", "current/L3", "current/N",
                                                    "phaseToPhaseVoltage/L12", "phaseToPhaseVoltage/L23",
                                                    "phaseToPhaseVoltage/L31", "frequency", "totalActiveEnergyExport",
                                                    "totalActiveEnergyImport", "totalActivePower", "totalApparentPower",
                                                    "totalReactiveEnergyExport", "totalReactiveEnergyImport",
                                                    "totalReactivePower"},
                                {"phaseVoltage/L3": (235.354034, "2019-01-24T22:00:00.173Z"),
                                 "activePower/L1": (11996.416016, NOW_ISO)}),
    "WaterObserved": (True, {"flow", "height"}, {"flow": (12, NOW_ISO), "height": (3.52, NOW_ISO)}),
    "WeatherObserved": (True, {"atmosphericPressure", "illuminance", "precipitation", "pressureTendency",
                               "relativeHumidity", "snowHeight", "streamGauge", "temperature", "uVIndexMax",
                               "windDirection", "windSpeed"},
                        {"temperature": (3.3, "2016-11-30T07:00:00.000Z"),
                         "windDirection": (135, "2016-11-30T07:00:00.000Z")}),
}
#: examples without measurements: a Thing with properties only
STATIC = {"Alert", "InverterDevice", "PhotovoltaicDevice"}


def test_every_example_is_covered():
    models = {p.parent.parent.name for p in SCHEMAS.glob("*/examples/example-normalized.jsonld")}
    assert models == set(EXPECTED) | STATIC


@pytest.mark.parametrize("model", sorted(EXPECTED))
def test_example_maps_to_the_expected_graph(model):
    entity = example(model)
    has_location, streams, observations = EXPECTED[model]
    plan = plan_entity(entity, now=NOW)
    assert plan.problems == []
    assert (plan.location is not None) is has_location
    assert set(plan.streams) == streams
    assert plan.properties["ngsiLdId"] == entity["id"] and plan.properties["sdmType"] == model
    assert not set(plan.properties) & {s.attribute for s in plan.streams.values()}  # measured ≠ static
    rows = {row.key: (row.result, row.time) for row in plan.rows}
    assert set(rows) == streams                         # one Observation per Datastream
    for key, expected in observations.items():
        assert rows[key] == expected, key
    for stream in plan.streams.values():
        definition = stream.observed_property.definition
        assert definition.startswith(("https://smartdatamodels.org/", "https://uri.etsi.org/ngsi-ld/")), definition
        assert stream.body(entity["id"])["observationType"] == OBSERVATION_TYPE[stream.kind]


@pytest.mark.parametrize("model", sorted(STATIC))
def test_static_example_is_a_thing_with_properties(model):
    entity = example(model)
    plan = plan_entity(entity, now=NOW)
    assert plan.streams == {} and plan.rows == [] and plan.problems == []
    static = {k for k, v in entity.items() if isinstance(v, dict) and v.get("type") in ("Property", "Relationship")}
    assert static and static <= set(plan.properties)    # every attribute kept on the Thing


def test_units_and_observed_properties_of_an_example():
    plan = plan_entity(example("WeatherObserved"), now=NOW)
    assert plan.streams["temperature"].unit["symbol"] == "Cel"          # no unitCode: the model's default
    assert plan.streams["atmosphericPressure"].unit["symbol"] == "hPa"
    assert plan.streams["temperature"].observed_property.definition == \
        "https://smartdatamodels.org/dataModel.Weather/temperature"
    measurement = plan_entity(example("DeviceMeasurement"), now=NOW)
    humidity = measurement.streams["humidity"]
    assert humidity.attribute == "numValue" and humidity.observed_property.name == "humidity"
    three = plan_entity(example("ThreePhaseAcMeasurement"), now=NOW)
    assert three.streams["phaseToPhaseVoltage/L12"].unit["symbol"] == "V"
    assert three.streams["totalApparentPower"].unit["symbol"] == "V.A"


def test_bad_values_are_refused_with_reasons():
    entity = example("WeatherObserved")
    entity["temperature"]["value"] = "warm"
    entity["windSpeed"]["unitCode"] = "XYZ"
    entity["relativeHumidity"]["observedAt"] = "yesterday"
    plan = plan_entity(entity, now=NOW)
    assert len(plan.problems) == 3
    assert any("temperature" in p and "'warm'" in p for p in plan.problems)
    assert any("XYZ" in p for p in plan.problems)
    assert any("relativeHumidity" in p and "yesterday" in p for p in plan.problems)
    assert "illuminance" in plan.streams                # the other attributes still map
    with pytest.raises(EntityNotMappable):
        plan_entity({"type": "WeatherObserved"})


# --- the table against the adapters ---------------------------------------------------------------


def test_every_model_the_adapters_emit_has_a_row():
    emitted = {t for ep in entry_points(group="stadtlink.adapters") for t in ep.load().entity_types}
    assert {"ParkingSpot", "WeatherObserved", "ThreePhaseAcMeasurement", "FloodMonitoring"} <= emitted
    assert emitted <= set(MEASURED), emitted - set(MEASURED)


def test_every_attribute_the_adapters_measure_is_a_datastream():
    expected = {
        "WeatherObserved": {r.attribute for r in WEATHER_ROWS},
        "ThreePhaseAcMeasurement": {r.attribute for r in AC_TOTALS} | {p.attribute for p in AC_PHASES},
        "DeviceMeasurement": {r.attribute for r in DC_ATTRIBUTES} | {"numValue"},
        "PhotovoltaicMeasurement": {r.attribute for r in PV_ROWS} | {"temperature"},
        # parking, water level and device attributes carrying observedAt (their mappers)
        "ParkingSpot": {"status"},
        "OffStreetParking": {"availableSpotNumber", "occupiedSpotNumber", "totalSpotNumber", "occupancy", "status"},
        "ParkingGroup": {"availableSpotNumber", "occupiedSpotNumber", "totalSpotNumber", "occupancy"},
        "FloodMonitoring": {"currentLevel", "measuredDistance", "referenceLevel", "alertLevel", "dangerLevel",
                            "floodLevelStatus"},
        "WaterObserved": {"waterLevel", "waterLevelAboveSeaLevel", "waterLevelRelativeToGaugeZero", "flow",
                          "stateMnwMhw", "stateNswHsw"},
        "Device": {"batteryLevel", "rssi", "deviceState"},
    }
    for model, attributes in expected.items():
        assert attributes <= set(MEASURED[model]), (model, attributes - set(MEASURED[model]))
    assert all(MEASURED["ThreePhaseAcMeasurement"][p.attribute].kind == "phases" for p in AC_PHASES)


def test_climate_device_measurements_are_named_by_their_quantity():
    """The climate adapter writes one DeviceMeasurement per extra quantity (numValue +
    controlledProperty): each becomes a Datastream named after the quantity."""
    from stadtlink.adapters.core.entity import entity_id, new_entity, prop

    row = MEASUREMENT_ROWS[0]
    entity = new_entity(entity_id("DeviceMeasurement", "x", f"ws-1-{row.attribute}"), "DeviceMeasurement",
                        controlledProperty=prop(row.attribute),
                        numValue=prop(-2.5, unit=row.unit, observed_at=NOW), unit=prop(row.unit))
    plan = plan_entity(entity, now=NOW)
    assert list(plan.streams) == [row.attribute]
    assert plan.streams[row.attribute].observed_property.definition == attribute_iri("DeviceMeasurement", row.attribute)
    assert plan.rows[0].result == -2.5


async def test_every_example_on_a_real_server(sta_server):
    """All examples in one batch: the graph on the server is the expected one. This server stores
    numbers only, so the two examples with a code (ParkingSpot status, Device deviceState) are
    refused for that row — with the server's reason — and their other rows are written."""
    entities = [example(m) for m in sorted(EXPECTED | dict.fromkeys(STATIC))]
    async with SensorThingsBackend(sta_server.url) as backend:
        result = await backend.write(entities)
    refused = {f.entity_id: f for f in result.failed}
    assert set(refused) == {example("ParkingSpot")["id"], example("Device")["id"]}
    assert all(not f.retryable and "valid number" in f.problem.detail for f in refused.values())
    sta = Sta(sta_server.url)
    for model in sorted(EXPECTED | dict.fromkeys(STATIC)):
        entity = example(model)
        thing = await sta.thing(entity["id"])
        assert thing["properties"]["sdmType"] == model
        streams = await sta.datastreams(thing["@iot.id"])
        assert set(streams) == (EXPECTED[model][1] if model in EXPECTED else set())
        for key, (value, _) in (EXPECTED[model][2] if model in EXPECTED else {}).items():
            results = [o["result"] for o in await sta.observations(streams[key]["@iot.id"])]
            assert results == ([] if isinstance(value, str) else [value]), (model, key)

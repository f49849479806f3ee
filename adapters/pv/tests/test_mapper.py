"""Mapper: attribute names, units, observedAt, omissions, settings switches; every entity passes the
Smart Data Models check."""
from __future__ import annotations

import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from stadtlink.adapters.core.adapter import MapContext
from stadtlink.adapters.core.errors import MappingError
from stadtlink.adapters.core.reading import RawMessage, Reading
from stadtlink.adapters.core.registry import DeviceRegistry, record_from_mapping
from stadtlink.adapters.pv import ADAPTER
from stadtlink.adapters.pv.mapper import map_reading
from stadtlink.adapters.pv.profiles import FRONIUS_PROFILE, SUNSPEC_PROFILE
from stadtlink.adapters.pv.settings import PvSettings
from stadtlink.schemas import check_entity

from .helpers import (
    NOW,
    join_chain,
    load_sample,
    model_body,
    sample_registers,
    split_chain,
)

NS = "bitburg"
OBS = "2026-06-21T11:30:00.000Z"
RECORD = {"id": "inv-01", "name": "PV Rathaus", "lat": 49.9744, "lon": 6.5253,
          "energy_metering_started": "2019-04-01T00:00:00Z", "peak_power_kw": 29.7}


def ctx(settings: PvSettings | None = None, records=(RECORD,), lenient=False) -> MapContext:
    registry = DeviceRegistry([record_from_mapping(r) for r in records])
    return MapContext(namespace=NS, registry=registry, settings=settings or PvSettings(), lenient=lenient)


def sunspec_reading(registers=None, device="inv-01") -> Reading:
    msg = RawMessage(source="modbus", payload={"registers": registers or sample_registers()}, received_at=NOW,
                     device_hint=device)
    return SUNSPEC_PROFILE.decode(msg, {})[0]


def fronius_reading(sample: str, device="inv-01", options=None) -> Reading:
    doc = load_sample(sample)["raw"]["json"]
    msg = RawMessage(source="http", payload=json.dumps(doc).encode(), received_at=NOW, device_hint=device)
    return FRONIUS_PROFILE.decode(msg, options or {})[0]


def by_id(entities):
    out = {e["id"]: e for e in entities}
    assert len(out) == len(entities), "duplicate entity ids"
    for e in entities:
        assert check_entity(e) == [], (e["id"], check_entity(e))
    return out


def attrs(entity) -> set[str]:
    return set(entity) - {"id", "type"}


def test_sunspec_three_phase_ac_measurement():
    ents = by_id(map_reading(sunspec_reading(), ctx()))
    ac = ents[f"urn:ngsi-ld:ThreePhaseAcMeasurement:{NS}:inv-01"]
    assert ac["type"] == "ThreePhaseAcMeasurement"
    assert attrs(ac) == {"totalActivePower", "totalApparentPower", "totalReactivePower", "totalPowerFactor",
                         "frequency", "totalActiveEnergyExport", "current", "phaseVoltage", "phaseToPhaseVoltage",
                         "dateObserved", "refDevice", "name", "location", "dateEnergyMeteringStarted"}
    assert ac["dateEnergyMeteringStarted"]["value"] == {"@type": "DateTime", "@value": "2019-04-01T00:00:00.000Z"}
    expect = {"totalActivePower": (5021, "WTT"), "totalApparentPower": (5030, "D46"),
              "totalReactivePower": (-120, "D44"), "totalPowerFactor": (0.998, "C62"),
              "frequency": (50.01, "HTZ"), "totalActiveEnergyExport": (30915.234, "KWH"),
              "current": ({"L1": 4.87, "L2": 4.86, "L3": 4.87}, "AMP"),
              "phaseVoltage": ({"L1": 231.2, "L2": 231.5, "L3": 230.9}, "VLT"),
              "phaseToPhaseVoltage": ({"L12": 400.5, "L23": 401.0, "L31": 399.8}, "VLT")}
    for name, (value, unit) in expect.items():
        assert ac[name]["type"] == "Property"
        assert ac[name]["value"] == (pytest.approx(value) if not isinstance(value, dict) else value), name
        assert ac[name]["unitCode"] == unit, name
        assert ac[name]["observedAt"] == OBS, name
    assert ac["totalActivePower"]["value"] > 0          # positive = generation
    assert ac["dateObserved"]["value"] == {"@type": "DateTime", "@value": OBS}
    assert ac["refDevice"] == {"type": "Relationship", "object": [f"urn:ngsi-ld:Device:{NS}:inv-01"]}
    assert ac["location"]["value"] == {"type": "Point", "coordinates": [6.5253, 49.9744]}
    # matches the sample's SDM hint
    hint = load_sample("sunspec-modbus-model-1-103-160-block-constructed.json")["expected"]["sdm_ThreePhaseAcMeasurement"]
    for name, want in hint.items():
        got = ac[name]["value"]
        assert got == pytest.approx(want["value"] if isinstance(want, dict) and "value" in want else want), name


def test_sunspec_device_entity():
    ents = by_id(map_reading(sunspec_reading(), ctx()))
    dev = ents[f"urn:ngsi-ld:Device:{NS}:inv-01"]
    assert dev["manufacturerName"]["value"] == "Fronius"
    assert dev["modelName"]["value"] == "Symo 10.0-3-M"
    assert dev["serialNumber"]["value"] == "31234567"
    assert dev["firmwareVersion"]["value"] == "0.3.29.3"
    assert dev["deviceState"] == {"type": "Property", "value": "MPPT", "observedAt": OBS}
    assert dev["controlledProperty"]["value"] == ["power", "energy"]
    assert dev["name"]["value"] == "PV Rathaus"
    assert dev["dateLastValueReported"]["value"]["@value"] == OBS


def test_sunspec_dc_inputs_become_device_measurements():
    ents = by_id(map_reading(sunspec_reading(), ctx()))
    dc1 = ents[f"urn:ngsi-ld:DeviceMeasurement:{NS}:inv-01-dc1"]
    dc2 = ents[f"urn:ngsi-ld:DeviceMeasurement:{NS}:inv-01-dc2"]
    assert dc1["voltage"] == {"type": "Property", "value": 410.5, "unitCode": "VLT", "observedAt": OBS}
    assert dc1["current"]["value"] == 6.72 and dc1["current"]["unitCode"] == "AMP"
    assert dc1["power"]["value"] == 2759 and dc1["power"]["unitCode"] == "WTT"
    assert dc1["numValue"]["value"] == 2759 and dc1["unit"]["value"] == "WTT"
    assert dc1["controlledProperty"]["value"] == "power" and dc1["measurementType"]["value"] == "dcInput"
    assert dc1["name"]["value"] == "String 1" and dc2["name"]["value"] == "String 2"
    assert dc1["refDevice"] == {"type": "Relationship", "object": f"urn:ngsi-ld:Device:{NS}:inv-01"}
    assert dc2["voltage"]["value"] == 403.7


def test_without_model_160_the_inverter_dc_totals_are_one_input():
    chain = split_chain(sample_registers())
    chain = [c for c in chain if c[0] != 160]
    reading = sunspec_reading(join_chain(chain))
    assert reading.values["dc_inputs"] == [{"id": 1, "power_w": 5180}]     # DCA/DCV not implemented
    ents = by_id(map_reading(reading, ctx()))
    dc = ents[f"urn:ngsi-ld:DeviceMeasurement:{NS}:inv-01-dc1"]
    assert dc["power"]["value"] == 5180 and "voltage" not in dc and "current" not in dc
    assert dc["name"]["value"] == "DC input 1"


def test_photovoltaic_measurement_when_enabled():
    ents = by_id(map_reading(sunspec_reading(), ctx(PvSettings(photovoltaic_measurement=True))))
    pv = ents[f"urn:ngsi-ld:PhotovoltaicMeasurement:{NS}:inv-01"]
    assert pv["activePower"] == {"type": "Property", "value": 5.021, "unitCode": "KWT", "observedAt": OBS}
    assert pv["current"]["value"] == 14.6 and pv["current"]["unitCode"] == "AMP"
    assert pv["temperature"]["value"] == 41.2 and pv["temperature"]["unitCode"] == "CEL"
    assert pv["location"]["value"]["coordinates"] == [6.5253, 49.9744]
    assert pv["dateObserved"]["value"]["@value"] == OBS
    assert pv["dateEnergyMeteringStarted"]["value"]["@value"] == "2019-04-01T00:00:00.000Z"
    assert pv["refPhotovoltaicDevice"]["object"] == f"urn:ngsi-ld:PhotovoltaicDevice:{NS}:inv-01"
    assert pv["nominalPeakPowerGeneration"]["value"] == 29.7


def test_photovoltaic_measurement_off_by_default():
    ents = map_reading(sunspec_reading(), ctx())
    assert {e["type"] for e in ents} == {"ThreePhaseAcMeasurement", "Device", "DeviceMeasurement"}


def test_photovoltaic_measurement_needs_its_registry_fields():
    record = {k: v for k, v in RECORD.items() if k != "energy_metering_started"}
    with pytest.raises(MappingError) as err:
        map_reading(sunspec_reading(), ctx(PvSettings(photovoltaic_measurement=True), records=[record]))
    assert err.value.missing == ["energy_metering_started"]
    with pytest.raises(MappingError):
        map_reading(sunspec_reading(), ctx(PvSettings(photovoltaic_measurement=True), records=[]))
    lenient = ctx(PvSettings(photovoltaic_measurement=True), records=[record], lenient=True)
    ents = map_reading(sunspec_reading(), lenient)
    assert "PhotovoltaicMeasurement" not in {e["type"] for e in ents}
    assert any("energy_metering_started" in m for m in lenient.missing)


def test_photovoltaic_measurement_skipped_below_zero_degrees():
    chain = split_chain(sample_registers())
    model_body(chain, 103)[32] = 0xFFE2           # TmpSnk = -30 → -3.0 °C (the SDM schema refuses < 0)
    reading = sunspec_reading(join_chain(chain))
    ents = map_reading(reading, ctx(PvSettings(photovoltaic_measurement=True)))
    assert "PhotovoltaicMeasurement" not in {e["type"] for e in ents}
    assert "ThreePhaseAcMeasurement" in {e["type"] for e in ents}
    assert reading.meta["dropped"] == {"temperature": "implausible"}


def test_a_negative_phase_voltage_is_left_out_of_its_object_and_noted():
    reading = fronius_reading("fronius-solarapi-v1-inverter-3p-symo-constructed.json")
    reading.values["voltage_l2_v"] = -231.0
    reading.values["power_factor"] = 1.7
    ac = by_id(map_reading(reading, ctx()))["urn:ngsi-ld:ThreePhaseAcMeasurement:bitburg:inv-01"]
    assert set(ac["phaseVoltage"]["value"]) == {"L1", "L3"}
    assert "totalPowerFactor" not in ac
    assert reading.meta["dropped"] == {"phaseVoltage.L2": "implausible", "totalPowerFactor": "implausible"}


def test_settings_switch_entities_off():
    s = PvSettings(device_entities=False, dc_measurements=False)
    ents = map_reading(sunspec_reading(), ctx(s))
    assert [e["type"] for e in ents] == ["ThreePhaseAcMeasurement"]


def test_settings_forbid_unknown_keys():
    from pydantic import ValidationError

    with pytest.raises(ValidationError):
        PvSettings(photovoltaic_measurements=True)


def test_device_not_in_registry_is_fine_without_photovoltaic_measurement():
    ents = by_id(map_reading(sunspec_reading(device="unlisted"), ctx(records=[])))
    ac = ents[f"urn:ngsi-ld:ThreePhaseAcMeasurement:{NS}:unlisted"]
    assert "location" not in ac and "name" not in ac
    assert ents[f"urn:ngsi-ld:Device:{NS}:unlisted"]["name"]["value"] == "Fronius Symo 10.0-3-M"


def test_not_implemented_points_never_become_null_or_zero():
    chain = split_chain(sample_registers())
    body = model_body(chain, 103)
    body[12] = 0x8000            # W not implemented
    body[22:24] = [0, 0]         # WH not implemented
    body[20] = 0x8000            # PF not implemented
    ents = by_id(map_reading(sunspec_reading(join_chain(chain)), ctx()))
    ac = ents[f"urn:ngsi-ld:ThreePhaseAcMeasurement:{NS}:inv-01"]
    for name in ("totalActivePower", "totalActiveEnergyExport", "totalPowerFactor"):
        assert name not in ac


def test_fronius_day_entities():
    ents = by_id(map_reading(fronius_reading("fronius-solarapi-v1-inverter-realtime-symo.json"), ctx()))
    obs = "2021-10-07T08:01:17.000Z"
    ac = ents[f"urn:ngsi-ld:ThreePhaseAcMeasurement:{NS}:inv-01"]
    assert ac["totalActivePower"] == {"type": "Property", "value": 1190, "unitCode": "WTT", "observedAt": obs}
    assert ac["totalActiveEnergyExport"]["value"] == 44188.0 and ac["totalActiveEnergyExport"]["unitCode"] == "KWH"
    assert ac["frequency"]["value"] == 49.94
    assert "current" not in ac and "phaseVoltage" not in ac
    dev = ents[f"urn:ngsi-ld:Device:{NS}:inv-01"]
    assert dev["deviceState"]["value"] == "RUNNING" and dev["manufacturerName"]["value"] == "Fronius"
    dc = ents[f"urn:ngsi-ld:DeviceMeasurement:{NS}:inv-01-dc1"]
    assert dc["voltage"]["value"] == 518 and dc["current"]["value"] == 2.19
    assert "numValue" not in dc and "power" not in dc          # the Solar API reports no DC power


def test_fronius_photovoltaic_measurement_hint_when_a_temperature_is_known():
    reading = fronius_reading("fronius-solarapi-v1-inverter-realtime-symo.json")
    reading.values["temperature_ambient_c"] = 12.0
    ents = by_id(map_reading(reading, ctx(PvSettings(photovoltaic_measurement=True))))
    pv = ents[f"urn:ngsi-ld:PhotovoltaicMeasurement:{NS}:inv-01"]
    hint = load_sample("fronius-solarapi-v1-inverter-realtime-symo.json")["expected"]["sdm_PhotovoltaicMeasurement"]
    assert pv["activePower"]["value"] == hint["activePower"]["value"]
    assert pv["activePower"]["unitCode"] == hint["activePower"]["unitCode"]
    assert pv["current"]["value"] == hint["current"]["value"]


def test_fronius_night_writes_energy_and_state_only():
    ents = by_id(map_reading(fronius_reading("fronius-solarapi-v1-inverter-realtime-symo-night-constructed.json"),
                             ctx(PvSettings(photovoltaic_measurement=True))))
    ac = ents[f"urn:ngsi-ld:ThreePhaseAcMeasurement:{NS}:inv-01"]
    assert attrs(ac) == {"totalActiveEnergyExport", "dateObserved", "refDevice", "name", "location",
                         "dateEnergyMeteringStarted"}
    assert ac["totalActiveEnergyExport"]["value"] == 44186.9
    assert ents[f"urn:ngsi-ld:Device:{NS}:inv-01"]["deviceState"]["value"] == "STANDBY"
    assert not [e for e in ents.values() if e["type"] == "PhotovoltaicMeasurement"]


def test_fronius_gen24_night_nulls():
    ents = by_id(map_reading(
        fronius_reading("fronius-solarapi-v1-inverter-realtime-gen24-night-nulls-constructed.json"), ctx()))
    assert {e["type"] for e in ents.values()} == {"ThreePhaseAcMeasurement", "Device"}
    ac = ents[f"urn:ngsi-ld:ThreePhaseAcMeasurement:{NS}:inv-01"]
    assert set(a for a in ac if "observedAt" in ac[a]) == {"totalActiveEnergyExport"}


def test_fronius_gen24_day():
    ents = by_id(map_reading(fronius_reading("fronius-solarapi-v1-inverter-realtime-gen24-nulls-constructed.json"),
                             ctx()))
    ac = ents[f"urn:ngsi-ld:ThreePhaseAcMeasurement:{NS}:inv-01"]
    assert ac["totalApparentPower"]["value"] == pytest.approx(1531.800049)
    assert ac["totalApparentPower"]["unitCode"] == "D46"
    assert f"urn:ngsi-ld:DeviceMeasurement:{NS}:inv-01-dc2" in ents


def test_fronius_three_phase_entity():
    ents = by_id(map_reading(fronius_reading("fronius-solarapi-v1-inverter-3p-symo-constructed.json"), ctx()))
    ac = ents[f"urn:ngsi-ld:ThreePhaseAcMeasurement:{NS}:inv-01"]
    assert ac["current"]["value"] == {"L1": 1.73, "L2": 1.72, "L3": 1.74}
    assert ac["phaseVoltage"]["value"] == {"L1": 229.9, "L2": 230.4, "L3": 231.1}
    assert ac["phaseVoltage"]["unitCode"] == "VLT"


def test_fronius_powerflow_site_entities():
    ents = by_id(map_reading(fronius_reading("fronius-solarapi-v1-powerflow-symo.json"), ctx()))
    grid = ents[f"urn:ngsi-ld:ThreePhaseAcMeasurement:{NS}:inv-01-grid"]
    pv = ents[f"urn:ngsi-ld:ThreePhaseAcMeasurement:{NS}:inv-01-pv"]
    load = ents[f"urn:ngsi-ld:ThreePhaseAcMeasurement:{NS}:inv-01-load"]
    assert grid["totalActivePower"]["value"] == 1703.74           # + import
    assert pv["totalActivePower"]["value"] == 1111 and pv["totalActiveEnergyExport"]["value"] == 44188.0
    assert load["totalActivePower"]["value"] == 2814.74           # + consumption
    assert grid["name"]["value"] == "PV Rathaus (grid)"
    assert len(ents) == 3


def test_fronius_powerflow_night_nulls_and_switch():
    reading = fronius_reading("fronius-solarapi-v1-powerflow-gen24-night-nulls-constructed.json")
    ents = by_id(map_reading(reading, ctx()))
    assert set(ents) == {f"urn:ngsi-ld:ThreePhaseAcMeasurement:{NS}:inv-01-{s}" for s in ("grid", "pv", "load")}
    assert "totalActivePower" not in ents[f"urn:ngsi-ld:ThreePhaseAcMeasurement:{NS}:inv-01-pv"]
    assert map_reading(reading, ctx(PvSettings(site_entities=False))) == []


def test_adapter_spec():
    assert ADAPTER.name == "pv"
    assert set(ADAPTER.profiles) == {"sunspec", "fronius-solarapi"}
    assert ADAPTER.profiles["sunspec"].kind == "modbus" and callable(ADAPTER.profiles["sunspec"].modbus_reader)
    assert ADAPTER.profiles["fronius-solarapi"].kind == "http"
    assert ADAPTER.semantics == "time-series"
    assert ADAPTER.settings_model is PvSettings
    assert ADAPTER.example_config.is_file()
    assert (ADAPTER.example_config.parent / "pv-devices.csv").is_file()


def test_packaged_example_config_is_valid():
    from stadtlink.adapters.core.config import load_config

    cfg, base = load_config(ADAPTER.example_config, adapter=ADAPTER)
    assert [s.kind for s in cfg.sources] == ["modbus", "http-poll"]
    assert cfg.sources[0].profile == "sunspec" and cfg.sources[1].profile == "fronius-solarapi"
    assert cfg.settings.photovoltaic_measurement is True
    registry = DeviceRegistry.load(inline=cfg.devices, files=cfg.registry_files, base_dir=base)
    for target in cfg.sources[0].targets:
        record = registry.lookup(target.device)
        assert record is not None and record.has_location and record.get("energy_metering_started")


registers = st.integers(min_value=0, max_value=0xFFFF)


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(common=st.lists(registers, min_size=66, max_size=66),
       inverter=st.lists(registers, min_size=50, max_size=50),
       inverter_id=st.sampled_from([101, 102, 103]),
       mppt=st.lists(registers, min_size=48, max_size=48))
def test_fuzz_any_register_values_give_valid_entities_or_none(common, inverter, inverter_id, mppt):
    """Whatever a device puts in its registers, every entity written passes the SDM check."""
    registers_ = join_chain([[1, 66, common], [inverter_id, 50, inverter], [160, 48, mppt]])
    reading = sunspec_reading(registers_)
    for entity in map_reading(reading, ctx(PvSettings(photovoltaic_measurement=True))):
        assert check_entity(entity) == [], (entity, check_entity(entity))
        for name, attr in entity.items():
            if isinstance(attr, dict) and attr.get("type") == "Property":
                assert attr["value"] is not None, name


@pytest.mark.parametrize("value, expected", [
    ("2019-04-01T00:00:00Z", "2019-04-01T00:00:00.000Z"),
    ("2019-04-01T02:00:00+02:00", "2019-04-01T00:00:00.000Z"),
    ("2019-04-01", "2019-04-01T00:00:00.000Z"),
    (__import__("datetime").date(2019, 4, 1), "2019-04-01T00:00:00.000Z"),
])
def test_energy_metering_started_forms(value, expected):
    record = {**RECORD, "energy_metering_started": value}
    ents = by_id(map_reading(sunspec_reading(), ctx(PvSettings(photovoltaic_measurement=True), records=[record])))
    pv = ents[f"urn:ngsi-ld:PhotovoltaicMeasurement:{NS}:inv-01"]
    assert pv["dateEnergyMeteringStarted"]["value"]["@value"] == expected


def test_energy_metering_started_unreadable_is_a_mapping_error_only_for_photovoltaic_measurement():
    record = {**RECORD, "energy_metering_started": "since 2019"}
    ents = by_id(map_reading(sunspec_reading(), ctx(records=[record])))
    assert "dateEnergyMeteringStarted" not in ents[f"urn:ngsi-ld:ThreePhaseAcMeasurement:{NS}:inv-01"]
    with pytest.raises(MappingError) as err:
        map_reading(sunspec_reading(), ctx(PvSettings(photovoltaic_measurement=True), records=[record]))
    assert err.value.reason == "registry-field-invalid"


fronius_numbers = st.one_of(st.none(), st.integers(-10**7, 10**9), st.floats(-1e7, 1e9, allow_nan=False))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(values=st.dictionaries(st.sampled_from(["PAC", "SAC", "FAC", "IAC", "UAC", "TOTAL_ENERGY", "IDC", "UDC",
                                                "IDC_2", "UDC_2", "IAC_L1", "IAC_L2", "UAC_L3", "T_AMBIENT"]),
                              fronius_numbers),
       site=st.dictionaries(st.sampled_from(["P_PV", "P_Grid", "P_Load", "P_Akku", "E_Total", "rel_Autonomy"]),
                            fronius_numbers))
def test_fuzz_fronius_values_give_valid_entities(values, site):
    docs = [{"Body": {"Data": {k: {"Unit": "W", "Value": v} for k, v in values.items()}}},
            {"Body": {"Data": {"Site": site}}}]
    for doc in docs:
        msg = RawMessage(source="http", payload=json.dumps(doc).encode(), received_at=NOW, device_hint="inv-01")
        reading = FRONIUS_PROFILE.decode(msg, {})[0]
        reading.values.setdefault("temperature_ambient_c", 5.0)
        for entity in map_reading(reading, ctx(PvSettings(photovoltaic_measurement=True))):
            assert check_entity(entity) == [], (entity, check_entity(entity))

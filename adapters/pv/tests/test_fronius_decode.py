"""Fronius Solar API v1: the real Symo answers and the constructed night / GEN24 / 3-phase variants."""
from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from stadtlink.adapters.core.errors import DecodeError, ReadingDropped
from stadtlink.adapters.core.reading import RawMessage
from stadtlink.adapters.pv.profiles import FRONIUS_PROFILE

from .helpers import NOW, load_sample


def decode(doc, *, device="inv-bauhof", options=None, as_bytes=True):
    payload = json.dumps(doc).encode() if as_bytes else doc
    msg = RawMessage(source="http", payload=payload, received_at=NOW, device_hint=device,
                     topic="http://127.0.0.1/solar_api/v1/x")
    readings = FRONIUS_PROFILE.decode(msg, options or {})
    assert len(readings) == 1
    return readings[0]


def utc(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(UTC)


def test_symo_day_sample_matches_expected():
    sample = load_sample("fronius-solarapi-v1-inverter-realtime-symo.json")
    exp = sample["expected"]
    r = decode(sample["raw"]["json"])
    assert r.kind == "inverter" and r.device_id == "inv-bauhof"
    assert r.observed_at == utc("2021-10-07T08:01:17Z")          # +02:00 local → UTC
    v = r.values
    assert v["ac_power_w"] == exp["PAC_W"]
    assert v["ac_current_a"] == exp["IAC_A"]
    assert v["ac_voltage_v"] == exp["UAC_V"]
    assert v["frequency_hz"] == exp["FAC_Hz"]
    assert v["energy_export_wh"] == exp["TOTAL_ENERGY_Wh"]
    assert v["energy_day_wh"] == exp["DAY_ENERGY_Wh"] and v["energy_year_wh"] == exp["YEAR_ENERGY_Wh"]
    assert v["dc_inputs"] == [{"id": 1, "current_a": exp["IDC_A"], "voltage_v": exp["UDC_V"]}]
    assert v["status_code"] == exp["StatusCode"] == 7 and v["status"] == "RUNNING"
    assert v["manufacturer"] == "Fronius"
    assert "current_l1_a" not in v          # IAC of a three-phase Symo is no per-phase value


def test_powerflow_sample_matches_expected():
    sample = load_sample("fronius-solarapi-v1-powerflow-symo.json")
    exp = sample["expected"]
    r = decode(sample["raw"]["json"], device="site-bauhof")
    assert r.kind == "powerflow"
    assert r.observed_at == utc("2021-10-07T08:00:43Z")
    v = r.values
    assert v["pv_power_w"] == exp["P_PV_W"]
    assert v["grid_power_w"] == exp["P_Grid_W"]
    assert v["load_power_w"] == exp["P_Load_W"]
    assert "battery_power_w" not in v                          # P_Akku null
    assert v["pv_energy_wh"] == exp["E_Total_Wh"]
    assert v["pv_energy_day_wh"] == pytest.approx(exp["E_Day_Wh"])
    assert v["autonomy"] == pytest.approx(exp["rel_Autonomy_pct"] / 100, abs=1e-6)
    assert v["self_consumption"] == 1.0
    assert v["inverters"] == [{"number": "1", "ac_power_w": exp["inverter_1_P_W"], "energy_export_wh": 44188000}]


def test_symo_night_ac_keys_absent():
    sample = load_sample("fronius-solarapi-v1-inverter-realtime-symo-night-constructed.json")
    exp = sample["expected"]
    r = decode(sample["raw"]["json"])
    assert r.observed_at == utc(exp["timestamp_utc"])
    v = r.values
    for key in ("ac_power_w", "ac_current_a", "ac_voltage_v", "frequency_hz", "ac_apparent_power_va"):
        assert key not in v
    assert v["energy_export_wh"] == exp["TOTAL_ENERGY_Wh"]
    assert v["dc_inputs"] == [{"id": 1, "current_a": 0, "voltage_v": 16}]   # real zeros stay zeros
    assert v["status_code"] == 8 and v["status"] == "STANDBY" and v["error_code"] == 307


def test_gen24_nulls_are_omitted():
    sample = load_sample("fronius-solarapi-v1-inverter-realtime-gen24-nulls-constructed.json")
    exp = sample["expected"]
    v = decode(sample["raw"]["json"]).values
    assert "energy_day_wh" not in v and "energy_year_wh" not in v
    assert v["ac_power_w"] == pytest.approx(exp["PAC_W"])
    assert v["ac_apparent_power_va"] == pytest.approx(exp["SAC_VA"])
    assert v["frequency_hz"] == pytest.approx(exp["FAC_Hz"])
    assert v["energy_export_wh"] == pytest.approx(exp["TOTAL_ENERGY_Wh"])
    assert [d["id"] for d in v["dc_inputs"]] == [1, 2]
    assert v["dc_inputs"][0]["current_a"] == pytest.approx(2.23, abs=1e-5)
    assert v["dc_inputs"][1]["voltage_v"] == pytest.approx(371.6, abs=1e-5)


def test_gen24_night_all_nulls():
    sample = load_sample("fronius-solarapi-v1-inverter-realtime-gen24-night-nulls-constructed.json")
    r = decode(sample["raw"]["json"])
    assert r.values == {"manufacturer": "Fronius", "energy_export_wh": 3861000.5, "status_code": 8,
                        "status": "STANDBY"}
    assert r.observed_at == utc(sample["expected"]["timestamp_utc"])


def test_three_phase_data():
    sample = load_sample("fronius-solarapi-v1-inverter-3p-symo-constructed.json")
    exp = sample["expected"]
    v = decode(sample["raw"]["json"]).values
    assert [v[f"current_l{n}_a"] for n in (1, 2, 3)] == [exp["current"][k] for k in ("L1", "L2", "L3")]
    assert [v[f"voltage_l{n}_v"] for n in (1, 2, 3)] == [exp["phaseVoltage"][k] for k in ("L1", "L2", "L3")]
    assert v["temperature_ambient_c"] == exp["T_AMBIENT_C"]


def test_powerflow_gen24_night_nulls():
    sample = load_sample("fronius-solarapi-v1-powerflow-gen24-night-nulls-constructed.json")
    v = decode(sample["raw"]["json"], device="site").values
    assert v["grid_power_w"] == 412.3 and v["load_power_w"] == -412.3
    assert "pv_power_w" not in v and "battery_power_w" not in v and "self_consumption" not in v
    assert v["autonomy"] == 0.0


def test_single_phase_option_maps_iac_uac_to_l1():
    sample = load_sample("fronius-solarapi-v1-inverter-realtime-symo.json")
    v = decode(sample["raw"]["json"], options={"phases": 1}).values
    assert v["current_l1_a"] == 5.19 and v["voltage_l1_v"] == 227.9 and v["power_l1_w"] == 1190
    assert v["phases"] == 1


def test_timestamp_missing_falls_back_to_poll_time():
    doc = load_sample("fronius-solarapi-v1-inverter-realtime-symo.json")["raw"]["json"]
    del doc["Head"]["Timestamp"]
    assert decode(doc).observed_at == NOW


def test_status_code_non_zero_is_a_counted_drop():
    doc = load_sample("fronius-solarapi-v1-inverter-realtime-symo.json")["raw"]["json"]
    doc["Head"]["Status"] = {"Code": 8, "Reason": "Transfer timeout", "UserMessage": ""}
    with pytest.raises(ReadingDropped) as err:
        decode(doc)
    assert err.value.reason == "fronius-status-8"


@pytest.mark.parametrize("payload, reason", [
    (b"{not json", "invalid-json"),
    (b"[" * 100_000, "invalid-json"),
    (b"[1, 2]", "fronius-not-solar-api"),
    (b'{"Body": {}}', "fronius-not-solar-api"),
    (b'{"Body": {"Data": {"PAC": {"Unit": "W", "Values": {"1": 5}}}}}', "fronius-unsupported-scope"),
    (b'{"Body": {"Data": {}}, "Head": {"Timestamp": "yesterday"}}', "bad-timestamp"),
])
def test_bad_documents_raise_decode_error(payload, reason):
    msg = RawMessage(source="http", payload=payload, received_at=NOW, device_hint="x")
    with pytest.raises(DecodeError) as err:
        FRONIUS_PROFILE.decode(msg, {})
    assert err.value.reason == reason


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(max_size=6),
    lambda c: st.lists(c, max_size=3) | st.dictionaries(st.sampled_from(
        ["Body", "Data", "Head", "Site", "PAC", "Value", "Unit", "Timestamp", "Status", "Code", "DeviceStatus",
         "StatusCode", "Inverters", "IDC_2", "P_Grid", "Values", "x"]), c, max_size=4),
    max_leaves=25)


@settings(max_examples=300, deadline=None)
@given(json_values)
def test_fuzz_fronius_raises_only_decode_errors(doc):
    for payload in (doc, json.dumps(doc).encode()):
        msg = RawMessage(source="http", payload=payload, received_at=NOW, device_hint="x")
        try:
            readings = FRONIUS_PROFILE.decode(msg, {})
        except (DecodeError, ReadingDropped):
            continue
        for reading in readings:
            assert all(v is not None for v in reading.values.values())


@settings(max_examples=100, deadline=None)
@given(st.binary(max_size=64))
def test_fuzz_fronius_bytes(data):
    msg = RawMessage(source="http", payload=data, received_at=NOW, device_hint="x")
    try:
        FRONIUS_PROFILE.decode(msg, {})
    except (DecodeError, ReadingDropped):
        pass


@pytest.mark.parametrize("code", ["x" * 5000, 10**9, -3, 2.5, True])
def test_a_status_code_that_is_not_a_small_integer_is_one_bounded_tag(code):
    """The code is the device's text: it becomes a metric label only as a small integer."""
    doc = load_sample("fronius-solarapi-v1-inverter-realtime-symo.json")["raw"]["json"]
    doc["Head"]["Status"] = {"Code": code, "Reason": "odd"}
    with pytest.raises(ReadingDropped) as err:
        decode(doc)
    assert err.value.reason == "fronius-status-other"

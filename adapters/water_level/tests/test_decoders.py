"""Every water-level sample decodes to its expected values; bad bytes give a reason, never a crash."""
import json
from pathlib import Path

import pytest
from hypothesis import given, settings, strategies as st

from stadtlink.adapters.core.errors import DecodeError, ReadingDropped
from stadtlink.adapters.core.reading import RawMessage
from stadtlink.adapters.core.timeutil import iso_ms, utcnow
from stadtlink.adapters.water_level import PROFILES
from stadtlink.adapters.water_level.decoders import decode_pegelonline

DATA = Path(__file__).resolve().parent.parent / "testdata"


def sample(name):
    return json.loads((DATA / name).read_text())


def payload(profile, raw):
    return PROFILES[profile].decode_payload(bytes.fromhex(raw["hex"]), raw["f_port"])


def test_dl_mbx_sample():
    s = sample("decentlab-dl-mbx-ultrasonic-level.json")
    v = payload("decentlab-dl-mbx", s["raw"])
    assert v["sensor_id"] == s["expected"]["device_id"]
    assert v["distance"] == pytest.approx(s["expected"]["distance"]["value"] / 1000)
    assert v["distance"] == pytest.approx(s["expected"]["sdm_FloodMonitoring"]["measuredDistance"]["value"])
    assert v["valid_samples"] == s["expected"]["number_of_valid_samples"]["value"]
    assert v["battery_voltage"] == pytest.approx(s["expected"]["battery_voltage"]["value"])
    battery_only = payload("decentlab-dl-mbx", s["more_cases"][0]["raw"])
    assert battery_only == {"sensor_id": 303, "battery_voltage": pytest.approx(2.993)}


def test_dl_mbx_no_echo_keeps_battery_and_names_the_drop():
    v = PROFILES["decentlab-dl-mbx"].decode_payload(bytes.fromhex("02012F000304D200000BB1"), 1)
    assert "distance" not in v
    assert v["dropped"] == {"measuredDistance": "no-echo"}
    assert v["battery_voltage"] == pytest.approx(2.993)


def test_dl_mbx_no_echo_without_battery_is_a_counted_drop():
    with pytest.raises(ReadingDropped) as err:
        PROFILES["decentlab-dl-mbx"].decode_payload(bytes.fromhex("02012F000104D20000"), 1)
    assert err.value.reason == "no-echo"


def test_em500_udl_sample():
    s = sample("milesight-em500-udl.json")
    v = payload("milesight-em500-udl", s["raw"])
    assert v["battery_level"] == s["expected"]["battery"]["value"] / 100
    assert v["distance"] == pytest.approx(s["expected"]["sdm"]["FloodMonitoring.measuredDistance"]["value"])


def test_em500_udl_history_and_device_info():
    frame = bytes.fromhex("ff0b01" + "ff166136c07412345678" + "20ce" + (1700000000).to_bytes(4, "little").hex()
                          + (1500).to_bytes(2, "little").hex() + "0382dc05")
    v = PROFILES["milesight-em500-udl"].decode_payload(frame, 85)
    assert v["history"] == [[1700000000, 1.5]]
    assert v["distance"] == pytest.approx(1.5)
    assert v["serial_number"] == "6136c07412345678"


def test_ldds75_sample():
    s = sample("dragino-ldds75-constructed.json")
    v = payload("dragino-ldds75", s["raw"])
    e = s["expected"]
    assert v["battery_voltage"] == pytest.approx(e["battery_V"])
    assert v["distance"] == pytest.approx(e["distance_mm"] / 1000)
    assert v["probe_temperature"] == pytest.approx(e["ds18b20_temperature_C"])
    assert v["interrupt"] == e["interrupt_flag"] and v["sensor_flag"] == e["sensor_flag"]


@pytest.mark.parametrize("distance_hex,reason", [("0000", "no-sensor"), ("0013", "below-minimum")])
def test_ldds75_invalid_distance(distance_hex, reason):
    v = PROFILES["dragino-ldds75"].decode_payload(bytes.fromhex(f"0B45{distance_hex}00010501"), 2)
    assert "distance" not in v and v["dropped"] == {"measuredDistance": reason}


@pytest.mark.parametrize("profile,frame,f_port,reason", [
    ("decentlab-dl-mbx", "03012F000304D200010BB1", 1, "unsupported-version"),
    ("decentlab-dl-mbx", "02012F000304D2", 1, "bad-length"),
    ("decentlab-dl-mbx", "0201", 1, "bad-length"),
    ("milesight-em500-udl", "0175", 85, "truncated"),
    ("milesight-em500-udl", "0999aa", 85, "unknown-channel"),
    ("dragino-ldds75", "0B4509C4000105", 2, "bad-length"),
    ("dragino-ldds75", "0B4509C400010501", 5, "unknown-fport"),
])
def test_bad_frames_have_a_reason(profile, frame, f_port, reason):
    with pytest.raises(DecodeError) as err:
        PROFILES[profile].decode_payload(bytes.fromhex(frame), f_port)
    assert err.value.reason == reason


@settings(max_examples=300, deadline=None)
@given(profile=st.sampled_from(["decentlab-dl-mbx", "milesight-em500-udl", "dragino-ldds75"]),
       data=st.binary(max_size=40), f_port=st.one_of(st.none(), st.integers(0, 255)))
def test_fuzz_payload_decoders_only_raise_decode_errors(profile, data, f_port):
    try:
        values = PROFILES[profile].decode_payload(data, f_port)
    except (DecodeError, ReadingDropped) as exc:
        assert exc.reason
    else:
        assert isinstance(values, dict)
        assert all(v is not None for v in values.values())


def _message(doc, device=None):
    body = doc if isinstance(doc, bytes) else json.dumps(doc).encode()
    return RawMessage(source="http", payload=body, received_at=utcnow(), device_hint=device)


def test_pegelonline_sample_emits_utc():
    s = sample("pegelonline-rest-v2-station-with-timeseries.json")
    [r] = decode_pegelonline(_message(s["raw"]["json"]), {})
    e = s["expected"]
    assert r.device_id == e["station_uuid"]
    assert iso_ms(r.observed_at) == "2023-07-26T17:15:00.000Z"
    assert r.values["water_level"] == pytest.approx(e["sdm_WaterObserved"]["waterLevel"]["value"])
    assert r.values["flow"] == e["discharge"]["value"]
    assert iso_ms(r.meta["flow_observed_at"]) == "2023-07-26T17:00:00.000Z"
    assert [r.values["lon"], r.values["lat"]] == e["location"]["coordinates"]
    assert r.values["gauge_zero"] + r.values["water_level"] == pytest.approx(e["water_level_absolute_m_NHN"])


def test_pegelonline_list_and_current_measurement_shapes():
    station = sample("pegelonline-rest-v2-station-with-timeseries.json")["raw"]["json"]
    other = dict(station, uuid="other", timeseries=[])
    readings = decode_pegelonline(_message([station, other]), {})
    assert [r.device_id for r in readings] == [station["uuid"]]
    [cur] = decode_pegelonline(_message({"timestamp": "2024-01-10T10:00:00+01:00", "value": -12, "trend": -1,
                                         "stateMnwMhw": "low"}, device="trier"), {})
    assert cur.device_id == "trier" and cur.values["water_level"] == pytest.approx(-0.12)
    assert iso_ms(cur.observed_at) == "2024-01-10T09:00:00.000Z"


@pytest.mark.parametrize("body,reason", [
    (b"{not json", "invalid-json"),
    (b'"text"', "unexpected-shape"),
    (b'[1, 2]', "unexpected-shape"),
    (json.dumps({"uuid": "x", "timeseries": [{"shortname": "W", "unit": "cm", "currentMeasurement":
                                              {"timestamp": "2024-01-10T10:00:00", "value": 3}}]}).encode(), "bad-timestamp"),
])
def test_pegelonline_bad_answers(body, reason):
    with pytest.raises(DecodeError) as err:
        decode_pegelonline(_message(body), {})
    assert err.value.reason == reason


def test_pegelonline_without_measurements_is_a_counted_drop():
    with pytest.raises(ReadingDropped):
        decode_pegelonline(_message([{"uuid": "a", "timeseries": []}]), {})


def test_simulator_frames_round_trip_through_the_decoders():
    from stadtlink.adapters.water_level.simulator import ENCODERS, gauge_frame

    for profile in ENCODERS:
        frame, f_port = gauge_frame(profile, reference_level=3.5, level=2.25)
        assert PROFILES[profile].decode_payload(frame, f_port)["distance"] == pytest.approx(1.25)


async def test_pegelonline_simulator_answers_like_the_api():
    from aiohttp import web
    from aiohttp.test_utils import TestClient, TestServer

    from stadtlink.adapters.water_level.simulator import PegelonlineSimulator

    clock = iter(range(0, 10_000, 300))
    sim = PegelonlineSimulator([{"uuid": "u1", "number": "2610010", "name": "Trier", "water": "MOSEL", "lon": 6.63,
                                 "lat": 49.75, "base_m": 1.0, "peak_m": 3.0, "period_s": 1200}],
                               clock=lambda: 1_700_000_000 + next(clock))
    app = web.Application()
    sim.add_routes(app)
    async with TestClient(TestServer(app)) as client:
        body = await (await client.get("/webservices/rest-api/v2/stations.json")).read()
        readings = decode_pegelonline(_message(body), {})
        assert [r.device_id for r in readings] == ["u1"]
        assert 1.0 <= readings[0].values["water_level"] <= 3.0
        assert readings[0].observed_at.tzinfo is not None and readings[0].observed_at.utcoffset().total_seconds() == 0
        assert (await client.get("/webservices/rest-api/v2/stations/nope.json")).status == 404

"""json-map profile: already-decoded JSON → readings by configured paths."""
from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from stadtlink.adapters.core.errors import DecodeError
from stadtlink.adapters.core.jsonmap import _MISSING, CONVERSIONS, JSON_MAP_PROFILE, parse_path, resolve, validate_options
from stadtlink.adapters.core.lorawan import chirpstack_uplink, tts_uplink
from stadtlink.adapters.core.reading import RawMessage
from stadtlink.adapters.core.testing import run_profile

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"
TTS_SAMPLE = FIXTURES / "lorawan" / "tts-v3-uplink.json"
CS_SAMPLE = FIXTURES / "lorawan" / "chirpstack-v4-uplink.json"
PARKAPI = FIXTURES / "json-map" / "parkapi-v3-push-json-mannheim.json"
NOW = datetime(2024, 5, 1, 12, 0, tzinfo=timezone.utc)


def _msg(body, *, device="station-1", topic="http://example/api", source="http") -> RawMessage:
    payload = body if isinstance(body, bytes) else orjson.dumps(body)
    return RawMessage(source=source, payload=payload, received_at=NOW, topic=topic, device_hint=device)


def test_tts_decoded_payload():
    options = {"fields": {"temperature": {"path": "decoded.temperature", "unit_code": "CEL"},
                          "illuminance": {"path": "decoded.luminosity", "scale": 1000, "unit_code": "LUX"},
                          "relativeHumidity": {"path": "decoded.humidity"}}}
    [r] = run_profile(JSON_MAP_PROFILE, TTS_SAMPLE, options=options)
    assert r.device_id == "dev1" and r.profile == "json-map" and r.kind == "measurement"
    assert r.values == {"temperature": 1.0, "illuminance": 640.0}      # humidity absent → omitted
    assert r.meta["unit_codes"] == {"temperature": "CEL", "illuminance": "LUX"}
    assert r.observed_at == datetime(2020, 2, 12, 15, 15, 45, 789585, tzinfo=timezone.utc)
    assert r.meta["dev_eui"] == "0004a30b001c0530" and r.meta["rssi"] == -35 and r.meta["f_cnt"] == 1
    assert r.meta["time_source"] == "network-server"


def test_chirpstack_object_and_envelope_paths():
    topic, doc = chirpstack_uplink("0101010101010101", b"\x01", f_port=5, f_cnt=9, time="2024-05-01T10:00:00Z")
    doc["object"] = {"water": {"level_cm": 123.4}, "battery": 3.61, "alarm": False, "label": "north"}
    options = {"fields": {"waterLevel": {"path": "decoded.water.level_cm", "convert": "cm_to_m", "unit_code": "MTR"},
                          "batteryVoltage": "decoded.battery", "alarm": "decoded.alarm", "label": "decoded.label",
                          "port": "uplink.fPort"}}
    msg = RawMessage(source="mqtt", payload=orjson.dumps(doc), topic=topic, received_at=NOW)
    [r] = JSON_MAP_PROFILE.decode(msg, options)
    assert r.device_id == "0101010101010101"
    assert r.values == {"waterLevel": pytest.approx(1.234), "batteryVoltage": 3.61, "alarm": False,
                        "label": "north", "port": 5}
    assert r.meta["unit_codes"] == {"waterLevel": "MTR"}


def test_uplink_without_decoder_output_has_no_mapped_fields():
    with pytest.raises(DecodeError) as err:
        run_profile(JSON_MAP_PROFILE, CS_SAMPLE, options={"fields": {"temperature": "decoded.temperature"}})
    assert err.value.reason == "no-mapped-fields"


def test_plain_json_with_device_and_time_paths():
    body = {"station": {"id": "ws-7", "ts": "2024-05-01T14:00:00+02:00"},
            "data": [{"v": 12.5}, {"v": "98.1"}], "hum": 55}
    options = {"device_path": "station.id", "time_path": "station.ts",
               "fields": {"temperature": {"path": "data.0.v", "unit_code": "CEL"},
                          "atmosphericPressure": {"path": "data[1].v", "convert": "kpa_to_hpa", "unit_code": "A97"},
                          "relativeHumidity": {"path": "hum", "convert": "percent_to_fraction", "unit_code": "C62"}}}
    [r] = JSON_MAP_PROFILE.decode(_msg(body), options)
    assert r.device_id == "ws-7"
    assert r.observed_at == datetime(2024, 5, 1, 12, 0, tzinfo=timezone.utc)
    assert r.values == {"temperature": 12.5, "atmosphericPressure": pytest.approx(981.0), "relativeHumidity": 0.55}
    assert r.meta["time_source"] == "payload"


@pytest.mark.parametrize("stamp,expected", [
    (1714564800, datetime(2024, 5, 1, 12, 0, tzinfo=timezone.utc)),
    (1714564800123, datetime(2024, 5, 1, 12, 0, 0, 123000, tzinfo=timezone.utc)),
    ("2024-05-01T12:00:00Z", datetime(2024, 5, 1, 12, 0, tzinfo=timezone.utc)),
])
def test_time_path_epoch_seconds_milliseconds_iso(stamp, expected):
    [r] = JSON_MAP_PROFILE.decode(_msg({"t": stamp, "x": 1}), {"time_path": "t", "fields": {"x": "x"}})
    assert r.observed_at == expected


@pytest.mark.parametrize("body,reason", [({"x": 1}, "no-time"), ({"x": 1, "t": "soon"}, "bad-time"),
                                         ({"x": 1, "t": {"a": 1}}, "bad-time")])
def test_bad_or_missing_time(body, reason):
    with pytest.raises(DecodeError) as err:
        JSON_MAP_PROFILE.decode(_msg(body), {"time_path": "t", "fields": {"x": "x"}})
    assert err.value.reason == reason


def test_no_time_path_uses_receive_time_and_says_so():
    [r] = JSON_MAP_PROFILE.decode(_msg({"x": 1}), {"fields": {"x": "x"}})
    assert r.observed_at == NOW and r.meta["time_source"] == "received" and r.device_id == "station-1"


def test_scale_offset_then_conversion():
    [r] = JSON_MAP_PROFILE.decode(_msg({"raw": 1000}), {"fields": {
        "temperature": {"path": "raw", "scale": 0.1, "offset": 32, "convert": "f_to_c"}}})
    assert r.values["temperature"] == pytest.approx((1000 * 0.1 + 32 - 32) * 5 / 9)


def test_unusable_values_are_omitted_and_listed():
    body = {"a": "n/a", "b": True, "c": {"x": 1}, "d": 2, "e": None, "f": "NaN"}
    options = {"fields": {"a": {"path": "a", "scale": 2}, "b": {"path": "b", "scale": 2}, "c": {"path": "c", "scale": 2},
                          "d": {"path": "d", "scale": 2}, "e": "e", "f": {"path": "f", "scale": 1.5}}}
    [r] = JSON_MAP_PROFILE.decode(_msg(body), options)
    assert r.values == {"d": 4}
    assert sorted(r.meta["unusable_fields"]) == ["a", "b", "c", "f"]


def test_no_mapped_fields_and_no_device():
    with pytest.raises(DecodeError) as err:
        JSON_MAP_PROFILE.decode(_msg({"y": 1}), {"fields": {"x": "x"}})
    assert err.value.reason == "no-mapped-fields"
    with pytest.raises(DecodeError) as err:
        JSON_MAP_PROFILE.decode(_msg({"x": 1}, device=None), {"fields": {"x": "x"}})
    assert err.value.reason == "no-device"
    with pytest.raises(DecodeError) as err:
        JSON_MAP_PROFILE.decode(_msg({"x": 1}), {"device_path": "id", "fields": {"x": "x"}})
    assert err.value.reason == "no-device"


def test_items_path_one_reading_per_record():
    options = {"items_path": "items", "device_path": "uid", "time_path": "realtime_data_updated_at",
               "fields": {"availableSpotNumber": "realtime_free_capacity", "totalSpotNumber": "capacity",
                          "name": "name"}}
    readings = run_profile(JSON_MAP_PROFILE, PARKAPI, options=options)
    [r] = readings
    expected = json.loads(PARKAPI.read_text())["expected"]
    assert r.device_id == expected["uid"]
    assert r.values == {"availableSpotNumber": expected["availableSpotNumber"],
                        "totalSpotNumber": expected["totalSpotNumber"], "name": expected["name"]}
    assert r.observed_at == datetime(2024, 2, 20, 16, 5, 33, tzinfo=timezone.utc)
    with pytest.raises(DecodeError) as err:
        JSON_MAP_PROFILE.decode(_msg({"items": {}}), options)
    assert err.value.reason == "no-items"


@pytest.mark.parametrize("options", [
    {}, {"fields": {}}, {"fields": {"x": {"path": ""}}}, {"fields": {"x": {"path": "a", "convert": "furlongs"}}},
    {"fields": {"x": {"path": "a", "bogus": 1}}}, {"fields": {"x": 5}}, {"fields": {"x": "a"}, "time_path": ""},
])
def test_bad_options(options):
    with pytest.raises(DecodeError) as err:
        JSON_MAP_PROFILE.decode(_msg({"a": 1}), options)
    assert err.value.reason == "bad-options"


def test_invalid_json_and_extra_option_keys():
    with pytest.raises(DecodeError) as err:
        JSON_MAP_PROFILE.decode(_msg(b"{nope"), {"fields": {"x": "x"}})
    assert err.value.reason == "invalid-json"
    # sources merge their own keys (role …) into options: allowed
    validate_options({"fields": {"x": "x"}, "role": "status"})


def test_paths():
    assert parse_path("a.b[2].c") == ("a", "b", 2, "c") == parse_path("a.b.2.c")
    assert resolve({"a": [{"b": 1}]}, parse_path("a.0.b")) == 1
    assert resolve({"a": {"0": "zero"}}, parse_path("a.0")) == "zero"
    assert resolve({"a": [1]}, parse_path("a.5")) is _MISSING and resolve({"a": 1}, parse_path("a.b")) is _MISSING
    assert set(CONVERSIONS) >= {"percent_to_fraction", "kpa_to_hpa", "f_to_c", "mm_to_m"}


def test_tts_builder_envelope_is_recognised_by_topic():
    topic, doc = tts_uplink("spot-1", b"\x00", f_port=1, f_cnt=2, received_at="2024-05-01T12:00:00Z")
    doc["uplink_message"]["decoded_payload"] = {"occupied": True}
    msg = RawMessage(source="mqtt", payload=orjson.dumps(doc), topic=topic, received_at=NOW)
    [r] = JSON_MAP_PROFILE.decode(msg, {"fields": {"occupied": "decoded.occupied"}})
    assert r.device_id == "spot-1" and r.values == {"occupied": True}


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(min_value=-10**12, max_value=10**12) | st.floats() | st.text(max_size=10),
    lambda c: st.lists(c, max_size=3) | st.dictionaries(st.sampled_from(["a", "b", "t", "id", "0"]), c, max_size=3),
    max_leaves=15)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(json_values, st.sampled_from([None, "t", "a.t"]), st.sampled_from([None, "id", "a.id"]),
       st.sampled_from([None, "a", "b"]))
def test_fuzz_only_decode_errors(body, time_path, device_path, items_path):
    options = {"fields": {"x": {"path": "a.b", "scale": 2.0}, "y": "b.0", "z": {"path": "a", "convert": "f_to_c"}},
               "time_path": time_path, "device_path": device_path, "items_path": items_path}
    try:
        readings = JSON_MAP_PROFILE.decode(_msg(json.dumps(body).encode()), options)
    except DecodeError as exc:
        assert exc.reason
        return
    for r in readings:
        assert r.values and r.device_id and r.observed_at.tzinfo is not None


def test_options_changed_in_place_are_validated_again():
    options = {"fields": {"x": {"path": "x"}}}
    assert JSON_MAP_PROFILE.decode(_msg({"x": 1}), options)[0].values == {"x": 1}
    options["fields"]["x"]["convert"] = "bogus"
    with pytest.raises(DecodeError) as err:
        JSON_MAP_PROFILE.decode(_msg({"x": 1}), options)
    assert err.value.reason == "bad-options"
    options["fields"]["x"]["convert"] = "mm_to_m"
    assert JSON_MAP_PROFILE.decode(_msg({"x": 1500}), options)[0].values == {"x": 1.5}

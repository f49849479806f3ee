"""Decoders: every weather sample (raw + more_cases) decodes to its expected values; bad bytes give
DecodeError and nothing else; the LoRaWAN profiles work inside real TTS v3 / ChirpStack v4 envelopes."""
from __future__ import annotations

import base64
import copy
from datetime import datetime, timezone

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from stadtlink.adapters.climate import ADAPTER
from stadtlink.adapters.climate.decoders import (
    ATM41_GROUPS,
    READING_KEYS,
    decode_decentlab_v2,
    decode_dl_atm41,
    decode_meteohelix,
    meteohelix_fields,
)
from stadtlink.adapters.climate.simulator import encode_meteohelix
from stadtlink.adapters.core.errors import DecodeError
from stadtlink.adapters.core.reading import RawMessage

from .helpers import ATM41, HELIX, sample

# sample key → (our reading key, factor from the sample's unit to ours)
ATM41_KEYS = {
    "solar_radiation": ("solar_radiation", 1),
    "precipitation": ("precipitation", 1),
    "lightning_strike_count": ("lightning_count", 1),
    "lightning_average_distance": ("lightning_distance", 1),
    "wind_speed": ("wind_speed", 1),
    "wind_direction": ("wind_direction", 1),
    "maximum_wind_speed": ("wind_gust", 1),
    "air_temperature": ("air_temperature", 1),
    "vapor_pressure": ("vapour_pressure", 1000),          # kPa → Pa
    "atmospheric_pressure": ("atmospheric_pressure", 1000),
    "relative_humidity": ("relative_humidity", 0.01),     # % → fraction
    "sensor_temperature_internal": ("sensor_temperature", 1),
    "x_orientation_angle": ("tilt_x", 1),
    "y_orientation_angle": ("tilt_y", 1),
    "compass_heading": ("compass_heading", 1),
    "north_wind_speed": ("wind_speed_north", 1),
    "east_wind_speed": ("wind_speed_east", 1),
    "battery_voltage": ("battery_voltage", 1),
}


def _expected_atm41(expected: dict) -> dict:
    out = {"device_serial": expected["device_id"]}
    for key, (ours, factor) in ATM41_KEYS.items():
        if key in expected:
            out[ours] = expected[key]["value"] * factor
    return out


def _cases(doc: dict) -> list[tuple[dict, dict]]:
    return [(doc["raw"], doc["expected"])] + [(c["raw"], c["expected"]) for c in doc.get("more_cases", [])]


@pytest.mark.parametrize("raw,expected", _cases(ATM41), ids=lambda x: x.get("hex", "")[:14] if isinstance(x, dict) else "")
def test_dl_atm41_sample_decodes_to_expected_values(raw, expected):
    payload = bytes.fromhex(raw["hex"])
    assert base64.b64decode(raw["base64"]) == payload
    values = decode_dl_atm41(payload, raw["f_port"])
    kind = values.pop("kind", "measurement")
    want = _expected_atm41(expected)
    assert set(values) == set(want)
    for key, value in want.items():
        assert values[key] == pytest.approx(value, abs=1e-9), key
    assert kind == ("battery" if "air_temperature" not in expected else "measurement")
    assert expected["protocol_version"] == payload[0] == 2


def test_dl_atm41_signed_values_use_the_offset_not_twos_complement():
    values = decode_dl_atm41(bytes.fromhex(ATM41["raw"]["hex"]), 1)
    assert values["tilt_y"] == -2.4            # word 0x7FE8 = 32744 → (32744 − 32768)/10
    assert values["air_temperature"] == 26.4


def test_meteohelix_sample_decodes_to_expected_values():
    exp = HELIX["expected"]
    payload = bytes.fromhex(HELIX["raw"]["hex"])
    assert base64.b64decode(HELIX["raw"]["base64"]) == payload
    raw = meteohelix_fields(payload)
    for key, value in exp["raw_fields"].items():
        want = None if value == 255 and key == "rain_min_time" else value   # all ones = N/A
        assert raw[key] == want, key
    values = decode_meteohelix(payload, HELIX["raw"]["f_port"])
    assert values == {
        "battery_voltage": exp["battery_V"],
        "air_temperature": exp["temperature_C"],
        "air_temperature_min": exp["t_min_C"],
        "air_temperature_max": exp["t_max_C"],
        "relative_humidity": pytest.approx(exp["humidity_pct"] / 100),
        "atmospheric_pressure": exp["pressure_Pa"],
        "solar_radiation": exp["irradiation_Wm2"],
        "solar_radiation_max": exp["irr_max_Wm2"],
        "rain_counter": exp["rain_counter"],
    }
    # rain_min_time 255 (all ones) = no click in the interval → no key
    assert "rain_min_click_interval" not in values


def test_every_decoded_key_is_a_documented_reading_key():
    for payload, fn in ((bytes.fromhex(ATM41["raw"]["hex"]), decode_dl_atm41),
                        (bytes.fromhex(HELIX["raw"]["hex"]), decode_meteohelix)):
        keys = set(fn(payload, 1)) - {"kind"}
        assert keys <= set(READING_KEYS)


def test_meteohelix_all_ones_fields_are_omitted():
    payload = encode_meteohelix({"air_temperature": 20.0, "rain_counter": 7})  # everything else: all ones
    assert meteohelix_fields(payload)["humidity"] is None
    values = decode_meteohelix(payload)
    assert values == {"air_temperature": 20.0, "rain_counter": 7}


def test_meteohelix_temperature_error_drops_min_and_max_too():
    full = {"air_temperature": 20.0, "air_temperature_min": 19.5, "air_temperature_max": 20.5, "relative_humidity": 0.5}
    values = decode_meteohelix(encode_meteohelix({**full, "air_temperature": None}))
    assert "air_temperature" not in values and "air_temperature_min" not in values and "air_temperature_max" not in values
    assert values["relative_humidity"] == 0.5


def test_meteohelix_rain_min_time_is_182_over_seconds():
    values = decode_meteohelix(encode_meteohelix({"rain_counter": 3, "rain_min_click_interval": 18.2}))
    assert values["rain_min_click_interval"] == 18.2   # field 10 = 182 / 18.2 s


@pytest.mark.parametrize("payload,f_port,reason", [
    (b"", 1, "bad-length"),
    (b"\x02\x03\x5a\x00", 1, "bad-length"),
    (bytes.fromhex("01035A00020BF5"), 1, "unsupported-version"),
    (bytes.fromhex("02035A00040BF5"), 1, "unknown-sensor-group"),
    (bytes.fromhex("02035A0000"), 1, "empty-frame"),
    (bytes.fromhex("02035A00020BF500"), 1, "bad-length"),
    (bytes.fromhex(ATM41["raw"]["hex"])[:-2], 1, "bad-length"),
    (bytes.fromhex(ATM41["raw"]["hex"]), 2, "unknown-fport"),
])
def test_dl_atm41_bad_frames(payload, f_port, reason):
    with pytest.raises(DecodeError) as err:
        decode_dl_atm41(payload, f_port)
    assert err.value.reason == reason


@pytest.mark.parametrize("payload,reason", [
    (bytes.fromhex("6F19C10A393F28B00601"), "bad-length"),
    (bytes.fromhex("6F19C10A393F28B00601FFFF"), "bad-length"),
    (bytes.fromhex("2F19C10A393F28B00601FF"), "unsupported-message-type"),   # type 0
    (bytes.fromhex("FF19C10A393F28B00601FF"), "unsupported-message-type"),   # type all ones
])
def test_meteohelix_bad_messages(payload, reason):
    with pytest.raises(DecodeError) as err:
        decode_meteohelix(payload, 1)
    assert err.value.reason == reason


@settings(max_examples=400, deadline=None)
@given(payload=st.binary(max_size=64), f_port=st.one_of(st.none(), st.integers(0, 255)))
def test_decoders_never_raise_anything_but_decode_error(payload, f_port):
    for fn in (decode_dl_atm41, decode_meteohelix):
        try:
            values = fn(payload, f_port)
        except DecodeError as exc:
            assert exc.reason
        else:
            assert isinstance(values, dict)
            assert all(v is not None for v in values.values())


@settings(max_examples=200, deadline=None)
@given(words=st.lists(st.integers(0, 0xFFFF), min_size=18, max_size=18), serial=st.integers(0, 0xFFFF))
def test_dl_atm41_any_word_values_decode(words, serial):
    payload = bytes([2]) + serial.to_bytes(2, "big") + (3).to_bytes(2, "big") + b"".join(
        w.to_bytes(2, "big") for w in words)
    values = decode_decentlab_v2(payload, ATM41_GROUPS)
    assert values["device_serial"] == serial
    assert values["battery_voltage"] == round(words[-1] / 1000, 3)


# --- profiles inside real network-server envelopes --------------------------------------------

def _tts_envelope(payload: bytes, f_port: int) -> bytes:
    doc = copy.deepcopy(sample("tts-v3-uplink.json")["raw"]["json"])
    doc["uplink_message"]["frm_payload"] = base64.b64encode(payload).decode()
    doc["uplink_message"]["f_port"] = f_port
    doc["uplink_message"].pop("decoded_payload", None)
    return orjson.dumps(doc)


def _chirpstack_envelope(payload: bytes, f_port: int) -> bytes:
    doc = copy.deepcopy(sample("chirpstack-v4-uplink.json")["raw"]["json"])
    doc["data"] = base64.b64encode(payload).decode()
    doc["fPort"] = f_port
    doc.pop("object", None)
    return orjson.dumps(doc)


@pytest.mark.parametrize("wrap", [_tts_envelope, _chirpstack_envelope], ids=["tts-v3", "chirpstack-v4"])
@pytest.mark.parametrize("profile,doc", [("decentlab-dl-atm41", ATM41), ("barani-meteohelix", HELIX)])
def test_profiles_decode_inside_published_envelopes(wrap, profile, doc):
    payload = bytes.fromhex(doc["raw"]["hex"])
    message = RawMessage(source="mqtt", payload=wrap(payload, 1), received_at=datetime.now(timezone.utc))
    readings = ADAPTER.profiles[profile].decode(message, {})
    assert len(readings) == 1
    r = readings[0]
    assert r.profile == profile
    direct = {"decentlab-dl-atm41": decode_dl_atm41, "barani-meteohelix": decode_meteohelix}[profile](payload, 1)
    direct.pop("kind", None)
    assert r.values == direct
    assert r.observed_at.tzinfo is not None and r.observed_at.utcoffset().total_seconds() == 0
    assert isinstance(r.meta["rssi"], float)
    assert r.meta["network"] in ("tts-v3", "chirpstack-v4")


def test_adapter_declares_the_issue_profile_names():
    assert {"decentlab-dl-atm41", "barani-meteohelix"} <= set(ADAPTER.profiles)
    assert ADAPTER.semantics == "time-series"
    assert ADAPTER.entity_types == ("WeatherObserved", "Device", "DeviceMeasurement")

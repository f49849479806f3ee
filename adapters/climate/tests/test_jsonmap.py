"""The runtime's json-map profile with the climate mapper: a generic decoded station (TTS
decoded_payload / ChirpStack object) becomes the same WeatherObserved as the raw-byte profiles."""
from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

import orjson
import pytest
import yaml

from stadtlink.adapters.climate import ADAPTER, PACKAGE_DIR
from stadtlink.adapters.climate.mapper import map_reading
from stadtlink.adapters.core.lorawan import chirpstack_uplink, tts_uplink
from stadtlink.adapters.core.reading import RawMessage
from stadtlink.schemas import check_entity

from .helpers import by_type, context, one

jsonmap = pytest.importorskip("stadtlink.adapters.core.jsonmap")

EXAMPLE = Path(__file__).resolve().parents[3] / "examples" / "climate-jsonmap.yaml"
DECODED = {"temperature": 21.4, "humidity": 55.2, "pressure": 1008.2, "wind_speed_kmh": 7.6, "wind_direction": 230,
           "gust_kmh": 16.2, "rain_mm": 0.4, "illuminance": 23000, "battery_pct": 87}


def _options() -> dict:
    doc = yaml.safe_load((PACKAGE_DIR / "example-jsonmap.yaml").read_text())
    return doc["sources"][0]["options"]


def _tts_message(decoded: dict, device: str = "mhm-luisenpark", f_cnt: int = 5) -> RawMessage:
    topic, env = tts_uplink(device, b"\x01", f_port=3, f_cnt=f_cnt, received_at="2026-06-21T12:00:00.5Z",
                            application_id="klima-generic")
    env["uplink_message"]["decoded_payload"] = decoded
    return RawMessage(source="mqtt", payload=orjson.dumps(env), topic=topic, received_at=datetime.now(timezone.utc))


def test_json_map_is_one_of_the_climate_profiles():
    assert ADAPTER.profiles["json-map"] is jsonmap.JSON_MAP_PROFILE


def test_generic_decoded_station_becomes_weather_observed():
    (reading,) = ADAPTER.profiles["json-map"].decode(_tts_message(DECODED), _options())
    entities = map_reading(reading, context())
    for e in entities:
        assert check_entity(e) == [], e["id"]
    wo = one(entities, "WeatherObserved")
    got = {k: (v["value"], v["unitCode"]) for k, v in wo.items() if isinstance(v, dict) and "unitCode" in v}
    assert got == {
        "temperature": (21.4, "CEL"),
        "relativeHumidity": (pytest.approx(0.552), "C62"),
        "atmosphericPressure": (pytest.approx(1008.2), "A97"),
        "windSpeed": (pytest.approx(2.111, abs=1e-3), "MTS"),
        "gustSpeed": (pytest.approx(4.5), "MTS"),
        "windDirection": (230, "DD"),
        "precipitation": (0.4, "MMT"),
        "illuminance": (23000, "LUX"),
        "dewPoint": (pytest.approx(12.0, abs=0.1), "CEL"),
    }
    assert wo["temperature"]["observedAt"] == "2026-06-21T12:00:00.500Z"
    dev = one(entities, "Device")
    assert dev["batteryLevel"]["value"] == 0.87
    assert dev["rssi"]["value"] == -80.0
    assert set(dev["controlledProperty"]["value"]) == {"temperature", "humidity", "atmosphericPressure",
                                                       "windSpeed", "windDirection", "precipitation", "light"}
    assert by_type(entities, "DeviceMeasurement") == []


def test_generic_station_implausible_value_is_dropped():
    (reading,) = ADAPTER.profiles["json-map"].decode(_tts_message({**DECODED, "humidity": 104.0}), _options())
    wo = one(map_reading(reading, context()), "WeatherObserved")
    assert "relativeHumidity" not in wo and "dewPoint" not in wo and wo["temperature"]["value"] == 21.4
    assert reading.meta["dropped"] == {"relativeHumidity": "implausible"}


def test_generic_station_with_a_revolving_rain_counter():
    """A decoded counter (rainCounter) gets the same delta/wrap/reset handling, with the uplink's fCnt."""
    # ChirpStack's codec output (`object`) is found under `decoded.` like TTS's decoded_payload
    options = {"fields": {"temperature": "decoded.t", "rainCounter": "decoded.clicks"}}
    ctx = context()
    out = []
    for f_cnt, clicks, time in ((1, 250, "2026-06-21T12:00:00Z"), (2, 2, "2026-06-21T12:10:00Z")):
        topic, env = chirpstack_uplink("0004a30b00000202", b"\x00", f_port=2, f_cnt=f_cnt, time=time)
        env["object"] = {"t": 18.0, "clicks": clicks}
        (reading,) = ADAPTER.profiles["json-map"].decode(
            RawMessage(source="mqtt", payload=orjson.dumps(env), topic=topic, received_at=datetime.now(timezone.utc)),
            options)
        out.append(one(map_reading(reading, ctx), "WeatherObserved"))
    assert "precipitation" not in out[0]
    assert out[1]["precipitation"]["value"] == pytest.approx(1.6)     # 250 → 2: 8 clicks × 0.2 mm


def test_reading_keys_are_accepted_too():
    """Fields may also be named by the climate reading keys (pressure in Pa, humidity as fraction)."""
    options = {"fields": {"air_temperature": "decoded.t", "atmospheric_pressure": "decoded.p_pa",
                          "relative_humidity": "decoded.rh"}}
    (reading,) = ADAPTER.profiles["json-map"].decode(_tts_message({"t": 3.5, "p_pa": 99870, "rh": 0.93}), options)
    wo = one(map_reading(reading, context()), "WeatherObserved")
    assert wo["atmosphericPressure"]["value"] == pytest.approx(998.7)
    assert wo["relativeHumidity"]["value"] == 0.93


def test_example_jsonmap_config_is_the_packaged_copy():
    if not EXAMPLE.exists():
        pytest.skip("no repository examples/")
    assert EXAMPLE.read_text() == (PACKAGE_DIR / "example-jsonmap.yaml").read_text()
    jsonmap.validate_options(_options())


def test_example_jsonmap_config_loads():
    from stadtlink.adapters.core.config import load_config
    from stadtlink.adapters.core.sources.mqtt import MqttSourceConfig

    if "options" not in MqttSourceConfig.model_fields:
        pytest.skip("the runtime's MQTT source has no `options` yet (needed to configure json-map over MQTT)")
    cfg, _ = load_config(PACKAGE_DIR / "example-jsonmap.yaml", adapter=ADAPTER)
    assert cfg.sources[0].profile == "json-map"

"""Simulator encoders are the exact inverse of the decoders (bytes → values → bytes) and the
simulated weather is plausible and time-varying."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from stadtlink.adapters.climate.decoders import decode_dl_atm41, decode_meteohelix
from stadtlink.adapters.climate.mapper import map_reading
from stadtlink.adapters.climate.settings import DEFAULT_PLAUSIBLE
from stadtlink.adapters.climate.simulator import (
    SimulatedStation,
    StationFleet,
    encode_dl_atm41,
    encode_meteohelix,
    simulate_weather,
)
from stadtlink.schemas import check_entity

from .helpers import ATM41, HELIX, context, reading


def test_encoders_reproduce_the_published_sample_bytes():
    for doc, decode, encode in ((ATM41, decode_dl_atm41, lambda v: encode_dl_atm41(v, device_serial=v["device_serial"])),
                                (HELIX, decode_meteohelix, encode_meteohelix)):
        payload = bytes.fromhex(doc["raw"]["hex"])
        values = decode(payload, 1)
        values.pop("kind", None)
        if doc is HELIX:
            values["rain_min_click_interval"] = None   # all ones in the sample
        assert encode(values) == payload
    battery = bytes.fromhex(ATM41["more_cases"][0]["raw"]["hex"])
    values = decode_dl_atm41(battery, 1)
    assert encode_dl_atm41({"battery_voltage": values["battery_voltage"]}, device_serial=858) == battery


@settings(max_examples=300, deadline=None)
@given(st.binary(min_size=11, max_size=11))
def test_meteohelix_byte_round_trip(payload):
    payload = bytes([(payload[0] & 0x3F) | 0x40]) + payload[1:]   # message type 1
    values = decode_meteohelix(payload)
    again = decode_meteohelix(encode_meteohelix(values))
    assert again == values


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(0, 0xFFFF), min_size=18, max_size=18), st.integers(0, 0xFFFF))
def test_dl_atm41_byte_round_trip(words, serial):
    payload = bytes([2]) + serial.to_bytes(2, "big") + b"\x00\x03" + b"".join(w.to_bytes(2, "big") for w in words)
    values = decode_dl_atm41(payload, 1)
    assert encode_dl_atm41(values, device_serial=values["device_serial"]) == payload


def test_missing_sensor_word_is_refused_by_the_dl_atm41_encoder():
    with pytest.raises(ValueError):
        encode_dl_atm41({"air_temperature": 20.0, "battery_voltage": 3.3})


@pytest.mark.parametrize("profile", ["decentlab-dl-atm41", "barani-meteohelix"])
def test_simulated_station_values_survive_encoding(profile):
    station = SimulatedStation("mhm-sim", profile=profile, seed=3, device_serial=77)
    decode = decode_dl_atm41 if profile == "decentlab-dl-atm41" else decode_meteohelix
    when = datetime(2026, 7, 1, 13, 0, tzinfo=timezone.utc)
    for i in range(60):
        t = when + timedelta(minutes=10 * i)
        clone = SimulatedStation(**station.__dict__)
        expected = clone.values(t)
        f_port, f_cnt, payload = station.uplink(t)
        decoded = decode(payload, f_port)
        decoded.pop("kind", None)
        assert f_cnt == i + 1
        assert set(decoded) == {k for k, v in expected.items() if v is not None}
        for key, value in decoded.items():
            assert value == pytest.approx(expected[key], abs=1e-9), key


def test_simulated_weather_is_plausible_and_varies_over_the_day():
    temps, solar = [], []
    start = datetime(2026, 7, 1, 0, 0, tzinfo=timezone.utc)
    for i in range(144):
        v = simulate_weather("mhm-x", start + timedelta(minutes=10 * i))
        for key, value in v.items():
            if key in DEFAULT_PLAUSIBLE and value is not None:
                lo, hi = DEFAULT_PLAUSIBLE[key]
                assert lo <= value <= hi, (key, value)
        temps.append(v["air_temperature"])
        solar.append(v["solar_radiation"])
    assert max(temps) - min(temps) > 5          # a diurnal cycle
    assert solar[0] == 0 and max(solar) > 300   # night and midday
    assert simulate_weather("mhm-x", start) == simulate_weather("mhm-x", start)      # deterministic
    assert simulate_weather("mhm-x", start) != simulate_weather("mhm-y", start)


def test_simulated_meteohelix_rain_becomes_precipitation():
    station = SimulatedStation("mhm-luisenpark", profile="barani-meteohelix", seed=11)
    ctx = context()
    total_clicks, total_mm = 0, 0.0
    start = datetime(2026, 7, 1, 0, 0, tzinfo=timezone.utc)
    prev = None
    for i in range(300):
        t = start + timedelta(minutes=10 * i)
        _port, f_cnt, payload = station.uplink(t)
        values = decode_meteohelix(payload)
        entities = map_reading(reading(values, at=t, f_cnt=f_cnt), ctx)
        for e in entities:
            assert check_entity(e) == []
        wo = next(e for e in entities if e["type"] == "WeatherObserved")
        if "rain_counter" in values:
            if prev is not None:
                total_clicks += (values["rain_counter"] - prev) % 256
            prev = values["rain_counter"]
        total_mm += wo.get("precipitation", {}).get("value", 0.0)
    assert total_clicks > 0
    assert total_mm == pytest.approx(total_clicks * 0.2)


def test_station_fleet_uplinks_decode_through_the_adapter_profiles():
    from stadtlink.adapters.climate import ADAPTER
    from stadtlink.adapters.core.lorawan import parse_uplink
    from stadtlink.adapters.core.registry import DeviceRegistry

    from .helpers import STATIONS

    registry = DeviceRegistry.load(inline=STATIONS)
    fleet = StationFleet(list(registry), network="mixed")
    when = datetime(2026, 7, 1, 12, 0, tzinfo=timezone.utc)
    ctx = context()
    networks = set()
    for topic, doc in fleet.uplinks(when) + fleet.uplinks(when + timedelta(minutes=10)):
        uplink = parse_uplink(doc, topic)
        networks.add(uplink.network)
        rec = registry.lookup(uplink.device_id, uplink.dev_eui)
        (r,) = ADAPTER.profiles[rec.profile].decode_uplink(uplink)
        if rec.has_location:
            for e in map_reading(r, ctx):
                assert check_entity(e) == []
    assert networks == {"tts-v3", "chirpstack-v4"}
    with pytest.raises(ValueError):
        StationFleet([], network="lorawan")

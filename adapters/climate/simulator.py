"""Simulated weather stations for the demo and the benchmark: plausible, time-varying readings
encoded into real DL-ATM41 and MeteoHelix bytes (the exact inverse of :mod:`.decoders`).

* :func:`simulate_weather` — reading values (the decoders' keys and units) for one station at one
  time: a diurnal temperature cycle, humidity that falls as it warms, slowly drifting pressure,
  solar radiation from the sun's elevation, gusty wind and occasional showers. Deterministic for a
  given seed and time.
* :func:`encode_dl_atm41` / :func:`encode_meteohelix` — values → payload bytes.
* :class:`SimulatedStation` — a station with its own seed, rain click counter (8-bit, wrapping, as
  the MeteoHelix sends it) and frame counter; ``uplink(when)`` gives ``(f_cnt, payload)``.
"""
from __future__ import annotations

import math
import random
import zlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from stadtlink.adapters.core.adapter import DemoSimulators

from .decoders import (
    ATM41_GROUP0,
    DECENTLAB_OFFSET,
    METEOHELIX_FIELDS,
    METEOHELIX_LENGTH,
)

# --------------------------------------------------------------------------------------------
# Encoders (inverse of the decoders)
# --------------------------------------------------------------------------------------------

#: reading key → factor that turns the value into the DL-ATM41 word before the +32768 offset
_ATM41_SCALE: dict[str, float] = {
    "solar_radiation": 1, "precipitation": 1000, "lightning_count": 1, "lightning_distance": 1,
    "wind_speed": 100, "wind_direction": 10, "wind_gust": 100, "air_temperature": 10,
    "vapour_pressure": 0.1, "atmospheric_pressure": 0.1,   # Pa → kPa/100
    "relative_humidity": 1000,                              # fraction → %/10
    "sensor_temperature": 10, "tilt_x": 10, "tilt_y": 10, "compass_heading": 1,
    "wind_speed_north": 100, "wind_speed_east": 100,
}
assert tuple(_ATM41_SCALE) == tuple(key for key, _ in ATM41_GROUP0)


def _word(value: float, scale: float, offset: int) -> int:
    word = round(value * scale) + offset
    if not 0 <= word <= 0xFFFF:
        raise ValueError(f"{value} does not fit a 16-bit word")
    return word


def encode_dl_atm41(values: Mapping[str, Any], *, device_serial: int = 0) -> bytes:
    """A Decentlab v2 DL-ATM41 frame. With every group-0 key present: a full frame; with none:
    a battery-only frame (flags 0x0002). ``battery_voltage`` is required."""
    has_weather = any(k in values for k in _ATM41_SCALE)
    if has_weather:
        missing = [k for k in _ATM41_SCALE if k not in values]
        if missing:
            raise ValueError(f"a DL-ATM41 measurement frame needs every sensor word; missing {missing}")
    flags = (0x0001 if has_weather else 0) | 0x0002
    out = bytearray([2])
    out += int(device_serial).to_bytes(2, "big")
    out += flags.to_bytes(2, "big")
    if has_weather:
        for key, scale in _ATM41_SCALE.items():
            out += _word(values[key], scale, DECENTLAB_OFFSET).to_bytes(2, "big")
    out += _word(values["battery_voltage"], 1000, 0).to_bytes(2, "big")
    return bytes(out)


def _clamp_field(n: int, width: int) -> int:
    """Clamp into a field's range, keeping clear of the all-ones error code."""
    return max(0, min(n, (1 << width) - 2))


def encode_meteohelix(values: Mapping[str, Any]) -> bytes:
    """An 11-byte MeteoHelix type-1 message. A missing value is sent as all ones (sensor error)."""
    raw: dict[str, int | None] = {"type": 1}
    temp = values.get("air_temperature")
    raw["battery"] = None if values.get("battery_voltage") is None else round((values["battery_voltage"] - 3.0) / 0.05)
    raw["temperature"] = None if temp is None else round((temp + 100.0) * 10)
    t = None if temp is None else raw["temperature"] / 10.0 - 100.0
    raw["t_min"] = None if t is None or values.get("air_temperature_min") is None else round((t - values["air_temperature_min"]) * 10)
    raw["t_max"] = None if t is None or values.get("air_temperature_max") is None else round((values["air_temperature_max"] - t) * 10)
    raw["humidity"] = None if values.get("relative_humidity") is None else round(values["relative_humidity"] * 500)
    raw["pressure"] = None if values.get("atmospheric_pressure") is None else round((values["atmospheric_pressure"] - 50000) / 5)
    irr = values.get("solar_radiation")
    raw["irradiation"] = None if irr is None else round(irr / 2)
    raw["irr_max"] = None if irr is None or values.get("solar_radiation_max") is None else round((values["solar_radiation_max"] - raw["irradiation"] * 2) / 2)
    counter = values.get("rain_counter")
    raw["rain"] = None if counter is None else int(counter) % 256
    interval = values.get("rain_min_click_interval")
    raw["rain_min_time"] = None if interval is None else round(182.0 / interval)
    bits = 0
    for name, width in METEOHELIX_FIELDS:
        n = raw[name]
        if n is None:
            n = (1 << width) - 1
        elif name != "rain":  # the rain counter may legitimately be 255 (= error code, by design of the format)
            n = _clamp_field(int(n), width)
        bits = (bits << width) | n
    return bits.to_bytes(METEOHELIX_LENGTH, "big")


# --------------------------------------------------------------------------------------------
# Plausible time-varying weather
# --------------------------------------------------------------------------------------------

def sun_elevation(when: datetime, lat: float, lon: float) -> float:
    """Approximate solar elevation in degrees (good to about a degree; enough for a demo)."""
    day = when.timetuple().tm_yday
    decl = math.radians(-23.44) * math.cos(2 * math.pi * (day + 10) / 365.0)
    hours = when.hour + when.minute / 60.0 + when.second / 3600.0
    hour_angle = math.radians(15.0 * (hours + lon / 15.0 - 12.0))
    phi = math.radians(lat)
    s = math.sin(phi) * math.sin(decl) + math.cos(phi) * math.cos(decl) * math.cos(hour_angle)
    return math.degrees(math.asin(max(-1.0, min(1.0, s))))


def _station_seed(station_id: str, seed: int) -> int:
    return zlib.crc32(f"{station_id}:{seed}".encode())


def simulate_weather(station_id: str, when: datetime, *, lat: float = 49.49, lon: float = 8.47,
                     seed: int = 0, interval_s: float = 600.0) -> dict[str, Any]:
    """Plausible readings (decoder keys and units) of one station for the interval ending ``when``."""
    base = _station_seed(station_id, seed)
    slot = int(when.timestamp() // interval_s)
    rnd = random.Random(base * 1_000_003 + slot)
    station_offset = (base % 200) / 100.0 - 1.0           # ±1 K: heat islands differ
    day = when.timetuple().tm_yday
    local_hours = (when.hour + when.minute / 60.0 + lon / 15.0) % 24
    seasonal = 10.5 - 9.0 * math.cos(2 * math.pi * (day - 15) / 365.0)
    diurnal = -5.0 * math.cos(2 * math.pi * (local_hours - 3.0) / 24.0)   # min ≈ 03:00, max ≈ 15:00
    temp = round(seasonal + diurnal + station_offset + rnd.uniform(-0.3, 0.3), 1)
    rh = min(0.99, max(0.2, 0.75 - 0.03 * diurnal + rnd.uniform(-0.03, 0.03)))
    pressure = 101325 + 900 * math.sin(when.timestamp() / 86400.0 / 3.0 + base % 7) + rnd.uniform(-20, 20)
    elevation = sun_elevation(when, lat, lon)
    clear_sky = max(0.0, 1000.0 * math.sin(math.radians(elevation))) if elevation > 0 else 0.0
    cloud = 0.4 + 0.6 * rnd.random()
    solar = round(clear_sky * cloud)
    wind = round(max(0.0, rnd.gauss(2.5, 1.2)), 2)
    gust = round(wind + abs(rnd.gauss(1.5, 0.8)), 2)
    direction = round((240 + rnd.gauss(0, 40)) % 360, 1)
    raining = rnd.random() < 0.08
    clicks = rnd.randint(1, 6) if raining else 0
    return {
        "air_temperature": temp,
        "air_temperature_min": round(temp - rnd.uniform(0.0, 0.6), 1),
        "air_temperature_max": round(temp + rnd.uniform(0.0, 0.6), 1),
        "relative_humidity": round(rh, 3),
        "atmospheric_pressure": round(pressure / 5) * 5,
        "solar_radiation": solar,
        "solar_radiation_max": solar + 2 * rnd.randint(0, 20),
        "wind_speed": wind,
        "wind_gust": gust,
        "wind_direction": direction,
        "rain_clicks": clicks,                        # clicks in this interval (not a reading key)
        "rain_min_click_interval": round(rnd.uniform(20, 300), 1) if clicks else None,
        "lightning_count": 0,
        "lightning_distance": 0,
        "battery_voltage": round(3.9 + 0.2 * math.sin(2 * math.pi * local_hours / 24.0), 2),
    }


def _vapour_pressure_pa(temp_c: float, rh: float) -> float:
    return 610.94 * math.exp(17.625 * temp_c / (temp_c + 243.04)) * rh


@dataclass
class SimulatedStation:
    """One simulated station: same id, same weather for the same time, its own counters."""

    station_id: str
    profile: str = "barani-meteohelix"        # or "decentlab-dl-atm41"
    lat: float = 49.49
    lon: float = 8.47
    seed: int = 0
    device_serial: int = 0
    gauge_mm: float = 0.2
    rain_counter: int = 0                     # running MeteoHelix click counter (mod 256)
    f_cnt: int = 0
    extra: dict[str, Any] = field(default_factory=dict)

    def values(self, when: datetime) -> dict[str, Any]:
        """This interval's reading values, as the decoder of ``profile`` will return them."""
        sim = simulate_weather(self.station_id, when, lat=self.lat, lon=self.lon, seed=self.seed)
        clicks = sim.pop("rain_clicks")
        if self.profile == "decentlab-dl-atm41":
            t, rh = sim["air_temperature"], sim["relative_humidity"]
            return {
                "device_serial": self.device_serial,
                "solar_radiation": sim["solar_radiation"], "precipitation": round(clicks * 0.017 * 10, 3),
                "lightning_count": 0, "lightning_distance": 0,
                "wind_speed": sim["wind_speed"], "wind_direction": sim["wind_direction"], "wind_gust": sim["wind_gust"],
                "air_temperature": t, "vapour_pressure": round(_vapour_pressure_pa(t, rh), -1),
                "atmospheric_pressure": round(sim["atmospheric_pressure"], -1),
                "relative_humidity": rh, "sensor_temperature": round(t + 0.4, 1),
                "tilt_x": 0.2, "tilt_y": -0.4, "compass_heading": 180,
                "wind_speed_north": round(-sim["wind_speed"] * math.cos(math.radians(sim["wind_direction"])), 2),
                "wind_speed_east": round(-sim["wind_speed"] * math.sin(math.radians(sim["wind_direction"])), 2),
                "battery_voltage": round(min(3.6, sim["battery_voltage"] - 0.5), 3),
            }
        self.rain_counter = (self.rain_counter + clicks) % 256
        values = {k: sim[k] for k in ("battery_voltage", "air_temperature", "air_temperature_min",
                                      "air_temperature_max", "relative_humidity", "atmospheric_pressure",
                                      "solar_radiation", "solar_radiation_max")}
        # the station's own resolution: 2 W/m², 5 Pa, 0.2 % RH, 0.05 V
        values["solar_radiation"] = 2 * round(values["solar_radiation"] / 2)
        values["solar_radiation_max"] = max(values["solar_radiation"], 2 * round(values["solar_radiation_max"] / 2))
        values["atmospheric_pressure"] = 5 * round(values["atmospheric_pressure"] / 5)
        values["relative_humidity"] = round(round(values["relative_humidity"] * 500) / 500, 4)
        values["battery_voltage"] = round(3.0 + 0.05 * round((values["battery_voltage"] - 3.0) / 0.05), 2)
        values["rain_counter"] = self.rain_counter
        if sim["rain_min_click_interval"] is not None:
            values["rain_min_click_interval"] = round(182.0 / max(1, min(254, round(182.0 / sim["rain_min_click_interval"]))), 2)
        return values

    def payload(self, when: datetime) -> bytes:
        values = self.values(when)
        if self.profile == "decentlab-dl-atm41":
            return encode_dl_atm41(values, device_serial=self.device_serial)
        if self.profile == "barani-meteohelix":
            return encode_meteohelix(values)
        raise ValueError(f"no encoder for profile {self.profile!r}")

    def uplink(self, when: datetime) -> tuple[int, int, bytes]:
        """``(f_port, f_cnt, payload)`` of the next uplink."""
        self.f_cnt += 1
        return 1, self.f_cnt, self.payload(when)




class StationFleet:
    """Simulated stations for every registry record (demo): ``uplinks(when)`` gives one
    ``(topic, envelope)`` per station, ready to publish to MQTT.

    ``network``: ``"tts-v3"``, ``"chirpstack-v4"`` (needs each record's ``dev_eui``) or ``"mixed"``
    (DL-ATM41 over TTS, MeteoHelix over ChirpStack when the record has a dev EUI).
    """

    def __init__(self, records, *, network: str = "mixed", tts_application_id: str = "klimamessnetz",
                 chirpstack_application_id: str = "00000000-0000-0000-0000-00000000c11a", seed: int = 0):
        if network not in ("tts-v3", "chirpstack-v4", "mixed"):
            raise ValueError(f"network must be tts-v3, chirpstack-v4 or mixed, not {network!r}")
        self.network = network
        self.tts_app = tts_application_id
        self.cs_app = chirpstack_application_id
        self.stations: list[tuple[Any, SimulatedStation]] = []
        for i, rec in enumerate(records):
            get = rec.get if isinstance(rec, Mapping) else (lambda k, r=rec: r.get(k))
            profile = get("profile") or "barani-meteohelix"
            if profile not in ("decentlab-dl-atm41", "barani-meteohelix"):
                continue
            sim = SimulatedStation(str(get("id")), profile=profile, lat=float(get("lat") or 49.49),
                                   lon=float(get("lon") or 8.47), seed=seed + i, device_serial=i & 0xFFFF)
            self.stations.append((rec, sim))

    def uplinks(self, when: datetime) -> list[tuple[str, dict]]:
        from stadtlink.adapters.core.lorawan import chirpstack_uplink, tts_uplink

        stamp = when.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        out = []
        for rec, sim in self.stations:
            get = rec.get if isinstance(rec, Mapping) else (lambda k, r=rec: r.get(k))
            dev_eui = get("dev_eui")
            port, f_cnt, payload = sim.uplink(when)
            use_cs = dev_eui and (self.network == "chirpstack-v4" or (
                self.network == "mixed" and sim.profile == "barani-meteohelix"))
            if use_cs:
                out.append(chirpstack_uplink(str(dev_eui), payload, f_port=port, f_cnt=f_cnt, time=stamp,
                                             application_id=self.cs_app))
            else:
                out.append(tts_uplink(sim.station_id, payload, f_port=port, f_cnt=f_cnt, received_at=stamp,
                                      application_id=self.tts_app, dev_eui=str(dev_eui) if dev_eui else None))
        return out


# ------------------------------------------------------------------------------------ stadtlink demo

def _demo_station(rec, fleet) -> tuple:
    """A demo device for a registry record: the station's simulated weather, every 8 s."""
    station = SimulatedStation(rec.id, profile=rec.profile, lat=rec.lat or 49.49, lon=rec.lon or 8.47,
                               seed=len(fleet.devices))

    def weather(state, rnd, now, station=station):
        return station.payload(datetime.fromtimestamp(now, timezone.utc)), 1
    return weather, 8.0


DEMO = DemoSimulators(devices={"decentlab-dl-atm41": _demo_station, "barani-meteohelix": _demo_station})


__all__ = [
    "DEMO",
    "SimulatedStation",
    "StationFleet",
    "encode_dl_atm41",
    "encode_meteohelix",
    "simulate_weather",
    "sun_elevation",
]

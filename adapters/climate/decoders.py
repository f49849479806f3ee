"""Payload decoders for LoRaWAN weather stations: vendor bytes → values in SI units.

Pure functions, one per device. They return a dict of *reading keys* (the vocabulary every climate
profile shares, see ``READING_KEYS``) and raise :class:`DecodeError` for bytes that are not a frame
of the device. They never judge plausibility: that is the mapper's job, so ``stadtlink decode``
shows what the station really sent.

Layouts (in our own words, see reference §4):

* Decentlab v2 frame (DL-ATM41): version byte 2, uint16 device id, uint16 flags (bit *i* = sensor
  group *i* present), then big-endian uint16 words per present group. Signed quantities carry a
  +32768 offset (value = (word − 32768) / scale), not two's complement.
* Barani MeteoHelix IoT Pro, message type 1: 11 bytes read as one MSB-first bit string of fixed
  width fields; a field whose bits are all ones means "sensor error / not available" and is left out.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

from stadtlink.adapters.core.errors import DecodeError
from stadtlink.adapters.core.reasons import (
    BAD_LENGTH,
    BAD_PAYLOAD,
    EMPTY_FRAME,
    UNKNOWN_FPORT,
    UNKNOWN_SENSOR_GROUP,
    UNSUPPORTED_VERSION,
)
from .reasons import UNSUPPORTED_MESSAGE_TYPE

#: Reading keys and their units (what a decoder — or a json-map config — puts in ``Reading.values``).
READING_KEYS: dict[str, str] = {
    "air_temperature": "°C (10-min average on MeteoHelix)",
    "air_temperature_min": "°C",
    "air_temperature_max": "°C",
    "relative_humidity": "fraction 0..1",
    "atmospheric_pressure": "Pa (station pressure, not reduced to sea level)",
    "solar_radiation": "W/m²",
    "solar_radiation_max": "W/m²",
    "illuminance": "lx",
    "wind_speed": "m/s",
    "wind_gust": "m/s",
    "wind_direction": "degree (0..360, direction the wind comes from)",
    "wind_speed_north": "m/s",
    "wind_speed_east": "m/s",
    "precipitation": "mm since the previous message",
    "rain_counter": "clicks (revolving counter; the mapper turns it into precipitation)",
    "rain_min_click_interval": "s (shortest time between two rain-gauge clicks in the interval)",
    "rain_intensity_max": "mm/h (highest rain rate in the interval; the mapper derives it from the click interval)",
    "vapour_pressure": "Pa",
    "lightning_count": "strikes in the interval",
    "lightning_distance": "km (average distance of the strikes)",
    "sensor_temperature": "°C (internal)",
    "tilt_x": "degree",
    "tilt_y": "degree",
    "compass_heading": "degree",
    "battery_voltage": "V",
    "battery_level": "fraction 0..1 (stations that report a charge level instead of volts)",
    "device_serial": "vendor device id from the frame (integer)",
}


# --------------------------------------------------------------------------------------------
# Decentlab DL-ATM41
# --------------------------------------------------------------------------------------------

DECENTLAB_OFFSET = 32768


def _off(scale: float, digits: int) -> Callable[[int], float]:
    """A word with the +32768 offset, divided by ``scale``."""
    def conv(word: int) -> float:
        value = (word - DECENTLAB_OFFSET) / scale
        return round(value, digits) if digits else round(value)
    return conv


# One row per word of sensor group 0 (17 words), in frame order: (reading key, conversion).
# Pressure and vapour pressure arrive in kPa/100 and are stored in Pa (×1000); RH % → fraction.
ATM41_GROUP0: tuple[tuple[str, Callable[[int], Any]], ...] = (
    ("solar_radiation", _off(1, 0)),
    ("precipitation", _off(1000, 3)),
    ("lightning_count", _off(1, 0)),
    ("lightning_distance", _off(1, 0)),
    ("wind_speed", _off(100, 2)),
    ("wind_direction", _off(10, 1)),
    ("wind_gust", _off(100, 2)),
    ("air_temperature", _off(10, 1)),
    ("vapour_pressure", lambda w: round((w - DECENTLAB_OFFSET) * 10.0, 1)),       # /100 kPa → Pa
    ("atmospheric_pressure", lambda w: round((w - DECENTLAB_OFFSET) * 10.0, 1)),  # /100 kPa → Pa
    ("relative_humidity", lambda w: round((w - DECENTLAB_OFFSET) / 1000.0, 4)),   # /10 % → fraction
    ("sensor_temperature", _off(10, 1)),
    ("tilt_x", _off(10, 1)),
    ("tilt_y", _off(10, 1)),
    ("compass_heading", _off(1, 0)),
    ("wind_speed_north", _off(100, 2)),
    ("wind_speed_east", _off(100, 2)),
)
ATM41_GROUP1: tuple[tuple[str, Callable[[int], Any]], ...] = (
    ("battery_voltage", lambda w: round(w / 1000.0, 3)),
)
ATM41_GROUPS = (ATM41_GROUP0, ATM41_GROUP1)


def decode_decentlab_v2(payload: bytes, groups: tuple[tuple[tuple[str, Callable[[int], Any]], ...], ...]) -> dict[str, Any]:
    """Decode a Decentlab protocol-version-2 frame whose sensor groups are ``groups``."""
    if not isinstance(payload, (bytes, bytearray)):
        raise DecodeError(BAD_PAYLOAD, "payload is not bytes")
    if len(payload) < 5:
        raise DecodeError(BAD_LENGTH, f"Decentlab frame needs at least 5 bytes, got {len(payload)}")
    if payload[0] != 2:
        raise DecodeError(UNSUPPORTED_VERSION, f"Decentlab protocol version {payload[0]} (only 2 is known)")
    device_id = int.from_bytes(payload[1:3], "big")
    flags = int.from_bytes(payload[3:5], "big")
    known_mask = (1 << len(groups)) - 1
    if flags & ~known_mask:
        raise DecodeError(UNKNOWN_SENSOR_GROUP, f"flags 0x{flags:04x} name groups this device does not have")
    if flags == 0:
        raise DecodeError(EMPTY_FRAME, "flags 0x0000: the frame carries no sensor group")
    words_needed = sum(len(g) for i, g in enumerate(groups) if flags & (1 << i))
    if len(payload) != 5 + 2 * words_needed:
        raise DecodeError(BAD_LENGTH,
                          f"flags 0x{flags:04x} need {5 + 2 * words_needed} bytes, got {len(payload)}")
    values: dict[str, Any] = {"device_serial": device_id}
    pos = 5
    for i, group in enumerate(groups):
        if not flags & (1 << i):
            continue
        for key, conv in group:
            values[key] = conv(int.from_bytes(payload[pos:pos + 2], "big"))
            pos += 2
    return values


def decode_dl_atm41(payload: bytes, f_port: int | None = None) -> dict[str, Any]:
    """Decentlab DL-ATM41 (METER ATMOS 41) on fPort 1.

    A battery-only frame (flags 0x0002) yields ``kind="battery"``: no weather values, only the
    battery voltage for the Device entity.
    """
    if f_port is not None and f_port != 1:
        raise DecodeError(UNKNOWN_FPORT, f"DL-ATM41 sends measurements on fPort 1, got {f_port}")
    values = decode_decentlab_v2(payload, ATM41_GROUPS)
    if "air_temperature" not in values:
        values["kind"] = "battery"
    return values


# --------------------------------------------------------------------------------------------
# Barani MeteoHelix IoT Pro (message type 1)
# --------------------------------------------------------------------------------------------

METEOHELIX_LENGTH = 11
#: (field name, bit width) in transmission order; 88 bits in all.
METEOHELIX_FIELDS: tuple[tuple[str, int], ...] = (
    ("type", 2),
    ("battery", 5),
    ("temperature", 11),
    ("t_min", 6),
    ("t_max", 6),
    ("humidity", 9),
    ("pressure", 14),
    ("irradiation", 10),
    ("irr_max", 9),
    ("rain", 8),
    ("rain_min_time", 8),
)
assert sum(w for _, w in METEOHELIX_FIELDS) == METEOHELIX_LENGTH * 8


def meteohelix_fields(payload: bytes) -> dict[str, int | None]:
    """The raw field values of an 11-byte message; an all-ones field (sensor error) becomes None."""
    if not isinstance(payload, (bytes, bytearray)):
        raise DecodeError(BAD_PAYLOAD, "payload is not bytes")
    if len(payload) != METEOHELIX_LENGTH:
        raise DecodeError(BAD_LENGTH, f"MeteoHelix type-1 message has {METEOHELIX_LENGTH} bytes, got {len(payload)}")
    bits = int.from_bytes(payload, "big")
    remaining = METEOHELIX_LENGTH * 8
    out: dict[str, int | None] = {}
    for name, width in METEOHELIX_FIELDS:
        remaining -= width
        raw = (bits >> remaining) & ((1 << width) - 1)
        out[name] = None if raw == (1 << width) - 1 else raw
    return out


def decode_meteohelix(payload: bytes, f_port: int | None = None) -> dict[str, Any]:
    """Barani MeteoHelix IoT Pro, message type 1 (10-minute averages with min/max).

    The rain field is a revolving 8-bit click counter: it is passed on as ``rain_counter`` and the
    mapper turns the difference to the previous message into precipitation. ``rain_min_time`` is
    sent as 182 ÷ (shortest time between clicks in s); 0 and all-ones mean "no click".
    """
    raw = meteohelix_fields(payload)
    if raw["type"] != 1:
        raise DecodeError(UNSUPPORTED_MESSAGE_TYPE,
                          f"MeteoHelix message type {raw['type']} (only type 1, the 11-byte weather message, is known)")
    values: dict[str, Any] = {}
    if raw["battery"] is not None:
        values["battery_voltage"] = round(3.0 + raw["battery"] * 0.05, 2)
    temp = raw["temperature"]
    if temp is not None:
        t = round(temp * 0.1 - 100.0, 1)
        values["air_temperature"] = t
        if raw["t_min"] is not None:
            values["air_temperature_min"] = round(t - raw["t_min"] * 0.1, 1)
        if raw["t_max"] is not None:
            values["air_temperature_max"] = round(t + raw["t_max"] * 0.1, 1)
    if raw["humidity"] is not None:
        values["relative_humidity"] = round(raw["humidity"] * 0.002, 4)   # n × 0.2 % → fraction
    if raw["pressure"] is not None:
        values["atmospheric_pressure"] = 50000 + raw["pressure"] * 5    # Pa
    irr = raw["irradiation"]
    if irr is not None:
        values["solar_radiation"] = irr * 2
        if raw["irr_max"] is not None:
            values["solar_radiation_max"] = irr * 2 + raw["irr_max"] * 2
    if raw["rain"] is not None:
        values["rain_counter"] = raw["rain"]
    if raw["rain_min_time"]:  # None (all ones) or 0: no click in the interval
        values["rain_min_click_interval"] = round(182.0 / raw["rain_min_time"], 2)
    return values


__all__ = [
    "ATM41_GROUP0",
    "ATM41_GROUP1",
    "METEOHELIX_FIELDS",
    "METEOHELIX_LENGTH",
    "READING_KEYS",
    "decode_decentlab_v2",
    "decode_dl_atm41",
    "decode_meteohelix",
    "meteohelix_fields",
]

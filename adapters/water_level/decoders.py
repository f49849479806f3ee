"""Decoders for river-level sensors and the PEGELONLINE API. Pure: bytes/JSON in, SI values out.

Distances are returned in metres. An invalid distance (no echo, zero samples, 0 or below the
sensor's minimum) is removed from the values and named in ``dropped`` so the runtime counts it;
what else the frame carried (battery) is kept. A frame with nothing valid left raises
:class:`ReadingDropped`.
"""
from __future__ import annotations

import struct
from datetime import datetime
from typing import Any, Mapping

import orjson

from stadtlink.adapters.core.errors import DecodeError, ReadingDropped
from stadtlink.adapters.core.reasons import (
    BAD_LENGTH,
    BAD_TIMESTAMP,
    EMPTY_FRAME,
    INVALID_JSON,
    TRUNCATED,
    UNKNOWN_CHANNEL,
    UNKNOWN_FPORT,
    UNKNOWN_SENSOR_GROUP,
    UNSUPPORTED_VERSION,
)
from stadtlink.adapters.core.reading import RawMessage, Reading
from stadtlink.adapters.core.timeutil import TimeFormatError, from_epoch, parse_time

from .reasons import BAD_STATION, NO_CURRENT_MEASUREMENT, NO_STATION, UNEXPECTED_SHAPE, UNEXPECTED_UNIT

#: Smallest distance each sensor can measure, mm (below it the echo is the sensor's own ringing).
MIN_DISTANCE_MM = {"decentlab-dl-mbx": 1, "milesight-em500-udl": 1, "dragino-ldds75": 20}


#: Values worth writing; a frame without any of them is a counted drop.
USEFUL_KEYS = frozenset({"distance", "battery_voltage", "battery_level", "history"})


def _drop_or_return(values: dict[str, Any], dropped: dict[str, str]) -> dict[str, Any]:
    if dropped:
        values["dropped"] = dropped
    if not USEFUL_KEYS.intersection(values):
        reason = next(iter(dropped.values()), "empty-frame")
        raise ReadingDropped(reason, "no valid value left in the frame")
    return values


# --- Decentlab DL-MBX (Decentlab protocol v2) ------------------------------------------------

def decode_dl_mbx(payload: bytes, f_port: int | None) -> dict[str, Any]:
    """Decentlab v2 frame: version 2, device id, flags; group 0 = distance mm + valid samples,
    group 1 = battery (V = word / 1000)."""
    if len(payload) < 5:
        raise DecodeError(BAD_LENGTH, f"DL-MBX frame of {len(payload)} bytes, need at least 5")
    if payload[0] != 2:
        raise DecodeError(UNSUPPORTED_VERSION, f"Decentlab protocol version {payload[0]}, expected 2")
    device_id, flags = struct.unpack_from(">HH", payload, 1)
    words_needed = (2 if flags & 0x01 else 0) + (1 if flags & 0x02 else 0)
    if flags & ~0x03:
        raise DecodeError(UNKNOWN_SENSOR_GROUP, f"flags 0x{flags:04x} name sensor groups a DL-MBX does not have")
    if len(payload) != 5 + 2 * words_needed:
        raise DecodeError(BAD_LENGTH, f"{len(payload)} bytes for flags 0x{flags:04x}, expected {5 + 2 * words_needed}")
    words = struct.unpack_from(f">{words_needed}H", payload, 5)
    values: dict[str, Any] = {"sensor_id": device_id}
    dropped: dict[str, str] = {}
    i = 0
    if flags & 0x01:
        distance_mm, samples = words[0], words[1]
        i = 2
        values["valid_samples"] = samples
        if samples == 0:
            dropped["measuredDistance"] = "no-echo"
        elif distance_mm < MIN_DISTANCE_MM["decentlab-dl-mbx"]:
            dropped["measuredDistance"] = "distance-zero"
        else:
            values["distance"] = distance_mm / 1000.0
    if flags & 0x02:
        values["battery_voltage"] = words[i] / 1000.0
    return _drop_or_return(values, dropped)


# --- Milesight EM500-UDL (TLV, little-endian) ------------------------------------------------

_DEVICE_INFO_LENGTHS = {0x01: 1, 0x09: 2, 0x0A: 2, 0x0F: 1, 0x16: 8, 0x0B: 1, 0xFE: 1, 0xFF: 2}


def decode_em500_udl(payload: bytes, f_port: int | None) -> dict[str, Any]:
    """Channels ``01 75`` battery %, ``03 82`` distance mm, ``83 E9`` distance alarm,
    ``20 CE`` history record (time + distance), ``FF xx`` device information."""
    if not payload:
        raise DecodeError(EMPTY_FRAME, "empty EM500-UDL frame")
    values: dict[str, Any] = {}
    dropped: dict[str, str] = {}
    history: list[list[Any]] = []
    pos = 0
    n = len(payload)

    def need(count: int, what: str) -> None:
        if pos + count > n:
            raise DecodeError(TRUNCATED, f"{what} at byte {pos} needs {count} bytes, {n - pos} left")

    while pos < n:
        need(2, "channel header")
        channel, ctype = payload[pos], payload[pos + 1]
        pos += 2
        if (channel, ctype) == (0x01, 0x75):
            need(1, "battery")
            battery = payload[pos]
            pos += 1
            if battery > 100:
                dropped["batteryLevel"] = "battery-out-of-range"
            else:
                values["battery_level"] = battery / 100.0     # % → fraction (the vocabulary's unit)
        elif (channel, ctype) in ((0x03, 0x82), (0x83, 0xE9)):
            size = 2 if ctype == 0x82 else 5
            need(size, "distance")
            (mm,) = struct.unpack_from("<H", payload, pos)
            if ctype == 0xE9:
                values["distance_alarm"] = payload[pos + 4]
            pos += size
            if mm < MIN_DISTANCE_MM["milesight-em500-udl"]:
                dropped["measuredDistance"] = "distance-zero"
            else:
                values["distance"] = mm / 1000.0
        elif (channel, ctype) == (0x20, 0xCE):
            need(6, "history record")
            ts, mm = struct.unpack_from("<IH", payload, pos)
            pos += 6
            if mm >= MIN_DISTANCE_MM["milesight-em500-udl"]:
                history.append([ts, mm / 1000.0])
        elif channel == 0xFF:
            size = _DEVICE_INFO_LENGTHS.get(ctype)
            if size is None:
                raise DecodeError(UNKNOWN_CHANNEL, f"device-info type 0x{ctype:02x}")
            need(size, "device info")
            if ctype == 0x16:
                values["serial_number"] = payload[pos:pos + 8].hex()
            pos += size
        else:
            raise DecodeError(UNKNOWN_CHANNEL, f"channel 0x{channel:02x} type 0x{ctype:02x}")
    if history:
        values["history"] = history
    return _drop_or_return(values, dropped)


# --- Dragino LDDS75 (fPort 2, 8 bytes, big-endian) --------------------------------------------

def decode_ldds75(payload: bytes, f_port: int | None) -> dict[str, Any]:
    if f_port not in (2, None):
        raise DecodeError(UNKNOWN_FPORT, f"LDDS75 sends measurements on fPort 2, got {f_port}")
    if len(payload) != 8:
        raise DecodeError(BAD_LENGTH, f"LDDS75 frame of {len(payload)} bytes, expected 8")
    battery_raw, distance_mm, interrupt, temp_raw, sensor_flag = struct.unpack(">HHBhB", payload)
    values: dict[str, Any] = {
        "battery_voltage": (battery_raw & 0x3FFF) / 1000.0,
        "interrupt": interrupt,
        "sensor_flag": sensor_flag,
    }
    dropped: dict[str, str] = {}
    if distance_mm == 0:
        dropped["measuredDistance"] = "no-sensor"
    elif distance_mm < MIN_DISTANCE_MM["dragino-ldds75"]:
        dropped["measuredDistance"] = "below-minimum"
    else:
        values["distance"] = distance_mm / 1000.0
    if temp_raw != 0x7FFF:
        values["probe_temperature"] = temp_raw / 10.0
    return _drop_or_return(values, dropped)


# --- PEGELONLINE REST API v2 -------------------------------------------------------------------

def _series(station: Mapping[str, Any], shortname: str) -> Mapping[str, Any] | None:
    series = station.get("timeseries")
    if not isinstance(series, (list, tuple)):   # fuzzing found numbers/booleans here: not a series list
        return None
    for ts in series:
        if isinstance(ts, Mapping) and ts.get("shortname") == shortname:
            return ts
    return None


def _current(ts: Mapping[str, Any] | None) -> tuple[float, datetime] | None:
    if not ts:
        return None
    cur = ts.get("currentMeasurement")
    if not isinstance(cur, Mapping):
        return None
    value = cur.get("value")
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    try:
        return float(value), parse_time(cur.get("timestamp"), naive_is=None)
    except TimeFormatError as exc:
        raise DecodeError(BAD_TIMESTAMP, str(exc)) from None


def _station_reading(station: Mapping[str, Any], profile: str) -> Reading | None:
    uuid = station.get("uuid") or station.get("number")
    if not isinstance(uuid, str) or not uuid:
        raise DecodeError(BAD_STATION, "station without uuid/number")
    w_series = _series(station, "W")
    w = _current(w_series)
    q = _current(_series(station, "Q"))
    if w is None and q is None:
        return None
    values: dict[str, Any] = {}
    meta: dict[str, Any] = {"station_number": station.get("number")}
    if w is not None:
        unit = (w_series or {}).get("unit", "cm")
        if unit != "cm":
            raise DecodeError(UNEXPECTED_UNIT, f"W in {unit!r}, expected cm")
        values["water_level"] = round(w[0] / 100.0, 4)
        cur = w_series["currentMeasurement"]
        for key, name in (("stateMnwMhw", "state_mnw_mhw"), ("stateNswHsw", "state_nsw_hsw")):
            if isinstance(cur.get(key), str):
                values[name] = cur[key]
        zero = (w_series or {}).get("gaugeZero")
        if isinstance(zero, Mapping) and isinstance(zero.get("value"), (int, float)):
            values["gauge_zero"] = float(zero["value"])
    if q is not None:
        values["flow"] = q[0]
        meta["flow_observed_at"] = q[1]
    lon, lat = station.get("longitude"), station.get("latitude")
    if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in (lon, lat)) \
            and -180.0 <= lon <= 180.0 and -90.0 <= lat <= 90.0:   # out-of-range coordinates are omitted
        values["lon"], values["lat"] = float(lon), float(lat)
    if isinstance(station.get("longname"), str):
        values["name"] = station["longname"]
    water = station.get("water")
    if isinstance(water, Mapping) and isinstance(water.get("longname"), str):
        values["water"] = water["longname"]
    observed = w[1] if w is not None else q[1]
    return Reading(device_id=uuid, profile=profile, observed_at=observed, values=values, kind="station", meta=meta)


def decode_pegelonline(message: RawMessage, options: Mapping[str, Any]) -> list[Reading]:
    """Stations (one object or a list, with ``includeTimeseries&includeCurrentMeasurement``) or a
    ``/W/currentmeasurement.json`` answer (then the station is the target's ``device``)."""
    body = message.payload
    try:
        doc = orjson.loads(body) if isinstance(body, (bytes, bytearray, str)) else body
    except orjson.JSONDecodeError as exc:
        raise DecodeError(INVALID_JSON, str(exc)) from None
    if isinstance(doc, Mapping) and "timestamp" in doc and "value" in doc and "uuid" not in doc:
        if not message.device_hint:
            raise DecodeError(NO_STATION, "a current-measurement answer needs the target's device id")
        station = {"uuid": message.device_hint,
                   "timeseries": [{"shortname": "W", "unit": "cm", "currentMeasurement": doc}]}
        doc = [station]
    elif isinstance(doc, Mapping):
        doc = [doc]
    if not isinstance(doc, list):
        raise DecodeError(UNEXPECTED_SHAPE, "expected a station object or a list of stations")
    readings = []
    for station in doc:
        if not isinstance(station, Mapping):
            raise DecodeError(UNEXPECTED_SHAPE, "a list item is not a station object")
        reading = _station_reading(station, "pegelonline")
        if reading is not None:
            readings.append(reading)
    if not readings:
        raise ReadingDropped(NO_CURRENT_MEASUREMENT, "no station in the answer has a current measurement")
    return readings

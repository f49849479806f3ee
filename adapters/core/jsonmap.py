"""``json-map``: a configurable profile for devices whose data already arrives as JSON.

For network servers that decode the payload themselves (TTS ``decoded_payload``, ChirpStack
``object``) and for plain JSON bodies (a webhook, an HTTP API). The config names, per Smart Data
Models attribute, where the value is and how to scale it; see ``adapters/core/README-json-map.md``::

    profile: json-map
    options:
      device_path: null                 # plain JSON: where the device id is (LoRaWAN: the envelope's)
      time_path: null                   # where the observation time is (ISO 8601 or epoch s/ms)
      fields:
        temperature:    {path: decoded.temperature, unit_code: CEL}
        relativeHumidity: {path: decoded.humidity, convert: percent_to_fraction, unit_code: C62}
        atmosphericPressure: {path: decoded.pressure, convert: kpa_to_hpa, unit_code: A97}

Each family adds it to its profiles: ``profiles={..., "json-map": JSON_MAP_PROFILE}``.
"""
from __future__ import annotations

import copy
import functools
import math
import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Callable, Mapping

import orjson
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from .errors import DecodeError
from .lorawan import CHIRPSTACK_TOPIC, TTS_TOPIC, parse_uplink
from .reading import RawMessage, Reading, Uplink
from .timeutil import TimeFormatError, from_epoch, parse_time

#: Named unit conversions, applied after ``scale`` and ``offset``.
CONVERSIONS: dict[str, Callable[[float], float]] = {
    "percent_to_fraction": lambda v: v / 100.0,
    "fraction_to_percent": lambda v: v * 100.0,
    "kpa_to_hpa": lambda v: v * 10.0,
    "pa_to_hpa": lambda v: v / 100.0,
    "hpa_to_pa": lambda v: v * 100.0,
    "kpa_to_pa": lambda v: v * 1000.0,
    "f_to_c": lambda v: (v - 32.0) * 5.0 / 9.0,
    "k_to_c": lambda v: v - 273.15,
    "mm_to_m": lambda v: v / 1000.0,
    "cm_to_m": lambda v: v / 100.0,
    "km_h_to_m_s": lambda v: v / 3.6,
    "mph_to_m_s": lambda v: v * 0.44704,
    "knots_to_m_s": lambda v: v * 0.514444,
    "wh_to_kwh": lambda v: v / 1000.0,
    "kwh_to_wh": lambda v: v * 1000.0,
    "w_to_kw": lambda v: v / 1000.0,
    "kw_to_w": lambda v: v * 1000.0,
    "mv_to_v": lambda v: v / 1000.0,
    "ma_to_a": lambda v: v / 1000.0,
}

_PATH_TOKEN = re.compile(r"[^.\[\]]+|\[\d+\]")


@functools.lru_cache(maxsize=1024)
def parse_path(path: str) -> tuple[str | int, ...]:
    """``"a.b[0].c"`` or ``"a.b.0.c"`` → ``("a", "b", 0, "c")`` (digits index lists)."""
    if not isinstance(path, str) or not path.strip():
        raise ValueError("empty path")
    parts: list[str | int] = []
    for token in _PATH_TOKEN.findall(path.strip()):
        if token.startswith("["):
            parts.append(int(token[1:-1]))
        else:
            parts.append(int(token) if token.isdigit() else token)
    if not parts:
        raise ValueError(f"invalid path {path!r}")
    return tuple(parts)


_MISSING = object()


def resolve(doc: Any, path: tuple[str | int, ...]) -> Any:
    """The value at ``path`` or ``_MISSING`` (never raises)."""
    cur = doc
    for part in path:
        if isinstance(cur, Mapping):
            if isinstance(part, int):
                cur = cur.get(str(part), _MISSING)
            else:
                cur = cur.get(part, _MISSING)
        elif isinstance(cur, list) and isinstance(part, int):
            cur = cur[part] if -len(cur) <= part < len(cur) else _MISSING
        else:
            return _MISSING
        if cur is _MISSING:
            return _MISSING
    return cur


class FieldSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    path: str
    scale: float = 1.0
    offset: float = 0.0
    unit_code: str | None = None
    convert: str | None = None

    @field_validator("path")
    @classmethod
    def _path(cls, v: str) -> str:
        parse_path(v)
        return v

    @field_validator("convert")
    @classmethod
    def _convert(cls, v: str | None) -> str | None:
        if v is not None and v not in CONVERSIONS:
            raise ValueError(f"unknown conversion {v!r} (known: {', '.join(sorted(CONVERSIONS))})")
        return v


class JsonMapOptions(BaseModel):
    model_config = ConfigDict(extra="allow")   # sources may add their own option keys (role, …)

    fields: dict[str, FieldSpec] = Field(min_length=1)
    device_path: str | None = None
    time_path: str | None = None
    items_path: str | None = None      # a list of records, one reading each (e.g. "stations")
    kind: str = "measurement"

    @model_validator(mode="before")
    @classmethod
    def _shorthand(cls, data: Any) -> Any:
        # ``fields: {temperature: decoded.temperature}`` is short for ``{path: decoded.temperature}``
        if isinstance(data, Mapping) and isinstance(data.get("fields"), Mapping):
            data = dict(data)
            data["fields"] = {k: ({"path": v} if isinstance(v, str) else v) for k, v in data["fields"].items()}
        return data

    @field_validator("device_path", "time_path", "items_path")
    @classmethod
    def _paths(cls, v: str | None) -> str | None:
        if v is not None:
            parse_path(v)
        return v


_validated: dict[int, tuple[dict, JsonMapOptions]] = {}


def validate_options(options: Mapping[str, Any]) -> JsonMapOptions:
    """Check a json-map options block (e.g. at config load); raises DecodeError("bad-options").

    The same options object comes with every message of a source: the last validations are kept
    (checked for equality, so a mutated dict is validated again).
    """
    key = id(options)
    hit = _validated.get(key)
    if hit is not None and hit[0] == options:
        return hit[1]
    try:
        result = JsonMapOptions.model_validate(dict(options))
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors())
        raise DecodeError("bad-options", f"json-map options: {problems}") from None
    if len(_validated) >= 64:
        _validated.clear()
    _validated[key] = (copy.deepcopy(dict(options)), result)
    return result


def _number(value: Any) -> float | int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return value if not isinstance(value, float) or math.isfinite(value) else None
    if isinstance(value, str):
        try:
            f = float(value.strip())
        except ValueError:
            return None
        return f if math.isfinite(f) else None
    return None


def _field_value(spec: FieldSpec, raw: Any) -> Any:
    """The converted value, or ``_MISSING`` when ``raw`` cannot be used."""
    numeric_work = spec.scale != 1.0 or spec.offset != 0.0 or spec.convert is not None
    if raw is None:
        return _MISSING
    if isinstance(raw, bool):
        return _MISSING if numeric_work else raw
    if isinstance(raw, (dict, list)):
        return _MISSING if numeric_work else raw
    if isinstance(raw, str) and not numeric_work:
        return raw
    number = _number(raw)
    if number is None:
        return _MISSING
    if not numeric_work:
        return number
    value = number * spec.scale + spec.offset
    if spec.convert:
        value = CONVERSIONS[spec.convert](value)
    if isinstance(value, float):
        if not math.isfinite(value):
            return _MISSING
        value = round(value, 9)
    return value


def _observed_at(doc: Any, time_path: str | None, fallback: datetime, fallback_source: str) -> tuple[datetime, str]:
    if time_path is None:
        return fallback, fallback_source
    raw = resolve(doc, parse_path(time_path))
    if raw is _MISSING or raw is None:
        raise DecodeError("no-time", f"nothing at time_path {time_path!r}")
    number = _number(raw) if not isinstance(raw, str) else None
    try:
        if number is not None:
            return from_epoch(number / 1000.0 if number > 1e11 else number), "payload"
        if isinstance(raw, str):
            return parse_time(raw), "payload"
    except (TimeFormatError, OverflowError, ValueError, OSError):
        pass
    raise DecodeError("bad-time", f"time_path {time_path!r}: {str(raw)[:60]!r} is not a time")


@dataclass(frozen=True)
class JsonMapProfile:
    name: str = "json-map"
    description: str = ("Already-decoded JSON (TTS decoded_payload, ChirpStack object, plain JSON bodies) "
                        "mapped to attributes by configured paths")
    kind: str = "json"

    def decode(self, message: RawMessage, options: Mapping[str, Any]) -> list[Reading]:
        opts = validate_options(options)
        doc, device_id, observed_at, meta = self._root(message)
        if opts.device_path:
            found = resolve(doc, parse_path(opts.device_path))
            if isinstance(found, (str, int)) and not isinstance(found, bool) and str(found):
                device_id = str(found)
            elif not opts.items_path:
                raise DecodeError("no-device", f"nothing usable at device_path {opts.device_path!r}")
        if opts.items_path:
            items = resolve(doc, parse_path(opts.items_path))
            if not isinstance(items, list):
                raise DecodeError("no-items", f"items_path {opts.items_path!r} is not a list")
            readings = []
            for item in items:
                item_device = device_id
                if opts.device_path:
                    found = resolve(item, parse_path(opts.device_path))
                    if not isinstance(found, (str, int)) or isinstance(found, bool) or not str(found):
                        continue
                    item_device = str(found)
                reading = self._reading(item, opts, item_device, observed_at, meta)
                if reading is not None:
                    readings.append(reading)
            if not readings:
                raise DecodeError("no-mapped-fields", "no item had a configured field")
            return readings
        reading = self._reading(doc, opts, device_id, observed_at, meta)
        if reading is None:
            raise DecodeError("no-mapped-fields",
                              f"none of the configured paths found ({', '.join(f.path for f in opts.fields.values())})")
        return [reading]

    def _reading(self, doc: Any, opts: JsonMapOptions, device_id: str | None, default_time: datetime,
                 meta: dict) -> Reading | None:
        values: dict[str, Any] = {}
        units: dict[str, str] = {}
        skipped: list[str] = []
        for attribute, spec in opts.fields.items():
            raw = resolve(doc, parse_path(spec.path))
            if raw is _MISSING:
                continue
            value = _field_value(spec, raw)
            if value is _MISSING:
                if raw is not None:
                    skipped.append(attribute)
                continue
            values[attribute] = value
            if spec.unit_code:
                units[attribute] = spec.unit_code
        if not values:
            return None
        if not device_id:
            raise DecodeError("no-device", "no device id: set device_path or configure the target's device")
        observed_at, time_source = _observed_at(doc, opts.time_path, default_time, meta.get("time_source", "received"))
        out_meta = {**meta, "unit_codes": units, "time_source": time_source}
        if skipped:
            out_meta["unusable_fields"] = skipped
        return Reading(device_id=device_id, profile=self.name, observed_at=observed_at, values=values,
                       kind=opts.kind, meta=out_meta)

    @staticmethod
    def _root(message: RawMessage) -> tuple[Any, str | None, datetime, dict]:
        """(document paths resolve against, default device id, default time, meta)."""
        payload = message.payload
        if isinstance(payload, Uplink):
            return _uplink_root(payload)
        if isinstance(payload, (bytes, bytearray, memoryview, str)):
            try:
                doc = orjson.loads(payload)
            except orjson.JSONDecodeError as exc:
                raise DecodeError("invalid-json", str(exc)) from None
        else:
            doc = payload
        topic = message.topic or ""
        is_envelope = isinstance(doc, dict) and (
            TTS_TOPIC.match(topic) or CHIRPSTACK_TOPIC.match(topic)
            or "uplink_message" in doc or ("deviceInfo" in doc and "time" in doc))
        if is_envelope:
            return _uplink_root(parse_uplink(doc, message.topic))
        return doc, message.device_hint, message.received_at, {"time_source": "received"}


def _uplink_root(up: Uplink) -> tuple[Any, str, datetime, dict]:
    """Paths on an uplink: ``decoded.<…>`` (the network server's decoder output) or ``uplink.<…>`` (the envelope)."""
    meta = {"network": up.network, "dev_eui": up.dev_eui, "f_port": up.f_port, "f_cnt": up.f_cnt,
            "rssi": up.rssi, "snr": up.snr, "time_source": "network-server"}
    root = {"decoded": up.decoded or {}, "uplink": up.raw, "device_id": up.device_id, "dev_eui": up.dev_eui,
            "f_port": up.f_port, "f_cnt": up.f_cnt, "received_at": up.received_at.isoformat()}
    return root, up.device_id, up.received_at, {k: v for k, v in meta.items() if v is not None}


JSON_MAP_PROFILE = JsonMapProfile()

__all__ = ["JsonMapProfile", "JSON_MAP_PROFILE", "JsonMapOptions", "FieldSpec", "CONVERSIONS", "validate_options",
           "parse_path", "resolve"]

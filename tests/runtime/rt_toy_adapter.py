"""A tiny adapter for the runtime tests: one LoRaWAN profile, one JSON profile, a WeatherObserved mapper.

``toy-lora`` bytes: a big-endian signed int16 = temperature × 100 (2 bytes); ``DE AD`` makes the
decoder crash (a bug stand-in); any other length is a DecodeError.
``toy-json``: ``{"device": "...", "t": 21.5, "time": "...", "bad": true?, "boom": true?}``.
"""
from __future__ import annotations

import dataclasses
from typing import Any

import orjson
from pydantic import BaseModel, ConfigDict

from stadtlink.adapters.core import (AdapterSpec, DecodeError, FunctionProfile, LoRaWANProfile, MapContext, Reading,
                           datetime_prop, entity_id, geo_point, new_entity, parse_time, prop)


def decode_toy(payload: bytes, f_port: int | None) -> dict[str, Any]:
    if payload == b"\xde\xad":
        raise RuntimeError("toy decoder bug")
    if len(payload) != 2:
        raise DecodeError("bad-length", f"expected 2 bytes, got {len(payload)}")
    return {"temperature": int.from_bytes(payload, "big", signed=True) / 100}


def decode_json(message, options) -> list[Reading]:
    try:
        doc = orjson.loads(message.payload)
    except orjson.JSONDecodeError as exc:
        raise DecodeError("invalid-json", str(exc)) from None
    values = {"temperature": doc["t"]}
    for flag in ("bad", "boom", "drop", "custom", "noid"):
        if doc.get(flag):
            values[flag] = True
    if options.get("scale"):
        values["temperature"] *= options["scale"]
    return [Reading(device_id=doc.get("device") or message.device_hint, profile="toy-json",
                    observed_at=parse_time(doc["time"]), values=values)]


class ToySettings(BaseModel):
    model_config = ConfigDict(extra="forbid")
    offset: float = 0.0
    tick_entity: bool = False


def mapper(reading: Reading, ctx: MapContext) -> list[dict]:
    from stadtlink.adapters.core import ReadingDropped

    if reading.values.get("boom"):
        raise ValueError("toy mapper bug")
    if reading.values.get("drop"):
        raise ReadingDropped("implausible")
    if reading.values.get("noid"):
        return [{"type": "WeatherObserved"}]
    rec = ctx.require_device(reading)
    if reading.values.get("custom"):
        return [new_entity(entity_id("ToyThing", ctx.namespace, rec.id), "ToyThing",
                           level=prop(reading.values["temperature"], observed_at=reading.observed_at))]
    lonlat = ctx.require(rec, "location")
    key = f"count:{rec.id}"
    ctx.state[key] = ctx.state.get(key, 0) + 1
    value: Any = reading.values["temperature"] + (ctx.settings.offset if ctx.settings else 0.0)
    if reading.values.get("bad"):
        value = "not a number"
    ent = new_entity(entity_id("WeatherObserved", ctx.namespace, rec.id), "WeatherObserved",
                     temperature=prop(value, unit="CEL", observed_at=reading.observed_at),
                     dateObserved=datetime_prop(reading.observed_at),
                     location=geo_point(*lonlat) if lonlat else None)
    return [ent]


def tick(ctx: MapContext) -> list[dict]:
    if not (ctx.settings and ctx.settings.tick_entity):
        return []
    ctx.state["ticks"] = ctx.state.get("ticks", 0) + 1
    return [new_entity(entity_id("WeatherObserved", ctx.namespace, "tick"), "WeatherObserved",
                       dateObserved=datetime_prop(ctx.now), location=geo_point(10.0, 52.0))]


ADAPTER = AdapterSpec(
    name="toy",
    description="runtime test adapter",
    profiles={
        "toy-lora": LoRaWANProfile("toy-lora", "int16 temperature ×100", decode_toy),
        "toy-json": FunctionProfile("toy-json", "json", "JSON temperature", decode_json),
    },
    mapper=mapper,
    semantics="latest-state",
    settings_model=ToySettings,
    entity_types=("WeatherObserved",),
    tick=tick,
    tick_interval=0.1,
)

TS_ADAPTER = dataclasses.replace(ADAPTER, name="toy-ts", semantics="time-series")

BROKEN = "not an adapter"

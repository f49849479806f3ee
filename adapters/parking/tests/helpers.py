"""Shared helpers of the parking tests (fixtures are files in ../testdata)."""
from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from stadtlink.adapters.core.adapter import MapContext, StateStore
from stadtlink.adapters.core.errors import MappingError, ReadingDropped
from stadtlink.adapters.core.lorawan import chirpstack_uplink, tts_uplink
from stadtlink.adapters.core.reading import RawMessage, Reading
from stadtlink.adapters.core.registry import DeviceRegistry
from stadtlink.adapters.parking import ADAPTER
from stadtlink.adapters.parking.settings import ParkingSettings

TESTDATA = Path(__file__).resolve().parent.parent / "testdata"
UTC = timezone.utc
T0 = datetime(2025, 3, 1, 10, 0, 0, tzinfo=UTC)


def sample(name: str) -> dict:
    return json.loads((TESTDATA / name).read_text(encoding="utf-8"))


def data(name: str) -> bytes:
    return (TESTDATA / name).read_bytes()


def make_ctx(devices: list[dict] | None = None, settings: dict | None = None, namespace: str = "test",
             state: StateStore | None = None, now: datetime | None = None) -> MapContext:
    return MapContext(namespace=namespace, registry=DeviceRegistry.load(inline=devices or []),
                      settings=ParkingSettings.model_validate(settings or {}),
                      state=state if state is not None else StateStore(), now=now)


def http_message(body: bytes, device: str | None = "feed", received_at: datetime | None = None) -> RawMessage:
    return RawMessage(source="http", payload=body, received_at=received_at or datetime(2026, 1, 1, tzinfo=UTC),
                      topic="http://127.0.0.1/feed", device_hint=device)


def decode(profile: str, message: RawMessage, options: dict | None = None) -> list[Reading]:
    return ADAPTER.profile(profile).decode(message, options or {})


def map_all(readings: list[Reading], ctx: MapContext) -> tuple[list[dict], list[tuple[str, Exception]]]:
    """Map like the pipeline does: one reading at a time, errors collected per reading."""
    entities: list[dict] = []
    errors: list[tuple[str, Exception]] = []
    for r in readings:
        try:
            entities.extend(ADAPTER.mapper(r, ctx))
        except (MappingError, ReadingDropped) as exc:
            errors.append((r.device_id, exc))
    return entities, errors


def by_id(entities: list[dict]) -> dict[str, dict]:
    out: dict[str, dict] = {}
    for e in entities:
        out[e["id"]] = e   # the last one wins, as in the broker
    return out


def value(entity: dict, attr: str) -> Any:
    a = entity[attr]
    if a["type"] == "Relationship":
        return a["object"]
    v = a["value"]
    if isinstance(v, dict) and "@value" in v:
        return v["@value"]
    return v


def spot_reading(device: str, payload: str, *, f_port: int = 1, at: datetime = T0, profile: str = "bosch-tps110",
                 network: str = "tts", rssi: float = -91.0) -> Reading:
    stamp = at.isoformat().replace("+00:00", "Z")
    if network == "tts":
        topic, env = tts_uplink(device, bytes.fromhex(payload), f_port=f_port, f_cnt=1, received_at=stamp, rssi=rssi)
    else:
        topic, env = chirpstack_uplink(device, bytes.fromhex(payload), f_port=f_port, f_cnt=1, time=stamp, rssi=rssi)
    msg = RawMessage(source="mqtt", payload=json.dumps(env).encode(), received_at=at, topic=topic)
    (reading,) = ADAPTER.profile(profile).decode(msg, {})
    return reading

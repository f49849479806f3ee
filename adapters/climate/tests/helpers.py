"""Shared helpers of the climate tests (fixtures are real device samples in ../testdata)."""
from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from stadtlink.adapters.climate.settings import ClimateSettings
from stadtlink.adapters.core.adapter import MapContext, StateStore
from stadtlink.adapters.core.reading import Reading
from stadtlink.adapters.core.registry import DeviceRegistry

TESTDATA = Path(__file__).resolve().parent.parent / "testdata"
T0 = datetime(2026, 6, 21, 12, 0, tzinfo=timezone.utc)

STATIONS = [
    {"id": "mhm-n1", "name": "Quadrat N1", "lat": 49.4875, "lon": 8.4660, "profile": "decentlab-dl-atm41",
     "dev_eui": "70b3d57ba0000101"},
    {"id": "mhm-luisenpark", "name": "Luisenpark", "lat": 49.4800, "lon": 8.4960, "profile": "barani-meteohelix",
     "dev_eui": "0004a30b00000202"},
    {"id": "mhm-gauge05", "name": "Jungbusch (0.5 mm gauge)", "lat": 49.4930, "lon": 8.4570,
     "profile": "barani-meteohelix", "rain_gauge_mm": 0.5},
    {"id": "mhm-noloc", "name": "No location", "profile": "barani-meteohelix"},
]


def sample(name: str) -> dict[str, Any]:
    return json.loads((TESTDATA / name).read_text(encoding="utf-8"))


ATM41 = sample("decentlab-dl-atm41-weather-station.json")
HELIX = sample("barani-meteohelix-iot-pro.json")


def registry() -> DeviceRegistry:
    return DeviceRegistry.load(inline=STATIONS)


def context(settings: ClimateSettings | dict | None = None, state: StateStore | None = None,
            lenient: bool = False) -> MapContext:
    if isinstance(settings, dict):
        settings = ClimateSettings.model_validate(settings)
    return MapContext(namespace="mannheim", registry=registry(), settings=settings or ClimateSettings(),
                      state=state if state is not None else StateStore(), lenient=lenient)


def reading(values: dict[str, Any], *, device: str = "mhm-luisenpark", profile: str = "barani-meteohelix",
            at: datetime = T0, f_cnt: int | None = 10, rssi: float | None = -97.0) -> Reading:
    meta: dict[str, Any] = {"network": "tts-v3"}
    if f_cnt is not None:
        meta["f_cnt"] = f_cnt
    if rssi is not None:
        meta["rssi"] = rssi
    return Reading(device_id=device, profile=profile, observed_at=at, values=dict(values), meta=meta)


def by_type(entities: list[dict], entity_type: str) -> list[dict]:
    return [e for e in entities if e["type"] == entity_type]


def one(entities: list[dict], entity_type: str) -> dict:
    found = by_type(entities, entity_type)
    assert len(found) == 1, f"expected one {entity_type}, got {[e['id'] for e in found]}"
    return found[0]


def measurement(entities: list[dict], controlled: str) -> dict | None:
    for e in by_type(entities, "DeviceMeasurement"):
        if e["controlledProperty"]["value"] == controlled:
            return e
    return None


__all__ = [
    "ATM41",
    "HELIX",
    "STATIONS",
    "T0",
    "TESTDATA",
    "by_type",
    "context",
    "measurement",
    "one",
    "reading",
    "registry",
    "sample",
    "timedelta",
]

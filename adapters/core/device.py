"""The ``Device`` entity every family writes for its sensors (battery, signal, last report).

One builder for all families so that a Device looks the same whichever adapter wrote it.
"""
from __future__ import annotations

from datetime import datetime
from typing import Any, Iterable

from .entity import datetime_prop, entity_id, geo_point, new_entity, prop
from .reading import Reading


def battery_fraction_from_voltage(volts: float, empty: float, full: float) -> float:
    """Linear battery estimate clamped to 0..1 (SDM ``batteryLevel`` is a fraction)."""
    if full <= empty:
        raise ValueError("full voltage must be above empty voltage")
    return round(min(1.0, max(0.0, (volts - empty) / (full - empty))), 3)


def device_entity(
    namespace: str,
    device_id: str,
    *,
    controlled_property: Iterable[str],
    observed_at: datetime,
    battery_level: float | None = None,
    rssi: float | None = None,
    name: str | None = None,
    lonlat: tuple[float, float] | None = None,
    category: Iterable[str] = ("sensor",),
    supported_protocol: Iterable[str] | None = ("lora",),
    extra: dict[str, Any] | None = None,
) -> dict:
    """A normalized ``Device``. ``battery_level`` is a fraction 0..1; ``rssi`` in dBm."""
    ent = new_entity(
        entity_id("Device", namespace, device_id),
        "Device",
        controlledProperty=prop(list(controlled_property)),
        category=prop(list(category)),
        supportedProtocol=prop(list(supported_protocol)) if supported_protocol else None,
        name=prop(name) if name else None,
        location=geo_point(*lonlat) if lonlat else None,
        dateLastValueReported=datetime_prop(observed_at),
    )
    if battery_level is not None:
        ent["batteryLevel"] = prop(round(float(battery_level), 3), unit="C62", observed_at=observed_at)
    if rssi is not None:
        ent["rssi"] = prop(float(rssi), unit="DBM", observed_at=observed_at)
    for key, value in (extra or {}).items():
        if value is not None:
            ent[key] = value
    return ent


def device_for_reading(namespace: str, reading: Reading, *, controlled_property: Iterable[str],
                       battery_level: float | None = None, name: str | None = None,
                       lonlat: tuple[float, float] | None = None, device_id: str | None = None, **kw: Any) -> dict:
    """:func:`device_entity` filled from a LoRaWAN reading's metadata (RSSI, receive time).

    Pass the registry record's id as ``device_id``: TTS names a device by its device id and
    ChirpStack by its dev EUI, and one sensor must be one Device whichever server delivered it.
    """
    return device_entity(namespace, device_id or reading.device_id, controlled_property=controlled_property,
                         observed_at=reading.observed_at, battery_level=battery_level,
                         rssi=reading.meta.get("rssi"), name=name, lonlat=lonlat, **kw)

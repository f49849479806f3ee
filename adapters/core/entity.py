"""Builders for normalized NGSI-LD entities, used by every mapper.

Mappers return plain dicts (fast, orjson-serialisable); these helpers keep the shape right:
every measured Property carries ``observedAt`` (UTC, ms, ``Z``) and ``unitCode`` (UN/CEFACT),
missing values are omitted (never ``null`` or ``0``), ids are deterministic URNs.
"""
from __future__ import annotations

import math
import re
from datetime import datetime
from typing import Any, Iterable, Mapping

from .timeutil import iso_ms

_LOCAL_ID_UNSAFE = re.compile(r"[^A-Za-z0-9._~\-:]")


def entity_id(entity_type: str, namespace: str, local_id: str) -> str:
    """``urn:ngsi-ld:<Type>:<namespace>:<local-id>`` — same input, same id, in every replica."""
    if not namespace or not local_id:
        raise ValueError("entity ids need a namespace and a local id")
    safe = _LOCAL_ID_UNSAFE.sub("-", str(local_id))
    ns = _LOCAL_ID_UNSAFE.sub("-", str(namespace))
    return f"urn:ngsi-ld:{entity_type}:{ns}:{safe}"


def prop(value: Any, *, unit: str | None = None, observed_at: datetime | None = None) -> dict:
    """A Property. ``value`` must not be None (Orion-LD rejects null) nor NaN."""
    if value is None:
        raise ValueError("a Property value must not be None: omit the attribute instead")
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError("a Property value must be a finite number")
    out: dict[str, Any] = {"type": "Property", "value": value}
    if unit is not None:
        out["unitCode"] = unit
    if observed_at is not None:
        out["observedAt"] = iso_ms(observed_at)
    return out


def datetime_prop(dt: datetime) -> dict:
    """A DateTime-valued Property (``dateObserved`` and friends)."""
    return {"type": "Property", "value": {"@type": "DateTime", "@value": iso_ms(dt)}}


def rel(obj: str | list[str], *, observed_at: datetime | None = None) -> dict:
    if not obj:
        raise ValueError("a Relationship needs an object")
    out: dict[str, Any] = {"type": "Relationship", "object": obj}
    if observed_at is not None:
        out["observedAt"] = iso_ms(observed_at)
    return out


def geo_point(lon: float, lat: float) -> dict:
    """A GeoProperty with a GeoJSON Point. Order is [longitude, latitude]."""
    lon, lat = float(lon), float(lat)
    if not (-180.0 <= lon <= 180.0 and -90.0 <= lat <= 90.0):
        raise ValueError(f"coordinates out of range: lon={lon} lat={lat}")
    return {"type": "GeoProperty", "value": {"type": "Point", "coordinates": [lon, lat]}}


def new_entity(entity_id_: str, entity_type: str, **attributes: Any) -> dict:
    """An entity dict; attributes whose value is None are left out."""
    ent: dict[str, Any] = {"id": entity_id_, "type": entity_type}
    for name, attr in attributes.items():
        if attr is not None:
            ent[name] = attr
    return ent


def set_measurements(
    entity: dict,
    values: Mapping[str, Any],
    table: Iterable["Measure"],
    observed_at: datetime,
) -> dict:
    """Fill ``entity`` from ``values`` by a table of :class:`Measure` rows (one row per SDM attribute)."""
    for row in table:
        raw = values.get(row.source)
        if raw is None:
            continue
        value = row.convert(raw) if row.convert else raw
        if value is None:
            continue
        entity[row.attribute] = prop(value, unit=row.unit, observed_at=observed_at)
    return entity


class Measure:
    """One row of a mapping table: reading key → SDM attribute, unitCode and a value function."""

    __slots__ = ("source", "attribute", "unit", "convert")

    def __init__(self, source: str, attribute: str, unit: str | None, convert=None):
        self.source = source
        self.attribute = attribute
        self.unit = unit
        self.convert = convert

    def __repr__(self) -> str:  # pragma: no cover - debugging aid
        return f"Measure({self.source!r} -> {self.attribute!r} [{self.unit}])"


__all__ = ["entity_id", "prop", "datetime_prop", "rel", "geo_point", "new_entity", "set_measurements", "Measure"]

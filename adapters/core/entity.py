"""Builders for normalized NGSI-LD entities, used by every mapper.

Mappers return plain dicts (fast, orjson-serialisable); these helpers keep the shape right:
every measured Property carries ``observedAt`` (UTC, ms, ``Z``) and ``unitCode`` (UN/CEFACT),
missing values are omitted (never ``null`` or ``0``), ids are deterministic URNs.
"""
from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass
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


#: Reasons a value of a reading is left out of the entity (``Reading.meta["dropped"]`` values; the
#: runtime counts them in ``stadtlink_values_rejected_total{adapter,attribute,reason}``).
REJECT_SENTINEL = "sentinel"            # the device's or feed's own "no reading" code (e.g. all ones)
REJECT_IMPLAUSIBLE = "implausible"      # outside the row's valid range (physics, device spec, SDM bounds)
REJECT_NOT_A_NUMBER = "not-a-number"    # text, NaN, infinity or a boolean where a number belongs


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


@dataclass(frozen=True, slots=True)
class Measure:
    """One row of a mapping table: reading key → SDM attribute, UN/CEFACT unit and a value function.

    ``valid_range`` (inclusive) and ``sentinels`` are in the *reading's* units (the vocabulary's SI
    units, before ``convert``): a value equal to a sentinel (a device's "no reading" code) or outside
    the range is left out of the entity, the rest of the reading is written, and the refusal is
    recorded for the runtime to count. Every family's tables use this one row type.
    """

    source: str
    attribute: str
    unit: str | None
    convert: Callable[[Any], Any] | None = None
    valid_range: tuple[float, float] | None = None
    sentinels: tuple[float, ...] = ()

    def screen(self, value: Any, valid_range: tuple[float, float] | None = None) -> tuple[Any, str | None]:
        """(value, None) when ``value`` may be written, else (None, reason). ``valid_range`` overrides
        the row's own (a deployment's settings may narrow it)."""
        if isinstance(value, float) and not math.isfinite(value):
            return None, REJECT_NOT_A_NUMBER    # NaN / infinity can never be written
        bounds = valid_range if valid_range is not None else self.valid_range
        if bounds is None and not self.sentinels:
            return value, None                  # nothing to check (text, objects, unbounded numbers)
        if not _is_number(value):
            return None, REJECT_NOT_A_NUMBER
        if value in self.sentinels:
            return None, REJECT_SENTINEL
        if bounds is not None and not bounds[0] <= value <= bounds[1]:
            return None, REJECT_IMPLAUSIBLE
        return value, None

    def value(self, values: Mapping[str, Any], rejected: dict[str, str] | None = None) -> Any:
        """The converted value of this row in ``values`` or None (absent, refused or converted to None);
        a refusal is noted in ``rejected`` as ``{attribute: reason}``."""
        raw = values.get(self.source)
        if raw is None:
            return None
        raw, reason = self.screen(raw)
        if reason is not None:
            if rejected is not None:
                rejected[self.attribute] = reason
            return None
        return self.convert(raw) if self.convert is not None else raw


def note_rejected(reading: Any, rejected: Mapping[str, str]) -> None:
    """Add refused values ``{attribute: reason}`` to the reading's record (``Reading.meta["dropped"]``),
    which the runtime counts after mapping (``stadtlink_values_rejected_total``)."""
    if rejected:
        reading.meta.setdefault("dropped", {}).update(rejected)


def set_measurements(
    entity: dict,
    values: Mapping[str, Any],
    table: Iterable[Measure],
    observed_at: datetime,
    rejected: dict[str, str] | None = None,
) -> dict:
    """Fill ``entity`` from ``values`` by a table of :class:`Measure` rows (one row per SDM attribute).

    Refused values (sentinel, outside the valid range) are left out and noted in ``rejected``."""
    for row in table:
        value = row.value(values, rejected)
        if value is None:
            continue
        entity[row.attribute] = prop(value, unit=row.unit, observed_at=observed_at)
    return entity


__all__ = ["entity_id", "prop", "datetime_prop", "rel", "geo_point", "new_entity", "set_measurements", "Measure",
           "note_rejected", "REJECT_SENTINEL", "REJECT_IMPLAUSIBLE", "REJECT_NOT_A_NUMBER"]

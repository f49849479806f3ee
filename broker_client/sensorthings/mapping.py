"""NGSI-LD entity → the SensorThings graph it stands for (pure: no I/O).

* the entity is a **Thing**: ``name`` = the NGSI-LD id (unique, and reachable with
  ``$filter=name eq '…'`` on every server), ``description`` = its ``name``/``description``,
  ``properties`` = its static attributes as key-values plus ``ngsiLdId`` and ``sdmType`` so the
  mapping can be reversed;
* its ``location`` GeoProperty is the Thing's **Location** (GeoJSON);
* each measured attribute (:mod:`.models`) is a **Datastream** named after the attribute (per-phase
  objects: one Datastream per member, ``activePower/L1``), with an **ObservedProperty** whose
  ``definition`` is the attribute's Smart Data Models IRI, a **Sensor** (the entity's
  ``refDevice``, else one per model) and ``unitOfMeasurement`` from the UN/CEFACT ``unitCode``;
* each measured value is an **Observation**, ``phenomenonTime`` = the Property's ``observedAt``,
  else the entity's ``dateObserved`` / ``observationDateTime``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from stadtlink.timeutil import iso_ms, parse_time
from stadtlink.schemas.ngsi_ld import to_key_values

from .models import (
    OBSERVATION_TYPE,
    STRUCTURAL,
    TIME_ATTRIBUTES,
    Measured,
    attribute_iri,
    measured,
)
from .units import COUNT_UNIT, NO_UNIT, UnknownUnit, unit_of_measurement

SENSOR_ENCODING = "text/html"  # one of the three encodings every server accepts (OGC 18-088 Table 8)

#: Thing properties that change with every reading: left out, or the Thing would be PATCHed each time
VOLATILE = frozenset({"dateObserved", "observationDateTime", "dateLastValueReported", "dateModified",
                      "occupancyModified", "dateCreated"})


@dataclass(frozen=True, slots=True)
class ObservedPropertySpec:
    name: str
    definition: str
    description: str

    def body(self) -> dict[str, Any]:
        return {"name": self.name, "definition": self.definition, "description": self.description}


@dataclass(frozen=True, slots=True)
class SensorSpec:
    name: str
    description: str
    metadata: str

    def body(self) -> dict[str, Any]:
        return {"name": self.name, "description": self.description, "encodingType": SENSOR_ENCODING,
                "metadata": self.metadata}


@dataclass(frozen=True, slots=True)
class StreamSpec:
    """One Datastream of a Thing; ``key`` (= its name) is unique within the Thing."""

    key: str
    attribute: str
    member: str | None
    kind: str
    unit_code: str | None
    unit: dict[str, Any]
    observed_property: ObservedPropertySpec
    sensor: SensorSpec

    def body(self, entity_id: str) -> dict[str, Any]:
        props: dict[str, Any] = {"ngsiLdAttribute": self.attribute}
        if self.member is not None:
            props["member"] = self.member
        if self.unit_code is not None:
            props["unitCode"] = self.unit_code
        return {
            "name": self.key,
            "description": f"{self.key} of {entity_id}",
            "observationType": OBSERVATION_TYPE[self.kind],
            "unitOfMeasurement": self.unit,
            "properties": props,
        }


@dataclass(frozen=True, slots=True)
class Row:
    """One Observation to write: Datastream key, phenomenonTime (ISO, ms, Z) and result."""

    key: str
    time: str
    result: Any


@dataclass(slots=True)
class ThingPlan:
    entity_id: str
    entity_type: str
    description: str
    properties: dict[str, Any]
    location: dict[str, Any] | None
    location_time: str | None
    streams: dict[str, StreamSpec] = field(default_factory=dict)
    rows: list[Row] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)  # rows refused before sending (with reasons)

    def thing_body(self) -> dict[str, Any]:
        return {"name": self.entity_id, "description": self.description, "properties": self.properties}


class EntityNotMappable(ValueError):
    """The entity cannot be a Thing at all (no id or type)."""


def _default_instance(attribute: Any) -> dict | None:
    if isinstance(attribute, list):
        instances = [a for a in attribute if isinstance(a, dict)]
        if not instances:
            return None
        return next((a for a in instances if "datasetId" not in a), instances[0])
    return attribute if isinstance(attribute, dict) else None


def _time_value(attribute: Any) -> str | None:
    inst = _default_instance(attribute)
    if inst is None:
        return None
    value = inst.get("value")
    if isinstance(value, dict):
        value = value.get("@value", value.get("value"))
    return value if isinstance(value, str) else None


def _iso(text: str) -> str:
    return iso_ms(parse_time(text))


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _sensor_for(entity: dict, entity_type: str) -> SensorSpec:
    ref = _default_instance(entity.get("refDevice"))
    target = ref.get("object") if ref else None
    if isinstance(target, list):
        target = target[0] if target else None
    if isinstance(target, str) and target:
        return SensorSpec(target, f"the device {target}", target)
    return SensorSpec(f"stadtlink:{entity_type}", f"stadtlink adapters writing {entity_type} entities",
                      "https://smartdatamodels.org/")


def plan_entity(entity: dict[str, Any], *, now: datetime | None = None) -> ThingPlan:
    """The Thing, Datastreams and Observations one NGSI-LD entity (normalized) stands for."""
    if not isinstance(entity, dict):
        raise EntityNotMappable(f"an entity must be an object, got {type(entity).__name__}")
    entity_id, entity_type = entity.get("id"), entity.get("type")
    if not isinstance(entity_id, str) or not entity_id or not isinstance(entity_type, str) or not entity_type:
        raise EntityNotMappable("an entity needs a string id and type")
    table = measured(entity_type)
    fallback_time: str | None = None
    for name in TIME_ATTRIBUTES:
        text = _time_value(entity.get(name))
        if text:
            try:
                fallback_time = _iso(text)
                break
            except ValueError:
                continue
    write_time = iso_ms(now or datetime.now(UTC))

    static = to_key_values(entity, skip=set(table) | STRUCTURAL | VOLATILE)
    for meta in ("id", "type", "@context", "scope"):
        static.pop(meta, None)
    for name, attribute in entity.items():  # off-spec attributes (a Relationship with "value") kept as given
        inst = _default_instance(attribute)
        if name not in static and name not in table and name not in STRUCTURAL | VOLATILE and inst is not None:
            for member in ("value", "object"):
                if member in inst:
                    static[name] = inst[member]
                    break
    properties = {"ngsiLdId": entity_id, "sdmType": entity_type, **static}
    label = static.get("name") if isinstance(static.get("name"), str) else None
    described = static.get("description") if isinstance(static.get("description"), str) else None
    description = " — ".join(x for x in (label, described) if x) or f"{entity_type} {entity_id}"

    location = None
    loc = _default_instance(entity.get("location"))
    if loc is not None and isinstance(loc.get("value"), dict) and "type" in loc["value"]:
        location = loc["value"]
    plan = ThingPlan(entity_id, entity_type, description, properties, location,
                     _safe_iso(loc.get("observedAt")) if loc else None)
    plan.location_time = plan.location_time or fallback_time or write_time

    sensor = _sensor_for(entity, entity_type)
    for attribute, how in table.items():
        inst = _default_instance(entity.get(attribute))
        if inst is None or inst.get("type", "Property") != "Property" or "value" not in inst:
            continue
        _plan_attribute(plan, entity, attribute, how, inst, sensor, fallback_time or write_time)
    return plan


def _safe_iso(text: Any) -> str | None:
    if not isinstance(text, str):
        return None
    try:
        return _iso(text)
    except ValueError:
        return None


def _plan_attribute(plan: ThingPlan, entity: dict, attribute: str, how: Measured, inst: dict,
                    sensor: SensorSpec, default_time: str) -> None:
    value = inst["value"]
    observed = inst.get("observedAt")
    when = default_time
    if observed is not None:
        when = _safe_iso(observed)  # type: ignore[assignment]
        if when is None:
            plan.problems.append(f"{attribute}: observedAt {observed!r} is not a date-time")
            return
    unit_code = inst.get("unitCode") if isinstance(inst.get("unitCode"), str) else how.unit
    key, op_name, definition = attribute, attribute, attribute_iri(plan.entity_type, attribute)
    if plan.entity_type == "DeviceMeasurement" and attribute == "numValue":
        # one quantity per entity: controlledProperty names it
        quantity = to_key_values({"c": entity.get("controlledProperty")}).get("c")
        if isinstance(quantity, list):
            quantity = quantity[0] if quantity else None
        if isinstance(quantity, str) and quantity:
            key = op_name = quantity
            definition = attribute_iri(plan.entity_type, quantity)
    op = ObservedPropertySpec(op_name, definition, f"{op_name} ({definition})")

    def unit_for() -> dict | None:
        if how.kind == "count":
            return dict(COUNT_UNIT)
        if how.kind == "category":
            return dict(NO_UNIT)
        try:
            return unit_of_measurement(unit_code)
        except UnknownUnit as exc:
            plan.problems.append(f"{attribute}: {exc}")
            return None

    if how.kind == "phases":
        if not isinstance(value, dict) or not value:
            plan.problems.append(f"{attribute}: a per-phase object was expected, got {value!r:.80}")
            return
        unit = unit_for()
        if unit is None:
            return
        for member, number in value.items():
            if not _is_number(number):
                plan.problems.append(f"{attribute}.{member}: {number!r:.40} is not a finite number")
                continue
            member_key = f"{key}/{member}"
            plan.streams[member_key] = StreamSpec(member_key, attribute, member, how.kind, unit_code, unit, op, sensor)
            plan.rows.append(Row(member_key, when, number))
        return

    if how.kind in ("measurement", "count"):
        if not _is_number(value) or (how.kind == "count" and not float(value).is_integer()):
            plan.problems.append(f"{attribute}: {value!r:.60} is not a {'finite number' if how.kind == 'measurement' else 'count'}")
            return
    elif how.kind == "category":
        ok = isinstance(value, str) or (isinstance(value, list) and all(isinstance(v, str) for v in value))
        if not ok:
            plan.problems.append(f"{attribute}: {value!r:.60} is not a code or a list of codes")
            return
    unit = unit_for()
    if unit is None:
        return
    plan.streams[key] = StreamSpec(key, attribute, None, how.kind, unit_code if how.kind == "measurement" else None,
                                   unit, op, sensor)
    plan.rows.append(Row(key, when, value))


__all__ = ["EntityNotMappable", "ObservedPropertySpec", "Row", "SensorSpec", "StreamSpec", "ThingPlan", "plan_entity"]

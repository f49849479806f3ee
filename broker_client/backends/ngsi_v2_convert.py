"""NGSI-LD normalized entities → the NGSI-v2 normalized form the Smart Data Models publish
(``examples/example-normalized.json`` of each model), and back for notifications.

The rule table (docs/backends/ngsi-v2.md repeats it with the reasons):

=============================================  ==============================================
NGSI-LD                                        NGSI-v2
=============================================  ==============================================
``id``                                         ``id`` unchanged (``ids="local"``: without
                                               ``urn:ngsi-ld:<Type>:``)
``type``                                       ``type``
Property, string value in ISO 8601 date-time   ``DateTime``
Property ``{"@type": "DateTime", "@value"}``   ``DateTime`` with the ``@value``
Property, other string                         ``Text``
Property, number                               ``Number``
Property, boolean                              ``Boolean``
Property or GeoProperty, GeoJSON geometry      ``geo:json`` (a second one gets ``ignoreType``)
Property, other array / object                 ``StructuredValue``
Relationship, one object                       ``Text`` with the target id (as the SDM do)
Relationship, list of objects                  ``StructuredValue`` with the target ids
LanguageProperty                               ``StructuredValue`` with the ``languageMap``
``observedAt``                                 metadata ``timestamp`` (``DateTime``)
``unitCode``                                   metadata ``unitCode`` (``Text``)
sub-Property / sub-Relationship                metadata, typed by the same rules
``createdAt``, ``modifiedAt``, ``@context``,   dropped (Orion keeps its own ``dateCreated``
``datasetId``, ``instanceId``, non-objects     / ``dateModified``)
=============================================  ==============================================

Orion refuses ``< > " ' = ; ( )`` in any string value and, in identifiers (ids, types, attribute
and metadata names), also whitespace, control and non-ASCII characters, ``& ? / #`` and more than
256 characters. A string value with a forbidden character is percent-encoded (as Orion's manual
advises, and as the Device model's own example does) when the model lets that attribute hold free
text; otherwise, and for any identifier, the entity is refused with a reason naming the attribute.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

DATETIME_RE = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}:?\d{2})?$")
GEOJSON_TYPES = frozenset(
    {"Point", "MultiPoint", "LineString", "MultiLineString", "Polygon", "MultiPolygon", "GeometryCollection"}
)
#: Orion: forbidden in every request string (orion-api.md "General syntax restrictions").
FORBIDDEN_CHARS = frozenset("<>\"'=;()")
#: Orion: also forbidden in identifiers (forbiddenIdChars: <= 32, >= 127, ? / # &).
_ID_EXTRA = frozenset("?/#&")
MAX_IDENTIFIER = 256
#: Attribute names Orion refuses (orion-api.md "Attribute names restrictions").
RESERVED_ATTRIBUTES = frozenset({"id", "type", "geo:distance", "*"})
_DROPPED_MEMBERS = frozenset({"type", "value", "object", "languageMap", "observedAt", "unitCode", "createdAt",
                              "modifiedAt", "datasetId", "instanceId", "deletedAt", "objectType"})
_NOT_ATTRIBUTES = frozenset({"id", "type", "@context", "createdAt", "modifiedAt", "deletedAt", "scope"})
_PERCENT = {c: f"%{ord(c):02X}" for c in FORBIDDEN_CHARS | {"%"}}


@dataclass(slots=True)
class V2Conversion:
    """The NGSI-v2 entity, what could not be represented (``problems``: the entity must not be
    sent) and what was changed or left out on the way (``notes``: sent anyway)."""

    entity: dict[str, Any]
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def identifier_problem(text: Any, what: str) -> str | None:
    """Why Orion would refuse ``text`` as an id / type / attribute or metadata name (else None)."""
    if not isinstance(text, str) or not text:
        return f"{what} must be a non-empty string"
    if len(text) > MAX_IDENTIFIER:
        return f"{what} {text[:40]!r}... is longer than {MAX_IDENTIFIER} characters"
    for ch in text:
        if ord(ch) <= 32 or ord(ch) >= 127 or ch in _ID_EXTRA or ch in FORBIDDEN_CHARS:
            return f"{what} {text!r} contains {ch!r}, which NGSI-v2 does not allow in identifiers"
    return None


def _has_forbidden(value: Any) -> bool:
    if isinstance(value, str):
        return any(c in FORBIDDEN_CHARS for c in value)
    if isinstance(value, list):
        return any(_has_forbidden(v) for v in value)
    if isinstance(value, dict):
        return any(_has_forbidden(v) for v in value.values())
    return False


def percent_encode(value: Any) -> Any:
    """Forbidden characters (and ``%`` itself, so the text decodes back) as ``%XX``, recursively."""
    if isinstance(value, str):
        if not any(c in FORBIDDEN_CHARS for c in value):
            return value
        return "".join(_PERCENT.get(c, c) for c in value)
    if isinstance(value, list):
        return [percent_encode(v) for v in value]
    if isinstance(value, dict):
        return {k: percent_encode(v) for k, v in value.items()}
    return value


@functools.cache
def free_text_attribute(model: str, attribute: str) -> bool:
    """True when the model's JSON Schema lets ``attribute`` hold any text: no ``enum``, ``const``,
    ``pattern`` or ``format`` anywhere in its definition. Unknown models/attributes: False."""
    try:
        from stadtlink.schemas.validation import validator_for

        schema = validator_for(model).schema
    except Exception:  # noqa: BLE001 - unknown model: no schema, no replacement
        return False
    node = _find_property(schema, attribute)
    if node is None:
        return False
    return not _constrained(node)


def _find_property(schema: Any, name: str) -> Any:
    if isinstance(schema, dict):
        props = schema.get("properties")
        if isinstance(props, dict) and name in props:
            return props[name]
        for key in ("allOf", "anyOf", "oneOf"):
            for sub in schema.get(key, []) or []:
                found = _find_property(sub, name)
                if found is not None:
                    return found
    return None


def _constrained(node: Any) -> bool:
    if isinstance(node, dict):
        if any(k in node for k in ("enum", "const", "pattern", "format")):
            return True
        return any(_constrained(v) for v in node.values())
    if isinstance(node, list):
        return any(_constrained(v) for v in node)
    return False


def is_geometry(value: Any) -> bool:
    return isinstance(value, dict) and value.get("type") in GEOJSON_TYPES and (
        "coordinates" in value or "geometries" in value
    )


def _typed_value(value: Any) -> tuple[str, Any]:
    """NGSI-v2 (type, value) of a plain NGSI-LD value."""
    if isinstance(value, dict):
        tag = value.get("@type", value.get("type")) if len(value) == 2 else None
        if tag == "DateTime" and ("@value" in value or "value" in value):
            return "DateTime", value.get("@value", value.get("value"))
        if is_geometry(value):
            return "geo:json", value
        return "StructuredValue", value
    if isinstance(value, bool):
        return "Boolean", value
    if isinstance(value, (int, float)):
        return "Number", value
    if isinstance(value, str):
        return ("DateTime" if DATETIME_RE.match(value) else "Text"), value
    if value is None:
        return "None", None
    return "StructuredValue", value


def _local_id(value: Any, ids: str) -> Any:
    """``urn:ngsi-ld:<Type>:<rest>`` → ``<rest>`` when ``ids == "local"``."""
    if ids != "local":
        return value
    if isinstance(value, list):
        return [_local_id(v, ids) for v in value]
    if isinstance(value, str) and value.startswith("urn:ngsi-ld:"):
        parts = value.split(":", 3)
        if len(parts) == 4 and parts[3]:
            return parts[3]
    return value


def _attribute(name: str, attr: Any, ids: str, notes: list[str]) -> dict[str, Any] | None:
    """One NGSI-LD attribute (normalized) → one NGSI-v2 attribute, or None if it cannot be read."""
    if isinstance(attr, list):  # multi-attribute (datasetId): v2 has one instance per name
        instances = [a for a in attr if isinstance(a, dict)]
        if not instances:
            return None
        default = next((a for a in instances if "datasetId" not in a), instances[0])
        if len(instances) > 1:
            notes.append(f"{name}: {len(instances) - 1} other datasetId instance(s) left out (NGSI-v2 has one)")
        attr = default
    if not isinstance(attr, dict):
        return None
    kind = attr.get("type")
    if kind == "Relationship":
        target = attr.get("object", attr.get("value"))
        if target is None:
            return None
        target = _local_id(target, ids) if "object" in attr else target
        if "object" in attr:
            out = {"type": "StructuredValue" if isinstance(target, list) else "Text", "value": target}
        else:
            v2_type, v2_value = _typed_value(target)
            out = {"type": v2_type, "value": v2_value}
    elif kind == "LanguageProperty":
        out = {"type": "StructuredValue", "value": attr.get("languageMap", attr.get("value"))}
    else:
        if "value" not in attr:
            return None
        value = attr["value"]
        if kind == "GeoProperty":
            if isinstance(value, str):  # WKT or similar: not GeoJSON, kept as text
                out = {"type": "Text", "value": value}
            else:
                out = {"type": "geo:json", "value": value}
        else:
            v2_type, v2_value = _typed_value(value)
            out = {"type": v2_type, "value": v2_value}
    metadata: dict[str, Any] = {}
    observed = attr.get("observedAt")
    if isinstance(observed, str):
        metadata["timestamp"] = {"type": "DateTime", "value": observed}
    unit = attr.get("unitCode")
    if isinstance(unit, str):
        metadata["unitCode"] = {"type": "Text", "value": unit}
    for sub_name, sub in attr.items():
        if sub_name in _DROPPED_MEMBERS or not isinstance(sub, dict):
            continue
        converted = _attribute(sub_name, sub, ids, notes)
        if converted is None:
            continue
        converted.pop("metadata", None)  # v2 metadata cannot nest
        metadata[sub_name] = converted
    if metadata:
        out["metadata"] = metadata
    return out


def to_ngsi_v2(entity: Mapping[str, Any], *, ids: str = "urn", model: str | None = None) -> V2Conversion:
    """Convert one NGSI-LD normalized entity; ``problems`` say why it cannot be sent as it is.

    ``ids``: ``"urn"`` keeps ids and relationship targets as they are (the same entity id in an
    NGSI-LD and an NGSI-v2 broker); ``"local"`` drops the ``urn:ngsi-ld:<Type>:`` prefix.
    ``model``: the Smart Data Model whose schema says which attributes are free text (default: the
    entity type).
    """
    if ids not in ("urn", "local"):
        raise ValueError("ids must be 'urn' or 'local'")
    problems: list[str] = []
    notes: list[str] = []
    entity_id = entity.get("id")
    entity_type = entity.get("type")
    out: dict[str, Any] = {"id": _local_id(entity_id, ids), "type": entity_type}
    for what, text in (("id", out["id"]), ("type", entity_type)):
        problem = identifier_problem(text, f"entity {what}")
        if problem:
            problems.append(problem)
    model = model or (entity_type if isinstance(entity_type, str) else "")
    geo_seen = 0
    for name, attr in entity.items():
        if name in _NOT_ATTRIBUTES:
            continue
        converted = _attribute(name, attr, ids, notes)
        if converted is None:
            notes.append(f"{name}: not an NGSI-LD attribute, left out")
            continue
        if name in RESERVED_ATTRIBUTES:
            problems.append(f"attribute name {name!r} is reserved in NGSI-v2")
            continue
        problem = identifier_problem(name, "attribute name")
        if problem:
            problems.append(problem)
            continue
        if converted["type"] == "geo:json":
            geo_seen += 1
        for md_name in converted.get("metadata", {}):
            problem = identifier_problem(md_name, f"metadata name of {name}")
            if problem:
                problems.append(problem)
        if _has_forbidden(converted.get("value")) or any(
            _has_forbidden(md.get("value")) for md in converted.get("metadata", {}).values()
        ):
            if free_text_attribute(model, name):
                converted["value"] = percent_encode(converted.get("value"))
                for md in converted.get("metadata", {}).values():
                    md["value"] = percent_encode(md.get("value"))
                notes.append(f"{name}: characters NGSI-v2 forbids (< > \" ' = ; ( )) percent-encoded")
            else:
                problems.append(
                    f"attribute {name!r} holds a character NGSI-v2 forbids (< > \" ' = ; ( )) and the "
                    f"{model or 'entity'} model does not let it be replaced"
                )
                continue
        out[name] = converted
    if geo_seen > 1:
        # Orion keeps one geo:json attribute for geo-queries; the others must say ignoreType.
        primary = "location" if isinstance(out.get("location"), dict) and out["location"].get("type") == "geo:json" \
            else next(n for n, a in out.items() if isinstance(a, dict) and a.get("type") == "geo:json")
        for name, attr in out.items():
            if name != primary and isinstance(attr, dict) and attr.get("type") == "geo:json":
                attr.setdefault("metadata", {})["ignoreType"] = {"type": "Boolean", "value": True}
                notes.append(f"{name}: second geo:json attribute marked ignoreType (Orion indexes one)")
    return V2Conversion(out, problems, notes)


# --- back: NGSI-v2 notifications → NGSI-LD normalized -------------------------------------------


def from_ngsi_v2(entity: Mapping[str, Any]) -> dict[str, Any]:
    """An NGSI-v2 normalized entity (e.g. from a notification) → NGSI-LD normalized.

    ``geo:json`` → GeoProperty; ``timestamp`` metadata → ``observedAt``; ``unitCode`` →
    ``unitCode``; a ``Relationship``-typed attribute, or a ``ref*`` attribute holding URN(s), →
    Relationship; ``DateTime`` → ``{"@type": "DateTime", "@value"}``; other metadata →
    sub-properties. Percent-encoded text is left as it is.
    """
    out: dict[str, Any] = {"id": entity.get("id"), "type": entity.get("type")}
    for name, attr in entity.items():
        if name in ("id", "type") or not isinstance(attr, dict):
            continue
        v2_type = attr.get("type")
        value = attr.get("value")
        ld: dict[str, Any]
        if v2_type == "geo:json" or (v2_type in ("geo:point", "GeoJSON") and is_geometry(value)):
            ld = {"type": "GeoProperty", "value": value}
        elif v2_type == "Relationship" or (name.startswith("ref") and _is_urn_or_urns(value)):
            ld = {"type": "Relationship", "object": value}
        elif v2_type == "DateTime" and isinstance(value, str):
            ld = {"type": "Property", "value": {"@type": "DateTime", "@value": value}}
        else:
            ld = {"type": "Property", "value": value}
        for md_name, md in (attr.get("metadata") or {}).items():
            if not isinstance(md, dict):
                continue
            if md_name == "timestamp" and isinstance(md.get("value"), str):
                ld["observedAt"] = md["value"]
            elif md_name == "unitCode" and isinstance(md.get("value"), str):
                ld["unitCode"] = md["value"]
            elif md_name in ("dateCreated", "dateModified", "ignoreType", "TextUnrestricted"):
                continue
            else:
                ld[md_name] = {"type": "Property", "value": md.get("value")}
        out[name] = ld
    return out


def _is_urn_or_urns(value: Any) -> bool:
    if isinstance(value, str):
        return value.startswith("urn:")
    return isinstance(value, list) and bool(value) and all(isinstance(v, str) and v.startswith("urn:") for v in value)

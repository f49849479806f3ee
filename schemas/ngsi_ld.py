"""Structural check of normalized NGSI-LD entities and their reduction to keyValues.

Smart Data Models' ``schema.json`` files describe the keyValues shape, so a normalized entity is
first checked for NGSI-LD structure here and then reduced (attribute → its value) before the
JSON Schema check.
"""

from __future__ import annotations

import math
import re
from typing import Any

from rfc3339_validator import validate_rfc3339

from .problems import Problem, json_path

#: attribute type → the member that carries its content (NGSI-LD 1.8 names)
CONTENT_MEMBER = {
    "Property": "value",
    "GeoProperty": "value",
    "Relationship": "object",
    "LanguageProperty": "languageMap",
    "ListProperty": "valueList",
    "ListRelationship": "objectList",
    "VocabProperty": "vocab",
    "JsonProperty": "json",
}
_CONTENT_MEMBERS = frozenset(CONTENT_MEMBER.values())
_ATTRIBUTE_TYPES = ", ".join(CONTENT_MEMBER)
#: members of an attribute that are neither its content nor a nested attribute
_ATTRIBUTE_META = frozenset(
    {"type", "observedAt", "unitCode", "datasetId", "createdAt", "modifiedAt", "deletedAt",
     "instanceId", "objectType", "lang"}
)
#: root members that are not attributes
_ENTITY_META = frozenset({"id", "type", "@context", "scope", "createdAt", "modifiedAt", "deletedAt"})
#: attributes the NGSI-LD core defines as GeoProperties
_GEO_NAMES = frozenset({"location", "observationSpace", "operationSpace"})

#: characters NGSI-LD brokers refuse in attribute names (Orion-LD: "invalid character")
_BAD_NAME = re.compile(r"[\s<>\"'=;()]")
_URI = re.compile(r"^[A-Za-z][A-Za-z0-9+.\-]*:[^\s\x00-\x1f\x7f]+$")

#: geometry type → array nesting above the positions
_GEOMETRY_DEPTH = {"Point": 0, "MultiPoint": 1, "LineString": 1, "MultiLineString": 2,
                   "Polygon": 2, "MultiPolygon": 3}

Path = tuple[str | int, ...]


def is_uri(text: object) -> bool:
    """True for an absolute URI (scheme present, no whitespace), e.g. ``urn:ngsi-ld:X:1``."""
    return isinstance(text, str) and _URI.match(text) is not None


def is_datetime(text: object) -> bool:
    """True for an RFC 3339 date-time with offset (``2024-05-01T10:00:00Z``)."""
    return isinstance(text, str) and validate_rfc3339(text)


def _short(value: object, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _kind(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "object"
    return type(value).__name__


class _Checker:
    """Collects structural problems and the names of attributes too broken to reduce."""

    def __init__(self) -> None:
        self.problems: list[Problem] = []
        self.broken: set[str] = set()

    def add(self, path: Path, message: str) -> None:
        self.problems.append(Problem(json_path(path), message, "structure"))

    # -- entity root -------------------------------------------------------------------------

    def entity(self, entity: object) -> None:
        if not isinstance(entity, dict):
            self.add((), f"an entity must be a JSON object, got {_kind(entity)}")
            return
        entity_id = entity.get("id")
        before = len(self.problems)
        if "id" not in entity:
            self.add(("id",), "entity has no 'id'")
        elif not isinstance(entity_id, str):
            self.add(("id",), f"entity id must be a string, got {_kind(entity_id)}")
        elif not is_uri(entity_id):
            self.add(("id",), f"entity id {_short(entity_id)} is not a URI (no scheme or "
                              "whitespace); use urn:ngsi-ld:<Type>:<local-id>")
        if len(self.problems) > before:
            self.broken.add("id")  # the schema's own id rules would only repeat it
        entity_type = entity.get("type")
        if "type" not in entity:
            self.add(("type",), "entity has no 'type'")
        elif not isinstance(entity_type, str) or not entity_type:
            self.add(("type",), f"entity type must be a non-empty string, got {_short(entity_type)}")
        context = entity.get("@context")
        if "@context" in entity and not isinstance(context, (str, list, dict)):
            self.add(("@context",), f"@context must be a URL, a list or an object, got {_kind(context)}")
        for key in ("createdAt", "modifiedAt", "deletedAt"):
            if key in entity and not is_datetime(entity[key]):
                self.add((key,), f"{key} {_short(entity[key])} is not an RFC 3339 date-time with offset")
        for name, attribute in entity.items():
            if name in _ENTITY_META:
                continue
            if not name or _BAD_NAME.search(name):
                self.add((name,), f"attribute name {name!r} is empty or contains a character brokers "
                                  "refuse (whitespace or <>\"'=;())")
                self.broken.add(name)
                continue
            if not self.attribute_or_instances((name,), name, attribute):
                self.broken.add(name)

    # -- attributes --------------------------------------------------------------------------

    def attribute_or_instances(self, path: Path, name: str, attribute: object) -> bool:
        """Check an attribute (or a multi-attribute array); False when it cannot be reduced."""
        if isinstance(attribute, list) and attribute and all(isinstance(a, dict) for a in attribute):
            results = [self.attribute(path + (i,), name, a) for i, a in enumerate(attribute)]
            return all(results)
        return self.attribute(path, name, attribute)

    def attribute(self, path: Path, name: str, attribute: object) -> bool:
        if not isinstance(attribute, dict):
            hint = " (keyValues input? use check_key_values)" if len(path) == 1 else ""
            self.add(path, f"attribute must be an object with 'type' ({_ATTRIBUTE_TYPES}), got "
                           f"{_kind(attribute)} {_short(attribute)}{hint}")
            return False
        attr_type = attribute.get("type")
        content_member = CONTENT_MEMBER.get(attr_type) if isinstance(attr_type, str) else None
        if content_member is None:
            if "type" not in attribute:
                self.add(path, f"attribute has no 'type' (one of {_ATTRIBUTE_TYPES})")
            else:
                self.add(path, f"attribute type {_short(attr_type)} is not one of {_ATTRIBUTE_TYPES}")
            return False
        ok = True
        if name in _GEO_NAMES and attr_type != "GeoProperty":
            self.add(path, f"'{name}' must be a GeoProperty, not a {attr_type}")
            ok = False
        for member in _CONTENT_MEMBERS.intersection(attribute):
            if member != content_member:
                self.add(path + (member,), f"'{member}' does not belong to a {attr_type} "
                                           f"(its content goes in '{content_member}')")
                ok = False
        if content_member not in attribute:
            self.add(path, f"{attr_type} has no '{content_member}'")
            ok = False
        else:
            ok = self.content(path, attr_type, attribute[content_member]) and ok
        for key, sub in attribute.items():
            if key in _CONTENT_MEMBERS:
                continue
            if key in _ATTRIBUTE_META:
                self.meta(path, key, sub)
            else:
                # property of a property / relationship: an attribute itself
                self.attribute_or_instances(path + (key,), key, sub)
        return ok

    def meta(self, path: Path, key: str, value: object) -> None:
        if key in ("observedAt", "createdAt", "modifiedAt", "deletedAt"):
            if not is_datetime(value):
                self.add(path + (key,), f"{key} {_short(value)} is not an RFC 3339 date-time with "
                                        "offset (e.g. 2024-05-01T10:00:00Z)")
        elif key == "unitCode":
            if not isinstance(value, str) or not value:
                self.add(path + (key,), f"unitCode must be a non-empty string (UN/CEFACT common "
                                        f"code such as 'CEL'), got {_short(value)}")
        elif key in ("datasetId", "instanceId"):
            if not is_uri(value):
                self.add(path + (key,), f"{key} {_short(value)} is not a URI")
        elif key == "objectType":
            if not isinstance(value, (str, list)):
                self.add(path + (key,), f"objectType must be a string or an array, got {_kind(value)}")

    def content(self, path: Path, attr_type: str, content: object) -> bool:
        member = CONTENT_MEMBER[attr_type]
        if content is None:
            self.add(path, f"{member} is null; NGSI-LD has no null values: omit the attribute "
                           "when there is no reading")
            return False
        if attr_type == "Property":
            return self.property_value(path, content)
        if attr_type == "GeoProperty":
            return self.geometry(path, content)
        if attr_type == "Relationship":
            targets = content if isinstance(content, list) else [content]
            ok = bool(targets)
            if not targets:
                self.add(path, "Relationship object is an empty array")
            for i, target in enumerate(targets):
                if not is_uri(target):
                    where = path + (i,) if isinstance(content, list) else path
                    self.add(where, f"Relationship object {_short(target)} is not a URI")
                    ok = False
            return ok
        if attr_type == "LanguageProperty":
            if not isinstance(content, dict) or not content:
                self.add(path, f"languageMap must be a non-empty object of language tag → "
                               f"string, got {_short(content)}")
                return False
            ok = True
            for tag, text in content.items():
                if not isinstance(text, (str, list)):
                    self.add(path + (tag,), f"languageMap entry must be a string, got {_kind(text)}")
                    ok = False
            return ok
        if attr_type in ("ListProperty", "ListRelationship"):
            if not isinstance(content, list):
                self.add(path, f"{member} must be an array, got {_kind(content)}")
                return False
            if attr_type == "ListRelationship":
                ok = True
                for i, item in enumerate(content):
                    target = item.get("object") if isinstance(item, dict) else item
                    if not is_uri(target):
                        self.add(path + (i,), f"objectList entry {_short(item)} is not a URI")
                        ok = False
                return ok
            return True
        if attr_type == "VocabProperty":
            if not isinstance(content, (str, list)):
                self.add(path, f"vocab must be a string or an array of strings, got {_kind(content)}")
                return False
        return True

    def property_value(self, path: Path, value: object) -> bool:
        if isinstance(value, dict) and "@value" in value:
            if value.get("@type") == "DateTime" and not is_datetime(value["@value"]):
                self.add(path, f"DateTime {_short(value['@value'])} is not an RFC 3339 "
                               "date-time with offset (e.g. 2024-05-01T10:00:00Z)")
                return False
            if value["@value"] is None:
                self.add(path, "@value is null; omit the attribute when there is no reading")
                return False
        elif isinstance(value, float) and not math.isfinite(value):
            self.add(path, f"value {value} is not a finite number")
            return False
        return True

    # -- GeoJSON -----------------------------------------------------------------------------

    def geometry(self, path: Path, geometry: object) -> bool:
        if not isinstance(geometry, dict):
            self.add(path, f"GeoProperty value must be a GeoJSON geometry object, got "
                           f"{_kind(geometry)} {_short(geometry)}")
            return False
        geo_type = geometry.get("type")
        if geo_type == "GeometryCollection":
            members = geometry.get("geometries")
            if not isinstance(members, list):
                self.add(path + ("geometries",), "GeometryCollection needs a 'geometries' array")
                return False
            results = [self.geometry(path + ("geometries", i), g) for i, g in enumerate(members)]
            return all(results)
        depth = _GEOMETRY_DEPTH.get(geo_type) if isinstance(geo_type, str) else None
        if depth is None:
            self.add(path + ("type",), f"GeoJSON type {_short(geo_type)} is not one of "
                                       f"{', '.join(_GEOMETRY_DEPTH)}, GeometryCollection")
            return False
        if "coordinates" not in geometry:
            self.add(path, f"GeoJSON {geo_type} has no 'coordinates'")
            return False
        return self.coordinates(path + ("coordinates",), geo_type, geometry["coordinates"], depth)

    def coordinates(self, path: Path, geo_type: str, coords: object, depth: int) -> bool:
        if depth == 0:
            return self.position(path, coords)
        if not isinstance(coords, list):
            self.add(path, f"GeoJSON {geo_type} coordinates must be nested arrays, got {_short(coords)}")
            return False
        if geo_type == "LineString" and depth == 1 and len(coords) < 2:
            self.add(path, "a LineString needs at least 2 positions")
            return False
        ring = (geo_type == "Polygon" and depth == 1) or (geo_type == "MultiPolygon" and depth == 1)
        results = [self.coordinates(path + (i,), geo_type, c, depth - 1) for i, c in enumerate(coords)]
        ok = all(results)
        if ring and ok:
            if len(coords) < 4:
                self.add(path, "a polygon ring needs at least 4 positions")
                ok = False
            elif coords[0] != coords[-1]:
                self.add(path, "a polygon ring must end with its first position (closed ring)")
                ok = False
        return ok

    def position(self, path: Path, position: object) -> bool:
        if (not isinstance(position, list) or not 2 <= len(position) <= 3
                or not all(isinstance(n, (int, float)) and not isinstance(n, bool) for n in position)):
            self.add(path, f"a GeoJSON position must be [longitude, latitude] (optionally altitude) "
                           f"numbers, got {_short(position)}")
            return False
        lon, lat = position[0], position[1]
        ok = True
        if not -180.0 <= lon <= 180.0:
            self.add(path + (0,), f"longitude {lon} is outside [-180, 180]")
            ok = False
        if not -90.0 <= lat <= 90.0:
            hint = "; GeoJSON positions are [longitude, latitude] - swapped?" if -90 <= lon <= 90 else ""
            self.add(path + (1,), f"latitude {lat} is outside [-90, 90]{hint}")
            ok = False
        return ok


def check_structure(entity: object) -> tuple[list[Problem], set[str]]:
    """Structural NGSI-LD problems of a normalized entity, and the attributes too broken to reduce."""
    checker = _Checker()
    checker.entity(entity)
    return checker.problems, checker.broken


# -- reduction -------------------------------------------------------------------------------

_MISSING = object()


def _reduce(attribute: object) -> object:
    """keyValues form of one attribute, or ``_MISSING`` when it carries no usable content."""
    if isinstance(attribute, list):
        instances = [a for a in attribute if isinstance(a, dict)]
        if not instances:
            return _MISSING
        # a multi-attribute reduces to its default instance (no datasetId), else the first one
        default = next((a for a in instances if "datasetId" not in a), instances[0])
        return _reduce(default)
    if not isinstance(attribute, dict):
        return _MISSING
    attr_type = attribute.get("type")
    member = CONTENT_MEMBER.get(attr_type) if isinstance(attr_type, str) else None
    if member is None or member not in attribute:
        return _MISSING
    content = attribute[member]
    if attr_type == "ListRelationship" and isinstance(content, list):
        return [c.get("object") if isinstance(c, dict) else c for c in content]
    if isinstance(content, dict) and "@value" in content:
        return content["@value"]
    return content


def to_key_values(entity: dict[str, Any], *, skip: set[str] | frozenset[str] = frozenset()) -> dict[str, Any]:
    """Reduce a normalized entity to keyValues.

    Property/GeoProperty → value (``{"@type": "DateTime", "@value": x}`` → x), Relationship →
    object, LanguageProperty → languageMap, ListProperty → valueList; sub-attributes
    (observedAt, unitCode, datasetId, nested properties) are dropped. Attributes without usable
    content and the names in ``skip`` are left out.
    """
    if not isinstance(entity, dict):
        raise TypeError(f"an entity must be a dict, got {type(entity).__name__}")
    reduced: dict[str, Any] = {}
    for name, attribute in entity.items():
        if name in _ENTITY_META:
            if name not in ("createdAt", "modifiedAt", "deletedAt"):
                reduced[name] = attribute
            continue
        if name in skip:
            continue
        value = _reduce(attribute)
        if value is not _MISSING:
            reduced[name] = value
    return reduced


# -- fast path ---------------------------------------------------------------------------------

_FAST_KEYS = {
    "Property": frozenset({"type", "value", "observedAt", "unitCode"}),
    "Relationship": frozenset({"type", "object", "observedAt"}),
    "GeoProperty": frozenset({"type", "value", "observedAt"}),
}
_NAMES_OK: set[str] = set()
_TIMES_OK: set[str] = set()
_URIS_OK: set[str] = set()
_MEMO_LIMIT = 4096


def _name_ok(name: str) -> bool:
    if name in _NAMES_OK:
        return True
    if not name or _BAD_NAME.search(name):
        return False
    if len(_NAMES_OK) < _MEMO_LIMIT:
        _NAMES_OK.add(name)
    return True


def _time_ok(value: object) -> bool:
    if type(value) is not str:
        return False
    if value in _TIMES_OK:
        return True
    if not validate_rfc3339(value):
        return False
    if len(_TIMES_OK) >= _MEMO_LIMIT:
        _TIMES_OK.clear()
    _TIMES_OK.add(value)
    return True


def _uri_ok(value: object) -> bool:
    if type(value) is not str:
        return False
    if value in _URIS_OK:
        return True
    if _URI.match(value) is None:
        return False
    if len(_URIS_OK) >= _MEMO_LIMIT:
        _URIS_OK.clear()
    _URIS_OK.add(value)
    return True


def fast_key_values(entity: object) -> dict[str, Any] | None:
    """keyValues of an entity the structural check would pass without a word, or None.

    The common shapes only — Property with a plain or ``@value`` value (optionally observedAt, unitCode),
    Relationship to URIs, GeoProperty Point — checked with the same rules as :class:`_Checker`
    in one pass without building paths; anything else (a problem, or a shape not handled here)
    returns None and the caller runs the full check, which then finds and words the problems.
    Checked timestamps, URIs and names are remembered (bounded sets), since one entity repeats its
    ``observedAt`` in every attribute and a fleet repeats its names. Equivalence with
    :func:`check_structure` + :func:`to_key_values` is tested in tests/schemas.
    """
    if type(entity) is not dict:
        return None
    entity_type = entity.get("type")
    if type(entity_type) is not str or not entity_type or not _uri_ok(entity.get("id")):
        return None
    reduced: dict[str, Any] = {}
    for name, attribute in entity.items():
        if name in _ENTITY_META:
            if name in ("createdAt", "modifiedAt", "deletedAt"):
                return None
            if name == "@context" and not isinstance(attribute, (str, list, dict)):
                return None
            reduced[name] = attribute
            continue
        if type(attribute) is not dict or not _name_ok(name):
            return None
        attr_type = attribute.get("type")
        allowed = _FAST_KEYS.get(attr_type)
        if allowed is None or not allowed.issuperset(attribute):
            return None
        if attr_type == "Property":
            value = attribute.get("value", _MISSING)
            kind = type(value)
            if kind is float:
                if not math.isfinite(value):
                    return None
            elif kind is dict and "@value" in value:
                value = value["@value"]       # e.g. {"@type": "DateTime", "@value": "…Z"}
                if value is None or (attribute["value"].get("@type") == "DateTime" and not _time_ok(value)):
                    return None
            elif value is None or value is _MISSING:
                return None
            unit = attribute.get("unitCode")
            if unit is not None and (type(unit) is not str or not unit):
                return None
            if "unitCode" in attribute and unit is None:
                return None
            if name in _GEO_NAMES:
                return None
        elif attr_type == "Relationship":
            value = attribute.get("object")
            if name in _GEO_NAMES:
                return None
            if type(value) is list:
                if not value:
                    return None
                for target in value:
                    if not _uri_ok(target):
                        return None
            elif not _uri_ok(value):
                return None
        else:   # GeoProperty
            value = attribute.get("value")
            if type(value) is not dict or value.get("type") != "Point" or len(value) != 2:
                return None
            position = value.get("coordinates")
            if type(position) is not list or not 2 <= len(position) <= 3:
                return None
            for n in position:
                if type(n) is not float and type(n) is not int:
                    return None
            if not (-180.0 <= position[0] <= 180.0 and -90.0 <= position[1] <= 90.0):
                return None
        if "observedAt" in attribute and not _time_ok(attribute["observedAt"]):
            return None
        reduced[name] = value
    return reduced

"""Entities as the broker stores them (expanded names) and their parsing from request bodies.

An :class:`Entity` keeps its attributes as ``{expanded name: [instance, ...]}``; an instance is a
plain dict with ``type`` and the value member of its kind (``value``, ``object``, ``languageMap``,
``vocab``, ``json``, ``valueList``, ``objectList``), optional ``observedAt``, ``unitCode``,
``datasetId``, ``createdAt``/``modifiedAt`` (epoch floats) and ``subs`` (sub-attributes by
expanded name, each a single instance). Several instances exist only for multi-attributes
(different ``datasetId``s).
"""

from __future__ import annotations

import re
from typing import Any

from .contexts import CompiledContext
from .errors import bad_request
from .timeutil import normalise_datetime

NGSI_NULL = "urn:ngsi-ld:null"

ATTRIBUTE_TYPES = {
    "Property": "value",
    "Relationship": "object",
    "GeoProperty": "value",
    "LanguageProperty": "languageMap",
    "VocabProperty": "vocab",
    "JsonProperty": "json",
    "ListProperty": "valueList",
    "ListRelationship": "objectList",
}
_VALUE_KEY_TO_TYPE = {
    "value": "Property",
    "object": "Relationship",
    "languageMap": "LanguageProperty",
    "vocab": "VocabProperty",
    "json": "JsonProperty",
    "valueList": "ListProperty",
    "objectList": "ListRelationship",
}
GEOJSON_TYPES = {"Point", "MultiPoint", "LineString", "MultiLineString", "Polygon", "MultiPolygon",
                 "GeometryCollection"}
# Members of an attribute that are not sub-attributes.
ATTRIBUTE_MEMBERS = {"type", "value", "object", "languageMap", "vocab", "json", "valueList",
                     "objectList", "objectType", "observedAt", "unitCode", "datasetId", "createdAt",
                     "modifiedAt", "deletedAt", "instanceId", "lang", "previousValue",
                     "previousObject", "previousLanguageMap", "previousVocab", "previousJson",
                     "@context"}
ENTITY_MEMBERS = {"id", "@id", "type", "@type", "scope", "createdAt", "modifiedAt", "deletedAt",
                  "@context"}
GEO_ATTRIBUTES_SHORT = {"location", "observationSpace", "operationSpace"}

_URI_RE = re.compile(r"^[A-Za-z][A-Za-z0-9+.\-]*:[^\s<>\"{}|\\^`]*$")


def is_uri(value: Any) -> bool:
    return isinstance(value, str) and bool(_URI_RE.match(value))


class DeleteMarker:
    """Returned by parsing when an attribute is set to NGSI-LD Null: delete that instance."""

    __slots__ = ("dataset_id",)

    def __init__(self, dataset_id: str | None = None) -> None:
        self.dataset_id = dataset_id


DELETE = DeleteMarker()


class Entity:
    __slots__ = ("id", "types", "attrs", "created", "modified", "seq", "scope")

    def __init__(self, entity_id: str, types: list[str], seq: int, now: float) -> None:
        self.id = entity_id
        self.types = types
        self.attrs: dict[str, list[dict]] = {}
        self.created = now
        self.modified = now
        self.seq = seq
        self.scope: Any = None


# ---------------------------------------------------------------------------------------------
# validation helpers

def check_entity_id(value: Any) -> str:
    if not isinstance(value, str):
        raise bad_request("Not a JSON String", "id")
    if ":" not in value:
        raise bad_request("Invalid URI - no colon found", "id")
    if not is_uri(value):
        raise bad_request("Invalid URI", value)
    return value


_RESERVED_TYPE_NAMES = {"id", "type", "value", "object", "Property", "Relationship", "GeoProperty"}
_TYPE_NAME_RE = re.compile(r"^[^\s<>\"{}|\\^`@][^\s<>\"{}|\\^`]*$")


def _check_type_name(name: str) -> None:
    if name in _RESERVED_TYPE_NAMES or not _TYPE_NAME_RE.match(name):
        raise bad_request("Invalid entity type name", name)


def expand_entity_types(value: Any, ctx: CompiledContext) -> list[str]:
    if isinstance(value, str):
        if not value:
            raise bad_request("Empty String", "type")
        _check_type_name(value)
        return [ctx.expand(value)]
    if isinstance(value, list) and value and all(isinstance(v, str) and v for v in value):
        out: list[str] = []
        for v in value:
            _check_type_name(v)
            iri = ctx.expand(v)
            if iri not in out:
                out.append(iri)
        return out
    raise bad_request("Not a JSON String", "type")


def _check_geometry(geo: Any, attr: str) -> None:
    if not isinstance(geo, dict):
        raise bad_request("Invalid GeoJSON", f"the value of the GeoProperty {attr} is not a JSON object")
    gtype = geo.get("type")
    if gtype is None:
        raise bad_request("Mandatory Field /type/ missing for a GeoProperty value", attr)
    if gtype not in GEOJSON_TYPES:
        raise bad_request("Invalid value for the /type/ field of a GeoProperty value (invalid geometry)",
                          attr)
    if gtype == "GeometryCollection":
        geoms = geo.get("geometries")
        if not isinstance(geoms, list):
            raise bad_request("Invalid GeoJSON", f"{attr}: a GeometryCollection needs /geometries/")
        for g in geoms:
            _check_geometry(g, attr)
        return
    if "coordinates" not in geo:
        raise bad_request("Mandatory Field /coordinates/ missing for a GeoProperty value", attr)
    coords = geo["coordinates"]
    if not isinstance(coords, list):
        raise bad_request("Invalid JSON type for /coordinates/ field (not a JSON Array)", attr)
    depth = {"Point": 0, "MultiPoint": 1, "LineString": 1, "MultiLineString": 2, "Polygon": 2,
             "MultiPolygon": 3}[gtype]
    if not _positions_ok(coords, depth):
        if gtype == "Point":
            raise bad_request("Invalid GeoJSON",
                              "The 'coordinates' member for a 'Point' must be an array with two or three Numbers")
        raise bad_request("Invalid GeoJSON", f"invalid coordinates for a '{gtype}' ({attr})")
    if gtype == "LineString" and len(coords) < 2:
        raise bad_request("Invalid GeoJSON", f"a LineString needs two or more positions ({attr})")
    if gtype == "Polygon":
        for ring in coords:
            if len(ring) < 4 or ring[0] != ring[-1]:
                raise bad_request("Invalid GeoJSON",
                                  f"a Polygon ring needs 4 or more positions, first equal to last ({attr})")


def _positions_ok(coords: Any, depth: int) -> bool:
    if depth == 0:
        return (isinstance(coords, list) and 2 <= len(coords) <= 3
                and all(isinstance(c, (int, float)) and not isinstance(c, bool) for c in coords))
    return isinstance(coords, list) and len(coords) > 0 and all(_positions_ok(c, depth - 1) for c in coords)


def is_geojson_geometry(value: Any) -> bool:
    return (isinstance(value, dict) and value.get("type") in GEOJSON_TYPES
            and ("coordinates" in value or "geometries" in value))


def _normalise_value(value: Any) -> Any:
    """Typed DateTime values ``{"@type": "DateTime", "@value": ...}`` get the .mmmZ form."""
    if isinstance(value, dict) and value.get("@type") in ("DateTime", "https://uri.etsi.org/ngsi-ld/DateTime"):
        normal = normalise_datetime(value.get("@value"))
        if normal is None:
            raise bad_request("Invalid ISO8601 timestamp", str(value.get("@value")))
        return {"@type": "DateTime", "@value": normal}
    return value


NULL_TITLE = "The use of NULL value is not recommended for JSON-LD (the whole attribute gets ignored)"


# ---------------------------------------------------------------------------------------------
# attribute parsing

def parse_attribute(name: str, raw: Any, ctx: CompiledContext, now: float, *,
                    allow_delete: bool = False, partial: bool = False) -> list[dict] | DeleteMarker:
    """Parse one attribute (normalized or concise form) into stored instances.

    ``allow_delete``: NGSI-LD Null (``"urn:ngsi-ld:null"`` or JSON null) means delete (PATCH/merge).
    ``partial``: the value member may be missing (PATCH of a single attribute).
    """
    if raw is None or raw == NGSI_NULL:
        if allow_delete:
            return DELETE
        raise bad_request(NULL_TITLE, name)
    if isinstance(raw, list) and raw and all(isinstance(i, dict) and _looks_like_instance(i) for i in raw):
        instances = [_parse_instance(name, item, ctx, now, allow_delete, partial) for item in raw]
        seen: set = set()
        for inst in instances:
            if isinstance(inst, DeleteMarker):
                raise bad_request(NULL_TITLE, name)
            key = inst.get("datasetId")
            if key in seen:
                raise bad_request("Duplicated datasetId", f"{name}: {key}")
            seen.add(key)
        return instances  # type: ignore[return-value]
    inst = _parse_instance(name, raw, ctx, now, allow_delete, partial, top_geo=name in GEO_ATTRIBUTES_SHORT)
    if isinstance(inst, DeleteMarker):
        return inst
    return [inst]


def _looks_like_instance(item: dict) -> bool:
    return item.get("type") in ATTRIBUTE_TYPES or any(k in item for k in _VALUE_KEY_TO_TYPE)


def _parse_instance(name: str, raw: Any, ctx: CompiledContext, now: float, allow_delete: bool,
                    partial: bool, top_geo: bool = False) -> dict | DeleteMarker:
    if not isinstance(raw, dict):
        if raw is None or raw == NGSI_NULL:
            if allow_delete:
                return DELETE
            raise bad_request(NULL_TITLE, name)
        return {"type": "Property", "value": raw, "createdAt": now, "modifiedAt": now}
    atype = raw.get("type")
    if atype is None or atype not in ATTRIBUTE_TYPES:
        if is_geojson_geometry(raw):
            _check_geometry(raw, name)
            return {"type": "GeoProperty", "value": raw, "createdAt": now, "modifiedAt": now}
        if atype is not None and (not isinstance(atype, str) or any(k in raw for k in _VALUE_KEY_TO_TYPE)):
            raise bad_request("Invalid value for attribute /type/", f"{name}: {atype}")
        if atype is not None and atype in GEOJSON_TYPES:
            _check_geometry(raw, name)
        for key, inferred in _VALUE_KEY_TO_TYPE.items():
            if key in raw:
                atype = inferred
                break
        else:
            if atype is not None:
                raise bad_request("Invalid value for attribute /type/", f"{name}: {atype}")
            if not partial:
                # a bare JSON object is the value of a Property (concise form)
                return {"type": "Property", "value": raw, "createdAt": now, "modifiedAt": now}
            atype = None  # a fragment of a partial update: metadata and sub-attributes only
    inst: dict[str, Any] = {"type": atype}
    if atype is None:
        del inst["type"]
        value_key = "value"
    else:
        value_key = ATTRIBUTE_TYPES[atype]
    if atype is None:
        pass
    elif value_key not in raw:
        if atype == "GeoProperty" and "value" not in raw and partial:
            pass
        elif not partial:
            if atype == "Relationship":
                raise bad_request("Missing /object/ field for Relationship at creation time", name)
            raise bad_request(f"Missing /{value_key}/ field for {atype} at creation time", name)
    else:
        value = raw[value_key]
        if value is None:  # JSON null is no NGSI-LD value (NGSI-LD Null is "urn:ngsi-ld:null")
            raise bad_request(NULL_TITLE, name)
        if value == NGSI_NULL or (atype == "LanguageProperty" and value == {"@none": NGSI_NULL}):
            if allow_delete:
                ds = raw.get("datasetId")
                return DeleteMarker(ds if isinstance(ds, str) else None)
            raise bad_request(NULL_TITLE, name)
        inst[value_key] = _parse_value(atype, value, name, ctx)
    if atype == "Relationship" and "objectType" in raw:
        ot = raw["objectType"]
        inst["objectType"] = ctx.expand(ot) if isinstance(ot, str) else ot
    if "observedAt" in raw:
        normal = normalise_datetime(raw["observedAt"])
        if normal is None:
            raise bad_request("Invalid ISO8601 timestamp", f"{name}: observedAt")
        inst["observedAt"] = normal
    if "unitCode" in raw:
        if not isinstance(raw["unitCode"], str):
            raise bad_request("Invalid JSON type - not a string", f"unitCode of {name}")
        inst["unitCode"] = raw["unitCode"]
    if "datasetId" in raw:
        if not is_uri(raw["datasetId"]):
            raise bad_request("Invalid URI", f"datasetId of {name}")
        inst["datasetId"] = raw["datasetId"]
    if "lang" in raw and atype == "Property":
        inst["lang"] = raw["lang"]
    subs: dict[str, dict] = {}
    for key, sub_raw in raw.items():
        if key in ATTRIBUTE_MEMBERS:
            continue
        parsed = _parse_instance(key, sub_raw, ctx, now, False, False,
                                 top_geo=key in GEO_ATTRIBUTES_SHORT)
        subs[ctx.expand(key)] = parsed  # type: ignore[assignment]
    if subs:
        inst["subs"] = subs
    inst["createdAt"] = now
    inst["modifiedAt"] = now
    return inst


def _parse_value(atype: str, value: Any, name: str, ctx: CompiledContext) -> Any:
    if atype == "Property":
        if isinstance(value, dict):
            return _normalise_value(value)
        return value
    if atype == "Relationship":
        if isinstance(value, list):
            if not value or not all(is_uri(v) for v in value):
                raise bad_request("Invalid Relationship object", f"{name}: not a list of URIs")
            return value
        if not is_uri(value):
            raise bad_request("Invalid Relationship object", f"{name}: the object must be a URI")
        return value
    if atype == "GeoProperty":
        _check_geometry(value, name)
        return value
    if atype == "LanguageProperty":
        if not isinstance(value, dict) or not all(
                isinstance(v, str) or (isinstance(v, list) and all(isinstance(s, str) for s in v))
                for v in value.values()):
            raise bad_request("Invalid languageMap", f"{name}: a languageMap maps language tags to strings")
        return value
    if atype == "VocabProperty":
        if isinstance(value, str):
            return ctx.expand(value)
        if isinstance(value, list) and all(isinstance(v, str) for v in value):
            return [ctx.expand(v) for v in value]
        raise bad_request("Invalid vocab", f"{name}: vocab must be a string or an array of strings")
    if atype == "JsonProperty":
        if not isinstance(value, (dict, list)):
            raise bad_request("Invalid json", f"{name}: json must be a JSON object or array")
        return value
    if atype == "ListProperty":
        if not isinstance(value, list):
            raise bad_request("Invalid valueList", f"{name}: valueList must be an array")
        return value
    if atype == "ListRelationship":
        if not isinstance(value, list):
            raise bad_request("Invalid objectList", f"{name}: objectList must be an array")
        out = []
        for item in value:
            obj = item.get("object") if isinstance(item, dict) else item
            if not is_uri(obj):
                raise bad_request("Invalid objectList", f"{name}: every object must be a URI")
            out.append({"object": obj})
        return out
    return value


def parse_entity_body(body: Any, ctx: CompiledContext, now: float, *, need_id: bool = True,
                      need_type: bool = True, allow_delete: bool = False) -> tuple[str | None, list[str] | None, dict[str, list[dict] | DeleteMarker], Any]:
    """Split an entity body into (id, expanded types, {expanded attr: instances|DELETE}, scope)."""
    if not isinstance(body, dict):
        raise bad_request("Invalid Payload Body", "an entity must be a JSON object")
    if "id" in body and "@id" in body:
        raise bad_request("Duplicated field", "id")
    if "type" in body and "@type" in body:
        raise bad_request("Duplicated field", "type")
    raw_id = body.get("id", body.get("@id"))
    entity_id = None
    if raw_id is not None:
        entity_id = check_entity_id(raw_id)
    elif need_id:
        raise bad_request("Entity id is missing", "The 'id' field is mandatory")
    raw_type = body.get("type", body.get("@type"))
    types = None
    if raw_type is not None:
        types = expand_entity_types(raw_type, ctx)
    elif need_type:
        raise bad_request("Entity type is missing", "The 'type' field is mandatory")
    attrs: dict[str, list[dict] | DeleteMarker] = {}
    for key, raw in body.items():
        if key in ENTITY_MEMBERS:
            continue
        if not key:
            raise bad_request("Invalid attribute name", "empty attribute name")
        attrs[ctx.expand(key)] = parse_attribute(key, raw, ctx, now, allow_delete=allow_delete)
    scope = body.get("scope")
    return entity_id, types, attrs, scope

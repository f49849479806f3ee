"""Typed NGSI-LD entities (normalized form) for callers that want a check before sending.

The write path (``NGSILDClient.upsert``) takes plain dicts and never goes through these models;
use :func:`validate_entity` where a clear error before the broker sees the entity is worth it.

Checks mirror what Orion-LD refuses (reference/orion-ld.md §2.3): ids must be URIs, ``null``
values are rejected, GeoJSON positions must be ``[longitude, latitude(, altitude)]`` within range.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

__all__ = [
    "Entity",
    "GeoJSONGeometry",
    "GeoProperty",
    "Property",
    "Relationship",
    "ValidationError",
    "is_uri",
    "validate_entity",
]

_URI_RE = re.compile(r"^[A-Za-z][A-Za-z0-9+.\-]*:\S+$")
_CORE_ENTITY_KEYS = {"id", "type", "scope", "createdAt", "modifiedAt", "deletedAt", "@context"}
_ATTRIBUTE_META_KEYS = {
    "type", "value", "object", "observedAt", "unitCode", "datasetId",
    "createdAt", "modifiedAt", "instanceId", "objectType", "previousValue", "previousObject",
}


def is_uri(value: Any) -> bool:
    """True for an absolute URI with a scheme (``urn:ngsi-ld:X:1``, ``http://a/b``), no whitespace."""
    return isinstance(value, str) and _URI_RE.match(value) is not None


def _check_uri(value: str, what: str) -> str:
    if not is_uri(value):
        raise ValueError(
            f"{what} must be a URI with a scheme, e.g. 'urn:ngsi-ld:<Type>:<id>' (got {value!r})"
        )
    return value


def _find_null(value: Any, path: str) -> str | None:
    if value is None:
        return path
    if isinstance(value, dict):
        for k, v in value.items():
            hit = _find_null(v, f"{path}.{k}")
            if hit:
                return hit
    elif isinstance(value, list):
        for i, v in enumerate(value):
            hit = _find_null(v, f"{path}[{i}]")
            if hit:
                return hit
    return None


def _check_observed_at(value: str | None) -> str | None:
    if value is None:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise ValueError(f"observedAt must be an ISO 8601 date-time (got {value!r})") from None
    if parsed.tzinfo is None:
        raise ValueError(f"observedAt must carry a time zone, preferably 'Z' (got {value!r})")
    return value


class _AttributeBase(BaseModel):
    """Common members of every attribute. Sub-attributes (properties of properties) are extras."""

    model_config = ConfigDict(extra="allow", populate_by_name=True, frozen=False)

    observedAt: str | None = None
    datasetId: str | None = None
    createdAt: str | None = None
    modifiedAt: str | None = None

    @field_validator("observedAt")
    @classmethod
    def _observed_at(cls, v: str | None) -> str | None:
        return _check_observed_at(v)

    @field_validator("datasetId")
    @classmethod
    def _dataset_id(cls, v: str | None) -> str | None:
        return None if v is None else _check_uri(v, "datasetId")

    @model_validator(mode="after")
    def _sub_attributes(self) -> _AttributeBase:
        extras = self.__pydantic_extra__ or {}
        for name, raw in list(extras.items()):
            extras[name] = _parse_attribute(name, raw)
        return self

    def to_dict(self) -> dict[str, Any]:
        return _dump(self)


class Property(_AttributeBase):
    type: Literal["Property"] = "Property"
    value: Any
    unitCode: str | None = None

    @model_validator(mode="before")
    @classmethod
    def _no_null(cls, data: Any) -> Any:
        if isinstance(data, dict):
            if "value" not in data:
                raise ValueError("a Property needs a 'value'")
            hit = _find_null(data["value"], "value")
            if hit:
                raise ValueError(
                    f"null is not allowed in a Property value ({hit}): NGSI-LD brokers reject it; "
                    "omit the attribute when the reading is missing"
                )
        return data


class Relationship(_AttributeBase):
    type: Literal["Relationship"] = "Relationship"
    object: str | list[str]

    @model_validator(mode="before")
    @classmethod
    def _no_null(cls, data: Any) -> Any:
        if isinstance(data, dict) and data.get("object") is None:
            raise ValueError(
                "a Relationship needs a non-null 'object' (the target entity id); null is rejected by NGSI-LD brokers"
            )
        return data

    @field_validator("object")
    @classmethod
    def _object_uri(cls, v: str | list[str]) -> str | list[str]:
        targets = v if isinstance(v, list) else [v]
        if not targets:
            raise ValueError("Relationship object list is empty")
        for t in targets:
            _check_uri(t, "Relationship object")
        return v


def _check_position(pos: Any, where: str) -> None:
    if not isinstance(pos, list) or len(pos) not in (2, 3):
        raise ValueError(
            f"{where}: a position is [longitude, latitude] or [longitude, latitude, altitude] (got {pos!r})"
        )
    for n in pos:
        if isinstance(n, bool) or not isinstance(n, (int, float)):
            raise ValueError(f"{where}: position members must be numbers (got {pos!r})")  # noqa: TRY004
    lon, lat = pos[0], pos[1]
    if not -180.0 <= lon <= 180.0:
        raise ValueError(f"{where}: longitude {lon} outside -180..180 (GeoJSON order is [longitude, latitude])")
    if not -90.0 <= lat <= 90.0:
        raise ValueError(f"{where}: latitude {lat} outside -90..90 (GeoJSON order is [longitude, latitude])")


def _check_positions(coords: Any, depth: int, where: str) -> None:
    """``depth`` = number of list levels above a position (0 for Point)."""
    if depth == 0:
        _check_position(coords, where)
        return
    if not isinstance(coords, list) or not coords:
        raise ValueError(f"{where}: coordinates must be a non-empty array")
    for i, c in enumerate(coords):
        _check_positions(c, depth - 1, f"{where}[{i}]")


_GEOMETRY_DEPTH = {
    "Point": 0,
    "MultiPoint": 1,
    "LineString": 1,
    "MultiLineString": 2,
    "Polygon": 2,
    "MultiPolygon": 3,
}


class GeoJSONGeometry(BaseModel):
    model_config = ConfigDict(extra="allow")

    type: Literal["Point", "MultiPoint", "LineString", "MultiLineString", "Polygon", "MultiPolygon"]
    coordinates: Any

    @model_validator(mode="after")
    def _coords(self) -> GeoJSONGeometry:
        if self.coordinates is None:
            raise ValueError("GeoJSON 'coordinates' is missing")
        _check_positions(self.coordinates, _GEOMETRY_DEPTH[self.type], f"{self.type}.coordinates")
        if self.type == "LineString" and len(self.coordinates) < 2:
            raise ValueError("a LineString needs at least two positions")
        if self.type == "Polygon":
            for ring in self.coordinates:
                if len(ring) < 4 or ring[0] != ring[-1]:
                    raise ValueError("each Polygon ring needs >= 4 positions and must be closed (first == last)")
        return self


class GeoProperty(_AttributeBase):
    type: Literal["GeoProperty"] = "GeoProperty"
    value: GeoJSONGeometry

    @model_validator(mode="before")
    @classmethod
    def _no_null(cls, data: Any) -> Any:
        if isinstance(data, dict) and data.get("value") is None:
            raise ValueError("a GeoProperty needs a GeoJSON geometry 'value'; null is rejected by NGSI-LD brokers")
        return data


Attribute = Annotated[Property | Relationship | GeoProperty, Field(discriminator="type")]


def _parse_attribute(name: str, raw: Any) -> Any:
    if isinstance(raw, (Property, Relationship, GeoProperty)):
        return raw
    if raw is None:
        raise ValueError(
            f"attribute {name!r} is null: NGSI-LD brokers reject null; omit the attribute when the reading is missing"
        )
    if isinstance(raw, list):  # multi-instance attribute (datasetId)
        if not raw:
            raise ValueError(f"attribute {name!r}: empty list of instances")
        return [_parse_attribute(name, item) for item in raw]
    if not isinstance(raw, dict):
        raise ValueError(  # noqa: TRY004 - pydantic reports ValueError, not TypeError
            f"attribute {name!r} must be an object with 'type' Property/Relationship/GeoProperty "
            f"(normalized form), got {type(raw).__name__}"
        )
    kind = raw.get("type")
    cls = {"Property": Property, "Relationship": Relationship, "GeoProperty": GeoProperty}.get(kind)  # type: ignore[arg-type]
    if cls is None:
        raise ValueError(f"attribute {name!r}: type must be Property, Relationship or GeoProperty (got {kind!r})")
    try:
        return cls.model_validate(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        loc = ".".join(str(p) for p in first["loc"])
        msg = first["msg"].removeprefix("Value error, ")
        raise ValueError(f"attribute {name!r}{'.' + loc if loc else ''}: {msg}") from None


class Entity(BaseModel):
    """An NGSI-LD entity in normalized form; every key besides id/type/scope/... is an attribute."""

    model_config = ConfigDict(extra="allow")

    id: str
    type: str | list[str]
    scope: str | list[str] | None = None

    @field_validator("id")
    @classmethod
    def _id_uri(cls, v: str) -> str:
        return _check_uri(v, "entity id")

    @field_validator("type")
    @classmethod
    def _type(cls, v: str | list[str]) -> str | list[str]:
        types = v if isinstance(v, list) else [v]
        if not types or any(not t or any(c.isspace() for c in t) for t in types):
            raise ValueError("entity type must be a non-empty name without whitespace")
        return v

    @model_validator(mode="before")
    @classmethod
    def _no_context(cls, data: Any) -> Any:
        if isinstance(data, dict) and "@context" in data:
            raise ValueError(
                "@context in the entity body: the client sends the context in a Link header with "
                "Content-Type application/json, and Orion-LD rejects both together"
            )
        return data

    @model_validator(mode="after")
    def _attributes(self) -> Entity:
        extras = self.__pydantic_extra__ or {}
        for name, raw in list(extras.items()):
            extras[name] = _parse_attribute(name, raw)
        return self

    @property
    def attributes(self) -> dict[str, Any]:
        return dict(self.__pydantic_extra__ or {})

    def to_dict(self) -> dict[str, Any]:
        """The plain dict to hand to ``NGSILDClient.upsert`` (None members dropped)."""
        return _dump(self)


def _dump(model: BaseModel) -> dict[str, Any]:
    return model.model_dump(mode="json", exclude_none=True)


def validate_entity(data: dict[str, Any]) -> Entity:
    """Check a normalized NGSI-LD entity dict; raises ``pydantic.ValidationError`` with a clear message."""
    return Entity.model_validate(data)

"""DATEX II parking publications (XML) → plain records.

Two flavours seen in German Mobilithek/MDM feeds are read, namespace-aware (the prefix varies:
``ns2:``, ``d2:`` or a default namespace), matching elements by DATEX namespace + local name:

* v2.3 ``ParkingStatusPublication`` (``parkingRecordStatus`` per site) and its static companion
  ``ParkingTablePublication`` (``parkingRecord`` per site: name, capacity, coordinates, layout);
* the older v2 "ParkingFacility" profile: ``parkingFacilityTableStatusPublication``
  (``parkingFacilityStatus`` per facility, with the *same* element name repeated inside for the status
  values) and its static ``parkingFacilityTablePublication`` (``parkingFacility`` per facility).

The XML is parsed with defusedxml (no DTDs, no entity expansion: the feed is remote input).
A broken document raises DecodeError; a broken record becomes ``{"id": ..., "error": reason}`` so the
other records of the same publication still go through.
"""
from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from datetime import datetime, tzinfo
from typing import Any, Iterator

from defusedxml import DefusedXmlException
from defusedxml.ElementTree import fromstring as _safe_fromstring

from stadtlink.adapters.core.errors import DecodeError
from stadtlink.adapters.core.reasons import EMPTY_DOCUMENT, INVALID_XML
from stadtlink.adapters.core.timeutil import UTC, TimeFormatError, parse_time

from .vocab import SITE_STATUS, unique
from ..reasons import BAD_PUBLICATION_TIME, NOT_DATEX2, UNSAFE_XML, UNSUPPORTED_PUBLICATION

DATEX_NS_PREFIX = "http://datex2.eu/schema/"
XSI_TYPE = "{http://www.w3.org/2001/XMLSchema-instance}type"

STATUS_PUBLICATIONS = ("parkingStatusPublication", "parkingFacilityTableStatusPublication")
STATIC_PUBLICATIONS = ("parkingTablePublication", "parkingFacilityTablePublication")


@dataclass
class DatexPublication:
    role: str                                   # "status" | "static"
    flavour: str                                # "v2.3-parking" | "v2-parking-facility"
    publication_time: datetime | None
    records: list[dict[str, Any]] = field(default_factory=list)


def _local(tag: Any) -> str | None:
    """Local name of a DATEX element; None for comments, PIs and foreign namespaces."""
    if not isinstance(tag, str):
        return None
    if tag.startswith("{"):
        ns, _, local = tag[1:].partition("}")
        return local if ns.startswith(DATEX_NS_PREFIX) else None
    return tag  # un-namespaced documents: accepted (some test feeds drop the namespace)


def _children(el: ET.Element, name: str) -> Iterator[ET.Element]:
    for child in el:
        if _local(child.tag) == name:
            yield child


def _child(el: ET.Element, name: str) -> ET.Element | None:
    return next(_children(el, name), None)


def _text(el: ET.Element | None) -> str | None:
    if el is None or el.text is None:
        return None
    text = el.text.strip()
    return text or None


def _path_text(el: ET.Element, *names: str) -> str | None:
    cur: ET.Element | None = el
    for name in names:
        if cur is None:
            return None
        cur = _child(cur, name)
    return _text(cur)


def _descendant(el: ET.Element, name: str) -> ET.Element | None:
    for node in el.iter():
        if node is not el and _local(node.tag) == name:
            return node
    return None


class RecordError(ValueError):
    """A single record cannot be read; the others continue."""


def _int(text: str | None, what: str) -> int | None:
    if text is None:
        return None
    try:
        value = float(text)
    except ValueError:
        raise RecordError(f"{what} is not a number: {text[:40]!r}") from None
    if value != value or value in (float("inf"), float("-inf")) or value != int(value):
        raise RecordError(f"{what} is not an integer: {text[:40]!r}")
    return int(value)


def _float(text: str | None, what: str) -> float | None:
    if text is None:
        return None
    try:
        value = float(text)
    except ValueError:
        raise RecordError(f"{what} is not a number: {text[:40]!r}") from None
    if value != value or value in (float("inf"), float("-inf")):
        raise RecordError(f"{what} is not a finite number")
    return value


def _time(text: str | None, what: str, naive_tz: tzinfo) -> datetime | None:
    if text is None:
        return None
    try:
        return parse_time(text, naive_is=naive_tz)
    except (TimeFormatError, ValueError, OverflowError):
        raise RecordError(f"{what} is not an ISO 8601 time: {text[:40]!r}") from None


def _multilingual(el: ET.Element | None) -> str | None:
    """``<parkingName><values><value lang="de">…</value></values></parkingName>`` or plain text."""
    if el is None:
        return None
    values = _child(el, "values")
    if values is not None:
        texts = [_text(v) for v in _children(values, "value")]
        texts = [t for t in texts if t]
        return texts[0] if texts else None
    return _text(el)


def _coordinates(el: ET.Element) -> tuple[float, float] | None:
    point = _descendant(el, "pointCoordinates")
    if point is None:
        return None
    lat = _float(_path_text(point, "latitude"), "latitude")
    lon = _float(_path_text(point, "longitude"), "longitude")
    if lat is None or lon is None:
        return None
    if not (-90 <= lat <= 90 and -180 <= lon <= 180):
        raise RecordError(f"coordinates out of range: lat={lat} lon={lon}")
    return lon, lat


def _non_negative(values: dict[str, Any], key: str, number: int | None) -> None:
    """Counting systems drift below zero; a negative count is no reading and is left out."""
    if number is not None and number >= 0:
        values[key] = number


def parse_document(data: bytes | str) -> ET.Element:
    if isinstance(data, str):
        data = data.encode("utf-8")
    if not isinstance(data, (bytes, bytearray)) or not data.strip():
        raise DecodeError(EMPTY_DOCUMENT, "the feed answered with an empty body")
    try:
        root = _safe_fromstring(bytes(data), forbid_dtd=True)
    except DefusedXmlException as exc:
        raise DecodeError(UNSAFE_XML, f"{type(exc).__name__}: DTDs and entities are refused") from None
    except (ET.ParseError, ValueError, UnicodeError, LookupError, RecursionError) as exc:  # LookupError: unknown encoding=
        raise DecodeError(INVALID_XML, str(exc)[:200]) from None
    foreign_namespace = isinstance(root.tag, str) and root.tag.startswith("{") \
        and not root.tag.startswith("{" + DATEX_NS_PREFIX)
    if not isinstance(root.tag, str) or foreign_namespace:
        raise DecodeError(NOT_DATEX2, f"root element {str(root.tag)[:80]!r} is not in a DATEX II namespace")
    return root


def parse_datex2(data: bytes | str, *, naive_tz: tzinfo = UTC) -> DatexPublication:
    """Parse one DATEX II parking publication (status or static table, either flavour)."""
    root = parse_document(data)
    publication = None
    for node in root.iter():
        local = _local(node.tag)
        if local in STATUS_PUBLICATIONS or local in STATIC_PUBLICATIONS:
            publication = node
            break
    if publication is None:
        raise DecodeError(UNSUPPORTED_PUBLICATION,
                          "no ParkingStatusPublication, ParkingTablePublication or ParkingFacility publication found")
    try:
        pub_time = _time(_text(_descendant(root, "publicationTime")), "publicationTime", naive_tz)
    except RecordError as exc:
        raise DecodeError(BAD_PUBLICATION_TIME, str(exc)) from None
    local = _local(publication.tag)
    if local == "parkingStatusPublication":
        out = DatexPublication("status", "v2.3-parking", pub_time)
        for rec in _children(publication, "parkingRecordStatus"):
            out.records.append(_guard(rec, "parkingRecordReference", lambda r: _site_status(r, naive_tz)))
    elif local == "parkingFacilityTableStatusPublication":
        out = DatexPublication("status", "v2-parking-facility", pub_time)
        for rec in _children(publication, "parkingFacilityStatus"):
            out.records.append(_guard(rec, "parkingFacilityReference", lambda r: _facility_status(r, naive_tz)))
    elif local == "parkingTablePublication":
        out = DatexPublication("static", "v2.3-parking", pub_time)
        for node in publication.iter():
            if _local(node.tag) == "parkingRecord":
                out.records.append(_guard(node, None, _site_static))
    else:  # parkingFacilityTablePublication
        out = DatexPublication("static", "v2-parking-facility", pub_time)
        for node in publication.iter():
            if _local(node.tag) == "parkingFacility" and node.get("id"):
                out.records.append(_guard(node, None, _facility_static))
    return out


def _guard(el: ET.Element, reference: str | None, fn) -> dict[str, Any]:
    ref = _child(el, reference) if reference else el
    record_id = (ref.get("id") or "").strip() if ref is not None else ""
    if not record_id:
        return {"id": None, "error": f"{_local(el.tag)} without an id"}
    try:
        rec = fn(el)
    except RecordError as exc:
        return {"id": record_id, "error": str(exc)}
    rec["id"] = record_id
    return rec


def _site_status(el: ET.Element, naive_tz: tzinfo) -> dict[str, Any]:
    xsi = el.get(XSI_TYPE) or ""
    if xsi and not xsi.split(":")[-1] == "ParkingSiteStatus":
        raise RecordError(f"record type {xsi!r} is not supported (only ParkingSiteStatus)")
    values: dict[str, Any] = {}
    observed = _time(_path_text(el, "parkingStatusOriginTime"), "parkingStatusOriginTime", naive_tz)
    occ = _child(el, "parkingOccupancy")
    if occ is not None:
        override = _int(_path_text(occ, "parkingNumberOfSpacesOverride"), "parkingNumberOfSpacesOverride")
        _non_negative(values, "total_realtime", override)
        _non_negative(values, "available",
                      _int(_path_text(occ, "parkingNumberOfVacantSpaces"), "parkingNumberOfVacantSpaces"))
        _non_negative(values, "occupied",
                      _int(_path_text(occ, "parkingNumberOfOccupiedSpaces"), "parkingNumberOfOccupiedSpaces"))
        percent = _float(_path_text(occ, "parkingOccupancy"), "parkingOccupancy")
        if percent is not None:
            if not 0 <= percent <= 100:
                raise RecordError(f"parkingOccupancy {percent} is not a percentage")
            values["occupancy_percent"] = percent
        trend = _path_text(occ, "parkingOccupancyTrend")
        if trend:
            values["trend"] = trend
    raw_status = [s for s in (_path_text(el, "parkingSiteOpeningStatus"), _path_text(el, "parkingSiteStatus")) if s]
    values["status_raw"] = raw_status
    values["status"] = unique(s for s in raw_status if s in SITE_STATUS)
    return {"observed_at": observed, "values": values}


def _facility_status(el: ET.Element, naive_tz: tzinfo) -> dict[str, Any]:
    values: dict[str, Any] = {}
    observed = _time(_path_text(el, "parkingFacilityStatusTime"), "parkingFacilityStatusTime", naive_tz)
    raw_status = [t for t in (_text(s) for s in _children(el, "parkingFacilityStatus")) if t]
    values["status_raw"] = raw_status
    values["status"] = unique(s for s in raw_status if s in SITE_STATUS)
    _non_negative(values, "available", _int(_path_text(el, "totalNumberOfVacantParkingSpaces"),
                                            "totalNumberOfVacantParkingSpaces"))
    _non_negative(values, "occupied", _int(_path_text(el, "totalNumberOfOccupiedParkingSpaces"),
                                           "totalNumberOfOccupiedParkingSpaces"))
    _non_negative(values, "total_realtime", _int(_path_text(el, "totalParkingCapacityOverride"),
                                                 "totalParkingCapacityOverride"))
    return {"observed_at": observed, "values": values}


def _site_static(el: ET.Element) -> dict[str, Any]:
    values: dict[str, Any] = {}
    name = _multilingual(_child(el, "parkingName"))
    if name:
        values["name"] = name
    _non_negative(values, "total", _int(_path_text(el, "parkingNumberOfSpaces"), "parkingNumberOfSpaces"))
    location = _child(el, "parkingLocation")
    coords = _coordinates(location) if location is not None else None
    if coords:
        values["lon"], values["lat"] = coords
    layouts = [t for t in (_text(x) for x in _children(el, "parkingLayout")) if t]
    if layouts:
        values["layout_raw"] = layouts
    site_type = _path_text(el, "urbanParkingSiteType")
    if site_type:
        values["site_type"] = site_type
    return {"values": values}


def _facility_static(el: ET.Element) -> dict[str, Any]:
    values: dict[str, Any] = {}
    name = _multilingual(_child(el, "parkingFacilityName"))
    if name:
        values["name"] = name
    _non_negative(values, "total", _int(_path_text(el, "totalParkingCapacity"), "totalParkingCapacity"))
    coords = _coordinates(el)
    if coords:
        values["lon"], values["lat"] = coords
    layouts = [t for t in (_text(x) for x in _children(el, "parkingFacilityLayout")) if t]
    layouts += [t for t in (_text(x) for x in _children(el, "parkingLayout")) if t]
    if layouts:
        values["layout_raw"] = layouts
    return {"values": values}

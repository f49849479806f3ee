"""ParkAPI JSON → plain site records.

* v3 (``items[]``): the push/pull JSON cities send to ParkAPI v3 (Mannheim) and the public
  ``/api/public/v3/parking-sites`` answer: ``uid``/``original_uid``/``id``, ``name``, ``lat``/``lon``
  (often strings), ``capacity``, ``realtime_capacity``, ``realtime_free_capacity``,
  ``realtime_opening_status``, ``realtime_data_updated_at``, ``type``.
* v1 (``lots[]``): the classic ``/<city>`` answer: ``id``, ``name``, ``total``, ``free``, ``state``
  (open/closed/nodata/unknown), ``coords{lat,lng}``, ``lot_type``; times (``last_updated``) are UTC
  **without** an offset.

Items without real-time data are skipped (they carry no observation). A broken item becomes
``{"id": ..., "error": reason}``; the others go through.
"""
from __future__ import annotations

import math
from datetime import datetime, tzinfo
from typing import Any

import orjson

from stadtlink.adapters.core.errors import DecodeError
from stadtlink.adapters.core.reasons import EMPTY_DOCUMENT, INVALID_JSON
from stadtlink.adapters.core.timeutil import UTC, TimeFormatError, parse_time

from .vocab import PARKAPI_OPENING, PARKAPI_V1_LOT_TYPE, PARKAPI_V3_TYPE
from ..reasons import BAD_PUBLICATION_TIME, NOT_PARKAPI


class ItemError(ValueError):
    pass


def _number(value: Any, what: str) -> float | None:
    """Numbers arrive as numbers or strings (coordinates); booleans are not numbers."""
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        raise ItemError(f"{what} is a boolean")
    if isinstance(value, (int, float)):
        number = float(value)
    elif isinstance(value, str):
        try:
            number = float(value.strip())
        except ValueError:
            raise ItemError(f"{what} is not a number: {value[:40]!r}") from None
    else:
        raise ItemError(f"{what} is not a number")
    if not math.isfinite(number):
        raise ItemError(f"{what} is not finite")
    return number


def _count(value: Any, what: str) -> int | None:
    number = _number(value, what)
    if number is None:
        return None
    if number != int(number):
        raise ItemError(f"{what} is not an integer: {value!r}")
    number = int(number)
    return number if number >= 0 else None   # negative counts (drift) are no reading


def _time(value: Any, what: str, naive_tz: tzinfo) -> datetime | None:
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise ItemError(f"{what} is not a timestamp")
    try:
        return parse_time(value, naive_is=naive_tz)
    except (TimeFormatError, ValueError, OverflowError):
        raise ItemError(f"{what} is not an ISO 8601 time: {value[:40]!r}") from None


def _coords(lat: Any, lon: Any) -> dict[str, float]:
    lat_v, lon_v = _number(lat, "lat"), _number(lon, "lon")
    if lat_v is None or lon_v is None:
        return {}
    if not (-90 <= lat_v <= 90 and -180 <= lon_v <= 180):
        raise ItemError(f"coordinates out of range: lat={lat_v} lon={lon_v}")
    return {"lat": lat_v, "lon": lon_v}


def _item_id(item: dict, *keys: str) -> str | None:
    for key in keys:
        value = item.get(key)
        if isinstance(value, (str, int)) and not isinstance(value, bool) and str(value).strip():
            return str(value).strip()
    return None


def parse_parkapi(data: bytes | str, *, naive_tz: tzinfo = UTC) -> tuple[str, list[dict[str, Any]]]:
    """Parse a ParkAPI document; returns (``"v3"`` | ``"v1"``, records)."""
    if isinstance(data, str):
        data = data.encode("utf-8")
    if not isinstance(data, (bytes, bytearray)) or not bytes(data).strip():
        raise DecodeError(EMPTY_DOCUMENT, "the feed answered with an empty body")
    try:
        doc = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise DecodeError(INVALID_JSON, str(exc)[:200]) from None
    if isinstance(doc, dict) and isinstance(doc.get("items"), list):
        return "v3", [_guard(item, ("uid", "original_uid", "id"), lambda i: _v3_item(i, naive_tz))
                      for item in doc["items"]]
    if isinstance(doc, dict) and isinstance(doc.get("lots"), list):
        try:
            updated = _time(doc.get("last_updated"), "last_updated", naive_tz)
        except ItemError as exc:
            raise DecodeError(BAD_PUBLICATION_TIME, str(exc)) from None
        return "v1", [_guard(item, ("id",), lambda i: _v1_item(i, updated)) for item in doc["lots"]]
    raise DecodeError(NOT_PARKAPI, "neither a ParkAPI v3 document (items[]) nor a v1 lot list (lots[])")


def _guard(item: Any, id_keys: tuple[str, ...], fn) -> dict[str, Any]:
    if not isinstance(item, dict):
        return {"id": None, "error": "an item is not a JSON object"}
    item_id = _item_id(item, *id_keys)
    if item_id is None:
        return {"id": None, "error": f"an item has no {' / '.join(id_keys)}"}
    try:
        rec = fn(item)
    except ItemError as exc:
        return {"id": item_id, "error": str(exc)}
    if rec is None:
        return {"id": item_id, "skip": "no real-time data"}
    rec["id"] = item_id
    return rec


def _v3_item(item: dict, naive_tz: tzinfo) -> dict[str, Any] | None:
    observed = _time(item.get("realtime_data_updated_at"), "realtime_data_updated_at", naive_tz)
    free = _count(item.get("realtime_free_capacity"), "realtime_free_capacity")
    if observed is None or (free is None and item.get("realtime_opening_status") in (None, "UNKNOWN")):
        return None
    values: dict[str, Any] = {}
    if free is not None:
        values["available"] = free
    realtime_total = _count(item.get("realtime_capacity"), "realtime_capacity")
    if realtime_total is not None:
        values["total_realtime"] = realtime_total
    total = _count(item.get("capacity"), "capacity")
    if total is not None:
        values["total"] = total
    opening = item.get("realtime_opening_status")
    status = PARKAPI_OPENING.get(opening.lower()) if isinstance(opening, str) else None
    values["status_raw"] = [opening] if isinstance(opening, str) else []
    values["status"] = [status] if status else []
    if isinstance(item.get("name"), str) and item["name"].strip():
        values["name"] = item["name"].strip()
    values.update(_coords(item.get("lat"), item.get("lon")))
    site_type = item.get("type")
    if isinstance(site_type, str):
        values["site_type"] = site_type
        category, layout = PARKAPI_V3_TYPE.get(site_type, (None, None))
        if category:
            values["category"] = category
        if layout:
            values["layout"] = layout
    return {"observed_at": observed, "values": values}


def _v1_item(item: dict, updated: datetime | None) -> dict[str, Any] | None:
    state = item.get("state")
    free = _count(item.get("free"), "free")
    if updated is None or state == "nodata" or (free is None and state != "closed"):
        return None
    values: dict[str, Any] = {}
    if free is not None:
        values["available"] = free
    total = _count(item.get("total"), "total")
    if total is not None:
        values["total"] = total
    status = PARKAPI_OPENING.get(state) if isinstance(state, str) else None
    values["status_raw"] = [state] if isinstance(state, str) else []
    values["status"] = [status] if status else []
    if isinstance(item.get("name"), str) and item["name"].strip():
        values["name"] = item["name"].strip()
    coords = item.get("coords")
    if isinstance(coords, dict):
        values.update(_coords(coords.get("lat"), coords.get("lng")))
    lot_type = item.get("lot_type")
    if isinstance(lot_type, str):
        values["site_type"] = lot_type
        category, layout = PARKAPI_V1_LOT_TYPE.get(lot_type.strip().lower(), (None, None))
        if category:
            values["category"] = category
        if layout:
            values["layout"] = layout
    return {"observed_at": updated, "values": values}

"""What the twin view shows of each entity: a flat, display-ready summary computed server-side.

Keeping the interpretation here (not in JavaScript) makes it testable: which family an entity
belongs to, the one-line value, and the colour class (``ok``, ``warn``, ``bad``, ``unknown``).
"""
from __future__ import annotations

import time
from typing import Any, Mapping

FAMILIES = {
    "ParkingSpot": "parking", "OffStreetParking": "parking", "ParkingGroup": "parking",
    "WeatherObserved": "climate",
    "FloodMonitoring": "water", "WaterObserved": "water", "Alert": "water",
    "ThreePhaseAcMeasurement": "pv",
}
TWIN_TYPES = tuple(FAMILIES)


def _value(attr: Any) -> Any:
    if isinstance(attr, Mapping):
        t = attr.get("type")
        if t == "Relationship":
            return attr.get("object")
        if t == "LanguageProperty":
            return attr.get("languageMap")
        if "value" in attr:
            v = attr["value"]
            if isinstance(v, Mapping) and "@value" in v:
                return v["@value"]
            return v
    return attr


def flatten(entity: Mapping[str, Any]) -> tuple[dict[str, Any], str | None]:
    """Normalized (or keyValues) entity → ({attr: value}, newest observedAt)."""
    values: dict[str, Any] = {}
    newest = None
    for key, attr in entity.items():
        if key in ("id", "type", "@context"):
            continue
        values[key] = _value(attr)
        if isinstance(attr, Mapping):
            obs = attr.get("observedAt")
            if isinstance(obs, str) and (newest is None or obs > newest):
                newest = obs
    return values, newest


def _num(v: Any) -> float | None:
    return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else None


def summarise(entity: Mapping[str, Any]) -> dict[str, Any]:
    etype = entity.get("type", "")
    v, observed = flatten(entity)
    summary, state = "", "unknown"
    if etype == "ParkingSpot":
        status = v.get("status")
        summary = str(status or "unknown")
        state = {"free": "ok", "occupied": "bad", "closed": "closed"}.get(status, "unknown")
    elif etype in ("OffStreetParking", "ParkingGroup"):
        free, total = _num(v.get("availableSpotNumber")), _num(v.get("totalSpotNumber"))
        status = v.get("status")
        closed = status == "closed" or (isinstance(status, list) and "closed" in status)
        if free is not None and total:
            summary = f"{int(free)} / {int(total)} free"
            ratio = free / total
            state = "ok" if ratio > 0.2 else ("warn" if ratio > 0.05 else "bad")
        elif free is not None:
            summary = f"{int(free)} free"
            state = "ok" if free > 0 else "bad"
        if closed:
            summary, state = (summary + " (closed)").strip(), "closed"
    elif etype == "WeatherObserved":
        t = _num(v.get("temperature"))
        rh = _num(v.get("relativeHumidity"))
        parts = []
        if t is not None:
            parts.append(f"{t:.1f} °C")
        if rh is not None:
            parts.append(f"{rh * 100:.0f} % RH")
        summary = ", ".join(parts)
        state = "unknown" if t is None else ("bad" if t >= 30 else "warn" if t >= 25 else "ok")
    elif etype == "FloodMonitoring":
        level, alert = _num(v.get("currentLevel")), _num(v.get("alertLevel"))
        status = v.get("floodLevelStatus")
        if level is not None:
            summary = f"{level:.2f} m" + (f" (alert {alert:.2f} m)" if alert is not None else "")
        state = {"Normal": "ok", "Alert": "warn", "Danger": "bad"}.get(status, "unknown" if level is None else "ok")
    elif etype == "WaterObserved":
        level = _num(v.get("waterLevel"))
        if level is None:
            level = _num(v.get("waterLevelRelativeToGaugeZero"))
        flow = _num(v.get("flow"))
        summary = ", ".join(p for p in (f"{level:.2f} m" if level is not None else "",
                                        f"{flow:g} m³/s" if flow is not None else "") if p)
        state = "ok" if level is not None else "unknown"
    elif etype == "Alert":
        summary = f"{v.get('severity', '')} {v.get('subCategory', '')}".strip()
        state = "ok" if v.get("validTo") else ("bad" if v.get("severity") in ("high", "critical") else "warn")
    elif etype == "ThreePhaseAcMeasurement":
        p = _num(v.get("totalActivePower"))
        summary = f"{p / 1000:.2f} kW" if p is not None else ""
        state = "unknown" if p is None else ("ok" if p > 0 else "idle")
    location = None
    loc = v.get("location")
    if isinstance(loc, Mapping) and loc.get("type") == "Point":
        coords = loc.get("coordinates")
        if isinstance(coords, list) and len(coords) >= 2 and all(_num(c) is not None for c in coords[:2]):
            location = [float(coords[0]), float(coords[1])]
    name = v.get("name")
    return {
        "id": entity.get("id"), "type": etype, "family": FAMILIES.get(etype, "other"),
        "name": name if isinstance(name, str) else None, "summary": summary, "state": state,
        "location": location, "observedAt": observed, "values": v,
    }


class TwinState:
    """The latest summary per entity id; a notification may carry partial entities (only the
    notified attributes), so values are merged."""

    def __init__(self) -> None:
        self.entities: dict[str, dict[str, Any]] = {}
        self._raw: dict[str, dict[str, Any]] = {}

    def update(self, entity: Mapping[str, Any], *, replace: bool = False) -> dict[str, Any] | None:
        """Merge a (partial) entity into the state; ``replace``: it is the whole entity."""
        eid, etype = entity.get("id"), entity.get("type")
        if not isinstance(eid, str) or etype not in FAMILIES:
            return None
        merged = {} if replace else dict(self._raw.get(eid, {}))
        merged.update(entity)
        self._raw[eid] = merged
        item = summarise(merged)
        item["receivedAt"] = time.time()
        self.entities[eid] = item
        return item

    def snapshot(self) -> list[dict[str, Any]]:
        return list(self.entities.values())

"""Device / station registries: which device is where, what it is called, its site data.

A town with 500 stations keeps them in one CSV or GeoJSON file rather than 500 YAML blocks.
Records are looked up by the id the source reports (TTS device_id, ChirpStack dev EUI, a polled
feed's site id); a record may list its ``dev_eui`` too so either id finds it.
"""
from __future__ import annotations

import csv
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping

from .errors import ConfigError

_NUMERIC_HINT = ("lat", "lon", "latitude", "longitude")


@dataclass(slots=True)
class DeviceRecord:
    id: str
    name: str | None = None
    lon: float | None = None
    lat: float | None = None
    profile: str | None = None
    dev_eui: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def get(self, key: str, default: Any = None) -> Any:
        """Site data by name: the fixed fields first, then the free-form ones."""
        if key in ("id", "name", "lon", "lat", "profile", "dev_eui"):
            value = getattr(self, key)
            return default if value is None else value
        return self.extra.get(key, default)

    @property
    def has_location(self) -> bool:
        return self.lon is not None and self.lat is not None


def _coerce(value: Any) -> Any:
    """CSV cells are text: turn numbers and booleans back into numbers and booleans."""
    if not isinstance(value, str):
        return value
    text = value.strip()
    if text == "":
        return None
    low = text.lower()
    if low in ("true", "false"):
        return low == "true"
    try:
        return int(text)
    except ValueError:
        pass
    try:
        return float(text)
    except ValueError:
        return text


def record_from_mapping(data: Mapping[str, Any], *, where: str = "registry") -> DeviceRecord:
    data = {str(k).strip(): _coerce(v) for k, v in data.items()}
    device_id = data.pop("id", None) or data.pop("device_id", None)
    if device_id is None or device_id == "":
        raise ConfigError(f"{where}: a record without 'id'")
    lon = data.pop("lon", None)
    if lon is None:
        lon = data.pop("longitude", None)
    lat = data.pop("lat", None)
    if lat is None:
        lat = data.pop("latitude", None)
    for label, v in (("lon", lon), ("lat", lat)):
        if v is not None and not isinstance(v, (int, float)):
            raise ConfigError(f"{where}: record {device_id}: {label} is not a number: {v!r}")
    if lon is not None and not -180 <= lon <= 180:
        raise ConfigError(f"{where}: record {device_id}: lon {lon} out of range (is it swapped with lat?)")
    if lat is not None and not -90 <= lat <= 90:
        raise ConfigError(f"{where}: record {device_id}: lat {lat} out of range")
    dev_eui = data.pop("dev_eui", None)
    profile = data.pop("profile", None)
    name = str(data.pop("name")) if data.get("name") is not None else data.pop("name", None)
    # Compact rows (10,000 of them in a parking registry): empty cells are not kept (get() answers
    # the default for them anyway) and short texts that repeat across rows (profile, site, category)
    # are one shared string object instead of one per row.
    extra = {_intern(k): (_intern(v) if type(v) is str else v) for k, v in data.items() if v is not None}
    return DeviceRecord(
        id=str(device_id),
        name=name,
        lon=float(lon) if lon is not None else None,
        lat=float(lat) if lat is not None else None,
        profile=_intern(profile) if type(profile) is str else profile,
        dev_eui=str(dev_eui).lower() if dev_eui else None,
        extra=extra,
    )


def _intern(text: str) -> str:
    return sys.intern(text) if len(text) <= 40 else text


class DeviceRegistry:
    def __init__(self, records: Iterable[DeviceRecord] = ()):
        self._by_id: dict[str, DeviceRecord] = {}
        for rec in records:
            self.add(rec)

    def add(self, record: DeviceRecord) -> None:
        self._by_id[record.id] = record
        self._by_id.setdefault(record.id.lower(), record)
        if record.dev_eui:
            self._by_id.setdefault(record.dev_eui, record)

    def lookup(self, device_id: str | None, *alternatives: str | None) -> DeviceRecord | None:
        for key in (device_id, *alternatives):
            if not key:
                continue
            rec = self._by_id.get(key) or self._by_id.get(key.lower())
            if rec is not None:
                return rec
        return None

    def __iter__(self):
        seen = set()
        for rec in self._by_id.values():
            if id(rec) not in seen:
                seen.add(id(rec))
                yield rec

    def __len__(self) -> int:
        return sum(1 for _ in self)

    @classmethod
    def load(cls, *, inline: Iterable[Mapping[str, Any]] = (), files: Iterable[str | Path] = (),
             base_dir: str | Path | None = None) -> "DeviceRegistry":
        reg = cls()
        for i, item in enumerate(inline):
            reg.add(record_from_mapping(item, where=f"devices[{i}]"))
        for f in files:
            path = Path(f)
            if base_dir is not None and not path.is_absolute():
                path = Path(base_dir) / path
            for rec in load_registry_file(path):
                reg.add(rec)
        return reg


def load_registry_file(path: Path) -> list[DeviceRecord]:
    """CSV (header row; columns id, name, lat, lon, profile, dev_eui and any site fields) or GeoJSON
    (a FeatureCollection of Points; properties hold id and the site fields)."""
    if not path.exists():
        raise ConfigError(f"registry file not found: {path}")
    suffix = path.suffix.lower()
    if suffix == ".csv":
        with path.open(newline="", encoding="utf-8") as fh:
            return [record_from_mapping(row, where=f"{path.name} line {i + 2}")
                    for i, row in enumerate(csv.DictReader(fh))]
    if suffix in (".geojson", ".json"):
        try:
            doc = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as exc:
            raise ConfigError(f"{path}: invalid JSON: {exc}") from None
        features = doc.get("features") if isinstance(doc, dict) else None
        if not isinstance(features, list):
            raise ConfigError(f"{path}: not a GeoJSON FeatureCollection")
        out = []
        for i, feat in enumerate(features):
            props = dict(feat.get("properties") or {})
            geom = feat.get("geometry") or {}
            if geom.get("type") == "Point":
                coords = geom.get("coordinates") or []
                if len(coords) >= 2:
                    props.setdefault("lon", coords[0])
                    props.setdefault("lat", coords[1])
            if "id" not in props and feat.get("id") is not None:
                props["id"] = feat["id"]
            out.append(record_from_mapping(props, where=f"{path.name} feature {i}"))
        return out
    raise ConfigError(f"registry file {path}: use .csv or .geojson")

"""The families' sample inputs, as the golden comparison and the vocabulary check read them.

Every sample input of every family (``adapters/<family>/testdata``, including each sample's
``more_cases``) with the message a source would deliver for it, the family's registry and the device
a polled answer is attributed to. Shared by tests/families/test_golden_outputs.py and
test_vocabulary.py (a helper module, not a test module: neither imports the other).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import orjson

from stadtlink.adapters import climate, parking, pv, water_level
from stadtlink.adapters.core.adapter import AdapterSpec, LoRaWANProfile
from stadtlink.adapters.core.lorawan import tts_uplink
from stadtlink.adapters.core.reading import RawMessage
from stadtlink.adapters.core.registry import DeviceRegistry

ROOT = Path(__file__).resolve().parents[2]
RECEIVED_AT = datetime(2024, 5, 1, 12, 0, tzinfo=timezone.utc)


@dataclass(frozen=True)
class Family:
    spec: AdapterSpec
    folder: str
    registry_csv: str
    #: device id a polled (non-LoRaWAN) profile's answer is attributed to, per profile
    polled_device: dict[str, str] = field(default_factory=dict)
    #: further settings variants besides the defaults: name → settings mapping
    variants: dict[str, dict[str, Any]] = field(default_factory=dict)
    #: profiles the comparison leaves out (they need per-deployment options to read anything)
    skip_profiles: tuple[str, ...] = ()


FAMILIES = {
    "parking": Family(parking.ADAPTER, "parking", "parking-devices.csv",
                      polled_device={"datex2": "aachen", "parkapi": "mannheim"}),
    "climate": Family(climate.ADAPTER, "climate", "climate-stations.csv", skip_profiles=("json-map",)),
    "water_level": Family(water_level.ADAPTER, "water_level", "water-level-stations.csv",
                          polled_device={"pegelonline": "pruem-bitburg"}),
    "pv": Family(pv.ADAPTER, "pv", "pv-devices.csv",
                 polled_device={"sunspec": "inv-rathaus", "fronius-solarapi": "inv-bauhof"},
                 variants={"photovoltaic_measurement": {"photovoltaic_measurement": True}}),
}


# ------------------------------------------------------------------------------------------ inputs

def _inputs(folder: str) -> list[tuple[str, str, Any, int | None]]:
    """(input name, shape, payload, f_port): shape is "lorawan-bytes", "envelope", "modbus" or "document"."""
    out: list[tuple[str, str, Any, int | None]] = []
    for path in sorted((ROOT / "adapters" / folder / "testdata").iterdir()):
        if path.suffix == ".xml":
            out.append((path.name, "document", path.read_bytes(), None))
            continue
        if path.suffix != ".json":
            continue
        doc = orjson.loads(path.read_bytes())
        raw = doc.get("raw") if isinstance(doc, dict) and "source" in doc else None
        if not isinstance(raw, dict):
            out.append((path.name, "document", path.read_bytes(), None))
            continue
        cases = [("", raw)] + [(f"#more_cases[{i}]", case.get("raw") or {})
                               for i, case in enumerate(doc.get("more_cases") or ())]
        for suffix, case in cases:
            name = path.name + suffix
            if "registers_uint16" in case:
                out.append((name, "modbus", case, None))
            elif "hex" in case:
                out.append((name, "lorawan-bytes", bytes.fromhex(case["hex"].replace(" ", "")), case.get("f_port")))
            elif "json" in case:
                body = orjson.dumps(case["json"])
                envelope = isinstance(case["json"], dict) and ("uplink_message" in case["json"]
                                                               or "deviceInfo" in case["json"])
                out.append((name, "envelope" if envelope else "document", body, None))
            elif "xml" in case:
                out.append((name, "document", case["xml"].encode(), None))
    return out


def _message(profile, shape: str, payload: Any, f_port: int | None, device: str) -> RawMessage | None:
    """The RawMessage a source would deliver, or None when the profile cannot read this shape."""
    lorawan = isinstance(profile, LoRaWANProfile) or profile.kind == "lorawan"
    if lorawan:
        if shape == "envelope":
            return RawMessage(source="mqtt", payload=payload, topic=None, received_at=RECEIVED_AT)
        if shape != "lorawan-bytes":
            return None
        topic, env = tts_uplink(device, payload, f_port=f_port if f_port is not None else 1, f_cnt=1,
                                received_at="2024-05-01T12:00:00Z")
        return RawMessage(source="mqtt", payload=orjson.dumps(env), topic=topic, received_at=RECEIVED_AT)
    if profile.kind == "modbus":
        if shape != "modbus":
            return None
        return RawMessage(source="modbus", payload=payload, device_hint=device, received_at=RECEIVED_AT)
    if shape != "document":
        return None
    return RawMessage(source="http", payload=payload, topic=f"http://feeds.test/{device}", device_hint=device,
                      received_at=RECEIVED_AT)


def _device_for(registry: DeviceRegistry, family: Family, profile: str) -> str:
    if profile in family.polled_device:
        return family.polled_device[profile]
    for rec in registry:
        if rec.profile == profile:
            return rec.id
    return "golden-device"


# ------------------------------------------------------------------------------------------ outcomes

"""Behaviour unchanged: the same entities for the same inputs, in every family.

Every sample input of every family (``adapters/<family>/testdata``, copies of the shared device
samples plus constructed edge cases, including each sample's ``more_cases``) is run through every
profile of the family that can read it — decode, then map with the family's own registry CSV and
default settings — and the outcome is compared with a golden file recorded before the families
were reshaped (``tests/families/golden/<family>.json``): the entities, the readings' refused values
(``meta["dropped"]``) and, where the input is refused, the dead-letter or drop reason.

One mapping context per (family, profile, settings variant) runs over the inputs in a fixed order,
so stateful mapping (rain counters, spot states and site aggregates, feed static tables, alert
hysteresis) is part of the comparison; parking's heartbeat timer (``tick``) runs once at the end.

A change that alters an output on purpose re-records the goldens in the same commit, with the
reason in its message::

    STADTLINK_UPDATE_GOLDEN=1 .venv/bin/python -m pytest -q tests/families/test_golden_outputs.py
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import orjson
import pytest

from stadtlink.adapters import climate, parking, pv, water_level
from stadtlink.adapters.core.adapter import AdapterSpec, LoRaWANProfile, MapContext, StateStore
from stadtlink.adapters.core.errors import DecodeError, MappingError, ReadingDropped
from stadtlink.adapters.core.lorawan import tts_uplink
from stadtlink.adapters.core.reading import RawMessage
from stadtlink.adapters.core.registry import DeviceRegistry
from stadtlink.schemas import check_entity

ROOT = Path(__file__).resolve().parents[2]
GOLDEN = Path(__file__).resolve().parent / "golden"
RECEIVED_AT = datetime(2024, 5, 1, 12, 0, tzinfo=timezone.utc)
UPDATE = os.environ.get("STADTLINK_UPDATE_GOLDEN") == "1"


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

def _settings(spec: AdapterSpec, values: dict[str, Any]) -> Any:
    if spec.settings_model is None:
        return values or None
    return spec.settings_model.model_validate(values)


def _entities_record(entities: list[dict]) -> list[dict]:
    problems = {}
    for ent in entities:
        found = check_entity(ent)
        if found:
            problems[ent["id"]] = [f"{p.path}: {p.message}" for p in found]
    assert not problems, f"entities fail the Smart Data Models check: {problems}"
    return entities


def run_family(name: str) -> list[dict]:
    family = FAMILIES[name]
    spec = family.spec
    folder = ROOT / "adapters" / family.folder
    inputs = _inputs(family.folder)
    records: list[dict] = []
    for variant, values in {"defaults": {}, **family.variants}.items():
        settings = _settings(spec, values)
        for profile_name in sorted(spec.profiles):
            if profile_name in family.skip_profiles:
                continue
            profile = spec.profiles[profile_name]
            registry = DeviceRegistry.load(files=[folder / family.registry_csv])
            ctx = MapContext(namespace="golden", registry=registry, settings=settings, state=StateStore())
            device = _device_for(registry, family, profile_name)
            for input_name, shape, payload, f_port in inputs:
                message = _message(profile, shape, payload, f_port, device)
                if message is None:
                    continue
                rec: dict[str, Any] = {"variant": variant, "profile": profile_name, "input": input_name}
                try:
                    readings = profile.decode(message, {})
                except DecodeError as exc:
                    rec["dead_letter"] = exc.reason
                    records.append(rec)
                    continue
                except ReadingDropped as exc:
                    rec["dropped"] = exc.reason
                    records.append(rec)
                    continue
                outcomes = []
                for reading in readings:
                    ctx.now = RECEIVED_AT
                    out: dict[str, Any] = {"device": reading.device_id, "kind": reading.kind}
                    try:
                        out["entities"] = _entities_record(spec.mapper(reading, ctx))
                    except MappingError as exc:
                        out["dead_letter"] = exc.reason
                    except ReadingDropped as exc:
                        out["dropped"] = exc.reason
                    if reading.meta.get("dropped"):
                        out["refused_values"] = dict(reading.meta["dropped"])
                    outcomes.append(out)
                rec["readings"] = outcomes
                records.append(rec)
            if spec.tick is not None:
                ctx.now = RECEIVED_AT + timedelta(days=30)
                records.append({"variant": variant, "profile": profile_name, "input": "tick +30 days",
                                "entities": _entities_record(list(spec.tick(ctx) or ()))})
    return records


def _dump(records: list[dict]) -> bytes:
    return orjson.dumps(records, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS) + b"\n"


@pytest.mark.parametrize("name", sorted(FAMILIES))
def test_family_outputs_equal_golden(name: str) -> None:
    path = GOLDEN / f"{name}.json"
    actual = _dump(run_family(name))
    if UPDATE or not path.exists():
        path.write_bytes(actual)
        if not UPDATE:
            pytest.fail(f"{path.name} did not exist: recorded it; run again")
        return
    expected = orjson.loads(path.read_bytes())
    got = orjson.loads(actual)
    assert len(got) == len(expected), f"{name}: {len(got)} outcomes, golden has {len(expected)}"
    for want, have in zip(expected, got):
        label = f"{want.get('variant')} / {want.get('profile')} / {want.get('input')}"
        assert have == want, f"{name}: {label} differs from the golden output"


def test_every_family_has_inputs_for_every_profile() -> None:
    """The comparison cannot pass by having nothing to compare."""
    for name, family in FAMILIES.items():
        seen = {r["profile"] for r in run_family(name) if "readings" in r or "entities" in r}
        wanted = set(family.spec.profiles) - set(family.skip_profiles)
        assert wanted <= seen, f"{name}: no sample produced a reading for {sorted(wanted - seen)}"

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
from datetime import timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest

from stadtlink.adapters.core.adapter import AdapterSpec, MapContext, StateStore
from stadtlink.adapters.core.errors import DecodeError, MappingError, ReadingDropped
from stadtlink.adapters.core.registry import DeviceRegistry
from stadtlink.schemas import check_entity

from .samples import FAMILIES, RECEIVED_AT, ROOT, _device_for, _inputs, _message

GOLDEN = Path(__file__).resolve().parent / "golden"
UPDATE = os.environ.get("STADTLINK_UPDATE_GOLDEN") == "1"


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

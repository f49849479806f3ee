"""Fronius Solar API v1 answers → reading values (pure).

Handles ``GetInverterRealtimeData`` (``Scope=Device``, ``DataCollection=CommonInverterData`` or
``3PInverterData``) and ``GetPowerFlowRealtimeData``. At night the AC keys are absent and GEN24 devices
send ``null`` values: both simply leave the value out — never 0, never an exception other than
:class:`DecodeError` for a document that is not a Solar API answer.
"""
from __future__ import annotations

import json
import math
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from stadtlink.adapters.core.errors import DecodeError, ReadingDropped
from stadtlink.adapters.core.reasons import BAD_TIMESTAMP, INVALID_JSON
from stadtlink.adapters.core.timeutil import TimeFormatError, parse_time

from ..reasons import FRONIUS_NOT_SOLAR_API, FRONIUS_UNSUPPORTED_SCOPE, fronius_status
from .rows import SourceRow, apply_rows
from .rows import rows as _rows

#: Fronius DeviceStatus.StatusCode → state name (0–6 start-up, 7 running, 8 standby, 9 boot loading, 10 error).
STATUS_NAMES: dict[int, str] = {**{n: "STARTUP" for n in range(7)}, 7: "RUNNING", 8: "STANDBY",
                                9: "BOOTLOADING", 10: "ERROR"}

_UNIT_FACTOR = {"W": 1, "Wh": 1, "kW": 1000, "kWh": 1000, "MWh": 1_000_000, "A": 1, "V": 1, "Hz": 1, "VA": 1,
                "var": 1, "VAr": 1, "kVA": 1000, "°C": 1, "C": 1}


def _pct_to_fraction(v: float) -> float | None:
    return round(v / 100.0, 6) if 0 <= v <= 100 else None


COMMON_ROWS = _rows(
    ("PAC", "ac_power_w"), ("SAC", "ac_apparent_power_va"), ("FAC", "frequency_hz"),
    ("IAC", "ac_current_a"), ("UAC", "ac_voltage_v"),
    ("TOTAL_ENERGY", "energy_export_wh"), ("DAY_ENERGY", "energy_day_wh"), ("YEAR_ENERGY", "energy_year_wh"),
)
THREE_PHASE_ROWS = _rows(
    ("IAC_L1", "current_l1_a"), ("IAC_L2", "current_l2_a"), ("IAC_L3", "current_l3_a"),
    ("UAC_L1", "voltage_l1_v"), ("UAC_L2", "voltage_l2_v"), ("UAC_L3", "voltage_l3_v"),
    ("T_AMBIENT", "temperature_ambient_c"),
)
#: DC inputs (MPPT trackers): field suffix "" / "_2" / "_3" / "_4" → input 1..4
DC_INPUT_SUFFIXES = ("", "_2", "_3", "_4")
POWERFLOW_SITE_ROWS = _rows(
    ("P_PV", "pv_power_w"), ("P_Grid", "grid_power_w"), ("P_Load", "load_power_w"), ("P_Akku", "battery_power_w"),
    ("E_Total", "pv_energy_wh"), ("E_Day", "pv_energy_day_wh"), ("E_Year", "pv_energy_year_wh"),
    ("rel_Autonomy", "autonomy", _pct_to_fraction), ("rel_SelfConsumption", "self_consumption", _pct_to_fraction),
)


def _number(value: Any) -> float | int | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    if isinstance(value, float):
        if not math.isfinite(value):
            return None
        value = round(value, 6)   # 227.90000000000001 → 227.9
    return value


def _field(data: Mapping[str, Any], name: str) -> float | int | None:
    """``{"Value": x, "Unit": u}`` (inverter data) or a bare number (power flow); None if absent/null."""
    entry = data.get(name)
    if isinstance(entry, Mapping):
        value = _number(entry.get("Value"))
        unit = entry.get("Unit")
        if value is not None and isinstance(unit, str) and unit in _UNIT_FACTOR and _UNIT_FACTOR[unit] != 1:
            value = _number(value * _UNIT_FACTOR[unit])
        return value
    return _number(entry)


def _apply(table: tuple[SourceRow, ...], data: Mapping[str, Any], into: dict[str, Any]) -> None:
    apply_rows(table, lambda name: _field(data, name), into)


def load_document(payload: Any) -> dict[str, Any]:
    if isinstance(payload, (bytes, bytearray, str)):
        try:
            payload = json.loads(payload)
        except (ValueError, UnicodeDecodeError, RecursionError) as exc:
            raise DecodeError(INVALID_JSON, str(exc)[:200]) from None
    if not isinstance(payload, dict):
        raise DecodeError(FRONIUS_NOT_SOLAR_API, f"expected a JSON object, got {type(payload).__name__}")
    raw = payload.get("raw")
    if "Body" not in payload and isinstance(raw, dict) and isinstance(raw.get("json"), dict):
        return raw["json"]          # a device-samples document (stadtlink decode FILE)
    return payload


def document_kind(doc: Mapping[str, Any]) -> str:
    """``inverter`` (CommonInverterData / 3PInverterData) or ``powerflow``."""
    body = doc.get("Body")
    data = body.get("Data") if isinstance(body, Mapping) else None
    if not isinstance(data, Mapping):
        raise DecodeError(FRONIUS_NOT_SOLAR_API, "no Body.Data object")
    if isinstance(data.get("Site"), Mapping):
        return "powerflow"
    if any(isinstance(v, Mapping) and "Values" in v for v in data.values()):
        raise DecodeError(FRONIUS_UNSUPPORTED_SCOPE,
                          "Scope=System answers are not supported: poll each inverter with Scope=Device&DeviceId=N")
    return "inverter"


def observed_at(doc: Mapping[str, Any], fallback: datetime) -> datetime:
    """Head.Timestamp (local time with offset) in UTC; the poll time if the answer has none."""
    head = doc.get("Head")
    stamp = head.get("Timestamp") if isinstance(head, Mapping) else None
    if not stamp:
        return fallback
    try:
        return parse_time(stamp)
    except TimeFormatError as exc:
        raise DecodeError(BAD_TIMESTAMP, str(exc)) from None


def check_status(doc: Mapping[str, Any]) -> None:
    """A non-zero Head.Status.Code means the data manager could not ask the inverter (asleep, not there)."""
    head = doc.get("Head")
    status = head.get("Status") if isinstance(head, Mapping) else None
    if isinstance(status, Mapping):
        code = status.get("Code", 0)
        if code not in (0, None):
            reason = status.get("Reason") or status.get("UserMessage") or ""
            raise ReadingDropped(fronius_status(code), str(reason)[:200])


def inverter_values(data: Mapping[str, Any]) -> dict[str, Any]:
    values: dict[str, Any] = {"manufacturer": "Fronius"}
    _apply(COMMON_ROWS, data, values)
    _apply(THREE_PHASE_ROWS, data, values)
    inputs = []
    for n, suffix in enumerate(DC_INPUT_SUFFIXES, start=1):
        dc = {}
        current, voltage = _field(data, "IDC" + suffix), _field(data, "UDC" + suffix)
        if current is not None:
            dc["current_a"] = current
        if voltage is not None:
            dc["voltage_v"] = voltage
        if dc:
            inputs.append({"id": n, **dc})
    if inputs:
        values["dc_inputs"] = inputs
    status = data.get("DeviceStatus")
    if isinstance(status, Mapping):
        code = status.get("StatusCode")
        if isinstance(code, int) and not isinstance(code, bool):
            values["status_code"] = code
            values["status"] = STATUS_NAMES.get(code, f"STATUS_{code}")
        error = status.get("ErrorCode")
        if isinstance(error, int) and not isinstance(error, bool) and error != 0:
            values["error_code"] = error
    return values


def powerflow_values(data: Mapping[str, Any]) -> dict[str, Any]:
    values: dict[str, Any] = {}
    site = data.get("Site")
    if isinstance(site, Mapping):
        _apply(POWERFLOW_SITE_ROWS, site, values)
        for key in ("Mode", "Meter_Location"):
            if isinstance(site.get(key), str):
                values[key.lower()] = site[key]
    inverters = data.get("Inverters")
    if isinstance(inverters, Mapping):
        out = []
        for number, inv in inverters.items():
            if not isinstance(inv, Mapping):
                continue
            entry: dict[str, Any] = {"number": str(number)}
            for field, key in (("P", "ac_power_w"), ("E_Total", "energy_export_wh")):
                value = _field(inv, field)
                if value is not None:
                    entry[key] = value
            out.append(entry)
        if out:
            values["inverters"] = out
    return values


def decode_document(payload: Any, fallback_time: datetime) -> tuple[str, datetime, dict[str, Any]]:
    """``(kind, observed_at, values)`` of one Solar API answer."""
    doc = load_document(payload)
    kind = document_kind(doc)
    check_status(doc)
    when = observed_at(doc, fallback_time)
    data = doc["Body"]["Data"]
    values = powerflow_values(data) if kind == "powerflow" else inverter_values(data)
    return kind, when, values


__all__ = ["STATUS_NAMES", "decode_document", "document_kind", "inverter_values", "load_document",
           "observed_at", "powerflow_values"]

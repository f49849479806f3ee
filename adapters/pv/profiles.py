"""The two decoding profiles of the PV adapter: ``sunspec`` (Modbus TCP) and ``fronius-solarapi`` (HTTP)."""
from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

from stadtlink.adapters.core.adapter import FunctionProfile, Profile
from stadtlink.adapters.core.errors import DecodeError
from stadtlink.adapters.core.reading import RawMessage, Reading

from .decoders import fronius, sunspec
from stadtlink.adapters.core.reasons import NO_DEVICE

from .reasons import SUNSPEC_NO_KNOWN_MODEL

SUNSPEC = "sunspec"
FRONIUS = "fronius-solarapi"


def _device_id(message: RawMessage, options: Mapping[str, Any], fallback: str | None = None) -> str:
    device = message.device_hint or options.get("device") or fallback
    if not device:
        raise DecodeError(NO_DEVICE, "the message names no device (set `device:` on the poll target)")
    return str(device)


def decode_sunspec(message: RawMessage, options: Mapping[str, Any]) -> list[Reading]:
    """The Modbus reader's payload (or a flat register dump) → one ``inverter`` reading.

    Observation time is the poll time (SunSpec inverters have no clock register in models 1/10x/160).
    """
    models = sunspec.payload_models(message.payload)
    decoded = sunspec.decode_models(models)
    values = sunspec.inverter_values(decoded)
    if not any(mid == 1 or mid in sunspec.INVERTER_MODELS or mid == 160 for mid in values["sunspec_models"]):
        raise DecodeError(SUNSPEC_NO_KNOWN_MODEL,
                          f"the chain holds no model this adapter decodes (ids {[m[0] for m in models]})")
    base = message.payload.get("base") if isinstance(message.payload, Mapping) else None
    meta = {"chain": [m[0] for m in models]}
    if isinstance(base, int):
        meta["base_address"] = base
    return [Reading(device_id=_device_id(message, options, values.get("serial_number")), profile=SUNSPEC,
                    observed_at=message.received_at, values=values, kind="inverter", meta=meta)]


def decode_fronius(message: RawMessage, options: Mapping[str, Any]) -> list[Reading]:
    """One Solar API answer → one ``inverter`` or ``powerflow`` reading (time from Head.Timestamp)."""
    kind, when, values = fronius.decode_document(message.payload, message.received_at)
    meta = {"url": message.topic} if message.topic else {}
    if kind == "inverter" and str(options.get("phases", 3)) == "1":
        # a single-phase inverter: IAC/UAC are the L1 values
        for src, dst in (("ac_current_a", "current_l1_a"), ("ac_voltage_v", "voltage_l1_v"),
                         ("ac_power_w", "power_l1_w")):
            if src in values:
                values.setdefault(dst, values[src])
        values["phases"] = 1
    return [Reading(device_id=_device_id(message, options), profile=FRONIUS, observed_at=when, values=values,
                    kind=kind, meta=meta)]


@dataclass(frozen=True)
class ModbusFunctionProfile(FunctionProfile):
    """A Modbus profile: ``modbus_reader(client, unit_id, options)`` does the I/O, ``decode`` stays pure."""

    modbus_reader: Callable[[Any, int, Mapping[str, Any]], Awaitable[Any]] = None  # type: ignore[assignment]


SUNSPEC_PROFILE = ModbusFunctionProfile(
    name=SUNSPEC, kind="modbus",
    description="SunSpec Modbus TCP inverters: common model 1, inverter models 101/102/103 and 701, "
                "MPPT model 160; driven by the SunSpec model JSON files",
    fn=decode_sunspec, modbus_reader=sunspec.read_sunspec,
)

FRONIUS_PROFILE = FunctionProfile(
    name=FRONIUS, kind="http",
    description="Fronius Solar API v1: GetInverterRealtimeData (CommonInverterData, 3PInverterData) and "
                "GetPowerFlowRealtimeData",
    fn=decode_fronius,
)

PROFILES: dict[str, Profile] = {p.name: p for p in (SUNSPEC_PROFILE, FRONIUS_PROFILE)}

"""Nwave Smart Parking Sensor G4 (NPS405) uplink payloads.

Two published codec versions disagree on the occupancy bit. The vendor's TTN examples (``0x95`` →
occupied, previous state lasted 74) only come out with the *bit0 = occupied* layout, so that is
the one implemented here.
"""
from __future__ import annotations

from typing import Any

from stadtlink.adapters.core.errors import DecodeError, ReadingDropped
from stadtlink.adapters.core.reasons import BAD_LENGTH, BAD_PAYLOAD, UNKNOWN_FPORT

from ..reasons import SDI_TAG_REGISTRATION

RESET_CAUSES = {0: "rejoin", 1: "watchdog", 2: "power_on", 3: "user_request", 6: "brownout", 7: "other"}


def _duration(code: int) -> dict[str, Any]:
    """Compressed duration of the previous state (minutes), with the codec's error bound."""
    if code < 90:
        return {"previous_state_duration": code, "previous_state_duration_error": 0,
                "previous_state_duration_overflow": False}
    if code < 120:
        return {"previous_state_duration": 90 + (code - 90) * 5, "previous_state_duration_error": 4,
                "previous_state_duration_overflow": False}
    if code < 127:
        return {"previous_state_duration": 240 + (code - 120) * 60, "previous_state_duration_error": 59,
                "previous_state_duration_overflow": False}
    return {"previous_state_duration": 660, "previous_state_duration_overflow": True}


def battery_health(millivolts: int, temperature: float) -> str:
    """Vendor thresholds; cold cells sag, so the limits drop by 100 mV below −5 °C."""
    cold = temperature < -5
    if millivolts >= (2900 if cold else 3000):
        return "normal"
    if millivolts >= (2800 if cold else 2900):
        return "low"
    return "critical"


def decode_nps405(payload: bytes, f_port: int | None) -> dict[str, Any]:
    """Decode one NPS405 payload; the ``kind`` key is ``status``, ``heartbeat`` or ``startup``."""
    if not isinstance(payload, (bytes, bytearray)):
        raise DecodeError(BAD_PAYLOAD, "payload is not bytes")
    payload = bytes(payload)
    if f_port == 1:
        if len(payload) != 1:
            raise DecodeError(BAD_LENGTH, f"nwave-nps405 fPort 1: expected 1 byte, got {len(payload)}")
        return {"kind": "status", "occupied": bool(payload[0] & 0x01), **_duration(payload[0] >> 1)}
    if f_port == 2:
        if len(payload) != 6:
            raise DecodeError(BAD_LENGTH, f"nwave-nps405 fPort 2: expected 6 bytes, got {len(payload)}")
        millivolts = 2500 + payload[1] * 4
        temperature = int.from_bytes(payload[2:3], "big", signed=True) / 2 + 10
        return {
            "kind": "heartbeat",
            "occupied": bool(payload[0] & 0x01),
            "hw_health_status": payload[0] & 0x7F,   # the vendor codec keeps bit0 in it too
            "sensor_temperature": temperature,
            "battery_voltage": millivolts / 1000,
            "battery_health": battery_health(millivolts, temperature),
        }
    if f_port == 3:
        if len(payload) != 5:
            raise DecodeError(BAD_LENGTH, f"nwave-nps405 fPort 3: expected 5 bytes, got {len(payload)}")
        return {
            "kind": "startup",
            "firmware_version": f"{payload[0]}.{payload[1]}.{payload[2]}",
            "reset_cause": RESET_CAUSES.get(payload[3], "other"),
            "occupied": bool(payload[4] & 0x01),
        }
    if f_port == 10:
        raise ReadingDropped(SDI_TAG_REGISTRATION, "nwave-nps405 fPort 10 (SDI tag) carries no occupancy")
    raise DecodeError(UNKNOWN_FPORT, f"nwave-nps405 has no frame on fPort {f_port}")

"""Bosch Parking Lot Sensor TPS110 (firmware 0.29.x) uplink payloads.

fPort 1: occupancy change, fPort 2: heartbeat (occupancy + optional temperature),
fPort 3: start-up frame (debug codes, firmware version, reset cause, occupancy).
"""
from __future__ import annotations

from typing import Any

from stadtlink.adapters.core.errors import DecodeError
from stadtlink.adapters.core.reasons import BAD_LENGTH, BAD_PAYLOAD, UNKNOWN_FPORT

RESET_CAUSES = {1: "watchdog", 2: "power on", 3: "system request", 4: "other"}


def _require_length(payload: bytes, f_port: int, allowed: tuple[int, ...]) -> None:
    if len(payload) not in allowed:
        want = " or ".join(str(n) for n in allowed)
        raise DecodeError(BAD_LENGTH, f"bosch-tps110 fPort {f_port}: expected {want} bytes, got {len(payload)}")


def decode_tps110(payload: bytes, f_port: int | None) -> dict[str, Any]:
    """Decode one TPS110 payload; the ``kind`` key is ``status``, ``heartbeat`` or ``startup``."""
    if not isinstance(payload, (bytes, bytearray)):
        raise DecodeError(BAD_PAYLOAD, "payload is not bytes")
    payload = bytes(payload)
    if f_port == 1:
        _require_length(payload, 1, (1,))
        return {"kind": "status", "occupied": bool(payload[0] & 0x01)}
    if f_port == 2:
        _require_length(payload, 2, (1, 2))
        out: dict[str, Any] = {"kind": "heartbeat", "occupied": bool(payload[0] & 0x01)}
        if len(payload) == 2:
            out["sensor_temperature"] = int.from_bytes(payload[1:2], "big", signed=True)
        return out
    if f_port == 3:
        _require_length(payload, 3, (17,))
        codes = []
        for slot in range(3):
            # each 4-byte slot starts with a little-endian pair carrying a 12-bit debug code; 0 = empty slot
            code = int.from_bytes(payload[slot * 4:slot * 4 + 2], "little") & 0x0FFF
            if code:
                codes.append(code)
        return {
            "kind": "startup",
            "debug_codes": codes,
            "firmware_version": f"{payload[12]}.{payload[13]}.{payload[14]}",
            "reset_cause": RESET_CAUSES.get(payload[15], "other"),
            "occupied": bool(payload[16] & 0x01),
        }
    raise DecodeError(UNKNOWN_FPORT, f"bosch-tps110 has no frame on fPort {f_port}")

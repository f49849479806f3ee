"""The water-level family's decoding profiles, by the names used in config and ``stadtlink decode``."""
from __future__ import annotations

from stadtlink.adapters.core.adapter import FunctionProfile, LoRaWANProfile, Profile

from .decoders import decode_dl_mbx, decode_em500_udl, decode_ldds75, decode_pegelonline

DL_MBX = LoRaWANProfile("decentlab-dl-mbx", "Decentlab DL-MBX ultrasonic distance sensor (protocol v2)", decode_dl_mbx)
EM500_UDL = LoRaWANProfile("milesight-em500-udl", "Milesight EM500-UDL ultrasonic distance sensor (TLV)",
                           decode_em500_udl)
LDDS75 = LoRaWANProfile("dragino-ldds75", "Dragino LDDS75 ultrasonic distance sensor (fPort 2)", decode_ldds75)
PEGELONLINE = FunctionProfile("pegelonline", "http", "PEGELONLINE REST API v2 stations / current measurement",
                              decode_pegelonline)

PROFILES: dict[str, Profile] = {p.name: p for p in (DL_MBX, EM500_UDL, LDDS75, PEGELONLINE)}

__all__ = ["DL_MBX", "EM500_UDL", "LDDS75", "PEGELONLINE", "PROFILES"]

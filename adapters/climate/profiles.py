"""The climate adapter's decoding profiles, by the names used in config and ``stadtlink decode``."""
from __future__ import annotations

from stadtlink.adapters.core.adapter import LoRaWANProfile, Profile
from stadtlink.adapters.core.jsonmap import JSON_MAP_PROFILE

from .decoders import decode_dl_atm41, decode_meteohelix

DL_ATM41 = LoRaWANProfile(
    name="decentlab-dl-atm41",
    description="Decentlab DL-ATM41 weather station (METER ATMOS 41), Decentlab v2 frame on fPort 1, "
                "in TTS v3 or ChirpStack v4 uplinks",
    payload_decoder=decode_dl_atm41,
)

METEOHELIX = LoRaWANProfile(
    name="barani-meteohelix",
    description="Barani MeteoHelix IoT Pro, 11-byte bit-packed type-1 message (10-min averages, min/max, "
                "rain click counter), in TTS v3 or ChirpStack v4 uplinks",
    payload_decoder=decode_meteohelix,
)


#: json-map: the runtime's generic profile for stations whose network server already decodes
PROFILES: dict[str, Profile] = {p.name: p for p in (DL_ATM41, METEOHELIX, JSON_MAP_PROFILE)}

__all__ = ["DL_ATM41", "METEOHELIX", "PROFILES"]

"""Parking: LoRaWAN spot sensors and car-park feeds → ParkingSpot, OffStreetParking, ParkingGroup, Device.

See README.md in this folder for devices, feeds, the mapping table and a complete config.
"""
from __future__ import annotations

from pathlib import Path

from stadtlink.adapters.core.adapter import AdapterSpec
from stadtlink.adapters.core.shared import DeriveHook

from .mapper import derive_options, derive_sites, map_reading, tick
from .profiles import PROFILES
from .settings import ParkingSettings
from .simulator import DEMO

PACKAGE_DIR = Path(__file__).resolve().parent

ADAPTER = AdapterSpec(
    name="parking",
    description="Parking spot sensors (Bosch TPS110, Nwave NPS405 over TTS v3 / ChirpStack v4) and car-park feeds "
                "(DATEX II, ParkAPI) → ParkingSpot, OffStreetParking, ParkingGroup, Device",
    profiles=PROFILES,
    mapper=map_reading,
    semantics="latest-state",
    settings_model=ParkingSettings,
    entity_types=("ParkingSpot", "OffStreetParking", "ParkingGroup", "Device"),
    example_config=PACKAGE_DIR / "example-config.yaml",
    tick=tick,
    tick_interval=30.0,
    # site_state: shared — site aggregates computed by one replica at a time from spot states in Redis
    derive=DeriveHook(compute=derive_sites, options=derive_options, setting="settings.site_state"),
    demo=DEMO,
)

__all__ = ["ADAPTER", "map_reading", "tick", "ParkingSettings", "PROFILES"]

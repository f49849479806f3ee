"""Klimamessnetz weather stations → WeatherObserved (+ Device, DeviceMeasurement).

Profiles: ``decentlab-dl-atm41``, ``barani-meteohelix`` (LoRaWAN, decoded from the raw bytes) and the
runtime's ``json-map`` (stations whose network server already decodes). See README.md.
"""
from __future__ import annotations

from pathlib import Path

from stadtlink.adapters.core.adapter import AdapterSpec

from .mapper import map_reading
from .profiles import PROFILES
from .settings import ClimateSettings
from .simulator import DEMO

PACKAGE_DIR = Path(__file__).resolve().parent

ADAPTER = AdapterSpec(
    name="climate",
    description="Klimamessnetz weather stations (Decentlab DL-ATM41, Barani MeteoHelix, decoded JSON) "
                "→ WeatherObserved, Device, DeviceMeasurement",
    profiles=PROFILES,
    mapper=map_reading,
    semantics="time-series",
    settings_model=ClimateSettings,
    entity_types=("WeatherObserved", "Device", "DeviceMeasurement"),
    example_config=PACKAGE_DIR / "example-config.yaml",
    demo=DEMO,
)

__all__ = ["ADAPTER", "ClimateSettings", "map_reading"]

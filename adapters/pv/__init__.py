"""PV inverters → ThreePhaseAcMeasurement, Device, DeviceMeasurement (+ optional PhotovoltaicMeasurement).

Profiles: ``sunspec`` (Modbus TCP, SunSpec models 1, 101/102/103, 701, 160) and ``fronius-solarapi``
(Fronius Solar API v1 over HTTP). See README.md for the mapping table and decisions.
"""
from __future__ import annotations

from pathlib import Path

from stadtlink.adapters.core.adapter import AdapterSpec

from .mapper import map_reading
from .profiles import FRONIUS_PROFILE, PROFILES, SUNSPEC_PROFILE
from .settings import PvSettings
from .simulator import DEMO

PACKAGE_DIR = Path(__file__).parent

ADAPTER = AdapterSpec(
    name="pv",
    description="PV inverters over SunSpec Modbus TCP and the Fronius Solar API v1 → ThreePhaseAcMeasurement "
                "(+ Device, DeviceMeasurement per DC input, optional PhotovoltaicMeasurement)",
    profiles=PROFILES,
    mapper=map_reading,
    # every poll is an observation of a quantity that changes continuously: keep the history (temporal API)
    semantics="time-series",
    settings_model=PvSettings,
    entity_types=("ThreePhaseAcMeasurement", "Device", "DeviceMeasurement", "PhotovoltaicMeasurement"),
    example_config=PACKAGE_DIR / "example-config.yaml",
    demo=DEMO,
)

__all__ = ["ADAPTER", "FRONIUS_PROFILE", "SUNSPEC_PROFILE", "PvSettings", "map_reading"]

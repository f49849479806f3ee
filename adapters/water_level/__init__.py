"""Water-level adapter (Pegelsensoren): river gauges → FloodMonitoring, WaterObserved, Alert."""
from pathlib import Path

from stadtlink.adapters.core.adapter import AdapterSpec

from .mapper import map_reading
from .profiles import PROFILES
from .settings import WaterLevelSettings
from .simulator import DEMO

HERE = Path(__file__).resolve().parent

ADAPTER = AdapterSpec(
    name="water_level",
    description="River gauges (LoRaWAN distance sensors, PEGELONLINE) → FloodMonitoring, WaterObserved, Alert",
    profiles=PROFILES,
    mapper=map_reading,
    semantics="time-series",
    settings_model=WaterLevelSettings,
    entity_types=("FloodMonitoring", "WaterObserved", "Alert", "Device"),
    example_config=HERE / "example-config.yaml",
    demo=DEMO,
)

__all__ = ["ADAPTER", "PROFILES", "WaterLevelSettings", "map_reading"]

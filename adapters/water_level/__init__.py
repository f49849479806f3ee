"""Water-level adapter (Pegelsensoren): river gauges → FloodMonitoring, WaterObserved, Alert."""
from pathlib import Path

from stadtlink.adapters.core.adapter import AdapterSpec, FunctionProfile, LoRaWANProfile

from .decoders import decode_dl_mbx, decode_em500_udl, decode_ldds75, decode_pegelonline
from .mapper import map_reading
from .settings import WaterLevelSettings
from .simulator import DEMO

HERE = Path(__file__).resolve().parent

PROFILES = {
    p.name: p
    for p in (
        LoRaWANProfile("decentlab-dl-mbx", "Decentlab DL-MBX ultrasonic distance sensor (protocol v2)", decode_dl_mbx),
        LoRaWANProfile("milesight-em500-udl", "Milesight EM500-UDL ultrasonic distance sensor (TLV)", decode_em500_udl),
        LoRaWANProfile("dragino-ldds75", "Dragino LDDS75 ultrasonic distance sensor (fPort 2)", decode_ldds75),
        FunctionProfile("pegelonline", "http", "PEGELONLINE REST API v2 stations / current measurement",
                        decode_pegelonline),
    )
}

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

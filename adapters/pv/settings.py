"""The PV adapter's ``settings:`` section."""
from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class PvSettings(BaseModel):
    """Which entities the PV adapter writes besides ThreePhaseAcMeasurement (always written)."""

    model_config = ConfigDict(extra="forbid")

    device_entities: bool = Field(True, description="a Device entity per inverter (manufacturer, model, serial, "
                                                    "firmware, deviceState)")
    dc_measurements: bool = Field(True, description="a DeviceMeasurement per DC input / MPPT tracker when reported")
    site_entities: bool = Field(True, description="Fronius power flow: ThreePhaseAcMeasurement for the grid "
                                                  "connection (<device>-grid), the site's PV (<device>-pv) and "
                                                  "the load (<device>-load)")
    photovoltaic_measurement: bool = Field(False, description="also a PhotovoltaicMeasurement (kW) per inverter; "
                                                              "needs lat/lon and energy_metering_started in the "
                                                              "registry record")

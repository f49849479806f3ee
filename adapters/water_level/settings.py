"""The ``settings:`` section of a water-level adapter config."""
from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class ForecastConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    enabled: bool = True
    window_min: float = Field(60.0, gt=0, description="readings of the last N minutes give the rate of rise")
    horizon_min: float = Field(180.0, gt=0, description="warn when a threshold would be reached within N minutes")
    min_points: int = Field(4, ge=2)
    min_span_min: float = Field(15.0, ge=0)
    min_rise_m_per_h: float = Field(0.02, gt=0)
    min_r2: float = Field(0.5, ge=0, le=1)


class WaterLevelSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")
    hysteresis_m: float = Field(0.05, ge=0, description="a level must fall this far below a threshold to clear it")
    forecast: ForecastConfig = ForecastConfig()
    battery_empty_v: float = Field(2.5, gt=0, description="battery voltage taken as 0 % (Li-SOCl2 cells)")
    battery_full_v: float = Field(3.6, gt=0, description="battery voltage taken as 100 %")
    alert_category: str = Field("environment", pattern="^(environment|naturalDisaster|weather)$")

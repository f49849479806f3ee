"""The climate adapter's ``settings:`` section."""
from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

#: Physical ranges (inclusive) per reading key, in the reading's units (see decoders.READING_KEYS).
#: A value outside its range is dropped (counted), the rest of the reading is still written.
DEFAULT_PLAUSIBLE: dict[str, tuple[float, float]] = {
    "air_temperature": (-60.0, 70.0),
    "air_temperature_min": (-60.0, 70.0),
    "air_temperature_max": (-60.0, 70.0),
    "relative_humidity": (0.0, 1.0),
    "atmospheric_pressure": (50000.0, 110000.0),      # Pa = 500..1100 hPa
    "solar_radiation": (0.0, 2000.0),
    "solar_radiation_max": (0.0, 2000.0),
    "illuminance": (0.0, 200000.0),
    "wind_speed": (0.0, 75.0),
    "wind_gust": (0.0, 75.0),
    "wind_direction": (0.0, 360.0),
    "precipitation": (0.0, 50.0),                     # mm per message (≈ 10 min)
    "vapour_pressure": (0.0, 20000.0),                # Pa
    "lightning_count": (0.0, 65535.0),
    "lightning_distance": (0.0, 100.0),               # km
    "sensor_temperature": (-60.0, 85.0),
    "tilt_x": (-90.0, 90.0),
    "tilt_y": (-90.0, 90.0),
    "compass_heading": (0.0, 360.0),
    "battery_level": (0.0, 1.0),
    "battery_voltage": (0.0, 10.0),
    "rain_counter": (0.0, 255.0),
    "rain_min_click_interval": (0.0, 86400.0),
    "rain_intensity_max": (0.0, 2000.0),             # mm/h
    "dew_point": (-80.0, 70.0),
}

#: Battery voltage that counts as empty / full per profile (linear estimate for Device.batteryLevel).
#: DL-ATM41: lithium primary cells (3.6 V nominal); MeteoHelix: solar-charged cell (3.0 + n·0.05 V scale).
DEFAULT_BATTERY_RANGES: dict[str, tuple[float, float]] = {
    "decentlab-dl-atm41": (3.0, 3.6),
    "barani-meteohelix": (3.3, 4.2),
    "json-map": (3.0, 4.2),
}


#: DeviceMeasurement quantities the mapper knows (controlledProperty values; mapper.MEASUREMENT_ROWS).
MEASUREMENT_NAMES: tuple[str, ...] = (
    "temperatureMin", "temperatureMax", "solarRadiationMax", "vapourPressure", "lightningCount",
    "lightningDistance", "precipitationIntensityMax", "sensorTemperature", "tiltX", "tiltY", "batteryVoltage",
)


class ClimateSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    rain_gauge_mm: float = Field(
        0.2, gt=0, le=10,
        description="Rain gauge resolution in mm per click (MeteoHelix revolving counter). A station's "
                    "registry field `rain_gauge_mm` overrides it.")
    rain_max_gap_s: float = Field(
        3600.0, gt=0,
        description="A previous rain counter older than this is not trusted (the 8-bit counter may have "
                    "wrapped more than once): the message sets a new baseline and carries no precipitation.")
    compute_dew_point: bool = Field(True, description="Add dewPoint (Magnus formula) when temperature and humidity are present.")
    plausible: dict[str, tuple[float, float]] = Field(
        default_factory=dict,
        description="Overrides of the physical ranges per reading key, e.g. {air_temperature: [-40, 50]}.")
    battery_ranges: dict[str, tuple[float, float]] = Field(
        default_factory=dict,
        description="Empty/full battery voltage per profile, overriding the defaults.")
    device_measurements: list[str] | None = Field(
        None,
        description="Which DeviceMeasurement quantities to write (controlledProperty names); null = all.")

    @field_validator("plausible")
    @classmethod
    def _ranges_ordered(cls, value: dict[str, tuple[float, float]]) -> dict[str, tuple[float, float]]:
        for key, (low, high) in value.items():
            if low > high:
                raise ValueError(f"plausible.{key}: lower bound {low} is above upper bound {high}")
        return value

    @field_validator("device_measurements")
    @classmethod
    def _known_measurements(cls, value: list[str] | None) -> list[str] | None:
        unknown = sorted(set(value or ()) - set(MEASUREMENT_NAMES))
        if unknown:
            raise ValueError(f"unknown DeviceMeasurement quantities {unknown}; known: {', '.join(MEASUREMENT_NAMES)}")
        return value

    @model_validator(mode="after")
    def _battery_ordered(self) -> ClimateSettings:
        for key, (empty, full) in self.battery_ranges.items():
            if full <= empty:
                raise ValueError(f"battery_ranges.{key}: full voltage must be above empty voltage")
        return self

    def plausible_range(self, key: str) -> tuple[float, float] | None:
        return self.plausible.get(key) or DEFAULT_PLAUSIBLE.get(key)

    def battery_range(self, profile: str) -> tuple[float, float] | None:
        return self.battery_ranges.get(profile) or DEFAULT_BATTERY_RANGES.get(profile)

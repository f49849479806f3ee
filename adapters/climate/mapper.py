"""Station reading → WeatherObserved + Device + DeviceMeasurement (normalized NGSI-LD).

Every profile (DL-ATM41, MeteoHelix, json-map) delivers the same reading keys
(:data:`stadtlink.adapters.climate.decoders.READING_KEYS`); this module maps them by two tables of rows.

Order of work for one reading:

1. station from the registry (location is required, name optional);
2. MeteoHelix rain counter → ``precipitation`` (state in ``ctx.state``, see :mod:`.rain`);
3. plausibility: a value outside its row's valid range (``settings.plausible`` may override it) is
   left out — the rest is still written. The refusal is recorded in ``reading.meta["dropped"]``
   (``{attribute: reason}``), which the runtime counts in ``stadtlink_values_rejected_total``;
4. ``dewPoint`` from temperature and humidity (Magnus formula);
5. entities: WeatherObserved (if any weather value is left), Device (always), one
   DeviceMeasurement per further quantity.
"""
from __future__ import annotations

import math
from dataclasses import replace
from typing import Any

from stadtlink.adapters.core.adapter import MapContext
from stadtlink.adapters.core.device import battery_fraction_from_voltage, device_entity
from stadtlink.adapters.core.entity import (
    REJECT_IMPLAUSIBLE,
    REJECT_NOT_A_NUMBER,
    Measure,
    datetime_prop,
    entity_id,
    geo_point,
    new_entity,
    prop,
    note_rejected,
    rel,
)
from stadtlink.adapters.core.reading import Reading

from .decoders import READING_KEYS
from .rain import rain_step
from .settings import DEFAULT_PLAUSIBLE, MEASUREMENT_NAMES, ClimateSettings


def _with_ranges(rows: tuple[Measure, ...]) -> tuple[Measure, ...]:
    """Each row's valid range is its reading key's physical range (settings.DEFAULT_PLAUSIBLE, which a
    deployment's ``settings.plausible`` overrides per key)."""
    return tuple(replace(r, valid_range=DEFAULT_PLAUSIBLE.get(r.source)) for r in rows)


def _hpa(pa: float) -> float:
    return round(pa / 100.0, 2)


def _kpa(pa: float) -> float:
    return round(pa / 1000.0, 3)


#: WeatherObserved attributes (dataModel.Weather, reference §2.3).
WEATHER_ROWS: tuple[Measure, ...] = _with_ranges((
    Measure("air_temperature", "temperature", "CEL"),
    Measure("relative_humidity", "relativeHumidity", "C62"),
    Measure("atmospheric_pressure", "atmosphericPressure", "A97", _hpa),
    Measure("solar_radiation", "solarRadiation", "D54"),
    Measure("illuminance", "illuminance", "LUX"),
    Measure("wind_speed", "windSpeed", "MTS"),
    Measure("wind_gust", "gustSpeed", "MTS"),
    Measure("wind_direction", "windDirection", "DD"),
    Measure("precipitation", "precipitation", "MMT"),
    Measure("dew_point", "dewPoint", "CEL"),
))

#: Quantities without a WeatherObserved attribute → DeviceMeasurement (attribute = controlledProperty).
MEASUREMENT_ROWS: tuple[Measure, ...] = _with_ranges((
    Measure("air_temperature_min", "temperatureMin", "CEL"),
    Measure("air_temperature_max", "temperatureMax", "CEL"),
    Measure("solar_radiation_max", "solarRadiationMax", "D54"),
    Measure("vapour_pressure", "vapourPressure", "KPA", _kpa),
    Measure("lightning_count", "lightningCount", "C62"),
    Measure("lightning_distance", "lightningDistance", "KMT"),
    Measure("rain_intensity_max", "precipitationIntensityMax", "H67"),
    Measure("sensor_temperature", "sensorTemperature", "CEL"),
    Measure("tilt_x", "tiltX", "DD"),
    Measure("tilt_y", "tiltY", "DD"),
    Measure("battery_voltage", "batteryVoltage", "VLT"),
))

assert tuple(r.attribute for r in MEASUREMENT_ROWS) == MEASUREMENT_NAMES

_ATTRIBUTE_OF: dict[str, str] = {r.source: r.attribute for r in WEATHER_ROWS + MEASUREMENT_ROWS}
_ATTRIBUTE_OF.update(battery_level="batteryLevel", rain_counter="precipitation",
                     rain_min_click_interval="precipitationIntensityMax")

#: Device.controlledProperty per profile (SDM enum values).
CONTROLLED: dict[str, tuple[str, ...]] = {
    "decentlab-dl-atm41": ("temperature", "humidity", "atmosphericPressure", "solarRadiation",
                           "precipitation", "windSpeed", "windDirection"),
    "barani-meteohelix": ("temperature", "humidity", "atmosphericPressure", "solarRadiation", "precipitation"),
}
#: For other profiles (json-map): reading key → controlledProperty enum value.
_CONTROLLED_BY_KEY: dict[str, str] = {
    "air_temperature": "temperature", "relative_humidity": "humidity",
    "atmospheric_pressure": "atmosphericPressure", "solar_radiation": "solarRadiation",
    "illuminance": "light", "precipitation": "precipitation", "rain_counter": "precipitation",
    "wind_speed": "windSpeed", "wind_direction": "windDirection",
}
DESCRIPTIONS: dict[str, str] = {
    "decentlab-dl-atm41": "Decentlab DL-ATM41 weather station (METER ATMOS 41)",
    "barani-meteohelix": "Barani MeteoHelix IoT Pro weather station",
}

# Magnus formula over water, constants of Sonntag (1990): valid about −45..60 °C.
MAGNUS_A = 17.62
MAGNUS_B = 243.12  # °C


def dew_point(temperature_c: float, relative_humidity: float) -> float | None:
    """Dew point in °C from air temperature (°C) and relative humidity (fraction 0..1).

    Magnus: γ = ln(RH) + a·T / (b + T), Td = b·γ / (a − γ). None for RH ≤ 0 (no dew point).
    """
    if relative_humidity <= 0:
        return None
    gamma = math.log(relative_humidity) + MAGNUS_A * temperature_c / (MAGNUS_B + temperature_c)
    return round(MAGNUS_B * gamma / (MAGNUS_A - gamma), 2)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _drop(reading: Reading, key: str, reason: str) -> None:
    note_rejected(reading, {_ATTRIBUTE_OF.get(key, key): reason})


#: json-map readings may name their values by the attribute (in the attribute's unit) instead of by
#: the reading key: attribute → (reading key, factor from the attribute's unit to the reading key's).
ATTRIBUTE_ALIASES: dict[str, tuple[str, float]] = {
    **{r.attribute: (r.source, 1.0) for r in WEATHER_ROWS + MEASUREMENT_ROWS},
    "atmosphericPressure": ("atmospheric_pressure", 100.0),    # hPa → Pa
    "vapourPressure": ("vapour_pressure", 1000.0),             # kPa → Pa
    "batteryLevel": ("battery_level", 1.0),
    "rainCounter": ("rain_counter", 1.0),
    "precipitationIntensityMax": ("rain_intensity_max", 1.0),
}


def reading_values(values: dict[str, Any]) -> dict[str, Any]:
    """Values by reading key: attribute-named values (json-map) translated; a reading key wins."""
    out: dict[str, Any] = {}
    for key, value in values.items():
        alias = ATTRIBUTE_ALIASES.get(key)
        if alias is None or key in READING_KEYS:
            out[key] = value
            continue
        target, factor = alias
        if target in values:
            continue
        if factor != 1.0 and _is_number(value):
            value = round(value * factor, 6)
        out[target] = value
    return out


def plausible_values(reading: Reading, settings: ClimateSettings) -> dict[str, Any]:
    """The reading's values without the implausible ones (each drop recorded in the reading's meta)."""
    kept: dict[str, Any] = {}
    for key, value in reading_values(reading.values).items():
        if key not in READING_KEYS:
            continue                      # not ours to map (e.g. a json-map extra): ignored
        if key == "device_serial":
            kept[key] = value
            continue
        if isinstance(value, str):        # a decoder that sends numbers as text ("12.5")
            try:
                value = float(value.strip())
            except ValueError:
                pass
        if not _is_number(value):
            _drop(reading, key, REJECT_NOT_A_NUMBER)
            continue
        bounds = settings.plausible_range(key)
        if bounds is None:
            kept[key] = value
        elif not bounds[0] <= value <= bounds[1]:
            _drop(reading, key, REJECT_IMPLAUSIBLE)
        else:
            kept[key] = value
    return kept


def _rain(reading: Reading, values: dict[str, Any], station, ctx: MapContext, settings: ClimateSettings) -> None:
    """Rain counter → precipitation (mm since the last message), max click rate → mm/h."""
    resolution = station.get("rain_gauge_mm")
    if not _is_number(resolution) or resolution <= 0:
        resolution = settings.rain_gauge_mm
    counter = values.pop("rain_counter", None)
    if counter is not None:
        if isinstance(counter, float) and counter.is_integer():
            counter = int(counter)
        if not isinstance(counter, int):
            _drop(reading, "precipitation", "bad-rain-counter")
        else:
            f_cnt = reading.meta.get("f_cnt")
            step = rain_step(ctx.state, station.id, counter, reading.observed_at,
                             f_cnt if isinstance(f_cnt, int) else None,
                             resolution_mm=resolution, max_gap_s=settings.rain_max_gap_s)
            reading.meta["rain"] = step.outcome
            if step.precipitation is not None:
                values["precipitation"] = step.precipitation
    interval = values.pop("rain_min_click_interval", None)
    if _is_number(interval) and interval > 0:
        values["rain_intensity_max"] = round(resolution * 3600.0 / interval, 1)


def _battery_level(values: dict[str, Any], profile: str, settings: ClimateSettings) -> float | None:
    level = values.get("battery_level")
    if level is not None:
        return level
    volts = values.get("battery_voltage")
    rng = settings.battery_range(profile) or settings.battery_range("json-map")
    if volts is None or rng is None:
        return None
    return battery_fraction_from_voltage(volts, *rng)


def map_reading(reading: Reading, ctx: MapContext[ClimateSettings]) -> list[dict]:
    settings = ctx.settings
    station = ctx.require_device(reading)
    lonlat = ctx.require(station, "location")
    name = station.name
    t = reading.observed_at
    ns = ctx.namespace
    device_urn = entity_id("Device", ns, station.id)

    values = plausible_values(reading, settings)
    _rain(reading, values, station, ctx, settings)
    # Derived values pass the same ranges (a precipitation from a reset counter may be absurd).
    for key in ("precipitation", "rain_intensity_max"):
        if key in values:
            bounds = settings.plausible_range(key)
            if bounds and not bounds[0] <= values[key] <= bounds[1]:
                values.pop(key)
                _drop(reading, key, REJECT_IMPLAUSIBLE)
    if settings.compute_dew_point and "air_temperature" in values and "relative_humidity" in values:
        dp = dew_point(values["air_temperature"], values["relative_humidity"])
        if dp is not None:
            values["dew_point"] = dp

    entities: list[dict] = []
    common = {
        "location": geo_point(*lonlat) if lonlat else None,
        "name": prop(name) if name else None,
    }

    weather = new_entity(entity_id("WeatherObserved", ns, station.id), "WeatherObserved",
                         dateObserved=datetime_prop(t), **common)
    measured = 0
    for row in WEATHER_ROWS:
        raw = values.get(row.source)
        if raw is None:
            continue
        weather[row.attribute] = prop(row.convert(raw) if row.convert else raw, unit=row.unit, observed_at=t)
        measured += 1
    if measured:
        weather["refDevice"] = rel(device_urn)
        entities.append(weather)

    controlled = CONTROLLED.get(reading.profile) or tuple(
        dict.fromkeys(_CONTROLLED_BY_KEY[k] for k in reading_values(reading.values) if k in _CONTROLLED_BY_KEY)) or ("weatherConditions",)
    extra: dict[str, Any] = {}
    if reading.values.get("device_serial") is not None:
        extra["serialNumber"] = prop(str(reading.values["device_serial"]))
    if reading.profile in DESCRIPTIONS:
        extra["description"] = prop(DESCRIPTIONS[reading.profile])
    rssi = reading.meta.get("rssi")
    device = device_entity(ns, station.id, controlled_property=controlled, observed_at=t,
                           battery_level=_battery_level(values, reading.profile, settings),
                           rssi=rssi if _is_number(rssi) else None, name=name, lonlat=lonlat,
                           supported_protocol=("lora",) if reading.meta.get("network") else None,
                           extra=extra)
    entities.append(device)

    wanted = set(settings.device_measurements) if settings.device_measurements is not None else None
    for row in MEASUREMENT_ROWS:
        raw = values.get(row.source)
        if raw is None or (wanted is not None and row.attribute not in wanted):
            continue
        if row.source == "lightning_distance" and not values.get("lightning_count"):
            continue  # no strikes: the distance word is 0 and means nothing
        entities.append(new_entity(
            entity_id("DeviceMeasurement", ns, f"{station.id}-{row.attribute}"), "DeviceMeasurement",
            numValue=prop(row.convert(raw) if row.convert else raw, unit=row.unit, observed_at=t),
            unit=prop(row.unit),
            controlledProperty=prop(row.attribute),
            refDevice=rel(device_urn),
            dateObserved=datetime_prop(t),
            **common,
        ))
    return entities


__all__ = [
    "CONTROLLED",
    "MEASUREMENT_ROWS",
    "WEATHER_ROWS",
    "dew_point",
    "map_reading",
    "plausible_values",
]

"""Readings of river gauges → FloodMonitoring / WaterObserved, Device and Alert entities.

LoRaWAN distance sensors give FloodMonitoring (the raw distance is kept): ``currentLevel =
referenceLevel − measuredDistance``. PEGELONLINE stations give WaterObserved. Both feed the same
alert logic (alerts.py) when the registry gives the station an ``alert_level`` / ``danger_level``.

Below gauge zero: PEGELONLINE's W may be negative, but SDM ``waterLevel`` has minimum 0. Then
``waterLevel`` is left out (never an invalid entity) and the signed value is kept in
``waterLevelRelativeToGaugeZero`` (m, may be negative; a stadtlink attribute, not SDM), which is
written for every reading so the series has no hole.

Valid ranges and sentinels (the tables below): a distance equal to its sensor's "no reading" code
(an all-ones 16-bit word, 65.535 m) or beyond the sensor's range, and a PEGELONLINE level or flow
outside what any German gauge can report (an API's 1e306), are left out of the entity and counted
(``stadtlink_values_rejected_total``); the rest of the reading is written.
"""
from __future__ import annotations

from datetime import datetime
from typing import Any

from stadtlink.adapters.core.adapter import MapContext
from stadtlink.adapters.core.device import battery_fraction_from_voltage, device_for_reading
from stadtlink.adapters.core.entity import (
    Measure,
    datetime_prop,
    entity_id,
    geo_point,
    new_entity,
    prop,
    note_rejected,
    rel,
    set_measurements,
)
from stadtlink.adapters.core.reading import Reading
from stadtlink.adapters.core.registry import DeviceRecord
from stadtlink.adapters.core.timeutil import from_epoch

from .alerts import AlertEvent, ForecastSettings, Thresholds, forecast_events, threshold_events
from .settings import WaterLevelSettings


#: An all-ones 16-bit distance word in mm: the sensors' "no reading" code (no target, sensor fault).
ALL_ONES_MM = 0xFFFF / 1000.0

#: measuredDistance per profile: the sensor's measuring range (datasheets: DL-MBX MaxBotix
#: MB7389/MB7369 up to 5 m / 10 m, EM500-UDL up to 15 m, LDDS75 0.28–7.5 m; the lower limits are
#: the decoders' minimum distances) and its sentinel.
DISTANCE_ROWS: dict[str, Measure] = {
    "decentlab-dl-mbx": Measure("distance", "measuredDistance", "MTR", valid_range=(0.0, 10.0),
                                sentinels=(ALL_ONES_MM,)),
    "milesight-em500-udl": Measure("distance", "measuredDistance", "MTR", valid_range=(0.0, 15.0),
                                   sentinels=(ALL_ONES_MM,)),
    "dragino-ldds75": Measure("distance", "measuredDistance", "MTR", valid_range=(0.0, 7.5),
                              sentinels=(ALL_ONES_MM,)),
}
#: any other distance profile (json-map, an integrator's sensor): the range of the widest above
DEFAULT_DISTANCE_ROW = Measure("distance", "measuredDistance", "MTR", valid_range=(0.0, 15.0))

#: PEGELONLINE W relative to gauge zero, m: the highest German gauge readings are about 13 m above
#: gauge zero (Rhine, Elbe); a margin of several times that still refuses an API's absurd values.
LEVEL_RANGE = (-50.0, 100.0)
#: PEGELONLINE Q, m³/s: the Rhine's highest discharge is about 12,000 m³/s.
FLOW_RANGE = (0.0, 100_000.0)

#: WaterObserved level attributes (``waterLevel`` only when ≥ 0: the SDM minimum)
WATER_LEVEL_ROWS = (
    Measure("water_level", "waterLevelRelativeToGaugeZero", "MTR", valid_range=LEVEL_RANGE),
    Measure("water_level", "waterLevel", "MTR", lambda v: v if v >= 0 else None, valid_range=LEVEL_RANGE),
    Measure("water_level_above_sea_level", "waterLevelAboveSeaLevel", "MTR"),
)
FLOW_ROWS = (Measure("flow", "flow", "MQS", valid_range=FLOW_RANGE),)


def _settings(ctx: MapContext[WaterLevelSettings]) -> WaterLevelSettings:
    return ctx.settings          # validated by the runtime (AdapterSpec.validate_settings)


def _float(record: DeviceRecord, key: str) -> float | None:
    value = record.get(key)
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def _thresholds(record: DeviceRecord | None, s: WaterLevelSettings) -> Thresholds | None:
    if record is None:
        return None
    alert, danger = _float(record, "alert_level"), _float(record, "danger_level")
    if alert is None and danger is None:
        return None
    return Thresholds(alert=alert, danger=danger, hysteresis=s.hysteresis_m)


def _forecast(s: WaterLevelSettings) -> ForecastSettings:
    f = s.forecast
    return ForecastSettings(window_s=f.window_min * 60, horizon_s=f.horizon_min * 60, min_points=f.min_points,
                            min_span_s=f.min_span_min * 60, min_rise_per_h=f.min_rise_m_per_h, min_r2=f.min_r2)


def _alert_entities(ctx: MapContext, station: str, level: float, at: datetime, th: Thresholds | None,
                    source_id: str, lonlat: tuple[float, float] | None, name: str | None) -> tuple[str | None, list[dict]]:
    if th is None:
        return None, []
    s = _settings(ctx)
    key = f"water_level:alerts:{station}"
    state = dict(ctx.state.get(key) or {})
    status, events = threshold_events(state, station, level, at, th)
    if s.forecast.enabled:
        events += forecast_events(state, station, level, at, th, _forecast(s))
    ctx.state[key] = state
    return status, [_alert_entity(ctx, ev, source_id, lonlat, name, s) for ev in events]


def _alert_entity(ctx: MapContext, ev: AlertEvent, source_id: str, lonlat: tuple[float, float] | None,
                  name: str | None, s: WaterLevelSettings) -> dict:
    ent = new_entity(
        entity_id("Alert", ctx.namespace, ev.episode), "Alert",
        category=prop(s.alert_category),
        subCategory=prop("flood" if ev.kind == "threshold" else "floodRisk"),
        severity=prop(ev.severity),
        alertSource=rel(source_id),
        dateIssued=datetime_prop(ev.started_at if ev.action != "update" else ev.at),
        validFrom=datetime_prop(ev.started_at),
        description=prop(ev.description),
        name=prop(f"{name or source_id}: {'flood' if ev.kind == 'threshold' else 'flood forecast'} {ev.level_name}"),
        data=prop(ev.data, observed_at=ev.at),
        location=geo_point(*lonlat) if lonlat else None,
    )
    if ev.action == "clear":
        ent["validTo"] = datetime_prop(ev.at)
    return ent


def _map_gauge(reading: Reading, ctx: MapContext) -> list[dict]:
    s = _settings(ctx)
    record = ctx.require_device(reading)
    station = str(record.get("station", record.id))
    lonlat = (record.lon, record.lat) if record.has_location else None
    v = reading.values
    at = reading.observed_at
    out: list[dict] = []

    battery = None
    if "battery_level" in v:
        battery = v["battery_level"]
    elif "battery_voltage" in v:
        battery = battery_fraction_from_voltage(v["battery_voltage"], s.battery_empty_v, s.battery_full_v)
    out.append(device_for_reading(ctx.namespace, reading, controlled_property=["waterLevel"], battery_level=battery,
                                  name=record.name, lonlat=lonlat, device_id=record.id))

    row = DISTANCE_ROWS.get(reading.profile, DEFAULT_DISTANCE_ROW)
    rejected: dict[str, str] = {}
    samples: list[tuple[datetime, float]] = [(from_epoch(ts), d) for ts, d in v.get("history", [])
                                             if row.value({"distance": d}, rejected) is not None]
    distance = row.value(v, rejected)
    if distance is not None:
        samples.append((at, distance))
    note_rejected(reading, rejected)
    if not samples:
        return out
    reference = ctx.require(record, "reference_level")
    flood_id = entity_id("FloodMonitoring", ctx.namespace, station)
    th = _thresholds(record, s)
    for when, distance in sorted(samples, key=lambda p: p[0]):
        ent = new_entity(flood_id, "FloodMonitoring",
                         measuredDistance=prop(round(distance, 4), unit="MTR", observed_at=when),
                         stationID=prop(station),
                         observationDateTime=datetime_prop(when),
                         refDevice=rel(entity_id("Device", ctx.namespace, record.id)),
                         name=prop(record.name) if record.name else None,
                         location=geo_point(*lonlat) if lonlat else None)
        if reference is not None:
            level = round(float(reference) - distance, 4)
            ent["referenceLevel"] = prop(float(reference), unit="MTR", observed_at=when)
            ent["currentLevel"] = prop(level, unit="MTR", observed_at=when)
            for key, attr in (("alert_level", "alertLevel"), ("danger_level", "dangerLevel")):
                if _float(record, key) is not None:
                    ent[attr] = prop(_float(record, key), unit="MTR", observed_at=when)
            status, alerts = _alert_entities(ctx, station, level, when, th, flood_id, lonlat, record.name)
            if status is not None:
                ent["floodLevelStatus"] = prop(status, observed_at=when)
            out.append(ent)
            out.extend(alerts)
        else:
            out.append(ent)
    return out


def _map_station(reading: Reading, ctx: MapContext) -> list[dict]:
    v = reading.values
    record = ctx.device(reading)
    lonlat: tuple[float, float] | None = None
    if "lon" in v and "lat" in v:
        lonlat = (v["lon"], v["lat"])
    elif record is not None and record.has_location:
        lonlat = (record.lon, record.lat)
    if lonlat is None:
        # WaterObserved requires a location; without one the entity would be invalid.
        lonlat = ctx.require(record or ctx.require_device(reading), "location")
    name = v.get("name") or (record.name if record else None)
    at = reading.observed_at
    water_id = entity_id("WaterObserved", ctx.namespace, reading.device_id)
    ent = new_entity(water_id, "WaterObserved",
                     dateObserved=datetime_prop(at),
                     location=geo_point(*lonlat) if lonlat else None,
                     name=prop(name) if name else None,
                     description=prop(f"PEGELONLINE gauge on {v['water']}") if v.get("water") else None)
    out = [ent]
    rejected: dict[str, str] = {}
    level = WATER_LEVEL_ROWS[0].value(v, rejected)
    if level is not None:
        values = dict(v)
        if "gauge_zero" in v:
            values["water_level_above_sea_level"] = round(v["gauge_zero"] + level, 4)
        set_measurements(ent, values, WATER_LEVEL_ROWS, at)
        for key, attribute in (("state_mnw_mhw", "stateMnwMhw"), ("state_nsw_hsw", "stateNswHsw")):
            if key in v:
                ent[attribute] = prop(v[key], observed_at=at)
        th = _thresholds(record, _settings(ctx))
        _, alerts = _alert_entities(ctx, reading.device_id, level, at, th, water_id, lonlat, name)
        out.extend(alerts)
    set_measurements(ent, v, FLOW_ROWS, reading.meta.get("flow_observed_at", at), rejected)
    note_rejected(reading, rejected)
    return out


def map_reading(reading: Reading, ctx: MapContext) -> list[dict]:
    if reading.kind == "station":
        return _map_station(reading, ctx)
    return _map_gauge(reading, ctx)


__all__ = ["map_reading"]

"""PV readings → normalized NGSI-LD entities (pure).

One ``inverter`` reading (SunSpec poll, Fronius inverter answer) becomes:

* ``ThreePhaseAcMeasurement`` ``<device>`` — totals, per-phase objects, frequency, exported energy.
  ``totalActivePower`` is **positive when the inverter generates** (feeds power out).
* ``Device`` ``<device>`` — manufacturer, model, serial, firmware, ``deviceState`` (settings.device_entities).
* ``DeviceMeasurement`` ``<device>-dc<n>`` per DC input / MPPT tracker (settings.dc_measurements).
* ``PhotovoltaicMeasurement`` ``<device>`` in kW (settings.photovoltaic_measurement).

A Fronius ``powerflow`` reading becomes ``ThreePhaseAcMeasurement`` ``<device>-grid`` (positive = import
from the grid, negative = feed-in), ``<device>-pv`` (site PV generation) and ``<device>-load``
(positive = consumption) (settings.site_entities).
"""
from __future__ import annotations

import math
from collections.abc import Mapping
from datetime import UTC, date, datetime
from typing import Any

from stadtlink.adapters.core.adapter import MapContext
from stadtlink.adapters.core.entity import (
    REJECT_IMPLAUSIBLE,
    Measure,
    datetime_prop,
    entity_id,
    geo_point,
    new_entity,
    note_rejected,
    prop,
    rel,
    set_measurements,
)
from stadtlink.adapters.core.errors import MappingError
from stadtlink.adapters.core.reading import Reading
from stadtlink.adapters.core.timeutil import TimeFormatError, parse_time

from .settings import PvSettings
from stadtlink.adapters.core.reasons import REGISTRY_FIELD_INVALID


def metering_start(value: Any) -> datetime:
    """A registry ``energy_metering_started`` (ISO 8601 text, a YAML datetime or a YAML date) in UTC."""
    if isinstance(value, date) and not isinstance(value, datetime):
        return datetime(value.year, value.month, value.day, tzinfo=UTC)
    return parse_time(value)


def wh_to_kwh(v: float) -> float:
    return round(v / 1000.0, 6)


def w_to_kw(v: float) -> float:
    return round(v / 1000.0, 6)


def negated(v: float) -> float:
    return -v if v else v


#: Valid ranges, in the reading's units, from the bounds of the Smart Data Models' schemas
#: (ThreePhaseAcMeasurement: energies, apparent power, frequency and voltages ``minimum: 0``, power
#: factor ``-1 … 1``). A value outside is left out and counted (``stadtlink_values_rejected_total``).
#: The devices' own "no reading" codes never get this far: the SunSpec decoder drops each point type's
#: "not implemented" value (0x8000 int16, 0xFFFF uint16, 0x80000000 int32, 0xFFFFFFFF uint32 …,
#: decoders/sunspec.py ``_NOT_IMPLEMENTED``) and Fronius answers ``null``, which the decoder leaves out.
NON_NEGATIVE = (0.0, math.inf)
POWER_FACTOR = (-1.0, 1.0)

#: reading key → ThreePhaseAcMeasurement attribute, unitCode, value function, valid range
AC_TOTALS = (
    Measure("ac_power_w", "totalActivePower", "WTT"),
    Measure("ac_apparent_power_va", "totalApparentPower", "D46", valid_range=NON_NEGATIVE),
    Measure("ac_reactive_power_var", "totalReactivePower", "D44"),
    Measure("power_factor", "totalPowerFactor", "C62", valid_range=POWER_FACTOR),
    Measure("frequency_hz", "frequency", "HTZ", valid_range=NON_NEGATIVE),
    Measure("energy_export_wh", "totalActiveEnergyExport", "KWH", wh_to_kwh, valid_range=NON_NEGATIVE),
    Measure("energy_import_wh", "totalActiveEnergyImport", "KWH", wh_to_kwh, valid_range=NON_NEGATIVE),
)


#: The per-phase object attributes (``{"L1": …, "L2": …, "L3": …}``): which reading keys make up each
#: object (composed in code by :func:`phase_values`), then written by the rows of :data:`AC_PHASES`,
#: whose valid range applies to each member (a refused member is left out of the object).
PHASE_MEMBERS: dict[str, dict[str, str]] = {
    "power_phases": {"L1": "power_l1_w", "L2": "power_l2_w", "L3": "power_l3_w"},
    "current_phases": {"L1": "current_l1_a", "L2": "current_l2_a", "L3": "current_l3_a"},
    "voltage_phases": {"L1": "voltage_l1_v", "L2": "voltage_l2_v", "L3": "voltage_l3_v"},
    "voltage_phase_to_phase": {"L12": "voltage_l12_v", "L23": "voltage_l23_v", "L31": "voltage_l31_v"},
}

AC_PHASES = (
    Measure("power_phases", "activePower", "WTT"),
    Measure("current_phases", "current", "AMP"),
    Measure("voltage_phases", "phaseVoltage", "VLT", valid_range=NON_NEGATIVE),
    Measure("voltage_phase_to_phase", "phaseToPhaseVoltage", "VLT", valid_range=NON_NEGATIVE),
)


def phase_values(values: Mapping[str, Any]) -> dict[str, dict[str, float]]:
    """The phase objects of a reading: each object's numeric members (an object without any is absent)."""
    out = {}
    for name, members in PHASE_MEMBERS.items():
        obj = {member: values[key] for member, key in members.items() if isinstance(values.get(key), (int, float))}
        if obj:
            out[name] = obj
    return out


#: DC input dict key → DeviceMeasurement attribute, unitCode
DC_ATTRIBUTES = (
    Measure("voltage_v", "voltage", "VLT"),
    Measure("current_a", "current", "AMP"),
    Measure("power_w", "power", "WTT"),
)

#: Fronius power flow → one ThreePhaseAcMeasurement per row: (id suffix, rows)
SITE_ENTITIES: tuple[tuple[str, tuple[Measure, ...]], ...] = (
    ("grid", (Measure("grid_power_w", "totalActivePower", "WTT"),)),
    ("pv", (Measure("pv_power_w", "totalActivePower", "WTT"),
            Measure("pv_energy_wh", "totalActiveEnergyExport", "KWH", wh_to_kwh, valid_range=NON_NEGATIVE))),
    ("load", (Measure("load_power_w", "totalActivePower", "WTT", negated),)),
)

#: PhotovoltaicMeasurement rows (kW per its SDM description)
PV_ROWS = (
    Measure("ac_power_w", "activePower", "KWT", w_to_kw),
    Measure("ac_current_a", "current", "AMP"),
)
#: where the (required, ≥ 0) PhotovoltaicMeasurement.temperature comes from, first present wins
PV_TEMPERATURE_KEYS = ("temperature_heatsink_c", "temperature_cabinet_c", "temperature_ambient_c")

DEVICE_FIELDS = (
    ("manufacturer", "manufacturerName"),
    ("model", "modelName"),
    ("serial_number", "serialNumber"),
    ("firmware_version", "firmwareVersion"),
)


def _phase_objects(entity: dict, values: Mapping[str, Any], reading: Reading, rejected: dict[str, str]) -> None:
    """The per-phase objects; each member is screened by its row's range (refusals noted in ``rejected``)."""
    objects = phase_values(values)
    for row in AC_PHASES:
        obj = objects.get(row.source)
        if not obj:
            continue
        kept = {}
        for member, value in obj.items():
            value, reason = row.screen(value)
            if reason is None:
                kept[member] = value
            else:
                rejected[f"{row.attribute}.{member}"] = reason
        if kept:
            entity[row.attribute] = prop(kept, unit=row.unit, observed_at=reading.observed_at)


def _common(entity: dict, record, name_suffix: str = "") -> None:
    if record is None:
        return
    if record.name:
        entity["name"] = prop(f"{record.name}{name_suffix}")
    if record.has_location:
        entity["location"] = geo_point(record.lon, record.lat)


def _measurement_count(entity: dict) -> int:
    return sum(1 for k, v in entity.items() if isinstance(v, dict) and "observedAt" in v)


def ac_measurement(reading: Reading, ctx: MapContext, record) -> dict | None:
    ns, values = ctx.namespace, reading.values
    ent = new_entity(entity_id("ThreePhaseAcMeasurement", ns, reading.device_id), "ThreePhaseAcMeasurement")
    rejected: dict[str, str] = {}
    set_measurements(ent, values, AC_TOTALS, reading.observed_at, rejected)
    _phase_objects(ent, values, reading, rejected)
    note_rejected(reading, rejected)
    if _measurement_count(ent) == 0:
        return None
    ent["dateObserved"] = datetime_prop(reading.observed_at)
    ent["refDevice"] = rel([entity_id("Device", ns, reading.device_id)])
    _common(ent, record)
    started = record.get("energy_metering_started") if record is not None else None
    if started is not None and "totalActiveEnergyExport" in ent:
        try:   # the energy counters count since then (optional here: a bad value is left out)
            ent["dateEnergyMeteringStarted"] = datetime_prop(metering_start(started))
        except TimeFormatError:
            pass
    return ent


def device_entity(reading: Reading, ctx: MapContext, record) -> dict:
    values = reading.values
    ent = new_entity(entity_id("Device", ctx.namespace, reading.device_id), "Device")
    ent["controlledProperty"] = prop(["power", "energy"])
    for key, attribute in DEVICE_FIELDS:
        value = values.get(key)
        if value is not None and value != "":
            ent[attribute] = prop(str(value))
    if values.get("status"):
        ent["deviceState"] = prop(str(values["status"]), observed_at=reading.observed_at)
    ent["dateLastValueReported"] = datetime_prop(reading.observed_at)
    _common(ent, record)
    if "name" not in ent and (values.get("manufacturer") or values.get("model")):
        ent["name"] = prop(" ".join(str(values[k]) for k in ("manufacturer", "model") if values.get(k)))
    return ent


def dc_measurements(reading: Reading, ctx: MapContext, record) -> list[dict]:
    out = []
    device_ref = entity_id("Device", ctx.namespace, reading.device_id)
    for n, dc in enumerate(reading.values.get("dc_inputs") or (), start=1):
        if not isinstance(dc, Mapping):
            continue
        number = dc.get("id", n)
        ent = new_entity(entity_id("DeviceMeasurement", ctx.namespace, f"{reading.device_id}-dc{number}"),
                         "DeviceMeasurement")
        set_measurements(ent, dc, DC_ATTRIBUTES, reading.observed_at)
        if _measurement_count(ent) == 0:
            continue
        if "power" in ent:
            ent["numValue"] = prop(ent["power"]["value"], unit="WTT", observed_at=reading.observed_at)
            ent["unit"] = prop("WTT")
        ent["controlledProperty"] = prop("power")
        ent["measurementType"] = prop("dcInput")
        ent["name"] = prop(str(dc.get("name") or f"DC input {number}"))
        ent["refDevice"] = rel(device_ref)
        ent["dateObserved"] = datetime_prop(reading.observed_at)
        if record is not None and record.has_location:
            ent["location"] = geo_point(record.lon, record.lat)
        out.append(ent)
    return out


def photovoltaic_measurement(reading: Reading, ctx: MapContext) -> dict | None:
    """PhotovoltaicMeasurement needs location, dateEnergyMeteringStarted (registry) and temperature ≥ 0.

    Without a usable temperature (not reported, or below 0 °C, which the model's schema refuses) the
    entity is left out for this reading; the other entities are written.
    """
    values = reading.values
    if values.get("ac_power_w") is None:
        return None
    record = ctx.require_device(reading)
    location = ctx.require(record, "location")
    started = ctx.require(record, "energy_metering_started")
    temperature = next((values[k] for k in PV_TEMPERATURE_KEYS if isinstance(values.get(k), (int, float))), None)
    if temperature is not None and temperature < 0:    # the model's schema: temperature minimum 0
        note_rejected(reading, {"temperature": REJECT_IMPLAUSIBLE})
        return None
    if location is None or started is None or temperature is None:
        return None
    try:
        started_at = metering_start(started)
    except TimeFormatError:
        raise MappingError(REGISTRY_FIELD_INVALID,
                           f"device {record.id!r}: energy_metering_started {started!r} is not an ISO 8601 time",
                           missing=["energy_metering_started"]) from None
    ns = ctx.namespace
    ent = new_entity(entity_id("PhotovoltaicMeasurement", ns, reading.device_id), "PhotovoltaicMeasurement")
    set_measurements(ent, values, PV_ROWS, reading.observed_at)
    ent["temperature"] = prop(temperature, unit="CEL", observed_at=reading.observed_at)
    ent["location"] = geo_point(*location)
    ent["dateObserved"] = datetime_prop(reading.observed_at)
    ent["dateEnergyMeteringStarted"] = datetime_prop(started_at)
    ref = record.get("photovoltaic_device") or entity_id("PhotovoltaicDevice", ns, reading.device_id)
    ent["refPhotovoltaicDevice"] = rel(str(ref))
    peak = record.get("peak_power_kw")
    if isinstance(peak, (int, float)) and not isinstance(peak, bool):
        ent["nominalPeakPowerGeneration"] = prop(peak, unit="KWT")
    if record.name:
        ent["name"] = prop(record.name)
    return ent


def site_entities(reading: Reading, ctx: MapContext, record) -> list[dict]:
    out = []
    for suffix, rows in SITE_ENTITIES:
        ent = new_entity(entity_id("ThreePhaseAcMeasurement", ctx.namespace, f"{reading.device_id}-{suffix}"),
                         "ThreePhaseAcMeasurement")
        rejected: dict[str, str] = {}
        set_measurements(ent, reading.values, rows, reading.observed_at, rejected)
        note_rejected(reading, rejected)
        if _measurement_count(ent) == 0:
            continue
        ent["dateObserved"] = datetime_prop(reading.observed_at)
        _common(ent, record, name_suffix=f" ({suffix})")
        out.append(ent)
    return out


def map_reading(reading: Reading, ctx: MapContext[PvSettings]) -> list[dict]:
    settings = ctx.settings      # validated by the runtime (AdapterSpec.validate_settings)
    record = ctx.device(reading)
    if reading.kind == "powerflow":
        return site_entities(reading, ctx, record) if settings.site_entities else []
    entities: list[dict] = []
    ac = ac_measurement(reading, ctx, record)
    if ac is not None:
        entities.append(ac)
    if settings.device_entities:
        entities.append(device_entity(reading, ctx, record))
    if settings.dc_measurements:
        entities.extend(dc_measurements(reading, ctx, record))
    if settings.photovoltaic_measurement:
        pv = photovoltaic_measurement(reading, ctx)
        if pv is not None:
            entities.append(pv)
    return entities


__all__ = ["AC_PHASES", "AC_TOTALS", "DC_ATTRIBUTES", "SITE_ENTITIES", "map_reading"]

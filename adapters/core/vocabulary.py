"""The one vocabulary of reading values: what a decoder may put into ``Reading.values``.

Every family's decoders name their values from this table — snake_case, SI units (or the unit the
key's suffix names: ``_w``, ``_wh``, ``_hz``, ``_va``, ``_var``, ``_a``, ``_v``, ``_c``), fractions
0..1 for percentages — so the same quantity has the same name in every family (``firmware_version``,
never ``firmwareVersion``; ``battery_level`` as a fraction, never a percentage) and a measure row
reads it without translation. ``tests/families/test_vocabulary.py`` decodes every sample of every
family and fails on a key that is not here. An integrator's package may use its own keys; adding
them here keeps them shared.
"""
from __future__ import annotations

import re

#: key → unit and meaning
VOCABULARY: dict[str, str] = {
    # -- device and radio
    "battery_voltage": "V",
    "battery_level": "fraction 0..1 (devices that report a charge level instead of volts)",
    "battery_health": "vendor battery state (text)",
    "firmware_version": "text",
    "serial_number": "text",
    "device_serial": "vendor device id from the frame (integer)",
    "sensor_id": "vendor device id from the frame (integer)",
    "sensor_temperature": "°C (the device's internal temperature)",
    "reset_cause": "text",
    "debug_codes": "list of vendor debug codes",
    "hw_health_status": "vendor health bits (integer)",
    "sensor_flag": "vendor sensor flag (integer)",
    "interrupt": "vendor interrupt flag (integer)",
    "manufacturer": "text",
    "model": "text",
    "options": "vendor options (text)",
    "device_address": "Modbus/SunSpec device address (integer)",
    "status": "vendor or feed status (text or list of texts)",
    "status_code": "vendor status code (integer)",
    "vendor_status_code": "vendor status code (integer)",
    "error_code": "vendor error code (integer)",
    "error": "why a feed record is invalid (text)",
    # -- location and naming (feeds)
    "lon": "degree (WGS 84)",
    "lat": "degree (WGS 84)",
    "name": "text",
    # -- weather
    "air_temperature": "°C",
    "air_temperature_min": "°C",
    "air_temperature_max": "°C",
    "relative_humidity": "fraction 0..1",
    "atmospheric_pressure": "Pa (station pressure)",
    "solar_radiation": "W/m²",
    "solar_radiation_max": "W/m²",
    "illuminance": "lx",
    "wind_speed": "m/s",
    "wind_gust": "m/s",
    "wind_direction": "degree (0..360, where the wind comes from)",
    "wind_speed_north": "m/s",
    "wind_speed_east": "m/s",
    "precipitation": "mm since the previous message",
    "rain_counter": "clicks (revolving counter)",
    "rain_min_click_interval": "s",
    "rain_intensity_max": "mm/h",
    "vapour_pressure": "Pa",
    "lightning_count": "strikes in the interval",
    "lightning_distance": "km",
    "tilt_x": "degree",
    "tilt_y": "degree",
    "compass_heading": "degree",
    "dew_point": "°C",
    # -- water
    "distance": "m (sensor to water surface)",
    "valid_samples": "count",
    "history": "list of [unix time s, distance m]",
    "distance_alarm": "vendor alarm flag (integer)",
    "probe_temperature": "°C",
    "water_level": "m relative to gauge zero",
    "gauge_zero": "m above sea level",
    "flow": "m³/s",
    "water": "the water body's name (text)",
    "state_mnw_mhw": "PEGELONLINE level class against mean low/high water (text)",
    "state_nsw_hsw": "PEGELONLINE level class against the navigation levels (text)",
    # -- parking
    "occupied": "bool (spot sensors) or count of occupied spaces (feeds)",
    "previous_state_duration": "min",
    "previous_state_duration_error": "bool",
    "previous_state_duration_overflow": "bool",
    "available": "count of free spaces",
    "total": "count of spaces (static)",
    "total_realtime": "count of spaces open now",
    "occupancy_percent": "% (as the feed sends it; the mapper divides by 100)",
    "trend": "feed trend (text)",
    "status_raw": "the feed's own status words",
    "site_type": "text",
    "category": "list of texts",
    "layout": "list of texts",
    "layout_raw": "list of the feed's layout words",
    # -- power (the suffix names the unit)
    "ac_power_w": "W (positive = the inverter feeds out)",
    "ac_apparent_power_va": "VA",
    "ac_reactive_power_var": "var",
    "ac_current_a": "A",
    "ac_voltage_v": "V",
    "power_factor": "fraction −1..1",
    "frequency_hz": "Hz",
    "energy_export_wh": "Wh (counter)",
    "energy_import_wh": "Wh (counter)",
    "energy_day_wh": "Wh",
    "energy_year_wh": "Wh",
    "power_l1_w": "W", "power_l2_w": "W", "power_l3_w": "W",
    "current_l1_a": "A", "current_l2_a": "A", "current_l3_a": "A",
    "voltage_l1_v": "V", "voltage_l2_v": "V", "voltage_l3_v": "V",
    "voltage_l12_v": "V", "voltage_l23_v": "V", "voltage_l31_v": "V",
    "dc_power_w": "W", "dc_current_a": "A", "dc_voltage_v": "V",
    "dc_inputs": "list of {id, name, voltage_v, current_a, power_w, energy_wh, temperature_c}",
    "temperature_heatsink_c": "°C", "temperature_cabinet_c": "°C", "temperature_ambient_c": "°C",
    "temperature_transformer_c": "°C", "temperature_other_c": "°C",
    "phases": "count",
    "sunspec_models": "list of SunSpec model ids read",
    "grid_power_w": "W (positive = import from the grid)",
    "load_power_w": "W (Fronius: negative = consumption)",
    "pv_power_w": "W",
    "battery_power_w": "W",
    "pv_energy_wh": "Wh (counter)",
    "pv_energy_day_wh": "Wh",
    "pv_energy_year_wh": "Wh",
    "autonomy": "fraction 0..1",
    "self_consumption": "fraction 0..1",
    "mode": "Fronius site mode (text)",
    "meter_location": "Fronius meter location (text)",
    "inverters": "list of per-inverter power-flow values",
}

SNAKE_CASE = re.compile(r"^[a-z][a-z0-9]*(?:_[a-z0-9]+)*$")

assert all(SNAKE_CASE.match(key) for key in VOCABULARY)


def unknown_keys(values: dict) -> list[str]:
    """The keys of a reading's values that are not in the vocabulary (or not snake_case)."""
    return sorted(key for key in values if key not in VOCABULARY)


__all__ = ["SNAKE_CASE", "VOCABULARY", "unknown_keys"]

"""Mapper: attribute names, units and values; SDM check of every entity; plausibility drops;
dew point; registry data; battery frames; settings."""
from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import settings as hsettings
from hypothesis import strategies as st
from pydantic import ValidationError

from stadtlink.adapters.climate.decoders import decode_dl_atm41, decode_meteohelix
from stadtlink.adapters.climate.mapper import dew_point, map_reading
from stadtlink.adapters.climate.settings import ClimateSettings
from stadtlink.adapters.core.errors import MappingError
from stadtlink.schemas import check_entity

from .helpers import ATM41, HELIX, T0, by_type, context, measurement, one, reading

WEATHER_ATTRS = {"temperature", "relativeHumidity", "atmosphericPressure", "solarRadiation", "windSpeed",
                 "windDirection", "gustSpeed", "precipitation", "dewPoint"}


def _atm41_reading(**kw):
    values = decode_dl_atm41(bytes.fromhex(ATM41["raw"]["hex"]), 1)
    values.pop("kind", None)
    return reading(values, device="mhm-n1", profile="decentlab-dl-atm41", **kw)


def _helix_values():
    return decode_meteohelix(bytes.fromhex(HELIX["raw"]["hex"]))


def _assert_all_valid(entities):
    for e in entities:
        assert check_entity(e) == [], (e["id"], check_entity(e))


def test_dl_atm41_sample_becomes_weather_observed_with_expected_sdm_values():
    entities = map_reading(_atm41_reading(), context())
    _assert_all_valid(entities)
    wo = one(entities, "WeatherObserved")
    assert wo["id"] == "urn:ngsi-ld:WeatherObserved:mannheim:mhm-n1"
    assert set(wo) == {"id", "type", "dateObserved", "location", "name", "refDevice"} | WEATHER_ATTRS
    for attr, exp in ATM41["expected"]["sdm_WeatherObserved"].items():
        assert wo[attr]["value"] == pytest.approx(exp["value"]), attr
        assert wo[attr]["unitCode"] == exp["unitCode"], attr
        assert wo[attr]["observedAt"] == "2026-06-21T12:00:00.000Z"
    assert wo["dewPoint"]["unitCode"] == "CEL"
    assert wo["dewPoint"]["value"] == pytest.approx(15.87, abs=0.01)
    assert wo["dateObserved"]["value"] == {"@type": "DateTime", "@value": "2026-06-21T12:00:00.000Z"}
    assert wo["location"]["value"] == {"type": "Point", "coordinates": [8.466, 49.4875]}
    assert wo["name"]["value"] == "Quadrat N1"
    assert wo["refDevice"] == {"type": "Relationship", "object": "urn:ngsi-ld:Device:mannheim:mhm-n1"}


def test_dl_atm41_device_and_measurements():
    entities = map_reading(_atm41_reading(), context())
    dev = one(entities, "Device")
    assert dev["id"] == "urn:ngsi-ld:Device:mannheim:mhm-n1"
    assert dev["batteryLevel"]["value"] == pytest.approx((3.061 - 3.0) / 0.6, abs=1e-3)
    assert dev["batteryLevel"]["unitCode"] == "C62"
    assert dev["rssi"]["value"] == -97.0
    assert dev["dateLastValueReported"]["value"]["@value"] == "2026-06-21T12:00:00.000Z"
    assert dev["serialNumber"]["value"] == "858"
    assert "windSpeed" in dev["controlledProperty"]["value"]
    assert dev["supportedProtocol"]["value"] == ["lora"]
    got = {e["controlledProperty"]["value"]: (e["numValue"]["value"], e["numValue"]["unitCode"], e["unit"]["value"])
           for e in by_type(entities, "DeviceMeasurement")}
    assert got == {
        "vapourPressure": (1.8, "KPA", "KPA"),
        "lightningCount": (0, "C62", "C62"),
        "sensorTemperature": (26.5, "CEL", "CEL"),
        "tiltX": (0.2, "DD", "DD"),
        "tiltY": (-2.4, "DD", "DD"),
        "batteryVoltage": (3.061, "VLT", "VLT"),
    }   # lightningDistance: no strikes → its 0 means nothing, not written
    vp = measurement(entities, "vapourPressure")
    assert vp["id"] == "urn:ngsi-ld:DeviceMeasurement:mannheim:mhm-n1-vapourPressure"
    assert vp["refDevice"]["object"] == dev["id"]
    assert vp["dateObserved"]["value"]["@value"] == "2026-06-21T12:00:00.000Z"
    assert vp["numValue"]["observedAt"] == "2026-06-21T12:00:00.000Z"


def test_lightning_distance_written_when_there_were_strikes():
    r = _atm41_reading()
    r.values.update(lightning_count=4, lightning_distance=12)
    entities = map_reading(r, context())
    assert measurement(entities, "lightningDistance")["numValue"] == {
        "type": "Property", "value": 12, "unitCode": "KMT", "observedAt": "2026-06-21T12:00:00.000Z"}
    assert measurement(entities, "lightningCount")["numValue"]["value"] == 4


def test_meteohelix_sample_first_message():
    entities = map_reading(reading(_helix_values()), context())
    _assert_all_valid(entities)
    wo = one(entities, "WeatherObserved")
    for attr, exp in HELIX["expected"]["sdm_WeatherObserved"].items():
        assert wo[attr]["value"] == pytest.approx(exp["value"]), attr
        assert wo[attr]["unitCode"] == exp["unitCode"]
    assert "precipitation" not in wo          # first counter: only a baseline
    assert set(wo) == {"id", "type", "dateObserved", "location", "name", "refDevice", "temperature",
                       "relativeHumidity", "atmosphericPressure", "solarRadiation", "dewPoint"}
    assert measurement(entities, "temperatureMin")["numValue"]["value"] == 12.6
    assert measurement(entities, "temperatureMax")["numValue"]["value"] == 12.9
    assert measurement(entities, "solarRadiationMax")["numValue"]["value"] == 188
    assert measurement(entities, "solarRadiationMax")["numValue"]["unitCode"] == "D54"
    dev = one(entities, "Device")
    assert dev["batteryLevel"]["value"] == pytest.approx((4.15 - 3.3) / 0.9, abs=1e-3)
    assert "windSpeed" not in dev["controlledProperty"]["value"]


def test_dew_point_magnus():
    assert dew_point(20.0, 0.5) == pytest.approx(9.26, abs=0.02)
    assert dew_point(0.0, 1.0) == pytest.approx(0.0, abs=0.01)       # saturated: dew point = temperature
    assert dew_point(30.0, 0.7) == pytest.approx(23.93, abs=0.05)
    assert dew_point(-10.0, 0.8) == pytest.approx(-12.9, abs=0.1)
    assert dew_point(15.0, 0.0) is None


def test_dew_point_can_be_switched_off():
    entities = map_reading(reading(_helix_values()), context({"compute_dew_point": False}))
    assert "dewPoint" not in one(entities, "WeatherObserved")


# --- plausibility ---------------------------------------------------------------------------------

@pytest.mark.parametrize("key,value,attribute", [
    ("relative_humidity", 1.012, "relativeHumidity"),
    ("air_temperature", 71.0, "temperature"),
    ("air_temperature", -60.1, "temperature"),
    ("atmospheric_pressure", 49000, "atmosphericPressure"),
    ("atmospheric_pressure", 110500, "atmosphericPressure"),
    ("solar_radiation", 2400, "solarRadiation"),
])
def test_implausible_value_is_dropped_and_the_rest_written(key, value, attribute):
    values = _helix_values()
    values[key] = value
    r = reading(values)
    entities = map_reading(r, context())
    _assert_all_valid(entities)
    wo = one(entities, "WeatherObserved")
    assert attribute not in wo
    assert r.meta["dropped"] == {attribute: "implausible"}
    kept = {"temperature", "relativeHumidity", "atmosphericPressure", "solarRadiation"} - {attribute}
    assert kept <= set(wo)
    if attribute in ("temperature", "relativeHumidity"):
        assert "dewPoint" not in wo      # not computed from a dropped value


def test_implausible_wind_from_dl_atm41():
    r = _atm41_reading()
    r.values.update(wind_speed=80.0, wind_gust=95.0, wind_direction=361.0)
    entities = map_reading(r, context())
    wo = one(entities, "WeatherObserved")
    assert not {"windSpeed", "gustSpeed", "windDirection"} & set(wo)
    assert r.meta["dropped"] == {"windSpeed": "implausible", "gustSpeed": "implausible",
                                 "windDirection": "implausible"}
    assert wo["temperature"]["value"] == 26.4


def test_non_numeric_value_is_dropped_not_crashing():
    r = reading({"air_temperature": "warm", "relative_humidity": 0.5, "atmospheric_pressure": float("nan"),
                 "wind_speed": " 3.5 ", "wind_direction": True})
    entities = map_reading(r, context())
    wo = one(entities, "WeatherObserved")
    assert set(wo) >= {"relativeHumidity"} and "temperature" not in wo and "atmosphericPressure" not in wo
    assert wo["windSpeed"]["value"] == 3.5            # numeric text is read as a number
    assert "windDirection" not in wo
    assert r.meta["dropped"] == {"temperature": "not-a-number", "atmosphericPressure": "not-a-number",
                                 "windDirection": "not-a-number"}


def test_all_weather_values_implausible_gives_no_weather_observed_but_a_device():
    r = reading({"air_temperature": 150.0, "relative_humidity": 2.0, "battery_voltage": 4.0})
    entities = map_reading(r, context())
    assert by_type(entities, "WeatherObserved") == []
    assert one(entities, "Device")["batteryLevel"]["value"] == pytest.approx(0.778, abs=1e-3)
    _assert_all_valid(entities)


def test_plausible_ranges_can_be_narrowed_in_settings():
    r = reading({"air_temperature": 45.0, "relative_humidity": 0.3})
    entities = map_reading(r, context({"plausible": {"air_temperature": [-40, 42]}}))
    assert "temperature" not in one(entities, "WeatherObserved")
    assert r.meta["dropped"] == {"temperature": "implausible"}


def test_settings_reject_unknown_keys_and_reversed_ranges():
    with pytest.raises(ValidationError):
        ClimateSettings.model_validate({"rain_gauge": 0.2})
    with pytest.raises(ValidationError):
        ClimateSettings.model_validate({"plausible": {"air_temperature": [50, -50]}})
    with pytest.raises(ValidationError):
        ClimateSettings.model_validate({"battery_ranges": {"barani-meteohelix": [4.2, 3.3]}})
    with pytest.raises(ValidationError):
        ClimateSettings.model_validate({"device_measurements": ["vapourPresure"]})


# --- registry -------------------------------------------------------------------------------------

def test_chirpstack_reading_finds_the_station_by_dev_eui():
    r = _atm41_reading()
    r.device_id = "70b3d57ba0000101"
    r.meta["dev_eui"] = "70b3d57ba0000101"
    entities = map_reading(r, context())
    assert one(entities, "WeatherObserved")["id"] == "urn:ngsi-ld:WeatherObserved:mannheim:mhm-n1"
    assert one(entities, "Device")["id"] == "urn:ngsi-ld:Device:mannheim:mhm-n1"


def test_unknown_station_is_a_mapping_error():
    with pytest.raises(MappingError) as err:
        map_reading(reading(_helix_values(), device="nowhere"), context())
    assert err.value.reason == "unknown-device"


def test_station_without_location_is_a_mapping_error():
    with pytest.raises(MappingError) as err:
        map_reading(reading(_helix_values(), device="mhm-noloc"), context())
    assert err.value.reason == "registry-field-missing"
    assert err.value.missing == ["location"]


def test_lenient_mode_reports_missing_registry_data():
    ctx = context(lenient=True)
    entities = map_reading(reading(_helix_values(), device="nowhere"), ctx)
    assert one(entities, "WeatherObserved")["temperature"]["value"] == 12.7
    assert any("nowhere" in m for m in ctx.missing)


# --- battery-only frames, settings ------------------------------------------------------------------

def test_dl_atm41_battery_only_frame_updates_only_the_device():
    values = decode_dl_atm41(bytes.fromhex(ATM41["more_cases"][0]["raw"]["hex"]), 1)
    kind = values.pop("kind")
    r = reading(values, device="mhm-n1", profile="decentlab-dl-atm41")
    r.kind = kind
    entities = map_reading(r, context())
    _assert_all_valid(entities)
    assert [e["type"] for e in entities] == ["Device", "DeviceMeasurement"]
    assert measurement(entities, "batteryVoltage")["numValue"]["value"] == 3.061


def test_device_measurements_can_be_limited():
    entities = map_reading(_atm41_reading(), context({"device_measurements": ["vapourPressure"]}))
    assert [e["controlledProperty"]["value"] for e in by_type(entities, "DeviceMeasurement")] == ["vapourPressure"]


def test_battery_range_override():
    entities = map_reading(reading({"battery_voltage": 3.75, "air_temperature": 10.0}),
                           context({"battery_ranges": {"barani-meteohelix": [3.5, 4.0]}}))
    assert one(entities, "Device")["batteryLevel"]["value"] == 0.5


def test_json_map_style_reading_without_network_metadata():
    """A generic decoded station (json-map profile): no f_cnt, no RSSI, battery as a fraction."""
    r = reading({"air_temperature": 18.5, "relative_humidity": 0.61, "wind_speed": 3.2, "battery_level": 0.8,
                 "illuminance": 12000}, profile="json-map", f_cnt=None, rssi=None)
    r.meta.pop("network")
    entities = map_reading(r, context())
    _assert_all_valid(entities)
    wo = one(entities, "WeatherObserved")
    assert wo["illuminance"] == {"type": "Property", "value": 12000, "unitCode": "LUX",
                                 "observedAt": "2026-06-21T12:00:00.000Z"}
    dev = one(entities, "Device")
    assert dev["batteryLevel"]["value"] == 0.8
    assert "rssi" not in dev and "supportedProtocol" not in dev
    assert dev["controlledProperty"]["value"] == ["temperature", "humidity", "windSpeed", "light"]


@hsettings(max_examples=150, deadline=None)
@given(values=st.dictionaries(
    st.sampled_from(["air_temperature", "relative_humidity", "atmospheric_pressure", "solar_radiation",
                     "wind_speed", "wind_gust", "wind_direction", "precipitation", "vapour_pressure",
                     "lightning_count", "lightning_distance", "battery_voltage", "rain_counter",
                     "rain_min_click_interval", "air_temperature_min", "tilt_x"]),
    st.one_of(st.floats(allow_nan=True, allow_infinity=True, width=32), st.integers(-10**6, 10**6)),
    max_size=12))
def test_any_values_give_valid_entities_or_drops(values):
    """Whatever numbers a decoder or json-map delivers, every entity written passes the SDM check."""
    entities = map_reading(reading(values, at=T0), context())
    _assert_all_valid(entities)


def test_non_finite_values_without_a_range_are_dropped():
    r = reading({"battery_voltage": float("nan"), "tilt_x": float("inf"), "rain_counter": 3.5,
                 "air_temperature": 12.0, "vendor_extra": "ignored"})
    entities = map_reading(r, context())
    _assert_all_valid(entities)
    assert r.meta["dropped"] == {"batteryVoltage": "not-a-number", "tiltX": "not-a-number",
                                 "precipitation": "bad-rain-counter"}
    assert measurement(entities, "batteryVoltage") is None
    assert "batteryLevel" not in one(entities, "Device")

"""Readings → FloodMonitoring / WaterObserved / Device / Alert; every entity passes the SDM check."""
import json
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from stadtlink.adapters.core.adapter import MapContext, StateStore
from stadtlink.adapters.core.errors import MappingError
from stadtlink.adapters.core.lorawan import parse_uplink, tts_uplink, chirpstack_uplink
from stadtlink.adapters.core.reading import RawMessage, Reading
from stadtlink.adapters.core.registry import DeviceRegistry
from stadtlink.adapters.core.timeutil import utcnow
from stadtlink.adapters.water_level import ADAPTER, PROFILES
from stadtlink.adapters.water_level.decoders import decode_pegelonline
from stadtlink.adapters.water_level.settings import WaterLevelSettings
from stadtlink.schemas import check_entity

DATA = Path(__file__).resolve().parent.parent / "testdata"
T0 = datetime(2024, 3, 1, 6, 0, tzinfo=timezone.utc)
REGISTRY = [
    {"id": "pruem", "dev_eui": "70b3d57ba0000001", "name": "Prüm bei Bitburg", "lat": 49.9561, "lon": 6.5253,
     "reference_level": 3.5, "alert_level": 2.2, "danger_level": 2.8},
    {"id": "no-ref", "lat": 49.9, "lon": 6.5},
]


def ctx(**kw):
    return MapContext(namespace="bitburg", registry=DeviceRegistry.load(inline=REGISTRY),
                      settings=WaterLevelSettings(**kw), state=StateStore())


def gauge_reading(distance, at=T0, device="pruem"):
    return Reading(device_id=device, profile="decentlab-dl-mbx", observed_at=at,
                   values={"distance": distance, "battery_voltage": 3.3}, meta={"rssi": -97.0, "f_cnt": 3})


def valid(entities):
    for ent in entities:
        assert check_entity(ent) == [], (ent["type"], check_entity(ent))
    return entities


def by_type(entities, t):
    return [e for e in entities if e["type"] == t]


def test_uplink_to_flood_monitoring_and_device():
    s = json.loads((DATA / "decentlab-dl-mbx-ultrasonic-level.json").read_text())
    topic, msg = tts_uplink("pruem", bytes.fromhex(s["raw"]["hex"]), f_port=1, f_cnt=7,
                            received_at="2024-03-01T06:00:00.123456789Z")
    [reading] = PROFILES["decentlab-dl-mbx"].decode(RawMessage("mqtt", json.dumps(msg).encode(), utcnow(), topic), {})
    out = valid(ADAPTER.mapper(reading, ctx()))
    [flood] = by_type(out, "FloodMonitoring")
    assert flood["id"] == "urn:ngsi-ld:FloodMonitoring:bitburg:pruem"
    assert flood["measuredDistance"] == {"type": "Property", "value": 1.234, "unitCode": "MTR",
                                         "observedAt": "2024-03-01T06:00:00.123Z"}
    assert flood["referenceLevel"]["value"] == 3.5
    assert flood["currentLevel"]["value"] == pytest.approx(2.266)
    assert flood["alertLevel"]["value"] == 2.2 and flood["dangerLevel"]["value"] == 2.8
    assert flood["floodLevelStatus"]["value"] == "Alert"          # 2.266 ≥ 2.2
    assert flood["location"]["value"]["coordinates"] == [6.5253, 49.9561]
    [device] = by_type(out, "Device")
    assert device["controlledProperty"]["value"] == ["waterLevel"]
    assert device["batteryLevel"]["value"] == pytest.approx((2.993 - 2.5) / 1.1, abs=1e-3)
    assert device["rssi"]["value"] == -80.0
    [alert] = by_type(out, "Alert")
    assert alert["subCategory"]["value"] == "flood" and alert["severity"]["value"] == "medium"
    assert alert["alertSource"]["object"] == flood["id"]


def test_chirpstack_uplink_matches_registry_by_dev_eui():
    topic, msg = chirpstack_uplink("70B3D57BA0000001", bytes.fromhex("02012F000305DC00010BB1"), f_port=1, f_cnt=2,
                                   time="2024-03-01T06:00:00+00:00")
    [reading] = PROFILES["decentlab-dl-mbx"].decode(RawMessage("mqtt", json.dumps(msg).encode(), utcnow(), topic), {})
    out = valid(ADAPTER.mapper(reading, ctx()))
    [flood] = by_type(out, "FloodMonitoring")
    assert flood["currentLevel"]["value"] == pytest.approx(3.5 - 1.5)
    assert flood["floodLevelStatus"]["value"] == "Normal"
    assert not by_type(out, "Alert")


def test_unknown_device_and_missing_reference_level_are_dead_lettered():
    with pytest.raises(MappingError) as err:
        ADAPTER.mapper(gauge_reading(1.0, device="stranger"), ctx())
    assert err.value.reason == "unknown-device"
    with pytest.raises(MappingError) as err:
        ADAPTER.mapper(gauge_reading(1.0, device="no-ref"), ctx())
    assert err.value.missing == ["reference_level"]


def test_lenient_mode_lists_missing_registry_fields():
    c = ctx()
    c.lenient = True
    out = ADAPTER.mapper(gauge_reading(1.0, device="stranger"), c)
    assert any("not in the registry" in m for m in c.missing)
    assert any("reference_level" in m for m in c.missing)
    [flood] = by_type(out, "FloodMonitoring")
    assert flood["measuredDistance"]["value"] == 1.0 and "currentLevel" not in flood


def series(c, levels, step_min=5, start=T0):
    """Feed levels (as currentLevel, via distance = 3.5 - level); return all entities."""
    out = []
    for i, level in enumerate(levels):
        if level is None:
            continue
        out += valid(ADAPTER.mapper(gauge_reading(round(3.5 - level, 4), start + timedelta(minutes=step_min * i)), c))
    return out


def alerts(out, sub):
    return [e for e in by_type(out, "Alert") if e["subCategory"]["value"] == sub]


def test_threshold_alert_raises_escalates_and_clears_with_hysteresis():
    c = ctx(forecast={"enabled": False})
    out = series(c, [2.0, 2.21, 2.18, 2.21, 2.85, 2.78, 2.5, 2.16, 2.1])
    floods = alerts(out, "flood")
    ids = {a["id"] for a in floods}
    assert len(ids) == 1, "hovering at the threshold must not flap into new episodes"
    assert [a["severity"]["value"] for a in floods] == ["medium", "critical", "medium", "informational"]
    assert "validTo" in floods[-1] and all("validTo" not in a for a in floods[:-1])
    statuses = [e["floodLevelStatus"]["value"] for e in by_type(out, "FloodMonitoring")]
    assert statuses == ["Normal", "Alert", "Alert", "Alert", "Danger", "Danger", "Alert", "Alert", "Normal"]


def test_rising_series_gives_early_warning_before_the_threshold():
    c = ctx(forecast={"window_min": 60, "horizon_min": 120, "min_points": 4, "min_span_min": 15})
    rising = [1.0 + 0.05 * i for i in range(8)]           # 0.6 m/h towards 2.2 m, still below it
    out = series(c, rising)
    warnings = alerts(out, "floodRisk")
    assert warnings, "a steady rise towards alertLevel must raise an early warning"
    first = warnings[0]
    assert first["severity"]["value"] == "medium"
    data = first["data"]["value"]
    assert data["target"] == "alertLevel" and data["risePerHour"] == pytest.approx(0.6, rel=0.05)
    expected = datetime.fromisoformat(data["expectedCrossingAt"].replace("Z", "+00:00"))
    issued_at = datetime.fromisoformat(first["data"]["observedAt"].replace("Z", "+00:00"))
    assert timedelta(0) < expected - issued_at <= timedelta(minutes=120)
    assert not alerts(out, "flood"), "the threshold itself is not reached yet"


def test_falling_series_clears_the_early_warning():
    c = ctx(forecast={"window_min": 60, "horizon_min": 120, "min_points": 4, "min_span_min": 15})
    out = series(c, [1.0 + 0.05 * i for i in range(8)] + [1.35 - 0.05 * i for i in range(12)])
    warnings = alerts(out, "floodRisk")
    assert warnings and "validTo" in warnings[-1]
    assert warnings[-1]["severity"]["value"] == "informational"
    assert len({w["id"] for w in warnings}) == 1


def test_steady_and_noisy_series_raise_nothing():
    import random
    rnd = random.Random(4)
    for levels in ([1.5] * 30, [1.5 + rnd.uniform(-0.05, 0.05) for _ in range(30)]):
        c = ctx()
        assert not by_type(series(c, levels), "Alert")


def test_gaps_do_not_invent_a_trend():
    c = ctx(forecast={"window_min": 60, "horizon_min": 180, "min_points": 4, "min_span_min": 15})
    # Two readings, a 3-hour gap, two readings: too few points in any window → no forecast.
    out = series(c, [1.0, 1.02] + [None] * 36 + [1.9, 1.92])
    assert not alerts(out, "floodRisk")


def test_rising_then_crossing_hands_over_to_the_threshold_alert():
    c = ctx(forecast={"window_min": 60, "horizon_min": 120, "min_points": 4, "min_span_min": 15})
    out = series(c, [1.6 + 0.05 * i for i in range(14)])   # crosses 2.2 at i=12
    warnings = alerts(out, "floodRisk")
    to_alert = [w for w in warnings if w["data"]["value"]["target"] == "alertLevel"]
    assert to_alert and "validTo" in to_alert[-1], "the alert-level warning ends once the level is reached"
    assert alerts(out, "flood")[0]["severity"]["value"] == "medium"
    to_danger = [w for w in warnings if w["data"]["value"]["target"] == "dangerLevel"]
    assert to_danger and to_danger[0]["severity"]["value"] == "high", "still rising: warn about dangerLevel next"


def test_state_survives_a_restart():
    c = ctx(forecast={"enabled": False})
    series(c, [2.3])
    changed, _ = c.state.take_changes()
    restarted = ctx(forecast={"enabled": False})
    restarted.state = StateStore(json.loads(json.dumps(changed)))
    out = series(restarted, [2.35], start=T0 + timedelta(minutes=10))
    assert not alerts(out, "flood"), "an open episode must not be raised again after a restart"
    out = series(restarted, [1.0], start=T0 + timedelta(minutes=20))
    assert alerts(out, "flood")[0]["severity"]["value"] == "informational"


def pegel(level_cm, station_extra=None):
    s = json.loads((DATA / "pegelonline-rest-v2-station-with-timeseries.json").read_text())["raw"]["json"]
    s["timeseries"][0]["currentMeasurement"]["value"] = level_cm
    s.update(station_extra or {})
    return decode_pegelonline(RawMessage("http", json.dumps(s).encode(), utcnow()), {})[0]


def test_pegelonline_station_to_water_observed():
    out = valid(ADAPTER.mapper(pegel(159), ctx()))
    [w] = out
    assert w["type"] == "WaterObserved"
    assert w["waterLevel"]["value"] == pytest.approx(1.59) and w["waterLevel"]["unitCode"] == "MTR"
    assert w["flow"] == {"type": "Property", "value": 102.0, "unitCode": "MQS", "observedAt": "2023-07-26T17:00:00.000Z"}
    assert w["dateObserved"]["value"]["@value"] == "2023-07-26T17:15:00.000Z"
    assert w["waterLevelAboveSeaLevel"]["value"] == pytest.approx(166.101)
    assert w["location"]["value"]["coordinates"] == [9.925968763247354, 49.79620901036012]


def test_level_below_gauge_zero_never_writes_an_invalid_water_level():
    [w] = valid(ADAPTER.mapper(pegel(-20), ctx()))
    assert "waterLevel" not in w
    assert w["waterLevelRelativeToGaugeZero"]["value"] == pytest.approx(-0.2)


def test_pegelonline_station_thresholds_from_registry():
    c = MapContext(namespace="bitburg", settings=WaterLevelSettings(forecast={"enabled": False}), state=StateStore(),
                   registry=DeviceRegistry.load(inline=[{"id": "915d76e1-xxxx-xxxx-xxxx-4d144cd771cc",
                                                         "alert_level": 1.5, "danger_level": 3.0}]))
    out = valid(ADAPTER.mapper(pegel(159), c))
    [a] = by_type(out, "Alert")
    assert a["alertSource"]["object"] == "urn:ngsi-ld:WaterObserved:bitburg:915d76e1-xxxx-xxxx-xxxx-4d144cd771cc"

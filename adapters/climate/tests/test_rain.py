"""MeteoHelix revolving rain counter → precipitation per message: first message, delta, counter wrap,
device reset, stale baseline, late message, sensor error, adapter restart, gauge resolution."""
from __future__ import annotations

import pytest

from stadtlink.adapters.climate.decoders import decode_meteohelix
from stadtlink.adapters.climate.mapper import map_reading
from stadtlink.adapters.climate.rain import rain_step, state_key
from stadtlink.adapters.climate.simulator import encode_meteohelix
from stadtlink.adapters.core.adapter import StateStore
from stadtlink.schemas import check_entity

from .helpers import T0, context, one, reading, timedelta

BASE = {"air_temperature": 14.2, "relative_humidity": 0.81, "atmospheric_pressure": 100900, "battery_voltage": 4.1}


def _send(ctx, counter, minutes, *, f_cnt, device="mhm-luisenpark", interval=None):
    """One MeteoHelix message (real bytes, decoded) with the given counter at T0 + minutes."""
    values = decode_meteohelix(encode_meteohelix({**BASE, "rain_counter": counter,
                                                  "rain_min_click_interval": interval}))
    r = reading(values, device=device, at=T0 + timedelta(minutes=minutes), f_cnt=f_cnt)
    entities = map_reading(r, ctx)
    for e in entities:
        assert check_entity(e) == []
    return one(entities, "WeatherObserved"), r


def _precip(wo):
    return wo.get("precipitation", {}).get("value")


def test_first_message_sets_a_baseline_without_precipitation():
    ctx = context()
    wo, r = _send(ctx, 17, 0, f_cnt=1)
    assert "precipitation" not in wo
    assert r.meta["rain"] == "baseline"
    assert ctx.state[state_key("mhm-luisenpark")]["counter"] == 17


def test_delta_times_gauge_resolution():
    ctx = context()
    _send(ctx, 17, 0, f_cnt=1)
    wo, r = _send(ctx, 20, 10, f_cnt=2)
    assert wo["precipitation"] == {"type": "Property", "value": 0.6, "unitCode": "MMT",
                                   "observedAt": "2026-06-21T12:10:00.000Z"}
    assert r.meta["rain"] == "delta"
    wo, _ = _send(ctx, 20, 20, f_cnt=3)
    assert _precip(wo) == 0.0                     # dry interval: 0 mm is a measurement, written


def test_counter_wrap():
    ctx = context()
    _send(ctx, 250, 0, f_cnt=1)
    wo, r = _send(ctx, 4, 10, f_cnt=2)            # 250 → 254 → (255) → 0 → 4 = 10 clicks
    assert r.meta["rain"] == "wrap"
    assert _precip(wo) == 2.0


def test_counter_value_255_is_the_error_code_and_keeps_the_baseline():
    ctx = context()
    _send(ctx, 250, 0, f_cnt=1)
    wo, r = _send(ctx, 255, 10, f_cnt=2)          # all ones: sensor error / N/A
    assert "precipitation" not in wo and "rain" not in r.meta
    wo, _ = _send(ctx, 3, 20, f_cnt=3)            # the rain of both intervals is still counted
    assert _precip(wo) == pytest.approx(1.8)      # 250 → 3 = 9 clicks


def test_device_reset_detected_by_frame_counter():
    ctx = context()
    _send(ctx, 200, 0, f_cnt=500)
    wo, r = _send(ctx, 3, 10, f_cnt=1)            # rejoined: fCnt and click counter restarted
    assert r.meta["rain"] == "device-reset"
    assert "precipitation" not in wo              # no 59 clicks of invented rain
    wo, _ = _send(ctx, 5, 20, f_cnt=2)
    assert _precip(wo) == pytest.approx(0.4)


def test_reset_without_frame_counter_is_caught_by_plausibility():
    """No fCnt (json-map, ABP): a reset looks like a wrap; an absurd amount is dropped and counted."""
    ctx = context()
    _send(ctx, 100, 0, f_cnt=None)
    wo, r = _send(ctx, 2, 10, f_cnt=None)         # "wrap" of 158 clicks = 31.6 mm: plausible, written
    assert _precip(wo) == pytest.approx(31.6)
    ctx = context({"plausible": {"precipitation": [0, 20]}})
    _send(ctx, 100, 0, f_cnt=None)
    wo, r = _send(ctx, 2, 10, f_cnt=None)
    assert "precipitation" not in wo
    assert r.meta["dropped"] == {"precipitation": "implausible"}
    wo, _ = _send(ctx, 4, 20, f_cnt=None)         # new baseline was kept
    assert _precip(wo) == pytest.approx(0.4)


def test_stale_baseline_is_not_trusted():
    ctx = context({"rain_max_gap_s": 1800})
    _send(ctx, 10, 0, f_cnt=1)
    wo, r = _send(ctx, 12, 60, f_cnt=7)           # an hour of silence: the counter may have wrapped
    assert r.meta["rain"] == "stale"
    assert "precipitation" not in wo
    wo, _ = _send(ctx, 13, 70, f_cnt=8)
    assert _precip(wo) == pytest.approx(0.2)


def test_late_message_does_not_move_the_baseline():
    ctx = context()
    _send(ctx, 10, 10, f_cnt=2)
    wo, r = _send(ctx, 8, 0, f_cnt=1)             # older than the baseline (late retransmission)
    assert r.meta["rain"] == "out-of-order"
    assert "precipitation" not in wo
    assert ctx.state[state_key("mhm-luisenpark")]["counter"] == 10
    wo, _ = _send(ctx, 11, 20, f_cnt=3)
    assert _precip(wo) == pytest.approx(0.2)


def test_adapter_restart_with_persisted_state_invents_no_rain():
    ctx = context()
    _send(ctx, 40, 0, f_cnt=1)
    changed, _deleted = ctx.state.take_changes()  # what the runtime persisted
    restarted = context(state=StateStore(changed))
    wo, r = _send(restarted, 40, 10, f_cnt=2)
    assert r.meta["rain"] == "delta" and _precip(wo) == 0.0
    wo, _ = _send(restarted, 43, 20, f_cnt=3)
    assert _precip(wo) == pytest.approx(0.6)


def test_restart_without_state_only_rebaselines():
    ctx = context()
    _send(ctx, 40, 0, f_cnt=1)
    wo, r = _send(context(), 90, 10, f_cnt=2)     # state lost: 50 clicks are NOT reported as rain
    assert r.meta["rain"] == "baseline" and "precipitation" not in wo


def test_station_gauge_resolution_from_registry():
    ctx = context()
    _send(ctx, 0, 0, f_cnt=1, device="mhm-gauge05")
    wo, _ = _send(ctx, 3, 10, f_cnt=2, device="mhm-gauge05")
    assert _precip(wo) == pytest.approx(1.5)


def test_gauge_resolution_from_settings():
    ctx = context({"rain_gauge_mm": 0.1})
    _send(ctx, 0, 0, f_cnt=1)
    wo, _ = _send(ctx, 3, 10, f_cnt=2)
    assert _precip(wo) == pytest.approx(0.3)


def test_stations_have_separate_counters():
    ctx = context()
    _send(ctx, 10, 0, f_cnt=1)
    _send(ctx, 100, 0, f_cnt=1, device="mhm-gauge05")
    wo, _ = _send(ctx, 12, 10, f_cnt=2)
    assert _precip(wo) == pytest.approx(0.4)


def test_max_rain_intensity_from_shortest_click_interval():
    ctx = context()
    _send(ctx, 10, 0, f_cnt=1)
    values = decode_meteohelix(encode_meteohelix({**BASE, "rain_counter": 15, "rain_min_click_interval": 18.2}))
    entities = map_reading(reading(values, at=T0 + timedelta(minutes=10), f_cnt=2), ctx)
    intensity = [e for e in entities if e["type"] == "DeviceMeasurement"
                 and e["controlledProperty"]["value"] == "precipitationIntensityMax"]
    assert len(intensity) == 1
    assert intensity[0]["numValue"]["value"] == pytest.approx(39.6)   # 0.2 mm per 18.2 s = 39.6 mm/h
    assert intensity[0]["numValue"]["unitCode"] == "H67"


def test_corrupt_state_value_rebaselines():
    state = StateStore({state_key("mhm-luisenpark"): {"counter": "x", "t": 5}})
    step = rain_step(state, "mhm-luisenpark", 7, T0, 1, resolution_mm=0.2, max_gap_s=3600)
    assert step.outcome == "baseline" and step.precipitation is None
    assert state[state_key("mhm-luisenpark")]["counter"] == 7


def test_state_is_json_serialisable():
    import json
    ctx = context()
    _send(ctx, 1, 0, f_cnt=1)
    assert json.loads(json.dumps(dict(ctx.state))) == dict(ctx.state)

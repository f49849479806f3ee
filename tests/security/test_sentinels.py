"""A sensor's "no reading" code or an API's absurd number never becomes a measurement (issue 19).

Driven through the real runtime (source → decode → map → check → outbox → batcher) into the local
NGSI-LD broker: the refused value is left out of the entity, the rest of the reading is written,
and the refusal is counted in ``stadtlink_values_rejected_total{adapter,attribute,reason}``.
"""
from __future__ import annotations

import asyncio
from datetime import datetime, timezone

import orjson
import pytest

from stadtlink.adapters import water_level
from stadtlink.adapters.core import tts_uplink
from stadtlink.adapters.core.reading import RawMessage
from stadtlink.adapters.core.runner import Runner
from stadtlink.adapters.core.testing import RecordingOutbox
from stadtlink.broker_client import NGSILDClient
from stadtlink.broker_client.local_broker import running_broker

STATIONS = [
    {"id": "sentinel-mbx", "name": "Prüm (sentinel test)", "lat": 49.9561, "lon": 6.5253,
     "profile": "decentlab-dl-mbx", "station": "sentinel-mbx", "reference_level": 3.5},
]


class PushSource:
    """A source the test feeds; ``push`` returns once the runtime has taken the message."""

    name = "push"

    def __init__(self) -> None:
        self._q: asyncio.Queue = asyncio.Queue()
        self.ready = False

    def stats(self) -> dict[str, float]:
        return {}

    async def leave(self, timeout: float) -> bool:
        return True

    async def run(self, emit) -> None:
        self.ready = True
        while True:
            msg, fut = await self._q.get()
            try:
                await emit(msg)
            except Exception as exc:  # noqa: BLE001
                fut.set_exception(exc)
            else:
                fut.set_result(None)

    async def push(self, payload: bytes, *, topic: str | None = None, device: str | None = None,
                   profile: str | None = None) -> None:
        fut = asyncio.get_running_loop().create_future()
        await self._q.put((RawMessage(source="test", payload=payload, topic=topic, device_hint=device,
                                      received_at=datetime.now(timezone.utc),
                                      attributes={"profile": profile} if profile else {}), fut))
        await fut


def _config(url: str) -> dict:
    return {"namespace": "sentinel", "broker": {"url": url, "batch_size": 50, "flush_ms": 20, "timeout_s": 5},
            "http": {"host": "127.0.0.1", "port": 0}, "shutdown_grace_s": 3, "devices": STATIONS}


async def _entities(url: str, type_: str) -> dict[str, dict]:
    async with NGSILDClient(url, context=water_level.ADAPTER.context) as client:
        return {e["id"]: e async for e in client.query_entities(type=type_)}


async def _run(messages: list[tuple[bytes, str | None, str | None, str]]):
    async with running_broker() as url:
        src = PushSource()
        runner = Runner.from_config(_config(url), adapter=water_level.ADAPTER, sources=[(src, None, None)])
        await runner.start()
        try:
            for _ in range(500):
                if src.ready:
                    break
                await asyncio.sleep(0.02)
            for payload, topic, device, profile in messages:
                await src.push(payload, topic=topic, device=device, profile=profile)
            assert await runner.wait_idle()
            flood = await _entities(url, "FloodMonitoring")
            water = await _entities(url, "WaterObserved")
            devices = await _entities(url, "Device")
            metrics = runner.pipeline.metrics
            return flood, water, devices, dict(getattr(metrics, "rejected", {})), metrics.render().decode()
        finally:
            await runner.stop()


def _mbx_frame(distance_word: int, samples: int, battery_mv: int) -> bytes:
    return bytes([2]) + (303).to_bytes(2, "big") + (3).to_bytes(2, "big") + distance_word.to_bytes(2, "big") \
        + samples.to_bytes(2, "big") + battery_mv.to_bytes(2, "big")


async def test_all_ones_distance_is_no_reading_and_the_battery_is_still_written():
    """Decentlab DL-MBX: an all-ones distance word (0xFFFF mm) is the sensor's "no reading" code, not 65.535 m."""
    topic, bad = tts_uplink("sentinel-mbx", _mbx_frame(0xFFFF, 7, 3012), f_port=1, f_cnt=1,
                            received_at="2024-05-01T12:00:00Z")
    flood, _, devices, rejected, text = await _run([(orjson.dumps(bad), topic, None, "decentlab-dl-mbx")])
    assert flood == {}, "a FloodMonitoring with 65.535 m (or a level 3.5 − 65.535 m) was written"
    device = devices["urn:ngsi-ld:Device:sentinel:sentinel-mbx"]
    assert device["batteryLevel"]["value"] == pytest.approx((3.012 - 2.5) / (3.6 - 2.5), abs=0.01)
    assert rejected == {("measuredDistance", "sentinel"): 1}
    assert ('stadtlink_values_rejected_total{adapter="water_level",attribute="measuredDistance",'
            'reason="sentinel"} 1.0') in text


async def test_a_valid_distance_after_the_sentinel_is_written():
    messages = []
    for f_cnt, (word, when) in enumerate([(0xFFFF, "2024-05-01T12:00:00Z"), (1234, "2024-05-01T12:10:00Z")], 1):
        topic, up = tts_uplink("sentinel-mbx", _mbx_frame(word, 7, 3012), f_port=1, f_cnt=f_cnt, received_at=when)
        messages.append((orjson.dumps(up), topic, None, "decentlab-dl-mbx"))
    flood, _, _, rejected, _ = await _run(messages)
    ent = flood["urn:ngsi-ld:FloodMonitoring:sentinel:sentinel-mbx"]
    assert ent["measuredDistance"]["value"] == 1.234
    assert ent["currentLevel"]["value"] == pytest.approx(3.5 - 1.234)
    assert rejected == {("measuredDistance", "sentinel"): 1}


async def test_an_absurd_api_level_is_left_out_and_the_rest_of_the_station_written():
    """PEGELONLINE answering W = 1e306 cm (and a negative discharge): neither becomes a measurement."""
    station = {
        "uuid": "sentinel-gauge", "number": "2640000", "longname": "SENTINEL", "longitude": 6.6, "latitude": 49.8,
        "water": {"longname": "MOSEL"},
        "timeseries": [
            {"shortname": "W", "unit": "cm", "gaugeZero": {"value": 120.0},
             "currentMeasurement": {"timestamp": "2024-05-01T14:00:00+02:00", "value": 1e306}},
            {"shortname": "Q", "unit": "m3/s",
             "currentMeasurement": {"timestamp": "2024-05-01T14:00:00+02:00", "value": -5.0}},
        ],
    }
    _, water, _, rejected, text = await _run([(orjson.dumps(station), "https://pegelonline.test/stations",
                                               "sentinel-gauge", "pegelonline")])
    ent = water["urn:ngsi-ld:WaterObserved:sentinel:sentinel-gauge"]
    assert ent["name"]["value"] == "SENTINEL"
    for attribute in ("waterLevel", "waterLevelRelativeToGaugeZero", "waterLevelAboveSeaLevel", "flow"):
        assert attribute not in ent, f"{attribute} = {ent[attribute]} was written"
    assert rejected == {("waterLevelRelativeToGaugeZero", "implausible"): 1, ("flow", "implausible"): 1}
    assert 'attribute="flow",reason="implausible"} 1.0' in text


async def test_an_absurd_feed_count_is_left_out_and_nothing_is_derived_from_it():
    """A ParkAPI feed announcing 5,000,000 free spaces in a 400-space car park: no availableSpotNumber,
    and no occupied count or occupancy computed from it; the site's name, capacity and status are written."""
    from stadtlink.adapters import parking
    from stadtlink.adapters.core.pipeline import Pipeline
    from stadtlink.adapters.core.deadletter import MemoryDeadLetters
    from stadtlink.adapters.core.metrics import Metrics
    from stadtlink.adapters.core.registry import DeviceRegistry

    doc = {"items": [{"uid": "ABSURD", "name": "Absurd", "lat": "49.48", "lon": "8.46", "type": "CAR_PARK",
                      "has_realtime_data": True, "capacity": 400, "realtime_capacity": 400,
                      "realtime_free_capacity": 5_000_000, "realtime_opening_status": "OPEN",
                      "realtime_data_updated_at": datetime.now(timezone.utc).isoformat()}]}
    outbox, metrics = RecordingOutbox(), Metrics("parking")
    pipe = Pipeline(parking.ADAPTER, namespace="s", registry=DeviceRegistry(), outbox=outbox,
                    deadletters=MemoryDeadLetters(10), metrics=metrics, check="strict")
    await pipe.process(RawMessage(source="http", payload=orjson.dumps(doc), topic="http://feed.test/p.json",
                                  device_hint="feed", received_at=datetime.now(timezone.utc)), "parkapi")
    [site] = outbox.items
    assert site["totalSpotNumber"]["value"] == 400 and site["name"]["value"] == "Absurd"
    for attribute in ("availableSpotNumber", "occupiedSpotNumber", "occupancy"):
        assert attribute not in site
    assert dict(getattr(metrics, "rejected", {})) == {("availableSpotNumber", "implausible"): 1}


async def test_a_negative_inverter_frequency_and_energy_are_left_out_and_counted():
    """A Fronius answer with FAC = −49.94 Hz and TOTAL_ENERGY = −5 Wh (both below the ThreePhaseAcMeasurement
    schema's minimum 0): neither is written, both are counted, the inverter's power is still written."""
    import json
    from pathlib import Path

    from stadtlink.adapters import pv
    from stadtlink.adapters.core.deadletter import MemoryDeadLetters
    from stadtlink.adapters.core.metrics import Metrics
    from stadtlink.adapters.core.pipeline import Pipeline
    from stadtlink.adapters.core.registry import DeviceRegistry

    sample = Path(pv.__file__).parent / "testdata" / "fronius-solarapi-v1-inverter-realtime-symo.json"
    doc = json.loads(sample.read_text())["raw"]["json"]
    doc["Body"]["Data"]["FAC"]["Value"] = -49.94
    doc["Body"]["Data"]["TOTAL_ENERGY"]["Value"] = -5
    doc["Head"]["Timestamp"] = datetime.now(timezone.utc).isoformat()
    outbox, metrics = RecordingOutbox(), Metrics("pv")
    pipe = Pipeline(pv.ADAPTER, namespace="s", registry=DeviceRegistry(), outbox=outbox,
                    deadletters=MemoryDeadLetters(10), metrics=metrics, check="strict")
    await pipe.process(RawMessage(source="http", payload=orjson.dumps(doc), topic="http://inverter.test/solar_api",
                                  device_hint="symo", received_at=datetime.now(timezone.utc)), "fronius-solarapi")
    [ac] = [e for e in outbox.items if e["type"] == "ThreePhaseAcMeasurement"]
    assert ac["totalActivePower"]["value"] == 1190
    assert "frequency" not in ac and "totalActiveEnergyExport" not in ac
    assert dict(getattr(metrics, "rejected", {})) == {("frequency", "implausible"): 1,
                                                      ("totalActiveEnergyExport", "implausible"): 1}
    assert 'stadtlink_values_rejected_total{adapter="pv",attribute="frequency",reason="implausible"} 1.0' \
        in metrics.render().decode()

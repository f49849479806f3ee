"""End to end with the real runtime: uplinks through the real Mosquitto become FloodMonitoring
entities and Alerts in the local broker; PEGELONLINE answers from a local HTTP server become
WaterObserved entities, with 304, 500 and timeouts handled."""
import asyncio
import json
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from aiohttp import web

from stadtlink.adapters.core.adapter import STADTLINK_CONTEXT_URL
from stadtlink.adapters.core.lorawan import chirpstack_uplink, tts_uplink
from stadtlink.adapters.core.runner import Runner
from stadtlink.adapters.core.testing import SHARED_MQTT, publish_uplinks, wait_until
from stadtlink.broker_client import NGSILDClient
from stadtlink.broker_client.local_broker import running_broker
from stadtlink.schemas import check_entity
from stadtlink.schemas.vocabulary import compact_entity

DATA = Path(__file__).resolve().parent.parent / "testdata"
T0 = datetime.now(timezone.utc).replace(microsecond=0) - timedelta(hours=3)


def dl_mbx(distance_mm: int) -> bytes:
    return bytes([2, 0x01, 0x2F, 0x00, 0x03]) + distance_mm.to_bytes(2, "big") + (1).to_bytes(2, "big") + (2993).to_bytes(2, "big")


def config(broker_url, app, extra_sources=()):
    return {
        "adapter": "water_level", "namespace": "e2e", "broker": {"url": broker_url, "flush_ms": 50},
        "outbox": {"kind": "memory"}, "check": "strict", "http": {"host": "127.0.0.1", "port": 0},
        "sources": [{"kind": "mqtt", "host": SHARED_MQTT[0], "port": SHARED_MQTT[1], "profile": "decentlab-dl-mbx",
                     "topics": [f"v3/{app}@ttn/devices/+/up", f"application/{app}/device/+/event/up"]},
                    *extra_sources],
        "devices": [{"id": "pruem", "dev_eui": "70b3d57ba0000001", "name": "Prüm", "lat": 49.9561, "lon": 6.5253,
                     "reference_level": 3.5, "alert_level": 2.2, "danger_level": 2.8}],
        "settings": {"forecast": {"window_min": 60, "horizon_min": 120, "min_points": 4, "min_span_min": 15}},
    }


async def entities(client, etype):
    """The entities of a type, read with the compound context: each is written with its own model's
    @context, so the terms the compound context maps elsewhere get their model's short names back."""
    return [compact_entity(e) async for e in client.query_entities(type=etype)]


async def test_rising_then_falling_river_over_mqtt():
    app = f"e2e-{uuid.uuid4().hex[:8]}"
    async with running_broker() as url:
        runner = Runner.from_config(config(url, app))
        await runner.start()
        try:
            await asyncio.sleep(0.3)
            levels = [1.0 + 0.1 * i for i in range(16)] + [2.4 - 0.15 * i for i in range(10)]
            msgs = []
            for i, level in enumerate(levels):
                at = (T0 + timedelta(minutes=5 * i)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
                payload = dl_mbx(round((3.5 - level) * 1000))
                if i % 2:
                    msgs.append(tts_uplink("pruem", payload, f_port=1, f_cnt=i + 1, received_at=at, application_id=app))
                else:
                    topic, doc = chirpstack_uplink("70b3d57ba0000001", payload, f_port=1, f_cnt=i + 1,
                                                   time=at.replace("Z", "+00:00"), application_id=app)
                    msgs.append((topic, doc))
            # Publish one at a time, in order: time-series readings must reach the broker in order.
            for m in msgs:
                await publish_uplinks(*SHARED_MQTT, [m])
                await asyncio.sleep(0.02)
            async with NGSILDClient(url, context=STADTLINK_CONTEXT_URL) as client:
                async def done():
                    floods = await entities(client, "FloodMonitoring")
                    return floods and floods[0]["observationDateTime"]["value"]["@value"].startswith(
                        (T0 + timedelta(minutes=5 * (len(levels) - 1))).strftime("%Y-%m-%dT%H:%M"))
                await wait_until(done, detail=lambda: runner.counters())
                [flood] = await entities(client, "FloodMonitoring")
                assert flood["id"] == "urn:ngsi-ld:FloodMonitoring:e2e:pruem"
                assert flood["currentLevel"]["value"] == pytest.approx(levels[-1], abs=1e-3)
                assert flood["floodLevelStatus"]["value"] == "Normal"
                assert check_entity(flood) == []
                alerts = await entities(client, "Alert")
                threshold = [a for a in alerts if a["subCategory"]["value"] == "flood"]
                forecast = [a for a in alerts if a["subCategory"]["value"] == "floodRisk"]
                assert threshold and forecast, [a["id"] for a in alerts]
                assert all("validTo" in a for a in threshold), "the falling river cleared the threshold alert"
                assert all("validTo" in a for a in forecast if a["data"]["value"]["target"] == "alertLevel")
                for a in alerts:
                    assert check_entity(a) == []
                [device] = await entities(client, "Device")
                assert device["id"] == "urn:ngsi-ld:Device:e2e:pruem", "TTS and ChirpStack uplinks of one sensor: one Device"
            c = runner.counters()
            assert c.get("dead_lettered", 0) == 0, c
        finally:
            await runner.stop()


async def test_invalid_frames_are_dead_lettered_and_the_adapter_keeps_going():
    app = f"e2e-{uuid.uuid4().hex[:8]}"
    async with running_broker() as url:
        runner = Runner.from_config(config(url, app))
        await runner.start()
        try:
            await asyncio.sleep(0.3)
            at = T0.strftime("%Y-%m-%dT%H:%M:%SZ")
            await publish_uplinks(*SHARED_MQTT, [
                tts_uplink("pruem", b"\x07\x00", f_port=1, f_cnt=1, received_at=at, application_id=app),
                (f"v3/{app}@ttn/devices/pruem/up", b"{garbage"),
                tts_uplink("unknown-gauge", dl_mbx(1000), f_port=1, f_cnt=1, received_at=at, application_id=app),
                tts_uplink("pruem", dl_mbx(1500), f_port=1, f_cnt=2, received_at=at, application_id=app),
            ])
            async with NGSILDClient(url, context=STADTLINK_CONTEXT_URL) as client:
                await wait_until(lambda: _has(client, "FloodMonitoring"))
            await wait_until(lambda: _counter(runner, "dead_lettered", 3))
            reasons = {d.get("reason") for _, d in await runner.deadletters.list(10)}
            assert {"bad-length", "invalid-json", "unknown-device"} <= reasons, reasons
        finally:
            await runner.stop()


async def _has(client, etype):
    return bool(await entities(client, etype))


async def _counter(runner, name, n):
    return runner.counters().get(name, 0) >= n


class Pegelonline:
    """A PEGELONLINE-like server built from the shared sample: ETag/304, then 500s, then a hang."""

    def __init__(self):
        sample = json.loads((DATA / "pegelonline-rest-v2-station-with-timeseries.json").read_text())["raw"]["json"]
        self.station = sample
        self.mode = "ok"
        self.hits = {"ok": 0, "304": 0, "500": 0, "slow": 0}
        self.etag = '"v1"'

    async def handle(self, request):
        if self.mode == "500":
            self.hits["500"] += 1
            return web.Response(status=500, text="boom")
        if self.mode == "slow":
            self.hits["slow"] += 1
            await asyncio.sleep(30)
        if request.headers.get("If-None-Match") == self.etag:
            self.hits["304"] += 1
            return web.Response(status=304)
        self.hits["ok"] += 1
        return web.json_response([self.station], headers={"ETag": self.etag})


async def test_pegelonline_feed_with_304_500_and_timeouts():
    server = Pegelonline()
    web_app = web.Application()
    web_app.router.add_get("/webservices/rest-api/v2/stations.json", server.handle)
    web_runner = web.AppRunner(web_app, shutdown_timeout=0.1)
    await web_runner.setup()
    site = web.TCPSite(web_runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]
    poll = {"kind": "http-poll", "name": "pegelonline", "profile": "pegelonline", "interval_s": 0.2, "jitter": 0,
            "timeout_s": 0.5, "targets": [{"url": f"http://127.0.0.1:{port}/webservices/rest-api/v2/stations.json",
                                           "device": "main"}]}
    try:
        async with running_broker() as url:
            cfg = config(url, "unused-" + uuid.uuid4().hex[:6], [poll])
            cfg["sources"] = [poll]
            runner = Runner.from_config(cfg)
            await runner.start()
            try:
                async with NGSILDClient(url, context=STADTLINK_CONTEXT_URL) as client:
                    await wait_until(lambda: _has(client, "WaterObserved"))
                    [w] = await entities(client, "WaterObserved")
                    assert w["waterLevel"]["value"] == pytest.approx(1.59)
                    assert w["flow"]["value"] == 102
                    assert w["dateObserved"]["value"]["@value"] == "2023-07-26T17:15:00.000Z"
                    assert check_entity(w) == []
                    await wait_until(lambda: _hits(server, "304", 1), detail=lambda: server.hits)
                    server.mode = "500"
                    await wait_until(lambda: _hits(server, "500", 2), timeout=20, detail=lambda: server.hits)
                    server.mode = "slow"
                    await wait_until(lambda: _hits(server, "slow", 1), timeout=20, detail=lambda: server.hits)
                    server.mode = "ok"
                    server.etag = '"v2"'
                    server.station["timeseries"][0]["currentMeasurement"].update(
                        {"value": 210, "timestamp": "2023-07-26T19:30:00+02:00"})
                    async def updated():
                        [w] = await entities(client, "WaterObserved")
                        return w["waterLevel"]["value"] == pytest.approx(2.10)
                    await wait_until(updated, timeout=30, detail=lambda: server.hits)
                assert runner.counters().get("dead_lettered", 0) == 0
            finally:
                await runner.stop()
    finally:
        await web_runner.cleanup()


async def _hits(server, key, n):
    return server.hits[key] >= n


async def test_invalid_distance_is_counted_and_the_battery_still_written():
    app = f"e2e-{uuid.uuid4().hex[:8]}"
    async with running_broker() as url:
        runner = Runner.from_config(config(url, app))
        await runner.start()
        try:
            await asyncio.sleep(0.3)
            no_echo = bytes.fromhex("02012F000304D200000BB1")     # 0 valid samples: no echo
            await publish_uplinks(*SHARED_MQTT, [
                tts_uplink("pruem", no_echo, f_port=1, f_cnt=1, received_at=T0.strftime("%Y-%m-%dT%H:%M:%SZ"),
                           application_id=app)])
            await wait_until(lambda: _dropped(runner, "value-no-echo"))
            async with NGSILDClient(url, context=STADTLINK_CONTEXT_URL) as client:
                await wait_until(lambda: _has(client, "Device"))
                assert not await entities(client, "FloodMonitoring"), "no distance, no FloodMonitoring"
            assert runner.counters()["dead_lettered"] == 0
        finally:
            await runner.stop()


async def _dropped(runner, reason):
    return runner.counters()["dropped"].get(reason, 0) >= 1

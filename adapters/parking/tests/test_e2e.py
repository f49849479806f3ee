"""End to end with the real parts: the shared Mosquitto (SHARED_MQTT, unique topics per test), the real
runtime (Runner: MQTT / http-poll sources, pipeline, SDM check, outbox, batcher, NGSI-LD client, tick timer),
the local NGSI-LD broker queried over HTTP, and a local aiohttp server serving DATEX II and ParkAPI feeds
(including one that answers 500 and one that times out before it recovers)."""
from __future__ import annotations

import asyncio
import dataclasses
import json
import uuid
from datetime import datetime, timedelta, timezone

import aiohttp
import pytest
from aiohttp import web

from stadtlink.adapters.core.lorawan import chirpstack_uplink, tts_uplink
from stadtlink.adapters.parking import ADAPTER
from stadtlink.adapters.core.testing import SHARED_MQTT, entities_by_id, tts_time, wait_until

from .helpers import data, sample

pytestmark = pytest.mark.timeout(90)

MQTT_HOST, MQTT_PORT = SHARED_MQTT


async def _sources_ready(runner) -> bool:
    return bool(runner.sources) and all(getattr(s, "ready", False) for s in runner.sources)


def _mqtt_config(broker_url: str, ns: str, tts_app: str, cs_app: str, run: str, eui: str) -> dict:
    return {
        "adapter": "parking",
        "namespace": ns,
        "broker": {"url": broker_url, "batch_size": 50, "flush_ms": 50},
        "outbox": {"kind": "memory"},
        "check": "strict",
        "http": {"enabled": False},
        "sources": [{
            "kind": "mqtt", "host": MQTT_HOST, "port": MQTT_PORT,
            "topics": [f"v3/{tts_app}@ttn/devices/+/up", f"application/{cs_app}/device/+/event/up"],
            "client_id": f"parking-e2e-{run}", "session_expiry_s": 0, "profile": "bosch-tps110",
        }],
        "devices": [
            {"id": "garage", "name": "Tiefgarage Rathaus", "lat": 52.4227, "lon": 10.7865, "total_spots": 3,
             "category": "underground;public"},
            {"id": "tps-1", "name": "Platz 1", "lat": 52.42271, "lon": 10.78651, "site": "garage", "level": -1},
            {"id": "tps-2", "name": "Platz 2", "lat": 52.42272, "lon": 10.78652, "site": "garage", "level": -1},
            {"id": eui, "spot": "platz-3", "name": "Platz 3", "lat": 52.42273, "lon": 10.78653,
             "profile": "nwave-nps405", "site": "garage", "level": -2},
        ],
        "settings": {"heartbeat_timeout_s": 86400},
    }


@pytest.mark.needs_mqtt
async def test_tts_and_chirpstack_uplinks_become_parking_spots_and_the_site_follows():
    from stadtlink.adapters.core.runner import Runner
    from stadtlink.adapters.core.testing import publish_uplinks
    from stadtlink.broker_client.local_broker import running_broker

    run = uuid.uuid4().hex[:10]
    ns, tts_app, cs_app = f"e2e-{run}", f"parking-{run}", str(uuid.uuid4())
    eui = "a8404100" + run[:8]
    t0 = datetime.now(timezone.utc).replace(microsecond=0) - timedelta(minutes=5)

    async with running_broker() as broker_url, aiohttp.ClientSession() as session:
        runner = Runner.from_config(_mqtt_config(broker_url, ns, tts_app, cs_app, run, eui), adapter=ADAPTER)
        await runner.start()
        try:
            await wait_until(lambda: _sources_ready(runner))
            assert await publish_uplinks(MQTT_HOST, MQTT_PORT, [
                tts_uplink("tps-1", b"\x01", f_port=1, f_cnt=10, received_at=tts_time(t0), application_id=tts_app,
                           rssi=-99.0),
                tts_uplink("tps-2", b"\x00\x12", f_port=2, f_cnt=3, received_at=tts_time(t0), application_id=tts_app),
                chirpstack_uplink(eui, bytes.fromhex("00D3D800590B"), f_port=2, f_cnt=5, time=tts_time(t0),
                                  application_id=cs_app, rssi=-104.0),
                tts_uplink("tps-1", b"\x07\x07\x07", f_port=1, f_cnt=11, received_at=tts_time(t0),
                           application_id=tts_app),                  # garbage → dead letter, adapter goes on
            ]) == 4
            site_id = f"urn:ngsi-ld:OffStreetParking:{ns}:garage"

            async def site_with(available: int):
                found = await entities_by_id(broker_url, "OffStreetParking", namespace=ns)
                site = found.get(site_id)
                return site if site and site["availableSpotNumber"]["value"] == available else None

            site = await wait_until(lambda: site_with(2))
            assert site["occupiedSpotNumber"]["value"] == 1
            assert site["totalSpotNumber"]["value"] == 3
            assert site["occupancy"]["value"] == pytest.approx(0.3333) and site["occupancy"]["unitCode"] == "C62"
            assert site["status"]["value"] == ["spacesAvailable"]
            assert site["category"]["value"] == ["underground", "public"]

            spots = await entities_by_id(broker_url, "ParkingSpot", namespace=ns)
            assert set(spots) == {f"urn:ngsi-ld:ParkingSpot:{ns}:{s}" for s in ("tps-1", "tps-2", "platz-3")}
            s1 = spots[f"urn:ngsi-ld:ParkingSpot:{ns}:tps-1"]
            assert s1["status"]["value"] == "occupied"
            assert s1["status"]["observedAt"] == t0.strftime("%Y-%m-%dT%H:%M:%S.000Z")
            assert s1["refParkingSite"]["object"] == site_id
            assert s1["category"]["value"] == ["offStreet"]
            assert s1["location"]["value"]["coordinates"] == [10.78651, 52.42271]
            assert spots[f"urn:ngsi-ld:ParkingSpot:{ns}:platz-3"]["status"]["value"] == "free"
            devices = await entities_by_id(broker_url, "Device", namespace=ns)
            nwave = devices[f"urn:ngsi-ld:Device:{ns}:{eui}"]
            assert nwave["rssi"]["value"] == -104.0 and 0 <= nwave["batteryLevel"]["value"] <= 1
            assert nwave["controlledProperty"]["value"] == ["occupancy"]
            groups = await entities_by_id(broker_url, "ParkingGroup", namespace=ns)
            assert f"urn:ngsi-ld:ParkingGroup:{ns}:garage-level--1" in groups

            # the car leaves spot 1: the spot and the site's aggregate follow
            await publish_uplinks(MQTT_HOST, MQTT_PORT, [
                tts_uplink("tps-1", b"\x00", f_port=1, f_cnt=12, received_at=tts_time(t0 + timedelta(minutes=1)),
                           application_id=tts_app)])
            site = await wait_until(lambda: site_with(3))
            assert site["occupiedSpotNumber"]["value"] == 0 and site["occupancy"]["value"] == 0
            spots = await entities_by_id(broker_url, "ParkingSpot", namespace=ns)
            assert spots[f"urn:ngsi-ld:ParkingSpot:{ns}:tps-1"]["status"]["value"] == "free"
            counters = runner.counters()
            assert counters["dead_letter_reasons"].get("bad-length") == 1
            assert counters["invalid"] == 0
        finally:
            await runner.stop(grace=2)


@pytest.mark.needs_mqtt
async def test_silent_sensor_turns_unknown_by_the_timer():
    from stadtlink.adapters.core.runner import Runner
    from stadtlink.adapters.core.testing import publish_uplinks
    from stadtlink.broker_client.local_broker import running_broker

    run = uuid.uuid4().hex[:10]
    ns, tts_app, cs_app = f"e2e-{run}", f"parking-{run}", str(uuid.uuid4())
    eui = "a8404100" + run[:8]
    fast = dataclasses.replace(ADAPTER, tick_interval=0.2)
    config = _mqtt_config("http://127.0.0.1:1", ns, tts_app, cs_app, run, eui)
    config["devices"][1]["heartbeat_timeout_s"] = 2          # tps-1: unknown 2 s after its last uplink
    async with running_broker() as broker_url, aiohttp.ClientSession() as session:
        config["broker"]["url"] = broker_url
        runner = Runner.from_config(config, adapter=fast)
        await runner.start()
        try:
            await wait_until(lambda: _sources_ready(runner))
            now = datetime.now(timezone.utc)
            await publish_uplinks(MQTT_HOST, MQTT_PORT, [
                tts_uplink("tps-1", b"\x01", f_port=1, f_cnt=1, received_at=tts_time(now), application_id=tts_app),
                tts_uplink("tps-2", b"\x01", f_port=1, f_cnt=1, received_at=tts_time(now), application_id=tts_app)])

            async def spot_status(status: str):
                spots = await entities_by_id(broker_url, "ParkingSpot", namespace=ns)
                spot = spots.get(f"urn:ngsi-ld:ParkingSpot:{ns}:tps-1")
                return spot if spot and spot["status"]["value"] == status else None

            await wait_until(lambda: spot_status("occupied"))
            spot = await wait_until(lambda: spot_status("unknown"), timeout=15)
            assert spot["status"]["observedAt"] > tts_time(now)[:19]
            site = (await entities_by_id(broker_url, "OffStreetParking", namespace=ns))[
                f"urn:ngsi-ld:OffStreetParking:{ns}:garage"]
            assert site["occupiedSpotNumber"]["value"] == 1            # tps-2 is still known and occupied
            assert site["occupancy"]["value"] == 1.0
            spots = await entities_by_id(broker_url, "ParkingSpot", namespace=ns)
            assert spots[f"urn:ngsi-ld:ParkingSpot:{ns}:tps-2"]["status"]["value"] == "occupied"
        finally:
            await runner.stop(grace=2)


class FeedServer:
    """DATEX II / ParkAPI documents on a real local HTTP server; /flaky answers 500 twice, /slow stalls once."""

    def __init__(self):
        self.hits: dict[str, int] = {}
        mannheim = json.dumps(sample("parkapi-v3-push-json-mannheim.json")["raw"]["json"]).encode()
        self.routes = {
            "/datex/static.xml": data("datex2-aachen-static-constructed.xml"),
            "/datex/status.xml": data("datex2-aachen-status-constructed.xml"),
            "/datex/stuttgart.xml": data("datex2-stuttgart-status.xml"),
            "/parkapi/mannheim.json": mannheim,
            "/parkapi/flaky.json": data("parkapi-v1-constructed.json"),
            "/parkapi/slow.json": json.dumps({"items": [{
                "uid": "slowpoke", "name": "Slow", "lat": 49.5, "lon": 8.5, "capacity": 10,
                "realtime_free_capacity": 4, "realtime_data_updated_at": "2024-02-20T17:05:33"}]}).encode(),
        }

    async def handle(self, request: web.Request) -> web.Response:
        path = request.path
        n = self.hits[path] = self.hits.get(path, 0) + 1
        if path == "/parkapi/flaky.json" and n <= 2:
            return web.Response(status=500, text="upstream exploded")
        if path == "/parkapi/slow.json" and n == 1:
            await asyncio.sleep(3)
        body = self.routes.get(path)
        if body is None:
            return web.Response(status=404)
        ctype = "application/xml" if path.endswith(".xml") else "application/json"
        return web.Response(body=body, content_type=ctype)


async def test_datex2_and_parkapi_feeds_become_off_street_parking_with_retries():
    from stadtlink.adapters.core.runner import Runner
    from stadtlink.broker_client.local_broker import running_broker

    run = uuid.uuid4().hex[:10]
    ns = f"e2e-{run}"
    feeds = FeedServer()
    app = web.Application()
    app.router.add_get("/{tail:.*}", feeds.handle)
    http_runner = web.AppRunner(app)
    await http_runner.setup()
    site = web.TCPSite(http_runner, "127.0.0.1", 0)
    await site.start()
    feed_url = f"http://127.0.0.1:{site._server.sockets[0].getsockname()[1]}"
    poll = {"kind": "http-poll", "interval_s": 0.5, "jitter": 0.0, "timeout_s": 1.0, "retry_min_s": 0.2,
            "retry_max_s": 0.5}
    try:
        async with running_broker() as broker_url, aiohttp.ClientSession() as session:
            config = {
                "namespace": ns,
                "broker": {"url": broker_url, "batch_size": 50, "flush_ms": 50},
                "outbox": {"kind": "memory"},
                "http": {"enabled": False},
                "sources": [
                    {**poll, "name": "aachen", "profile": "datex2", "options": {"id_prefix": "aachen-"}, "targets": [
                        {"url": f"{feed_url}/datex/status.xml", "device": "aachen", "options": {"role": "status"}},
                        {"url": f"{feed_url}/datex/static.xml", "device": "aachen", "options": {"role": "static"}}]},
                    {**poll, "name": "stuttgart", "profile": "datex2", "options": {"static": "registry"},
                     "targets": [{"url": f"{feed_url}/datex/stuttgart.xml", "device": "stuttgart"}]},
                    {**poll, "name": "parkapi", "profile": "parkapi", "targets": [
                        {"url": f"{feed_url}/parkapi/mannheim.json", "device": "mannheim"},
                        {"url": f"{feed_url}/parkapi/flaky.json", "device": "v1"},
                        {"url": f"{feed_url}/parkapi/slow.json", "device": "slow"}]},
                ],
                "devices": [{"id": "12717289", "name": "Österreichischer Platz", "lat": 48.7705, "lon": 9.171,
                             "total_spots": 564, "layout": "singleLevel"}],
            }
            runner = Runner.from_config(config, adapter=ADAPTER)
            await runner.start()
            try:
                expected_ids = {f"urn:ngsi-ld:OffStreetParking:{ns}:{s}" for s in (
                    "aachen-P1", "aachen-P5", "12717289", "P8_Parkdeck_Altstadt_Haagstrasse",
                    "mannheimhauptbahnhof", "mannheimrathaus", "slowpoke")}

                async def all_sites():
                    found = await entities_by_id(broker_url, "OffStreetParking", namespace=ns)
                    return found if expected_ids <= set(found) else None

                found = await wait_until(all_sites, timeout=30)
                p1 = found[f"urn:ngsi-ld:OffStreetParking:{ns}:aachen-P1"]
                assert p1["name"]["value"] == "P01-Eurogress"
                assert (p1["availableSpotNumber"]["value"], p1["totalSpotNumber"]["value"]) == (412, 560)
                assert p1["occupancy"]["value"] == 0.2643 and p1["status"]["value"] == ["open", "spacesAvailable"]
                assert p1["availableSpotNumber"]["observedAt"] == "2025-02-07T19:05:34.176Z"
                p5 = found[f"urn:ngsi-ld:OffStreetParking:{ns}:aachen-P5"]
                assert p5["status"]["value"] == ["closed"] and p5["totalSpotNumber"]["value"] == 300
                assert "occupancy" not in p5
                stg = found[f"urn:ngsi-ld:OffStreetParking:{ns}:12717289"]
                assert stg["occupancy"]["value"] == 0.5656 and stg["status"]["value"] == ["spacesAvailable", "open"]
                mh = found[f"urn:ngsi-ld:OffStreetParking:{ns}:P8_Parkdeck_Altstadt_Haagstrasse"]
                assert mh["availableSpotNumber"]["value"] == 27 and mh["occupancy"]["value"] == 0.55
                assert found[f"urn:ngsi-ld:OffStreetParking:{ns}:slowpoke"]["availableSpotNumber"]["value"] == 4

                # the 500s and the timeout were retried, the adapter kept running
                assert feeds.hits["/parkapi/flaky.json"] >= 3 and feeds.hits["/parkapi/slow.json"] >= 2
                stats = dict((name, fn()) for name, fn in runner.metrics.source_stats)
                assert stats["parkapi"]["poll_failures"] >= 3
                assert all(not t.done() for t in runner._source_tasks)
                reasons = runner.counters()["dead_letter_reasons"]
                assert reasons.get("site-not-in-static-list", 0) >= 1          # aachen P99
                assert reasons.get("invalid-site-record", 0) >= 1              # the v1 lot with total "viele"
                dead = [rec for _, rec in await runner.deadletters.list(1000)]
                assert any(r.get("device_id") == "aachen-P99" and "P99" in r.get("error", "") for r in dead)
                assert runner.counters()["invalid"] == 0
            finally:
                await runner.stop(grace=2)
    finally:
        await http_runner.cleanup()

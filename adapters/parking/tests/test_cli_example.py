"""`stadtlink run parking --config examples/parking.yaml` as a subprocess — the way the demo runs it — with
the broker and feed URLs overridden by environment variables, the real Mosquitto, a local feed server and
the local NGSI-LD broker."""
from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from datetime import datetime, timedelta, timezone

import aiohttp
import pytest
from aiohttp import web

from stadtlink.adapters.core.lorawan import chirpstack_uplink, tts_uplink
from stadtlink.adapters.parking import PACKAGE_DIR
from stadtlink.adapters.core.testing import SHARED_MQTT, entities_by_id, tts_time, wait_until

from .helpers import data, sample

pytestmark = pytest.mark.timeout(90)
EXAMPLE = PACKAGE_DIR.parent.parent / "examples" / "parking.yaml"


@pytest.mark.needs_mqtt
async def test_example_config_runs_as_a_process():
    from stadtlink.broker_client.local_broker import running_broker

    routes = {
        "/datex/status.xml": data("datex2-aachen-status-P1.xml"),
        "/datex/static.xml": data("datex2-aachen-static-constructed.xml"),
        "/parkapi/mannheim.json": json.dumps(sample("parkapi-v3-push-json-mannheim.json")["raw"]["json"]).encode(),
    }

    async def handle(request: web.Request) -> web.Response:
        body = routes.get(request.path)
        return web.Response(body=body) if body is not None else web.Response(status=404)

    app = web.Application()
    app.router.add_get("/{tail:.*}", handle)
    feed_runner = web.AppRunner(app)
    await feed_runner.setup()
    site = web.TCPSite(feed_runner, "127.0.0.1", 0)
    await site.start()
    feeds = f"http://127.0.0.1:{site._server.sockets[0].getsockname()[1]}"
    try:
        async with running_broker() as broker_url, aiohttp.ClientSession() as session:
            env = dict(os.environ,
                       STADTLINK_BROKER__URL=broker_url,
                       STADTLINK_HTTP__PORT="0",
                       STADTLINK_BROKER__FLUSH_MS="50",
                       STADTLINK_SOURCES__1__INTERVAL_S="1",
                       STADTLINK_SOURCES__1__TARGETS__0__URL=f"{feeds}/datex/status.xml",
                       STADTLINK_SOURCES__1__TARGETS__1__URL=f"{feeds}/datex/static.xml",
                       STADTLINK_SOURCES__1__TARGETS__1__INTERVAL_S="1",
                       STADTLINK_SOURCES__2__TARGETS__0__URL=f"{feeds}/parkapi/mannheim.json")
            proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "stadtlink.adapters.core.cli", "run", "parking", "--config", str(EXAMPLE),
                env=env, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE)
            try:
                async def feed_sites():
                    found = await entities_by_id(broker_url, "OffStreetParking", namespace="wolfsburg")
                    want = {"urn:ngsi-ld:OffStreetParking:wolfsburg:aachen-P1",
                            "urn:ngsi-ld:OffStreetParking:wolfsburg:mannheim-P8_Parkdeck_Altstadt_Haagstrasse"}
                    return found if want <= set(found) else None

                found = await wait_until(feed_sites, timeout=40)
                assert found["urn:ngsi-ld:OffStreetParking:wolfsburg:aachen-P1"]["name"]["value"] == "P01-Eurogress"

                t0 = datetime.now(timezone.utc) - timedelta(seconds=30)
                from stadtlink.adapters.core.testing import publish_uplinks
                messages = [tts_uplink("tps-nord-01", b"\x01", f_port=1, f_cnt=int(t0.timestamp()) % 60000 + 1,
                                       received_at=tts_time(t0), application_id="wolfsburg-parking"),
                            chirpstack_uplink("a84041000181c001", b"\x94", f_port=1,
                                              f_cnt=int(t0.timestamp()) % 60000 + 1, time=tts_time(t0),
                                              application_id="7b9c6a52-3f1e-4c8e-9a57-0d1f5e2b7a01")]

                async def spots():
                    # the MQTT subscription may still be coming up: publish until the spots appear
                    await publish_uplinks(*SHARED_MQTT, messages)
                    await asyncio.sleep(0.3)
                    found = await entities_by_id(broker_url, "ParkingSpot", namespace="wolfsburg")
                    return found if {"urn:ngsi-ld:ParkingSpot:wolfsburg:pr-nord-01",
                                     "urn:ngsi-ld:ParkingSpot:wolfsburg:pr-nord-04"} <= set(found) else None

                found = await wait_until(spots, timeout=30)
                assert found["urn:ngsi-ld:ParkingSpot:wolfsburg:pr-nord-01"]["status"]["value"] == "occupied"
                assert found["urn:ngsi-ld:ParkingSpot:wolfsburg:pr-nord-04"]["status"]["value"] == "free"
                site = (await entities_by_id(broker_url, "OffStreetParking", namespace="wolfsburg"))[
                    "urn:ngsi-ld:OffStreetParking:wolfsburg:pr-nord"]
                assert site["totalSpotNumber"]["value"] == 6
                assert (site["availableSpotNumber"]["value"], site["occupiedSpotNumber"]["value"]) == (1, 1)
                assert proc.returncode is None
            finally:
                if proc.returncode is None:
                    proc.send_signal(signal.SIGTERM)
                try:
                    await asyncio.wait_for(proc.wait(), timeout=20)
                except asyncio.TimeoutError:
                    proc.kill()
                    await proc.wait()
            assert proc.returncode == 0, (await proc.stderr.read()).decode()[-2000:]
    finally:
        await feed_runner.cleanup()

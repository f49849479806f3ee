"""The broker stopped for 30 s while uplinks keep arriving over the real Mosquitto: the outbox holds
everything, readiness turns false, and when the broker is back it drains — count in equals count
out, every reading at the broker (time-series adapter: every observation in order)."""
from __future__ import annotations

import asyncio
import time
import uuid

import aiomqtt
import orjson

from stadtlink.adapters.core import tts_uplink
from stadtlink.adapters.core.runner import Runner
from stadtlink.broker_client import NGSILDClient
from stadtlink.broker_client.local_broker import serve
from stadtlink.adapters.core.testing import SHARED_MQTT
from rt_helpers import base_config, free_port, wait_until
from rt_toy_adapter import ADAPTER, TS_ADAPTER

OUTAGE_S = 30.0


async def test_broker_stopped_for_30_seconds_loses_nothing():
    app = f"outage{uuid.uuid4().hex[:8]}"
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    n_devices = 20
    broker = await serve("127.0.0.1", port)
    cfg = base_config(url, sources=[{"kind": "mqtt", "host": SHARED_MQTT[0], "port": SHARED_MQTT[1], "profile": "toy-lora",
                                     "topics": [f"v3/{app}@ttn/devices/+/up"], "client_id": f"outage-{app}"}],
                      devices=[{"id": f"d{i}", "lat": 50.0, "lon": 8.0} for i in range(n_devices)])
    runner = Runner.from_config(cfg, adapter=TS_ADAPTER)
    await runner.start()
    sent = 0
    try:
        assert await wait_until(lambda: runner.ready, timeout=15)
        async with aiomqtt.Client(*SHARED_MQTT, identifier=f"pub-{app}") as mqtt:
            async def send(rounds: int, start_minute: int) -> None:
                nonlocal sent
                for r in range(rounds):
                    for i in range(n_devices):
                        minute = start_minute + r
                        topic, doc = tts_uplink(f"d{i}", (1000 + 10 * minute + i).to_bytes(2, "big"), f_port=1,
                                                f_cnt=minute + 1, received_at=f"2024-05-01T10:{minute:02d}:00Z",
                                                application_id=app)
                        await mqtt.publish(topic, orjson.dumps(doc), qos=1)
                        sent += 1

            await send(2, 0)                                      # before the outage
            assert await runner.wait_idle(timeout=15)
            await broker.cleanup()                                # the broker goes away …
            t0 = time.monotonic()
            while time.monotonic() - t0 < OUTAGE_S:               # … for 30 s, uplinks keep coming
                await send(1, 2 + int(time.monotonic() - t0) // 5)
                await asyncio.sleep(5)
                assert runner.readiness()[0] is False, "readiness must say the broker is unreachable"
            held = runner.counters()["outbox_depth"]
            assert held > 0, "the outbox holds what could not be written"
            broker = await serve("127.0.0.1", port)               # back, empty (in-memory broker)
            assert await runner.wait_idle(timeout=60)
        c = runner.counters()
        assert c["received"] == sent
        assert c["dead_lettered"] == 0       # (broker errors during the outage are counted in "errors")
        async with NGSILDClient(url, context=ADAPTER.context) as client:
            ents = {e["id"]: e async for e in client.query_entities(type="WeatherObserved")}
        assert len(ents) == n_devices
        # time-series: every observation was written; the broker holds each device's newest one
        assert c["upserted"] >= sent - 2 * n_devices        # the pre-outage ones went to the old broker
        last_minute = max(int(e["temperature"]["observedAt"][14:16]) for e in ents.values())
        for i in range(n_devices):
            e = ents[f"urn:ngsi-ld:WeatherObserved:test:d{i}"]
            assert int(e["temperature"]["observedAt"][14:16]) == last_minute
    finally:
        await runner.stop()
        await broker.cleanup()

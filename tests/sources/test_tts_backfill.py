"""Nothing lost between The Things Stack and the broker: a whole adapter (Runner, Redis outbox,
local NGSI-LD broker) on the shared Mosquitto with ``network: tts``, and the Storage API stand-in.

Uplinks reach the MQTT server at QoS 0 (as TTS publishes them) and the stand-in stores each (as the
Storage Integration does). The broker's upserts are counted per (entity, observedAt): every uplink
must arrive exactly once."""
from __future__ import annotations

import asyncio
import collections
import uuid
from datetime import datetime, timedelta, timezone

import aiohttp
import orjson
import redis.asyncio as aioredis
from aiohttp import web

from stadtlink.adapters.core.runner import Runner
from stadtlink.adapters.core.testing import SHARED_MQTT, SHARED_REDIS_URL, free_port, wait_until
from stadtlink.broker_client.local_broker import create_app

from .tts_standins import TOY_TS_ADAPTER, StorageStandIn, stored_uplink

UTC = timezone.utc
KEY = "NNSXS.TESTKEY.SECRET"
N_DEVICES = 10


class CountingBroker:
    """The local broker behind a counting proxy: every entity it accepted by batch upsert is
    counted per (id, temperature.observedAt)."""

    def __init__(self):
        self.port = free_port()
        self.writes: collections.Counter = collections.Counter()
        self._runners: list[web.AppRunner] = []
        self._session: aiohttp.ClientSession | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> "CountingBroker":
        inner_port = free_port()
        inner = web.AppRunner(create_app(), access_log=None)
        await inner.setup()
        await web.TCPSite(inner, "127.0.0.1", inner_port).start()
        self._session = aiohttp.ClientSession()
        upstream = f"http://127.0.0.1:{inner_port}"

        async def forward(request: web.Request) -> web.Response:
            body = await request.read()
            headers = {k: v for k, v in request.headers.items() if k.lower() not in ("host", "content-length")}
            async with self._session.request(request.method, upstream + request.path_qs, data=body,
                                             headers=headers) as resp:
                answer = await resp.read()
                status = resp.status
                out = {k: v for k, v in resp.headers.items()
                       if k.lower() not in ("content-length", "transfer-encoding", "content-encoding", "connection")}
            if request.path.endswith("/entityOperations/upsert") and status in (200, 201, 204):
                for ent in orjson.loads(body):
                    self.writes[(ent["id"], ent["temperature"]["observedAt"])] += 1
            return web.Response(status=status, body=answer, headers=out)

        proxy = web.Application()
        proxy.router.add_route("*", "/{tail:.*}", forward)
        outer = web.AppRunner(proxy, access_log=None)
        await outer.setup()
        await web.TCPSite(outer, "127.0.0.1", self.port).start()
        self._runners = [outer, inner]
        return self

    async def stop(self) -> None:
        for r in self._runners:
            await r.cleanup()
        if self._session is not None:
            await self._session.close()


def _config(broker_url: str, storage_url: str, app: str, prefix: str, **backfill) -> dict:
    return {
        "namespace": "test",
        "broker": {"url": broker_url, "batch_size": 50, "flush_ms": 20, "retry_base_s": 0.05, "retry_max_s": 0.2,
                   "timeout_s": 5},
        "http": {"host": "127.0.0.1", "port": 0},
        "shutdown_grace_s": 5,
        "outbox": {"kind": "redis", "url": SHARED_REDIS_URL, "key_prefix": prefix},
        "devices": [{"id": f"dev-{i}", "lat": 52.4, "lon": 10.7} for i in range(N_DEVICES)],
        "sources": [{
            "kind": "mqtt", "network": "tts", "host": SHARED_MQTT[0], "port": SHARED_MQTT[1], "profile": "toy-lora",
            "client_id": f"stadtlink-{app}", "reconnect_min_s": 0.05, "reconnect_max_s": 0.5,
            "tts": {"application_id": app, "api_key": KEY, "api_url": storage_url,
                    "backfill": {"period_s": 2, "overlap_s": 30, "retry_min_s": 0.1, "retry_max_s": 0.5,
                                 "page_size": 50, **backfill}},
        }],
    }


class Uplinks:
    """Makes uplinks; ``send`` publishes them at QoS 0 and stores them in the stand-in."""

    def __init__(self, app: str, storage: StorageStandIn):
        self.app = app
        self.storage = storage
        self.n = 0
        self.base = datetime.now(UTC) - timedelta(minutes=5)

    def make(self, count: int) -> list[tuple[str, dict]]:
        out = []
        for _ in range(count):
            i = self.n
            self.n += 1
            out.append(stored_uplink(self.app, f"dev-{i % N_DEVICES}", i + 1, self.base + timedelta(milliseconds=10 * i),
                                     (2000 + i).to_bytes(2, "big")))
        return out

    async def send(self, count: int) -> None:
        ups = self.make(count)
        for _, doc in ups:
            self.storage.store(self.app, doc)
        await publish_qos0(ups)


async def publish_qos0(ups: list[tuple[str, dict]]) -> None:
    """Publish at QoS 0 as TTS does, then one QoS 1 message on another topic on the same
    connection: its PUBACK means the broker has read every QoS 0 publication before it (a client
    that disconnects right after QoS 0 publishes may otherwise lose some on its side)."""
    from stadtlink.adapters.core.sources.mqtt_client import MqttSettings, connect

    settings = MqttSettings(host=SHARED_MQTT[0], port=SHARED_MQTT[1], client_id=f"pub-{uuid.uuid4().hex[:12]}",
                            persistent_session=False, manual_ack=False, receive_maximum=None)
    async with connect(settings) as conn:
        for topic, doc in ups:
            await conn.publish(topic, orjson.dumps(doc), qos=0)
        await conn.publish(f"stadtlink-test/barrier/{uuid.uuid4().hex}", b"", qos=1)


async def _cleanup_redis(prefix: str) -> None:
    client = aioredis.from_url(SHARED_REDIS_URL)
    try:
        keys = [k async for k in client.scan_iter(match=f"{prefix}:*")]
        if keys:
            await client.delete(*keys)
    finally:
        await client.aclose()


def _stats(runner: Runner) -> dict:
    return runner.sources[0].stats()


def _state(runner: Runner, broker: "CountingBroker"):
    return lambda: {"broker_writes": len(broker.writes), "twice": sum(v > 1 for v in broker.writes.values()),
                    **{k: v for k, v in _stats(runner).items() if k.startswith(("tts_", "conn", "messages"))},
                    **{k: v for k, v in runner.counters().items() if k in ("received", "upserted", "dropped")}}


async def _restart_scenario(*, storage_fails: bool) -> None:
    app = f"bf{uuid.uuid4().hex[:10]}"
    prefix = f"test-tts-{app}"
    broker = await CountingBroker().start()
    storage = await StorageStandIn(api_key=KEY).start()
    ups = Uplinks(app, storage)
    cfg = _config(broker.url, storage.url, app, prefix)
    runner = Runner.from_config(cfg, adapter=TOY_TS_ADAPTER)
    try:
        await runner.start()
        await wait_until(lambda: runner.ready, what="first run ready")
        await ups.send(20)                                      # live, while the adapter runs
        await wait_until(lambda: len(broker.writes) == 20, what="20 live uplinks at the broker", detail=_state(runner, broker))
        await wait_until(lambda: _stats(runner)["tts_backfill_skipped"] >= 20,
                         what="a periodic catch-up that finds them admitted already", detail=_state(runner, broker))
        await runner.stop()

        await ups.send(200)                                     # QoS 0 while stopped: gone from MQTT
        if storage_fails:
            storage.fail_next = 10**6                           # the Storage API is down for a while …
        runner = Runner.from_config(cfg, adapter=TOY_TS_ADAPTER)
        await runner.start()
        await wait_until(lambda: runner.ready, what="second run ready")
        if storage_fails:
            await wait_until(lambda: _stats(runner)["tts_backfill_failures"] >= 3, what="failed catch-ups", detail=_state(runner, broker))
            await ups.send(10)                                  # … live traffic flows meanwhile
            await wait_until(lambda: len(broker.writes) == 30, what="live uplinks while the storage API fails",
                             detail=_state(runner, broker))
            assert _stats(runner)["tts_backfill_uplinks"] == 0
            storage.fail_next = 0
            storage.fail_midstream, storage.fail_midstream_after = 2, 7    # then it breaks mid-answer twice
        await wait_until(lambda: len(broker.writes) == 20 + 200 + (10 if storage_fails else 0), what="the backfill",
                         detail=_state(runner, broker))
        assert _stats(runner)["tts_backfill_uplinks"] == 200, _state(runner, broker)()
        await ups.send(5)                                       # live after the catch-up
        total = 225 + (10 if storage_fails else 0)
        await wait_until(lambda: len(broker.writes) == total, what="live uplinks after the catch-up", detail=_state(runner, broker))
        runs = _stats(runner)["tts_backfill_runs"]
        await wait_until(lambda: _stats(runner)["tts_backfill_runs"] >= runs + 2, what="two more periodic catch-ups")
        assert await runner.wait_idle(timeout=30)
    finally:
        await runner.stop()
        await storage.stop()
        await broker.stop()
        await _cleanup_redis(prefix)
    assert len(broker.writes) == total
    twice = {k: v for k, v in broker.writes.items() if v != 1}
    assert not twice, f"written more than once: {list(twice.items())[:5]}"
    wanted = {(f"urn:ngsi-ld:WeatherObserved:test:dev-{i % N_DEVICES}",
               (ups.base + timedelta(milliseconds=10 * i)).isoformat(timespec="milliseconds")[:-6] + "Z")
              for i in range(ups.n)}
    assert set(broker.writes) == wanted
    if storage_fails:
        assert storage.requests, "the stand-in was asked"


async def test_uplinks_published_while_the_adapter_is_stopped_are_backfilled_once():
    await _restart_scenario(storage_fails=False)


async def test_backfill_is_retried_while_the_storage_api_fails_and_live_traffic_flows():
    await _restart_scenario(storage_fails=True)


async def test_qos0_drops_while_connected_are_found_by_the_periodic_catch_up_and_late_storage_writes_too():
    """Uplinks that never reach us over MQTT while we are connected (TTS drops for slow clients,
    QoS 0 on a flaky link) and appear in storage only later (batched writes)."""
    app = f"bf{uuid.uuid4().hex[:10]}"
    prefix = f"test-tts-{app}"
    broker = await CountingBroker().start()
    storage = await StorageStandIn(api_key=KEY, visible_after_s=1.5).start()
    ups = Uplinks(app, storage)
    runner = Runner.from_config(_config(broker.url, storage.url, app, prefix, period_s=1), adapter=TOY_TS_ADAPTER)
    try:
        await runner.start()
        await wait_until(lambda: runner.ready, what="ready")
        await ups.send(10)
        for _, doc in ups.make(15):                 # stored, never published
            storage.store(app, doc)
        await ups.send(10)
        await wait_until(lambda: len(broker.writes) == 35, what="the dropped ones via the periodic catch-up",
                         detail=_state(runner, broker))
        runs = _stats(runner)["tts_backfill_runs"]
        await wait_until(lambda: _stats(runner)["tts_backfill_runs"] >= runs + 2, what="two more catch-ups")
        assert await runner.wait_idle(timeout=30)
    finally:
        await runner.stop()
        await storage.stop()
        await broker.stop()
        await _cleanup_redis(prefix)
    assert len(broker.writes) == 35 and set(broker.writes.values()) == {1}


async def test_the_webhook_source_is_backfilled_from_the_storage_integration_too():
    app = f"bf{uuid.uuid4().hex[:10]}"
    broker = await CountingBroker().start()
    storage = await StorageStandIn(api_key=KEY).start()
    ups = Uplinks(app, storage)
    for _, doc in ups.make(30):                     # pushed while the adapter was down: the webhook failed
        storage.store(app, doc)
    cfg = _config(broker.url, storage.url, app, "unused")
    cfg["outbox"] = {"kind": "memory"}
    cfg["http"] = {"host": "127.0.0.1", "port": 0}
    cfg["sources"] = [{"kind": "webhook", "path": "/tts", "token": "hook-token", "profile": "toy-lora",
                       "tts": {"application_id": app, "api_key": KEY, "api_url": storage.url,
                               "backfill": {"period_s": 1, "page_size": 7}}}]
    runner = Runner.from_config(cfg, adapter=TOY_TS_ADAPTER)
    try:
        await runner.start()
        await wait_until(lambda: len(broker.writes) == 30, what="the backfill at start")
        [(topic, doc)] = ups.make(1)
        async with aiohttp.ClientSession() as http:
            async with http.post(f"{runner.http_url}/tts", data=orjson.dumps(doc),
                                 headers={"Authorization": "Bearer hook-token"}) as resp:
                assert resp.status == 202
        storage.store(app, doc)                     # the storage has the pushed one too
        await wait_until(lambda: len(broker.writes) == 31, what="the pushed uplink")
        runs = _stats(runner)["tts_backfill_runs"]
        await wait_until(lambda: _stats(runner)["tts_backfill_runs"] >= runs + 2, what="two more catch-ups")
        assert await runner.wait_idle(timeout=30)
        assert _stats(runner)["tts_backfill_skipped"] >= 31
        scrape = runner.metrics.render().decode()
        assert 'stadtlink_source_tts_backfill_uplinks{adapter="tts-toy",source="webhook/tts"} 30.0' in scrape
    finally:
        await runner.stop()
        await storage.stop()
        await broker.stop()
    assert len(broker.writes) == 31 and set(broker.writes.values()) == {1}


async def test_two_webhook_replicas_catch_up_once_between_them():
    """Several webhook replicas on one Redis: a lease lets one of them catch up; the other stands
    by and takes over when the first stops."""
    app = f"bf{uuid.uuid4().hex[:10]}"
    prefix = f"test-tts-{app}"
    broker = await CountingBroker().start()
    storage = await StorageStandIn(api_key=KEY).start()
    ups = Uplinks(app, storage)
    for _, doc in ups.make(40):
        storage.store(app, doc)
    cfg = _config(broker.url, storage.url, app, prefix)
    cfg["sources"] = [{"kind": "webhook", "path": "/tts", "token": "hook-token", "profile": "toy-lora",
                       "tts": {"application_id": app, "api_key": KEY, "api_url": storage.url,
                               "backfill": {"period_s": 0.5, "page_size": 7}}}]
    runners = []
    for name in ("pod-a", "pod-b"):   # two pods: their own outbox consumer names (default: the host name)
        runners.append(Runner.from_config({**cfg, "outbox": {**cfg["outbox"], "consumer": name}},
                                          adapter=TOY_TS_ADAPTER))
    try:
        for r in runners:
            await r.start()
        await wait_until(lambda: len(broker.writes) == 40, what="the backfill at start", detail=_state(runners[0], broker))
        await wait_until(lambda: all(_stats(r)["tts_backfill_runs"] + _stats(r)["tts_backfill_standby"] >= 4
                                for r in runners), what="several rounds on both")
        leaders = [r for r in runners if _stats(r)["tts_backfill_leader"] == 1.0]
        assert len(leaders) == 1, [_stats(r) for r in runners]
        standby = next(r for r in runners if r is not leaders[0])
        assert _stats(standby)["tts_backfill_uplinks"] == 0 and _stats(standby)["tts_backfill_standby"] >= 1
        await leaders[0].stop()                       # the leader goes; the other takes over at once
        for _, doc in ups.make(5):
            storage.store(app, doc)
        await wait_until(lambda: len(broker.writes) == 45, what="the new leader's catch-up", detail=_state(standby, broker))
        await wait_until(lambda: _stats(standby)["tts_backfill_uplinks"] == 5, what="counted",
                         detail=_state(standby, broker))
        assert _stats(standby)["tts_backfill_leader"] == 1.0, _state(standby, broker)()
        assert await standby.wait_idle(timeout=30)
    finally:
        handed = [(_stats(r)["tts_backfill_uplinks"], _stats(r)["tts_backfill_skipped"]) for r in runners]
        for r in runners:
            await r.stop()
        await storage.stop()
        await broker.stop()
        await _cleanup_redis(prefix)
    twice = [k for k, v in broker.writes.items() if v > 1]
    assert len(broker.writes) == 45 and not twice, (twice, handed)

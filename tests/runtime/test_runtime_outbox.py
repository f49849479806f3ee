"""Outbox: memory and Redis Streams; limits, back-pressure, consumer crash, Redis restart, state."""
from __future__ import annotations

import asyncio
import shutil
import subprocess
import tempfile
import time

import pytest
import redis.asyncio as aioredis

from stadtlink.adapters.core import tts_uplink
from stadtlink.adapters.core.outbox import MemoryOutbox, OutboxFull, RedisOutbox
from stadtlink.adapters.core.runner import Runner
from stadtlink.adapters.core.testing import SHARED_REDIS_URL
from rt_helpers import FakeBroker, QueueSource, base_config, free_port, wait_until
from rt_toy_adapter import ADAPTER

REDIS = SHARED_REDIS_URL


def ent(i, v=1.0):
    return {"id": f"urn:ngsi-ld:WeatherObserved:t:{i}", "type": "WeatherObserved",
            "temperature": {"type": "Property", "value": v, "observedAt": "2024-05-01T12:00:00.000Z"}}


def up(device: str, value: int, f_cnt: int):
    return tts_uplink(device, value.to_bytes(2, "big"), f_port=1, f_cnt=f_cnt,
                      received_at=f"2024-05-01T12:{f_cnt // 60:02d}:{f_cnt % 60:02d}Z", application_id="rt")


# --- memory ---------------------------------------------------------------------------------------------

async def test_memory_outbox_limit_alarm_and_backpressure():
    ob = MemoryOutbox(max_length=3, backpressure_wait_s=0.2)
    await ob.put([ent(1), ent(2), ent(3)])
    assert ob.full
    t0 = time.monotonic()
    with pytest.raises(OutboxFull):
        await ob.put([ent(4)])
    assert time.monotonic() - t0 >= 0.19          # it waited for room before refusing
    assert ob.depth == 3 and ob.full_events == 1  # nothing dropped, alarm raised once

    async def drain_later():
        await asyncio.sleep(0.05)
        items = await ob.take(2, 0)
        await ob.ack(items)

    task = asyncio.create_task(drain_later())
    await ob.put([ent(4)])                         # waits, then gets room
    await task
    assert ob.depth == 2 and not ob.full


async def test_runner_readiness_false_and_source_not_acked_when_outbox_full():
    fb = FakeBroker()                                          # never started: broker unreachable
    src = QueueSource()
    cfg = base_config(fb.url, outbox={"kind": "memory", "max_length": 3, "backpressure_wait_s": 0.1})
    runner = Runner.from_config(cfg, adapter=ADAPTER, sources=[(src, "toy-lora", None)])
    await runner.start()
    try:
        for i in range(3):
            topic, doc = up("dev-1", 100 + i, i + 1)
            await src.push(doc, topic=topic)
        topic, doc = up("dev-1", 200, 10)
        with pytest.raises(OutboxFull):
            await src.push(doc, topic=topic)
        assert src.refused == 1 and src.acked == 3
        ready, checks = runner.readiness()
        assert not ready and not checks["outbox"]["ok"] and "limit" in checks["outbox"]["detail"]
        assert runner.counters()["outbox_full"] == 1.0
        assert runner.counters()["outbox_depth"] == 3
        # the refused message was not recorded as seen: its redelivery is not a "duplicate"
        assert (("dev-1", 10, 1)) not in runner.pipeline._dedup
    finally:
        await runner.stop(grace=0.2)


# --- redis -------------------------------------------------------------------------------------------------

async def test_redis_outbox_put_take_ack(redis_prefix):
    ob = RedisOutbox(url=REDIS, stream=f"{redis_prefix}:a:outbox", consumer="c1", max_length=100)
    await ob.start()
    try:
        await ob.put([ent(1), ent(2, 2.0)])
        assert ob.depth == 2
        items = await ob.take(10, 0.1)
        assert [i.entity["temperature"]["value"] for i in items] == [1.0, 2.0]
        await ob.ack(items[:1])
        await ob.refresh()
        assert ob.depth == 1 and ob.oldest_age >= 0
        await ob.ack(items[1:])
        await ob.refresh()
        assert ob.depth == 0
    finally:
        await ob.close()


async def test_redis_pending_entries_of_a_crashed_consumer_are_reclaimed(redis_prefix):
    stream = f"{redis_prefix}:a:outbox"
    crashed = RedisOutbox(url=REDIS, stream=stream, consumer="crashed", max_length=100)
    await crashed.start()
    await crashed.put([ent(i) for i in range(5)])
    taken = await crashed.take(10, 0.1)
    assert len(taken) == 5
    await crashed.close()                                   # dies without acking
    other = RedisOutbox(url=REDIS, stream=stream, consumer="other", max_length=100, claim_min_idle_ms=100)
    await other.start()
    try:
        assert await other.take(10, 0.05) == []            # not idle long enough yet
        await asyncio.sleep(0.15)
        other._next_claim = 0
        got = await other.take(10, 0.05)
        assert sorted(i.entity["id"] for i in got) == sorted(e["id"] for e in (ent(i) for i in range(5)))
        await other.ack(got)
        await other.refresh()
        assert other.depth == 0
    finally:
        await other.close()


async def test_redis_restarted_consumer_rereads_its_own_pending_at_once(redis_prefix):
    stream = f"{redis_prefix}:a:outbox"
    first = RedisOutbox(url=REDIS, stream=stream, consumer="pod-1", max_length=100)
    await first.start()
    await first.put([ent(1), ent(2)])
    assert len(await first.take(10, 0.1)) == 2
    await first.close()
    again = RedisOutbox(url=REDIS, stream=stream, consumer="pod-1", max_length=100)   # same name, min-idle 30 s
    await again.start()
    try:
        got = await again.take(10, 0.1)
        assert len(got) == 2
    finally:
        await again.close()


async def test_redis_outbox_limit_backpressure(redis_prefix):
    ob = RedisOutbox(url=REDIS, stream=f"{redis_prefix}:a:outbox", consumer="c", max_length=4,
                     backpressure_wait_s=0.2)
    await ob.start()
    try:
        await ob.put([ent(i) for i in range(4)])
        with pytest.raises(OutboxFull):
            await ob.put([ent(9)])
        assert ob.full and ob.depth == 4
        r = aioredis.from_url(REDIS)
        assert await r.xlen(f"{redis_prefix}:a:outbox") == 4           # nothing dropped, nothing extra
        await r.aclose()
    finally:
        await ob.close()


async def test_runner_with_redis_outbox_survives_broker_outage(redis_prefix):
    port = free_port()
    src = QueueSource()
    cfg = base_config(f"http://127.0.0.1:{port}", outbox={"kind": "redis", "url": REDIS, "key_prefix": redis_prefix},
                      devices=[{"id": f"d{i}", "lat": 50, "lon": 8} for i in range(20)])
    runner = Runner.from_config(cfg, adapter=ADAPTER, sources=[(src, "toy-lora", None)])
    await runner.start()
    try:
        for i in range(20):
            topic, doc = up(f"d{i}", i, 1)
            await src.push(doc, topic=topic)
        await asyncio.sleep(0.3)
        await runner.outbox.refresh()
        assert runner.outbox.depth == 20
        ready, checks = runner.readiness()
        assert not ready and checks["broker"]["ok"] is False
        fb = await FakeBroker(port).start()
        try:
            assert await runner.wait_idle(timeout=10)
            assert len(fb.entities) == 20
            assert runner.counters()["upserted"] == 20
            assert await wait_until(lambda: runner.readiness()[0], timeout=3)
        finally:
            await fb.stop()
    finally:
        await runner.stop(grace=1)


async def test_state_and_dead_letters_persist_in_redis(redis_prefix):
    fb = await FakeBroker().start()
    cfg = base_config(fb.url, outbox={"kind": "redis", "url": REDIS, "key_prefix": redis_prefix})
    try:
        for run in range(2):
            src = QueueSource()
            runner = Runner.from_config(cfg, adapter=ADAPTER, sources=[(src, "toy-lora", None)])
            await runner.start()
            try:
                topic, doc = up("dev-1", 100, 10 + run)
                await src.push(doc, topic=topic)
                topic, doc = up("ghost", 100, 1)
                await src.push(doc, topic=topic)
                assert runner.pipeline.ctx.state["count:dev-1"] == run + 1     # the counter survived the restart
                assert await runner.wait_idle()
            finally:
                await runner.stop()
        r = aioredis.from_url(REDIS)
        assert await r.hget(f"{redis_prefix}:toy:state", "count:dev-1") == b"2"
        assert await r.xlen(f"{redis_prefix}:toy:deadletter") == 2
        await r.aclose()
    finally:
        await fb.stop()


# --- a Redis that restarts ----------------------------------------------------------------------------------

class OwnRedis:
    def __init__(self, port: int, workdir: str, appendonly: bool):
        self.port, self.dir, self.appendonly = port, workdir, appendonly
        self.proc = None

    def start(self):
        args = ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
                "--dir", self.dir, "--appendonly", "yes" if self.appendonly else "no", "--appendfsync", "always"]
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 20
        import socket

        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), 0.2).close()
                return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("redis-server did not start")

    def kill(self):
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait(5)
            self.proc = None


@pytest.fixture
def own_redis():
    if shutil.which("redis-server") is None:
        pytest.skip("redis-server not installed")
    workdir = tempfile.mkdtemp(prefix="sl-redis-")
    servers = []

    def make(appendonly=True):
        srv = OwnRedis(free_port(), workdir, appendonly)
        servers.append(srv)
        return srv

    yield make
    for s in servers:
        s.kill()
    shutil.rmtree(workdir, ignore_errors=True)


async def test_redis_restart_with_appendonly_keeps_the_outbox(own_redis):
    """An operator must run Redis with `appendonly yes` (AOF) for the outbox to survive a Redis restart."""
    srv = own_redis(appendonly=True)
    srv.start()
    url = f"redis://127.0.0.1:{srv.port}/0"
    port = free_port()
    src = QueueSource()
    cfg = base_config(f"http://127.0.0.1:{port}", outbox={"kind": "redis", "url": url, "key_prefix": "rr"},
                      devices=[{"id": f"d{i}", "lat": 50, "lon": 8} for i in range(10)])
    runner = Runner.from_config(cfg, adapter=ADAPTER, sources=[(src, "toy-lora", None)])
    await runner.start()
    try:
        for i in range(10):
            topic, doc = up(f"d{i}", i, 1)
            await src.push(doc, topic=topic)
        srv.kill()                                            # Redis crashes while the broker is down
        assert await wait_until(lambda: not runner.outbox.healthy, timeout=15), "outage not noticed"
        assert not runner.readiness()[0]
        topic, doc = up("d0", 99, 2)
        with pytest.raises(Exception):
            await src.push(doc, topic=topic)                  # refused, so the source does not ack it
        srv.start()                                           # same port, same AOF directory
        fb = await FakeBroker(port).start()
        try:
            assert await wait_until(lambda: len(fb.entities) == 10, timeout=40), f"{len(fb.entities)} of 10 arrived"
            assert await runner.wait_idle(timeout=20)
        finally:
            await fb.stop()
    finally:
        await runner.stop(grace=1)


async def test_redis_restart_without_persistence_recovers_for_new_data(own_redis):
    """Without AOF a Redis restart empties the stream (operators: configure `appendonly yes`);
    the adapter recreates its consumer group and carries on with new data."""
    srv = own_redis(appendonly=False)
    srv.start()
    fb = await FakeBroker().start()
    src = QueueSource()
    cfg = base_config(fb.url, outbox={"kind": "redis", "url": f"redis://127.0.0.1:{srv.port}/0", "key_prefix": "nr"})
    runner = Runner.from_config(cfg, adapter=ADAPTER, sources=[(src, "toy-lora", None)])
    await runner.start()
    try:
        topic, doc = up("dev-1", 100, 1)
        await src.push(doc, topic=topic)
        assert await wait_until(lambda: runner.counters()["upserted"] == 1, timeout=5)
        srv.kill()
        srv.start()
        deadline = time.monotonic() + 10
        f_cnt = 2
        while True:                       # the first pushes may be refused while the client reconnects
            topic, doc = up("dev-1", 200, f_cnt)
            try:
                await src.push(doc, topic=topic)
                break
            except Exception:             # noqa: BLE001
                assert time.monotonic() < deadline
                f_cnt += 1
                await asyncio.sleep(0.2)
        assert await wait_until(lambda: runner.counters()["upserted"] == 2, timeout=10)
        assert fb.entities["urn:ngsi-ld:WeatherObserved:test:dev-1"]["temperature"]["value"] == 2.0
    finally:
        await runner.stop(grace=1)
        await fb.stop()


async def test_batcher_bug_is_survived_and_taken_entries_are_sent():
    fb = await FakeBroker().start()
    src = QueueSource()
    runner = Runner.from_config(base_config(fb.url), adapter=ADAPTER, sources=[(src, "toy-lora", None)])
    await runner.start()
    try:
        original = runner.batcher._write
        calls = {"n": 0}

        async def flaky(entries):
            calls["n"] += 1
            if calls["n"] == 1:
                raise RuntimeError("batcher bug")
            await original(entries)

        runner.batcher._write = flaky
        topic, doc = up("dev-1", 300, 1)
        await src.push(doc, topic=topic)
        assert await wait_until(lambda: runner.counters()["upserted"] == 1, timeout=6)
        assert runner.counters()["errors"] == 1 and runner.liveness()[0]
    finally:
        await runner.stop(grace=1)
        await fb.stop()


async def test_refused_message_does_not_change_mapper_state():
    """The outbox refused: the source redelivers, so the mapping's state changes are undone."""
    fb = FakeBroker()                                           # unreachable: the outbox fills up
    src = QueueSource()
    cfg = base_config(fb.url, outbox={"kind": "memory", "max_length": 1, "backpressure_wait_s": 0.05})
    runner = Runner.from_config(cfg, adapter=ADAPTER, sources=[(src, "toy-lora", None)])
    await runner.start()
    try:
        topic, doc = up("dev-1", 1, 1)
        await src.push(doc, topic=topic)
        assert runner.pipeline.ctx.state["count:dev-1"] == 1
        topic, doc = up("dev-1", 2, 2)
        with pytest.raises(OutboxFull):
            await src.push(doc, topic=topic)
        assert runner.pipeline.ctx.state["count:dev-1"] == 1
    finally:
        await runner.stop(grace=0.2)


async def test_start_waits_for_a_redis_that_comes_up_late(own_redis):
    srv = own_redis(appendonly=False)
    fb = await FakeBroker().start()
    cfg = base_config(fb.url, outbox={"kind": "redis", "url": f"redis://127.0.0.1:{srv.port}/0", "key_prefix": "late",
                                      "startup_wait_s": 10})
    runner = Runner.from_config(cfg, adapter=ADAPTER, sources=[])
    starting = asyncio.create_task(runner.start())
    try:
        await asyncio.sleep(0.6)
        assert not starting.done()
        srv.start()
        await asyncio.wait_for(starting, 10)
        assert await wait_until(lambda: runner.readiness()[0], timeout=5)
    finally:
        if not starting.done():
            starting.cancel()
        await runner.stop(grace=0.5)
        await fb.stop()


async def test_older_reading_after_a_restart_is_still_stale(redis_prefix):
    fb = await FakeBroker().start()
    cfg = base_config(fb.url, outbox={"kind": "redis", "url": REDIS, "key_prefix": redis_prefix})
    try:
        for f_cnt, minute in ((1, 10), (2, 5)):           # the second run gets an older reading
            src = QueueSource()
            runner = Runner.from_config(cfg, adapter=ADAPTER, sources=[(src, "toy-lora", None)])
            await runner.start()
            try:
                topic, doc = tts_uplink("dev-1", (1000 + minute).to_bytes(2, "big"), f_port=1, f_cnt=f_cnt,
                                        received_at=f"2024-05-01T12:{minute:02d}:00Z", application_id="rt")
                await src.push(doc, topic=topic)
                assert await runner.wait_idle()
                dropped = runner.counters()["dropped"]
            finally:
                await runner.stop()
        assert dropped == {"stale": 1}
        assert fb.entities["urn:ngsi-ld:WeatherObserved:test:dev-1"]["temperature"]["value"] == 10.1
    finally:
        await fb.stop()


async def test_redis_outbox_refusal_stores_neither_entities_nor_state(redis_prefix):
    src = QueueSource()
    cfg = base_config(f"http://127.0.0.1:{free_port()}", outbox={
        "kind": "redis", "url": REDIS, "key_prefix": redis_prefix, "max_length": 1, "backpressure_wait_s": 0.1})
    runner = Runner.from_config(cfg, adapter=ADAPTER, sources=[(src, "toy-lora", None)])
    await runner.start()
    r = aioredis.from_url(REDIS)
    try:
        topic, doc = up("dev-1", 1, 1)
        await src.push(doc, topic=topic)
        assert await r.hget(f"{redis_prefix}:toy:state", "count:dev-1") == b"1"   # stored with the entity
        topic, doc = up("dev-1", 2, 2)
        with pytest.raises(OutboxFull):
            await src.push(doc, topic=topic)
        assert await r.hget(f"{redis_prefix}:toy:state", "count:dev-1") == b"1"
        assert runner.pipeline.ctx.state["count:dev-1"] == 1
        assert await r.xlen(f"{redis_prefix}:toy:outbox") == 1
    finally:
        await r.aclose()
        await runner.stop(grace=0.2)


async def test_entries_delivered_in_a_lost_answer_are_read_again_after_reconnect(redis_prefix):
    stream = f"{redis_prefix}:a:outbox"
    ob = RedisOutbox(url=REDIS, stream=stream, consumer="c1", max_length=100)
    await ob.start()
    r = aioredis.from_url(REDIS)
    try:
        assert await ob.take(10, 0.05) == []                           # start-up pending phase done
        await ob.put([ent(1), ent(2)])
        # Redis delivered them to c1 but the answer never reached us (connection dropped)
        await r.xreadgroup("stadtlink", "c1", {stream: ">"}, count=10)
        assert await ob.take(10, 0.05) == []
        import redis.exceptions

        ob._failed(redis.exceptions.ConnectionError("connection lost"))
        got = await ob.take(10, 0.05)
        assert [i.entity["id"] for i in got] == [ent(1)["id"], ent(2)["id"]]
    finally:
        await r.aclose()
        await ob.close()

"""Two sinks at once (the local NGSI-LD broker and an NGSI-v2 Orion), one of them stopped for a
while: the healthy one does not wait, nothing is lost on either, and the stopped one catches up in
order when it returns. Memory and Redis outboxes, over real sockets."""

from __future__ import annotations

import uuid

import orjson
import pytest

from stadtlink.adapters.core.config import OutboxConfig
from stadtlink.adapters.core.deadletter import MemoryDeadLetters
from stadtlink.adapters.core.metrics import Metrics
from stadtlink.adapters.core.outbox import OutboxFull
from stadtlink.adapters.core.sinks import FanoutOutbox, Sink, SinkSet, sink_outbox
from stadtlink.broker_client import RetryPolicy
from stadtlink.broker_client.backends import make_backend
from stadtlink.broker_client.local_broker import running_broker
from stadtlink.adapters.core.testing import SHARED_REDIS_URL, wait_until

from .servers import OrionV2Server

FAST = RetryPolicy(attempts=1, base_delay=0.001, max_delay=0.01)
SINK_TUNING = {"batch_size": 50, "flush_ms": 20, "retry_base_s": 0.02, "retry_max_s": 0.1, "health_interval_s": 0.1,
               "timeout_s": 1.0}


def reading(i: int, spot: int = 1) -> dict:
    return {"id": f"urn:ngsi-ld:ParkingSpot:town:{spot}", "type": "ParkingSpot",
            "status": {"type": "Property", "value": "occupied" if i % 2 else "free",
                       "observedAt": f"2026-11-29T10:{i // 60:02d}:{i % 60:02d}.000Z"},
            "seq": {"type": "Property", "value": i}}


def build(outbox_cfg: OutboxConfig, ld_url: str, v2_url: str, *, semantics: str, redis_client=None,
          v2_when_full: str = "deadletter") -> SinkSet:
    deadletters = MemoryDeadLetters()
    configs = [("local", "broker", {"kind": "orion-ld", "url": ld_url, **SINK_TUNING}, "backpressure"),
               ("orion-v2", "brokers[1]", {"kind": "ngsi-v2", "url": v2_url, **SINK_TUNING}, v2_when_full)]
    sinks = []
    for index, (name, key, cfg, when_full) in enumerate(configs):
        sinks.append(Sink(name=name, key=key, config=cfg, backend=make_backend(cfg, key=key, retry=FAST),
                          outbox=sink_outbox(outbox_cfg, f"test-{uuid.uuid4().hex[:8]}" if index == 0 else "x", index,
                                             name, redis_client=redis_client),
                          metrics=Metrics("test"), when_full=when_full))
    return SinkSet(sinks, deadletters, semantics=semantics)


async def ld_entity(url: str, eid: str) -> dict | None:
    from stadtlink.broker_client import NGSILDClient
    from stadtlink.broker_client.errors import ResourceNotFound

    async with NGSILDClient(url) as c:
        try:
            return await c.get_entity(eid)
        except ResourceNotFound:
            return None


def v2_seq_order(orion: OrionV2Server) -> list[int]:
    out = []
    for _, _, _, body in orion.writes("/v2/op/update"):
        for ent in orjson.loads(body)["entities"]:
            out.append(ent["seq"]["value"])
    return out


@pytest.mark.parametrize("outbox_kind", ["memory", "redis"])
async def test_one_sink_stopped_nothing_lost_healthy_one_does_not_wait(outbox_kind):
    prefix = f"stadtlink-test-{uuid.uuid4().hex}"
    outbox_cfg = OutboxConfig(kind=outbox_kind, key_prefix=prefix, max_length=10_000)
    redis_client = None
    if outbox_kind == "redis":
        import redis.asyncio as aioredis

        redis_client = aioredis.from_url(SHARED_REDIS_URL)
    orion = OrionV2Server()
    await orion.start()
    try:
        async with running_broker() as ld_url:
            sinks = build(outbox_cfg, ld_url, orion.url, semantics="time-series", redis_client=redis_client)
            for s in sinks:
                await s.backend.open()
            await sinks.outbox.start()
            sinks.start()
            try:
                # phase 1: both up
                for i in range(10):
                    await sinks.outbox.put([reading(i)])
                assert await sinks.wait_idle(10)
                assert v2_seq_order(orion) == list(range(10))
                # phase 2: the v2 Orion stops; the local broker keeps getting every reading at once
                await orion.stop()
                for i in range(10, 40):
                    await sinks.outbox.put([reading(i)])
                    assert await wait_until(lambda: sinks.sinks[0].outbox.depth == 0, 5)
                ent = await ld_entity(ld_url, reading(0)["id"])
                assert ent["seq"]["value"] == 39
                v2 = sinks.sinks[1]
                assert await wait_until(lambda: v2.batcher.broker_ok is False, 5)
                await v2.outbox.refresh()
                assert v2.outbox.depth >= 29                     # its backlog waits, in its own outbox
                checks = sinks.readiness()
                assert checks["broker:local"]["ok"] and not checks["broker:orion-v2"]["ok"]
                # phase 3: it returns and catches up, oldest first
                await orion.start()
                assert await sinks.wait_idle(15)
                order = v2_seq_order(orion)
                assert sorted(set(order)) == list(range(40))     # nothing lost
                assert order[10:] == sorted(order[10:])           # in order
                assert orion.store()[reading(0)["id"]]["seq"]["value"] == 39
                assert sinks.readiness()["broker:orion-v2"]["ok"]
                counts = sinks.counters()
                assert counts["local"]["upserted"] == 40 and counts["orion-v2"]["upserted"] >= 40
            finally:
                await sinks.stop(grace=2)
                await sinks.outbox.close()
    finally:
        await orion.stop()
        if redis_client is not None:
            keys = [k async for k in redis_client.scan_iter(match=f"{prefix}*")]
            if keys:
                await redis_client.delete(*keys)
            await redis_client.aclose()


async def test_full_secondary_sink_dead_letters_for_itself_and_never_blocks_the_primary():
    outbox_cfg = OutboxConfig(kind="memory", max_length=5, backpressure_wait_s=0.1)
    orion = OrionV2Server()
    await orion.start()
    await orion.stop()          # never reachable during this test
    async with running_broker() as ld_url:
        sinks = build(outbox_cfg, ld_url, orion.url, semantics="latest-state")
        for s in sinks:
            await s.backend.open()
        sinks.start()
        try:
            for i in range(20):
                await sinks.outbox.put([reading(i, spot=i)])   # 20 entities, v2 outbox holds 5
                assert await wait_until(lambda: sinks.sinks[0].outbox.depth == 0, 5)
            assert await sinks.wait_idle(0.5) is False       # the v2 backlog is still there
            v2 = sinks.sinks[1]
            assert v2.outbox.depth == 5 and v2.spilled == 15
            records = await sinks.deadletters.list(100)
            assert len(records) == 15
            assert all(r["reason"] == "sink-outbox-full" and r["sink"] == "orion-v2" for _, r in records)
            assert not sinks.outbox.full                         # the sources are not held back
            assert sinks.readiness()["broker:orion-v2"]["ok"] is False
        finally:
            await sinks.stop(grace=0.5)


async def test_backpressure_sink_full_refuses_before_copying_anywhere():
    outbox_cfg = OutboxConfig(kind="memory", max_length=3, backpressure_wait_s=0.05)
    sinks = [Sink(name=n, key=k, config={}, backend=None, outbox=sink_outbox(outbox_cfg, "a", i, n),
                  metrics=Metrics("t"), when_full=w)
             for i, (n, k, w) in enumerate([("a", "broker", "deadletter"), ("b", "brokers[1]", "backpressure")])]
    fan = FanoutOutbox(sinks, MemoryDeadLetters())
    await fan.put([reading(1), reading(2), reading(3)])
    with pytest.raises(OutboxFull):
        await fan.put([reading(4)])
    assert sinks[0].outbox.depth == 3 and sinks[1].outbox.depth == 3   # no copy went to "a" either
    assert fan.full


async def test_extra_goes_with_the_first_outbox_only():
    """The mapper state (``extra``) is written once, in the same transaction as the first copy."""
    import redis.asyncio as aioredis

    prefix = f"stadtlink-test-{uuid.uuid4().hex}"
    outbox_cfg = OutboxConfig(kind="redis", key_prefix=prefix)
    client = aioredis.from_url(SHARED_REDIS_URL)
    try:
        sinks = [Sink(name=n, key=k, config={}, backend=None,
                      outbox=sink_outbox(outbox_cfg, "a", i, n, redis_client=client), metrics=Metrics("t"),
                      when_full=w)
                 for i, (n, k, w) in enumerate([("a", "broker", "backpressure"), ("b", "brokers[1]", "deadletter")])]
        fan = FanoutOutbox(sinks, MemoryDeadLetters())
        await fan.start()
        calls = []

        def extra(pipe):
            calls.append(pipe)
            pipe.incr(f"{prefix}:state-writes")

        await fan.put([reading(1)], extra=extra)
        assert len(calls) == 1
        assert int(await client.get(f"{prefix}:state-writes")) == 1
        assert await client.xlen(f"{prefix}:a:outbox") == 1 and await client.xlen(f"{prefix}:a:outbox:b") == 1
    finally:
        keys = [k async for k in client.scan_iter(match=f"{prefix}*")]
        if keys:
            await client.delete(*keys)
        await client.aclose()

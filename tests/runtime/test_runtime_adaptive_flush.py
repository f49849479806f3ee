"""Batcher with ``flush="adaptive"`` (the runtime default), paced by the broker: with no write in
flight what is queued goes at once; while writes are under way (at most two) the next batch fills
up to ``batch_size``; ``flush_ms`` is only an upper bound (real HTTP)."""
from __future__ import annotations

import asyncio

import pytest
from aiohttp import web

from stadtlink.adapters.core.config import BrokerConfig
from rt_helpers import BatcherRig, FakeBroker, wait_until
from stadtlink.adapters.core.testing import SHARED_REDIS_URL


def ent(i):
    return {"id": f"urn:ngsi-ld:WeatherObserved:t:{i}", "type": "WeatherObserved",
            "temperature": {"type": "Property", "value": float(i), "observedAt": "2024-05-01T12:00:00.000Z"}}


class GatedBroker(FakeBroker):
    """Holds every upsert until ``gate`` is set (a slow broker)."""

    def __init__(self):
        super().__init__()
        self.gate = asyncio.Event()
        self.arrived = 0

    async def _upsert(self, request: web.Request) -> web.Response:
        self.arrived += 1
        await self.gate.wait()
        return await super()._upsert(request)


def Rig(url, *, batch_size, flush="adaptive", flush_ms=60_000) -> BatcherRig:
    # a slow (gated) broker here: long client timeout, no health probes in between
    return BatcherRig(url, batch_size=batch_size, flush=flush, flush_ms=flush_ms, timeout=30,
                      health_interval_s=60, stop_timeout=10)


async def test_written_without_waiting_for_flush_ms():
    fb = await FakeBroker().start()
    try:
        async with Rig(fb.url, batch_size=100) as rig:
            await asyncio.sleep(0.05)
            await rig.outbox.put([ent(1), ent(2)])
            # flush_ms is a minute: only the adaptive flush can write this before the rig closes
            assert await wait_until(lambda: len(fb.batches) == 1, timeout=30)
            assert not rig.batcher._closing
        assert [len(b) for b in fb.batches] == [2]
    finally:
        await fb.stop()


async def test_a_backlog_goes_out_in_full_batches():
    fb = await FakeBroker().start()
    try:
        rig = Rig(fb.url, batch_size=5)
        await rig.outbox.put([ent(i) for i in range(12)])
        async with rig:
            assert await wait_until(lambda: len(fb.batches) == 3, timeout=30)
            assert not rig.batcher._closing
        assert [len(b) for b in fb.batches] == [5, 5, 2]
    finally:
        await fb.stop()


async def test_the_next_batch_fills_while_a_write_is_under_way():
    fb = await GatedBroker().start()
    try:
        async with Rig(fb.url, batch_size=10) as rig:
            await rig.outbox.put([ent(0)])
            assert await wait_until(lambda: fb.arrived == 1, timeout=30)     # first write: held by the broker
            for i in range(1, 7):
                await rig.outbox.put([ent(i)])
            await asyncio.sleep(0.1)
            assert fb.arrived == 1                                          # one write at a time
            fb.gate.set()
            assert await wait_until(lambda: len(fb.batches) == 2, timeout=30)
        assert [sorted(e["id"][-1] for e in b) for b in fb.batches] == [["0"], ["1", "2", "3", "4", "5", "6"]]
    finally:
        await fb.stop()


async def test_under_load_full_batches_go_out_beside_the_write_in_flight():
    fb = await GatedBroker().start()
    try:
        async with Rig(fb.url, batch_size=10) as rig:
            await rig.outbox.put([ent(0)])
            assert await wait_until(lambda: fb.arrived == 1, timeout=30)     # a lone entity: written at once
            await rig.outbox.put([ent(i) for i in range(1, 26)])
            assert await wait_until(lambda: fb.arrived == 2, timeout=30)     # a full batch: a second write
            await asyncio.sleep(0.2)
            assert fb.arrived == 2                                          # at most two in flight
            fb.gate.set()
            assert await wait_until(lambda: sum(len(b) for b in fb.batches) == 26, timeout=30)
        assert sorted(len(b) for b in fb.batches) == [1, 5, 10, 10]
    finally:
        await fb.stop()


async def test_an_entity_in_flight_is_not_sent_again_before_its_write_answered():
    fb = await GatedBroker().start()
    try:
        async with Rig(fb.url, batch_size=5) as rig:
            await rig.outbox.put([ent(0)])
            assert await wait_until(lambda: fb.arrived == 1, timeout=30)
            newer = ent(0)
            newer["temperature"]["value"] = 99.0
            newer["temperature"]["observedAt"] = "2024-05-01T12:00:01.000Z"
            await rig.outbox.put([newer] + [ent(i) for i in range(1, 6)])
            assert await wait_until(lambda: fb.arrived == 2, timeout=30)
            fb.gate.set()
            assert await wait_until(lambda: sum(len(b) for b in fb.batches) == 7, timeout=30)
        batches = [[e["id"][-1] for e in b] for b in fb.batches]
        second = next(b for b in batches if "1" in b)
        assert "0" not in second                                  # held while the first write was out
        last_zero = [b for b in fb.batches for e in b if e["id"].endswith(":0")][-1]
        assert [e for e in last_zero if e["id"].endswith(":0")][0]["temperature"]["value"] == 99.0
    finally:
        await fb.stop()


async def test_flush_ms_bounds_the_wait_while_the_broker_is_slow():
    fb = await GatedBroker().start()
    try:
        async with Rig(fb.url, batch_size=100, flush_ms=200) as rig:
            await rig.outbox.put([ent(0)])
            assert await wait_until(lambda: fb.arrived == 1, timeout=30)
            await rig.outbox.put([ent(1)])
            # the first write is held by the broker; flush_ms (200 ms) sends the second beside it
            assert await wait_until(lambda: fb.arrived == 2, timeout=30)
            fb.gate.set()
            assert await wait_until(lambda: len(fb.batches) == 2, timeout=30)
    finally:
        await fb.stop()


def test_config_default_is_adaptive_and_fixed_can_be_chosen():
    assert BrokerConfig(url="http://x:1026").flush == "adaptive"
    assert BrokerConfig(url="http://x:1026", flush="fixed").flush == "fixed"
    with pytest.raises(ValueError):
        BrokerConfig(url="http://x:1026", flush="sometimes")


async def test_paced_flush_over_the_redis_outbox_delivers_a_backlog_without_a_batcher_failure(redis_prefix):
    """With the Redis outbox every look into the outbox suspends, so writes finish meanwhile: the
    batcher must go on (a failure would restart it) and every entity arrives, in full batches."""
    from stadtlink.adapters.core.batcher import Batcher
    from stadtlink.adapters.core.deadletter import MemoryDeadLetters
    from stadtlink.adapters.core.metrics import Metrics
    from stadtlink.adapters.core.outbox import RedisOutbox
    from stadtlink.broker_client import NGSILDClient

    fb = await FakeBroker().start()
    outbox = RedisOutbox(url=SHARED_REDIS_URL, stream=f"{redis_prefix}:t:outbox")
    await outbox.start()
    client = NGSILDClient(fb.url, timeout=10)
    await client.open()
    batcher = Batcher(outbox, client, MemoryDeadLetters(), Metrics("t"), flush="adaptive", batch_size=50,
                      flush_ms=500)
    task = asyncio.create_task(batcher.run())
    try:
        for g in range(60):
            await outbox.put([ent(g * 10 + k) for k in range(10)])
        assert await wait_until(lambda: sum(len(b) for b in fb.batches) >= 600 or task.done(), timeout=60)
        assert not task.done(), task.exception()
        assert sorted(e["id"] for b in fb.batches for e in b) == sorted(ent(i)["id"] for i in range(600))
    finally:
        batcher.close()
        await asyncio.wait_for(task, 20)
        await client.close()
        await outbox.close()
        await fb.stop()


def test_a_newer_instance_never_overtakes_a_held_one():
    """X v2 is held while X v1 is being written; that write answers and X v3 comes before the
    batch closes: v3 must wait behind v2 (else v2 would be written after v3 and win)."""
    from stadtlink.adapters.core.batcher import Batcher
    from stadtlink.adapters.core.outbox import OutboxItem

    b = Batcher(None, None, None, None, flush="adaptive")
    x = "urn:ngsi-ld:WeatherObserved:t:0"
    b._inflight_ids = {x}
    b._held_ids = set()
    entries, held = {}, []
    b._add(entries, [OutboxItem(1, ent(0), 0.0)], held)
    b._inflight_ids = set()                        # the write of v1 answered meanwhile
    b._add(entries, [OutboxItem(2, ent(0), 0.0), OutboxItem(3, ent(1), 0.0)], held)
    assert x not in entries and [i.key for i in held] == [1, 2]
    assert list(entries) == ["urn:ngsi-ld:WeatherObserved:t:1"]

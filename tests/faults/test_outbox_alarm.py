"""The outbox alarm at its length limit when messages carry several entities (found by the fault
matrix: the outbox stopped one put short of ``max_length``, so ``full`` — the alarm gauge and the
readiness check — stayed false while the sources were being refused)."""
from __future__ import annotations

import asyncio
import uuid

import pytest

from stadtlink.adapters.core.outbox import MemoryOutbox, OutboxFull, RedisOutbox


def _entities(n: int, tag: str) -> list[dict]:
    return [{"id": f"urn:ngsi-ld:ParkingSpot:t:{tag}-{i}", "type": "ParkingSpot"} for i in range(n)]


async def _fill_and_refuse(outbox) -> None:
    for k in range(3):
        await outbox.put(_entities(3, f"m{k}"))          # 9 of 10
    assert outbox.depth == 9
    assert not outbox.full
    with pytest.raises(OutboxFull):
        await outbox.put(_entities(3, "refused"))         # does not fit: waits, then refuses


async def test_memory_outbox_reports_full_when_a_put_does_not_fit():
    outbox = MemoryOutbox(max_length=10, backpressure_wait_s=0.2)
    await _fill_and_refuse(outbox)
    assert outbox.full                                    # alarm gauge and readiness follow `full`
    await outbox.refresh()                                # the runner's monitor tick must not clear it
    assert outbox.full
    items = await outbox.take(1, 0)
    await outbox.ack(items)                               # room for 1 entity: the refused put still would not fit
    assert outbox.full
    items = await outbox.take(2, 0)
    await outbox.ack(items)                               # 6 left: 3 fit again
    assert not outbox.full
    await outbox.put(_entities(3, "again"))
    assert outbox.depth == 9


async def test_redis_outbox_reports_full_when_a_put_does_not_fit(redis_server):
    outbox = RedisOutbox(url=redis_server.url, stream=f"t-{uuid.uuid4().hex}:outbox", max_length=10,
                         backpressure_wait_s=0.3, consumer="c1")
    await outbox.start()
    try:
        await _fill_and_refuse(outbox)
        assert outbox.full
        await outbox.refresh()
        assert outbox.full
        items = await outbox.take(3, 0.1)
        await outbox.ack(items)
        await outbox.refresh()
        assert not outbox.full
    finally:
        await outbox.close()

"""Readiness with a broker that accepts requests and never answers (found by the fault matrix:
`/readyz` stayed ready for 20 s of silently dropped connections while nothing was written)."""
from __future__ import annotations

import asyncio

from stadtlink.adapters.core.batcher import Batcher
from stadtlink.adapters.core.deadletter import MemoryDeadLetters
from stadtlink.adapters.core.metrics import Metrics
from stadtlink.adapters.core.outbox import MemoryOutbox
from stadtlink.broker_client import BatchResult


class HangingBackend:
    """Answers the health probe, then swallows writes until released."""

    def __init__(self):
        self.release = asyncio.Event()
        self.writes = 0

    async def health(self) -> bool:
        return True

    async def write(self, entities):
        self.writes += 1
        await self.release.wait()
        return BatchResult(succeeded=[e["id"] for e in entities])


async def test_a_write_waiting_longer_than_stall_s_makes_the_broker_not_ok():
    outbox = MemoryOutbox()
    backend = HangingBackend()
    batcher = Batcher(outbox, backend, MemoryDeadLetters(), Metrics("t"), flush_ms=10, stall_s=0.3)
    assert await batcher.probe()
    task = asyncio.create_task(batcher.run())
    try:
        await outbox.put([{"id": "urn:ngsi-ld:ParkingSpot:t:1", "type": "ParkingSpot"}])
        for _ in range(100):
            if backend.writes:
                break
            await asyncio.sleep(0.01)
        assert backend.writes == 1
        assert batcher.broker_ok is True              # waiting, but not for long yet
        await asyncio.sleep(0.5)
        assert batcher.broker_ok is False             # readiness turns false while the write hangs
        assert "waiting for an answer" in batcher.broker_error
        backend.release.set()
        for _ in range(100):
            if outbox.depth == 0:
                break
            await asyncio.sleep(0.01)
        assert outbox.depth == 0
        assert batcher.broker_ok is True and batcher.broker_error is None
    finally:
        batcher.close()
        backend.release.set()
        await asyncio.wait_for(task, 5)

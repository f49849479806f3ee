"""The adapter runtime's batcher writing through the SensorThings sink: a refused row ends in the
dead letters with the server's reason, and a server restart loses nothing (the outbox keeps the
entities until the sink has written them)."""

from __future__ import annotations

import asyncio
from typing import Self

from stadtlink.adapters.core.batcher import Batcher
from stadtlink.adapters.core.deadletter import MemoryDeadLetters
from stadtlink.adapters.core.metrics import Metrics
from stadtlink.adapters.core.outbox import MemoryOutbox
from stadtlink.broker_client.retry import RetryPolicy
from stadtlink.broker_client.sensorthings import SensorThingsBackend
from stadtlink.adapters.core.testing import wait_until

from .helpers import Sta, later, parking_spot, weather


class Rig:
    def __init__(self, url: str) -> None:
        self.outbox = MemoryOutbox(max_length=1000, backpressure_wait_s=0.2)
        self.dead = MemoryDeadLetters()
        self.metrics = Metrics("sta")
        self.backend = SensorThingsBackend(url, retry=RetryPolicy(attempts=1), timeout=3)
        self.batcher = Batcher(self.outbox, self.backend, self.dead, self.metrics, semantics="time-series",
                               batch_size=50, flush_ms=50, retry_base_s=0.05, retry_max_s=0.3, health_interval_s=0.2)
        self.task: asyncio.Task | None = None

    async def __aenter__(self) -> Self:
        await self.backend.open()
        self.task = asyncio.create_task(self.batcher.run())
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.batcher.close()
        try:
            await asyncio.wait_for(self.task, 10)
        finally:
            await self.backend.close()

    def idle(self) -> bool:
        return self.outbox.depth == 0 and not self.batcher._carry


async def test_a_refused_row_is_dead_lettered_with_the_servers_reason(sta_server, ns):
    good = [weather(ns, f"g{i}", temperature=float(i)) for i in range(3)]
    bad = parking_spot(ns)
    async with Rig(sta_server.url) as rig:
        await rig.outbox.put(good + [bad])
        assert await wait_until(lambda: rig.idle() and rig.metrics.counts["upserted"] == 3)
    records = [record for _, record in await rig.dead.list()]
    assert len(records) == 1
    assert records[0]["entity"]["id"] == bad["id"] and records[0]["reason"] == "broker-rejected"
    assert "valid number" in records[0]["error"]
    sta = Sta(sta_server.url)
    for i, entity in enumerate(good):
        streams = await sta.datastreams((await sta.thing(entity["id"]))["@iot.id"])
        assert [o["result"] for o in await sta.observations(streams["temperature"]["@iot.id"])] == [float(i)]


async def test_a_server_restart_loses_nothing(own_sta_server, ns):
    server = own_sta_server
    readings = [weather(ns, "st", at=later(m), temperature=float(m)) for m in range(6)]
    async with Rig(server.url) as rig:
        await rig.outbox.put(readings[:2])
        assert await wait_until(lambda: rig.idle() and rig.metrics.counts["upserted"] == 2)
        server.stop()
        await rig.outbox.put(readings[2:])
        assert await wait_until(lambda: rig.batcher.broker_ok is False)
        assert rig.outbox.depth + len(rig.batcher._carry) > 0     # held, not dropped
        server.start()
        assert await wait_until(lambda: rig.idle() and rig.metrics.counts["upserted"] == 6, timeout=30)
    assert await rig.dead.list() == []
    sta = Sta(server.url)
    streams = await sta.datastreams((await sta.thing(readings[0]["id"]))["@iot.id"])
    results = sorted(o["result"] for o in await sta.observations(streams["temperature"]["@iot.id"]))
    assert results == [0.0, 1.0, 2.0, 3.0, 4.0, 5.0]                 # each once

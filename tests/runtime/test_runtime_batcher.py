"""Batcher: size/time flush, coalescing, time-series order, retries of failed entities only,
permanent 4xx → dead letter, broker outage → outbox holds everything and drains (real HTTP)."""
from __future__ import annotations

import asyncio

import pytest

from stadtlink.adapters.core.batcher import merge_entity
from rt_helpers import BatcherRig, FakeBroker, wait_until


def ent(i, value=1.0, t="2024-05-01T12:00:00.000Z", **extra):
    e = {"id": f"urn:ngsi-ld:WeatherObserved:t:{i}", "type": "WeatherObserved",
         "temperature": {"type": "Property", "value": value, "observedAt": t}}
    e.update(extra)
    return e


@pytest.fixture
async def fake():
    fb = await FakeBroker().start()
    yield fb
    await fb.stop()


Rig = BatcherRig


async def test_flush_at_batch_size(fake):
    rig = Rig(fake.url, batch_size=5, flush_ms=60_000)
    await rig.outbox.put([ent(i) for i in range(12)])
    async with rig:
        assert await wait_until(lambda: len(fake.batches) >= 2, timeout=10)   # full batches: no waiting
        await asyncio.sleep(0.2)
        assert len(fake.batches) == 2                  # the remaining 2 wait for flush_ms (or shutdown)
    assert [len(b) for b in fake.batches] == [5, 5, 2]  # shutdown flushed them
    assert rig.metrics.counts["upserted"] == 12


async def test_flush_after_flush_ms(fake):
    rig = Rig(fake.url, batch_size=100, flush_ms=300)
    async with rig:
        await asyncio.sleep(0.05)
        await rig.outbox.put([ent(1), ent(2)])
        await asyncio.sleep(0.1)
        assert fake.batches == []                       # not yet: below batch_size, before flush_ms
        assert await wait_until(lambda: len(fake.batches) == 1, timeout=2)
    assert [len(b) for b in fake.batches] == [2]


async def test_latest_state_coalesces_per_entity(fake):
    rig = Rig(fake.url, batch_size=10, flush_ms=100)
    await rig.outbox.put([
        ent(1, 1.0, "2024-05-01T12:00:00.000Z", pressure={"type": "Property", "value": 1000,
                                                          "observedAt": "2024-05-01T12:00:00.000Z"}),
        ent(2, 5.0),
        ent(1, 2.0, "2024-05-01T12:05:00.000Z"),
        ent(1, 3.0, "2024-05-01T12:10:00.000Z"),
    ])
    async with rig:
        assert await rig.idle()
    assert len(fake.batches) == 1
    batch = {e["id"]: e for e in fake.batches[0]}
    assert len(fake.batches[0]) == 2
    one = batch["urn:ngsi-ld:WeatherObserved:t:1"]
    assert one["temperature"]["value"] == 3.0          # newest instance wins
    assert one["pressure"]["value"] == 1000            # attributes of older instances are merged in
    assert rig.metrics.counts["upserted"] == 2


def test_merge_never_lets_an_older_attribute_win():
    newer = ent(1, 9.0, "2024-05-01T13:00:00.000Z")
    older = ent(1, 1.0, "2024-05-01T12:00:00.000Z")
    assert merge_entity(newer, older)["temperature"]["value"] == 9.0


async def test_time_series_keeps_every_observation_in_order(fake):
    rig = Rig(fake.url, semantics="time-series", batch_size=10, flush_ms=50)
    await rig.outbox.put([ent(1, 1.0), ent(2, 1.0), ent(1, 2.0), ent(1, 3.0), ent(3, 1.0)])
    async with rig:
        assert await rig.idle()
    values_of_1 = [e["temperature"]["value"] for b in fake.batches for e in b if e["id"].endswith(":1")]
    assert values_of_1 == [1.0, 2.0, 3.0]
    for b in fake.batches:
        ids = [e["id"] for e in b]
        assert len(ids) == len(set(ids))              # one instance per batch
    assert len(fake.batches) == 3
    assert rig.metrics.counts["upserted"] == 5


async def test_only_failed_entities_are_retried(fake):
    fake.transient["urn:ngsi-ld:WeatherObserved:t:1"] = 2
    rig = Rig(fake.url, batch_size=10, flush_ms=50)
    await rig.outbox.put([ent(0), ent(1), ent(2)])
    async with rig:
        assert await rig.idle()
    assert [sorted(e["id"][-1] for e in b) for b in fake.batches] == [["0", "1", "2"], ["1"], ["1"]]
    assert "urn:ngsi-ld:WeatherObserved:t:1" in fake.entities
    m = rig.metrics.counts
    assert (m["upserted"], m["failed"], m["retried"]) == (3, 2, 2)
    assert await rig.dead.list() == []


async def test_permanent_4xx_goes_to_dead_letter(fake):
    fake.reject["urn:ngsi-ld:WeatherObserved:t:1"] = 400
    rig = Rig(fake.url, batch_size=10, flush_ms=50)
    await rig.outbox.put([ent(0), ent(1), ent(2)])
    async with rig:
        assert await rig.idle()
    assert len(fake.batches) == 1                      # not retried
    recs = [r for _, r in await rig.dead.list()]
    assert len(recs) == 1
    rec = recs[0]
    assert rec["reason"] == "broker-rejected" and rec["entity"]["id"].endswith(":1")
    assert rec["problem"]["type"] == "https://uri.etsi.org/ngsi-ld/errors/BadRequestData"
    assert rec["problem"]["detail"] == "rejected by the test"
    assert rig.metrics.counts["upserted"] == 2 and rig.metrics.dead_reasons["broker-rejected"] == 1


async def test_broker_down_outbox_holds_everything_then_drains(fake):
    port = fake.port
    await fake.stop()                                   # connections refused
    rig = Rig(fake.url, batch_size=7, flush_ms=20)
    async with rig:
        for i in range(30):
            await rig.outbox.put([ent(i, float(i))])
        assert await wait_until(lambda: rig.batcher.broker_ok is False, timeout=3)
        await asyncio.sleep(0.3)
        assert rig.outbox.depth == 30 and rig.metrics.counts["upserted"] == 0
        back = await FakeBroker(port).start()
        try:
            assert await rig.idle(timeout=8)
            assert rig.batcher.broker_ok is True
            assert len(back.entities) == 30                # count in = count out
            assert rig.metrics.counts["upserted"] == 30
        finally:
            await back.stop()


async def test_whole_request_5xx_keeps_entities(fake):
    fake.status_override = 503
    rig = Rig(fake.url, batch_size=10, flush_ms=20)
    async with rig:
        await rig.outbox.put([ent(1), ent(2)])
        assert await wait_until(lambda: rig.batcher.broker_ok is False, timeout=3)
        assert rig.outbox.depth == 2
        fake.status_override = None
        assert await rig.idle(timeout=5)
    assert set(fake.entities) == {ent(1)["id"], ent(2)["id"]}
    assert rig.metrics.counts["retried"] >= 2


async def test_unauthorized_keeps_everything_and_marks_the_broker_down(fake):
    fake.status_override = 401                          # a token problem: no entity is at fault
    rig = Rig(fake.url, batch_size=10, flush_ms=20)
    async with rig:
        await rig.outbox.put([ent(1)])
        assert await wait_until(lambda: rig.batcher.broker_ok is False, timeout=3)
        assert "Unauthorized" in rig.batcher.broker_error
        assert rig.outbox.depth == 1 and await rig.dead.list() == []
        fake.status_override = None
        assert await rig.idle(timeout=5)
    assert ent(1)["id"] in fake.entities

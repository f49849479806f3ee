"""Group commit (Pipeline.process_group): what a source received together is decoded, mapped and
checked message by message, then stored with ONE outbox write; a refused write leaves nothing of
the group behind. Real local broker over HTTP; the Redis cases on the shared Redis (own prefix)."""
from __future__ import annotations

from datetime import datetime, timezone

import pytest

from stadtlink.adapters.core import RawMessage, tts_uplink
from stadtlink.adapters.core.outbox import OutboxFull
from stadtlink.adapters.core.runner import Runner
from stadtlink.adapters.core.testing import SHARED_REDIS_URL
from stadtlink.broker_client import NGSILDClient
from stadtlink.broker_client.local_broker import running_broker
from rt_helpers import QueueSource, base_config
from rt_toy_adapter import ADAPTER

REDIS = SHARED_REDIS_URL
DEV1 = "urn:ngsi-ld:WeatherObserved:test:dev-1"
DEV2 = "urn:ngsi-ld:WeatherObserved:test:dev-2"


def up(device: str, centi: int | bytes, f_cnt: int, time: str = "2024-05-01T12:00:00Z") -> RawMessage:
    payload = centi if isinstance(centi, bytes) else centi.to_bytes(2, "big", signed=True)
    topic, body = tts_uplink(device, payload, f_port=1, f_cnt=f_cnt, received_at=time, application_id="rt")
    return RawMessage(source="mqtt", payload=body, received_at=datetime.now(timezone.utc), topic=topic,
                      attributes={"qos": 1, "retain": False})


@pytest.fixture
async def broker():
    async with running_broker() as url:
        yield url


async def _runner(url: str, outbox: dict | None = None) -> Runner:
    over = {"outbox": outbox} if outbox else {}
    runner = Runner.from_config(base_config(url, **over), adapter=ADAPTER,
                                sources=[(QueueSource(), "toy-lora", None)])
    await runner.start()
    return runner


def _count_puts(runner: Runner) -> list[int]:
    """Record the number of entities of every outbox put."""
    outbox = runner.pipeline.outbox
    sizes: list[int] = []
    real = outbox.put

    async def put(entities, **kw):
        sizes.append(len(entities))
        return await real(entities, **kw)

    outbox.put = put
    return sizes


async def _entities(url: str) -> dict[str, dict]:
    async with NGSILDClient(url, context=ADAPTER.context) as client:
        return {e["id"]: e async for e in client.query_entities(type="WeatherObserved")}


@pytest.mark.parametrize("outbox", ["memory", "redis"])
async def test_a_bad_message_is_dead_lettered_alone_and_the_group_is_one_outbox_write(broker, outbox,
                                                                                    redis_prefix):
    cfg = {"kind": "redis", "url": REDIS, "key_prefix": redis_prefix} if outbox == "redis" else None
    runner = await _runner(broker, cfg)
    try:
        sizes = _count_puts(runner)
        group = [up("dev-1", 2150, 1), up("dev-1", b"\x01", 2), up("dev-2", 1800, 1, "2024-05-01T12:00:01Z")]
        assert await runner.pipeline.process_group(group, "toy-lora") == 2
        assert sizes == [2]                                    # one write for the whole group
        records = [r for _, r in await runner.deadletters.list()]
        assert [(r["reason"], r["device_id"]) for r in records] == [("bad-length", "dev-1")]
        assert await runner.wait_idle()
        ents = await _entities(broker)
        assert ents[DEV1]["temperature"]["value"] == 21.5 and ents[DEV2]["temperature"]["value"] == 18.0
        assert runner.pipeline.ctx.state["count:dev-1"] == 1   # the bad message changed no mapper state
    finally:
        await runner.stop()


async def test_dedup_and_stale_check_work_inside_a_group(broker):
    runner = await _runner(broker)
    try:
        sizes = _count_puts(runner)
        group = [up("dev-1", 2000, 7, "2024-05-01T12:00:05Z"),
                 up("dev-1", 2000, 7, "2024-05-01T12:00:05Z"),     # retransmission: same fCnt
                 up("dev-1", 1000, 8, "2024-05-01T12:00:01Z")]     # older than the first: stale
        assert await runner.pipeline.process_group(group, "toy-lora") == 1
        assert sizes == [1]
        dropped = runner.metrics.dropped
        assert dropped["duplicate"] == 1 and dropped["stale"] == 1
        # the group's keys are remembered: the same fCnt in the next group is a duplicate too
        assert await runner.pipeline.process_group([up("dev-1", 2100, 7, "2024-05-01T12:00:09Z")], "toy-lora") == 0
        assert dropped["duplicate"] == 2
        assert await runner.wait_idle()
        assert (await _entities(broker))[DEV1]["temperature"]["value"] == 20.0
    finally:
        await runner.stop()


async def test_a_refused_group_leaves_nothing_behind_and_is_taken_whole_when_redelivered(broker):
    runner = await _runner(broker)
    try:
        pipeline = runner.pipeline
        outbox = pipeline.outbox
        real = outbox.put

        async def refuse(entities, **kw):
            raise OutboxFull("test: full")

        group = [up("dev-1", 2150, 11, "2024-05-01T12:00:11Z"), up("dev-2", 1800, 12, "2024-05-01T12:00:12Z")]
        outbox.put = refuse
        with pytest.raises(OutboxFull):
            await pipeline.process_group(group, "toy-lora")
        assert "count:dev-1" not in pipeline.ctx.state          # mapper state rolled back
        assert DEV1 not in pipeline._last_obs                    # stale-check marks rolled back
        outbox.put = real
        # the redelivered group is not taken for duplicates or stale readings
        assert await pipeline.process_group(group, "toy-lora") == 2
        assert pipeline.ctx.state["count:dev-1"] == 1
        assert await runner.wait_idle()
        assert set(await _entities(broker)) >= {DEV1, DEV2}
    finally:
        await runner.stop()

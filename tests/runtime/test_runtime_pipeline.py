"""Pipeline: decode → map → check → outbox → batcher → a real (local) NGSI-LD broker."""
from __future__ import annotations

import orjson
import pytest

from stadtlink.adapters.core import tts_uplink
from stadtlink.adapters.core.runner import Runner
from stadtlink.broker_client import NGSILDClient
from stadtlink.adapters.core.testing import SHARED_REDIS_URL
from rt_helpers import QueueSource, base_config, wait_until
from rt_toy_adapter import ADAPTER, TS_ADAPTER

TIME = "2024-05-01T12:00:00Z"


def uplink(device: str, payload: bytes, f_cnt: int, time: str = TIME, app: str = "rt"):
    return tts_uplink(device, payload, f_port=1, f_cnt=f_cnt, received_at=time, application_id=app)


async def entities_in(url: str, type_: str = "WeatherObserved") -> dict[str, dict]:
    async with NGSILDClient(url, context=ADAPTER.context) as client:
        return {e["id"]: e async for e in client.query_entities(type=type_)}


@pytest.fixture
def broker(local_broker):
    """The test kit's in-process local broker (its base URL)."""
    return local_broker


async def start(url: str, *, adapter=ADAPTER, profile="toy-lora", **over):
    src = QueueSource()
    runner = Runner.from_config(base_config(url, **over), adapter=adapter, sources=[(src, profile, None)])
    await runner.start()
    assert await wait_until(lambda: src.ready)
    return runner, src


async def test_valid_reading_reaches_the_broker(broker):
    runner, src = await start(broker)
    try:
        topic, up = uplink("dev-1", (2150).to_bytes(2, "big"), 1)
        await src.push(up, topic=topic)
        assert await runner.wait_idle()
        ents = await entities_in(broker)
        ent = ents["urn:ngsi-ld:WeatherObserved:test:dev-1"]
        assert ent["temperature"]["value"] == 21.5
        assert ent["temperature"]["unitCode"] == "CEL"
        assert ent["temperature"]["observedAt"] == "2024-05-01T12:00:00.000Z"
        assert ent["location"]["value"]["coordinates"] == [10.7, 52.4]
        c = runner.counters()
        assert (c["received"], c["decoded"], c["upserted"], c["dead_lettered"]) == (1, 1, 1, 0)
        assert runner.pipeline.ctx.state["count:dev-1"] == 1
    finally:
        await runner.stop()


async def test_bad_input_is_dead_lettered_and_the_adapter_keeps_going(broker):
    runner, src = await start(broker)
    try:
        cases = [
            (uplink("dev-1", b"\xde\xad", 1), "decoder-crash"),          # decoder raises RuntimeError
            (uplink("dev-1", b"\x01", 2), "bad-length"),                  # DecodeError
            (uplink("ghost", b"\x00\x01", 3), "unknown-device"),          # MappingError (not in registry)
            (uplink("nolocation", b"\x00\x01", 4), "registry-field-missing"),
        ]
        for (topic, up), _ in cases:
            await src.push(up, topic=topic)
        await src.push(b"{not json", topic="v3/rt@ttn/devices/dev-1/up")
        topic, up = uplink("dev-1", (1000).to_bytes(2, "big"), 5)
        await src.push(up, topic=topic)
        assert await runner.wait_idle()
        records = [r for _, r in await runner.deadletters.list()]
        reasons = [r["reason"] for r in records]
        assert reasons == [reason for _, reason in cases] + ["invalid-json"]
        crash = records[0]
        assert crash["error"] == "RuntimeError: toy decoder bug"
        assert crash["device_id"] == "dev-1" and crash["stage"] == "decode" and crash["time"].endswith("Z")
        assert orjson.loads(crash["payload"])["uplink_message"]["f_cnt"] == 1   # original payload kept
        assert records[2]["device_id"] == "ghost" and records[2]["stage"] == "map"
        assert records[3]["missing"] == ["location"]
        assert records[4]["payload"] == "{not json"
        c = runner.counters()
        assert c["dead_lettered"] == 5 and c["upserted"] == 1
        assert c["dead_letter_reasons"]["decoder-crash"] == 1
        assert (await entities_in(broker))["urn:ngsi-ld:WeatherObserved:test:dev-1"]["temperature"]["value"] == 10.0
    finally:
        await runner.stop()


async def test_binary_payload_is_dead_lettered_as_base64(broker):
    runner, src = await start(broker, profile="toy-json")
    try:
        await src.push(b"\xff\xfe\x00", device_hint="dev-2")
        rec = (await runner.deadletters.list())[0][1]
        assert rec["payload_encoding"] == "base64" and rec["payload"] == "//4A"
    finally:
        await runner.stop()


async def test_mapper_crash_and_drop(broker):
    runner, src = await start(broker, profile="toy-json")
    try:
        await src.push({"device": "dev-2", "t": 1, "time": TIME, "boom": True})
        await src.push({"device": "dev-2", "t": 1, "time": TIME, "drop": True})
        await src.push({"device": "dev-2", "t": 2, "time": TIME})
        assert await runner.wait_idle()
        recs = [r for _, r in await runner.deadletters.list()]
        assert [(r["reason"], r["stage"], r["error"]) for r in recs] == [
            ("decoder-crash", "map", "ValueError: toy mapper bug")]
        c = runner.counters()
        assert c["dropped"] == {"implausible": 1} and c["upserted"] == 1
    finally:
        await runner.stop()


@pytest.mark.parametrize("mode", ["strict", "warn", "off"])
async def test_check_modes(broker, mode, caplog):
    runner, src = await start(broker, profile="toy-json", check=mode)
    try:
        await src.push({"device": "dev-2", "t": 1, "time": TIME, "bad": True})
        await src.push({"device": "dev-2", "t": 1, "time": TIME, "bad": True})
        assert await runner.wait_idle()
        c = runner.counters()
        ents = await entities_in(broker)
        eid = "urn:ngsi-ld:WeatherObserved:test:dev-2"
        if mode == "strict":
            assert c["invalid"] == 2 and c["dead_lettered"] == 2 and eid not in ents
            rec = (await runner.deadletters.list())[0][1]
            assert rec["reason"] == "invalid-entity" and rec["entity"]["id"] == eid
            assert any(p["path"] == "$.temperature" for p in rec["problems"])
        elif mode == "warn":
            assert c["invalid"] == 2 and c["dead_lettered"] == 0
            assert ents[eid]["temperature"]["value"] == "not a number"
            warnings = [r for r in caplog.records if "fails the WeatherObserved schema" in r.getMessage()]
            assert len(warnings) == 1          # logged once per device and reason, not per message
        else:
            assert c["invalid"] == 0 and c["dead_lettered"] == 0 and eid in ents
    finally:
        await runner.stop()


async def test_retransmission_dropped_as_duplicate(broker):
    runner, src = await start(broker)
    try:
        topic, up = uplink("dev-1", b"\x00\x10", 7)
        for _ in range(3):
            await src.push(up, topic=topic)
        topic, up = uplink("dev-1", b"\x00\x10", 8)
        await src.push(up, topic=topic)
        assert await runner.wait_idle()
        c = runner.counters()
        assert c["dropped"] == {"duplicate": 2} and c["decoded"] == 2
    finally:
        await runner.stop()


async def test_older_reading_never_overwrites_newer(broker):
    runner, src = await start(broker)
    try:
        topic, up = uplink("dev-1", (2000).to_bytes(2, "big"), 1, time="2024-05-01T12:10:00Z")
        await src.push(up, topic=topic)
        assert await runner.wait_idle()
        topic, up = uplink("dev-1", (1000).to_bytes(2, "big"), 2, time="2024-05-01T12:00:00Z")
        await src.push(up, topic=topic)
        assert await runner.wait_idle()
        ent = (await entities_in(broker))["urn:ngsi-ld:WeatherObserved:test:dev-1"]
        assert ent["temperature"]["value"] == 20.0
        assert runner.counters()["dropped"] == {"stale": 1}
    finally:
        await runner.stop()


async def test_registry_profile_wins_and_missing_profile_is_dead_lettered(broker):
    # no source profile: dev-1's registry record names toy-lora; dev-2 has none
    runner, src = await start(broker, profile=None)
    try:
        topic, up = uplink("dev-1", b"\x00\x64", 1)
        await src.push(up, topic=topic)
        topic, up = uplink("dev-2", b"\x00\x64", 1)
        await src.push(up, topic=topic)
        assert await runner.wait_idle()
        assert runner.counters()["upserted"] == 1
        assert [r["reason"] for _, r in await runner.deadletters.list()] == ["no-profile"]
    finally:
        await runner.stop()


async def test_time_series_writes_every_observation(broker):
    runner, src = await start(broker, adapter=TS_ADAPTER)
    try:
        for i in range(3):
            topic, up = uplink("dev-1", (100 * i).to_bytes(2, "big"), i + 1, time=f"2024-05-01T12:0{i}:00Z")
            await src.push(up, topic=topic)
        assert await runner.wait_idle()
        assert runner.counters()["upserted"] == 3
        assert runner.batcher.batches == 3
    finally:
        await runner.stop()


async def test_tick_entities_go_through_check_and_outbox(broker):
    runner, src = await start(broker, settings={"tick_entity": True})
    try:
        assert await wait_until(lambda: runner.counters()["upserted"] >= 1, timeout=5)
        ents = await entities_in(broker)
        assert "urn:ngsi-ld:WeatherObserved:test:tick" in ents
        assert runner.pipeline.ctx.state["ticks"] >= 1
    finally:
        await runner.stop()


async def test_replay_after_fixing_the_registry(broker):
    runner, src = await start(broker)
    try:
        topic, up = uplink("late", b"\x00\x64", 1)
        await src.push(up, topic=topic)
        assert [r["reason"] for _, r in await runner.deadletters.list()] == ["unknown-device"]
        from stadtlink.adapters.core.registry import DeviceRecord

        runner.registry.add(DeviceRecord(id="late", lat=50.0, lon=8.0))
        stats = await runner.replay_deadletters()
        assert stats["replayed"] == 1 and stats["entities"] == 1
        assert await runner.wait_idle()
        assert "urn:ngsi-ld:WeatherObserved:test:late" in await entities_in(broker)
        assert await runner.deadletters.list() == []
    finally:
        await runner.stop()


async def test_integrator_type_gets_structural_check_and_malformed_entities_never_reach_the_broker(broker):
    for mode in ("strict", "off"):
        runner, src = await start(broker, profile="toy-json", check=mode)
        try:
            await src.push({"device": "dev-2", "t": 4, "time": TIME, "custom": True})
            await src.push({"device": "dev-2", "t": 4, "time": TIME, "noid": True})
            assert await runner.wait_idle()
            assert runner.counters()["upserted"] == 1
            assert "urn:ngsi-ld:ToyThing:test:dev-2" in await entities_in(broker, "ToyThing")
            recs = [r for _, r in await runner.deadletters.list()]
            assert [(r["reason"], r["entity"]) for r in recs] == [("invalid-entity", {"type": "WeatherObserved"})]
        finally:
            await runner.stop()


async def test_extra_source_kind_from_config(broker):
    from typing import Literal

    from pydantic import BaseModel

    from stadtlink.adapters.core import plugins
    from rt_helpers import QueueSource

    class QueueConfig(BaseModel):
        kind: Literal["rt-queue"] = "rt-queue"
        profile: str | None = None

    made = []

    def build(config, *, adapter, http_app=None):
        made.append(QueueSource("rt-queue"))
        return made[-1]

    plugins.register_source(QueueConfig, build)
    try:
        runner = Runner.from_config(base_config(broker, sources=[{"kind": "rt-queue", "profile": "toy-lora"}]),
                                    adapter=ADAPTER)
        await runner.start()
        try:
            assert await wait_until(lambda: made and made[0].ready)
            topic, up = uplink("dev-1", b"\x00\x05", 1)
            await made[0].push(up, topic=topic)
            assert await runner.wait_idle()
            assert runner.counters()["upserted"] == 1
        finally:
            await runner.stop()
    finally:
        plugins._extra_sources.pop("rt-queue", None)
        from stadtlink.adapters.core.config import _config_model

        _config_model.cache_clear()


async def test_failed_start_releases_everything(broker, monkeypatch):
    monkeypatch.delenv("RT_NOT_SET", raising=False)
    cfg = base_config(broker, sources=[{"kind": "mqtt", "topics": ["rt/x"], "password_env": "RT_NOT_SET"}])
    runner = Runner.from_config(cfg, adapter=ADAPTER)
    from stadtlink.adapters.core.errors import ConfigError

    with pytest.raises(ConfigError, match="password_env"):
        await runner.start()
    assert runner.server is None and runner._tasks == [] and runner.sources == []


async def test_unknown_profile_names_are_config_errors(broker):
    from stadtlink.adapters.core.errors import ConfigError

    runner = Runner.from_config(base_config(broker, sources=[{"kind": "mqtt", "topics": ["rt/x"],
                                                             "profile": "toy-lroa"}]), adapter=ADAPTER)
    with pytest.raises(ConfigError, match=r"sources\[0\].profile: adapter 'toy' has no profile 'toy-lroa'"):
        await runner.start()
    cfg = base_config(broker)
    cfg["devices"].append({"id": "typo", "lat": 1, "lon": 1, "profile": "nope"})
    runner = Runner.from_config(cfg, adapter=ADAPTER)
    with pytest.raises(ConfigError, match="device 'typo' profile: adapter 'toy' has no profile 'nope'"):
        await runner.start()


async def test_json_map_profile_is_available_to_every_adapter(broker):
    runner, src = await start(broker, profile="json-map")
    try:
        options = {"device_path": "id", "time_path": "ts",
                   "fields": {"temperature": {"path": "temp"}}}
        await src.push({"id": "dev-2", "ts": TIME, "temp": 12.5}, attributes={"options": options})
        assert await runner.wait_idle()
        recs = await runner.deadletters.list()
        assert recs == [], recs
        assert (await entities_in(broker))["urn:ngsi-ld:WeatherObserved:test:dev-2"]["temperature"]["value"] == 12.5
    finally:
        await runner.stop()


async def test_concurrent_sources_share_state_consistently(broker, redis_prefix):
    a, b = QueueSource("a"), QueueSource("b")
    cfg = base_config(broker, outbox={"kind": "redis", "url": SHARED_REDIS_URL, "key_prefix": redis_prefix})
    runner = Runner.from_config(cfg, adapter=ADAPTER,
                                sources=[(a, "toy-lora", None), (b, "toy-lora", None)])
    await runner.start()
    try:
        assert await wait_until(lambda: a.ready and b.ready)
        import asyncio

        async def feed(src, start):
            for i in range(start, start + 40):
                topic, up = uplink("dev-1", b"\x00\x10", i)
                await src.push(up, topic=topic)

        await asyncio.gather(feed(a, 1), feed(b, 1001))
        assert runner.pipeline.ctx.state["count:dev-1"] == 80
        assert runner.pipeline.ctx.state._journal is None
    finally:
        await runner.stop()

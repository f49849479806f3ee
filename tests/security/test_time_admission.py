"""A reading from the future (or from before the floor) must not freeze an entity (issue 19).

Real parts: the shared Mosquitto (unique topics), the shared Redis (unique key prefixes, deleted
afterwards) as outbox, dead-letter stream and state store, the Runner with the parking adapter
(latest-state, its mapper keeps the last time seen per spot) and the local NGSI-LD broker over HTTP.
"""
from __future__ import annotations

import uuid
from datetime import datetime, timedelta, timezone

import aiohttp
import orjson
import pytest

from stadtlink.adapters.core.config import load_config
from stadtlink.adapters.core.errors import ConfigError
from stadtlink.adapters.core.lorawan import tts_uplink
from stadtlink.adapters.core.timecheck import IMPLAUSIBLE_TIME, TimeAdmission
from stadtlink.adapters.parking import ADAPTER
from stadtlink.adapters.core.testing import SHARED_MQTT, SHARED_REDIS_URL, RecordingOutbox, wait_until

pytestmark = pytest.mark.timeout(120)

MQTT_HOST, MQTT_PORT = SHARED_MQTT
REDIS_URL = SHARED_REDIS_URL
LINK = f'<{ADAPTER.context}>; rel="http://www.w3.org/ns/json-ld#context"; type="application/ld+json"'
FUTURE = "9999-12-31T23:59:59.999999999Z"




def _ms(dt: datetime) -> str:
    return dt.strftime("%Y-%m-%dT%H:%M:%S.") + f"{dt.microsecond // 1000:03d}Z"


def _config(broker_url: str, prefix: str, app: str, **extra) -> dict:
    return {
        "adapter": "parking",
        "namespace": prefix,
        "broker": {"url": broker_url, "batch_size": 50, "flush_ms": 50},
        "outbox": {"kind": "redis", "url": REDIS_URL, "key_prefix": prefix, "consumer": f"{prefix}-c"},
        "check": "strict",
        "http": {"enabled": False},
        "sources": [{"kind": "mqtt", "host": MQTT_HOST, "port": MQTT_PORT,
                     "topics": [f"v3/{app}@ttn/devices/+/up"], "client_id": f"{prefix}-{uuid.uuid4().hex[:6]}",
                     "session_expiry_s": 0, "profile": "bosch-tps110"}],
        "devices": [
            {"id": "garage", "name": "Tiefgarage", "lat": 52.4227, "lon": 10.7865, "total_spots": 2},
            {"id": "tps-1", "name": "Platz 1", "lat": 52.42271, "lon": 10.78651, "site": "garage"},
            {"id": "tps-2", "name": "Platz 2", "lat": 52.42272, "lon": 10.78652, "site": "garage"},
        ],
        "settings": {"heartbeat_timeout_s": 86400},
        **extra,
    }


async def _spots(session: aiohttp.ClientSession, base: str, ns: str) -> dict[str, dict]:
    async with session.get(f"{base}/ngsi-ld/v1/entities", params={"type": "ParkingSpot", "limit": "1000"},
                           headers={"Accept": "application/json", "Link": LINK}) as resp:
        assert resp.status == 200, await resp.text()
        return {e["id"]: e for e in await resp.json() if f":{ns}:" in e["id"]}


async def _start(config: dict):
    from stadtlink.adapters.core.runner import Runner

    runner = Runner.from_config(config, adapter=ADAPTER)
    await runner.start()
    await wait_until(lambda: _ready(runner))
    return runner


async def _ready(runner) -> bool:
    return bool(runner.sources) and all(getattr(s, "ready", False) for s in runner.sources)


def _redis():
    import redis.asyncio as aioredis

    return aioredis.from_url(REDIS_URL)


@pytest.mark.needs_mqtt
@pytest.mark.needs_redis
async def test_an_uplink_from_year_9999_is_dead_lettered_and_later_current_ones_reach_the_broker(redis_prefix):
    from stadtlink.adapters.core.testing import publish_uplinks
    from stadtlink.broker_client.local_broker import running_broker

    app = redis_prefix
    now = datetime.now(timezone.utc)
    t1, t2, t3 = now - timedelta(minutes=3), now - timedelta(minutes=2), now - timedelta(minutes=1)
    spot1, spot2 = f"urn:ngsi-ld:ParkingSpot:{redis_prefix}:tps-1", f"urn:ngsi-ld:ParkingSpot:{redis_prefix}:tps-2"
    async with running_broker() as broker_url, aiohttp.ClientSession() as session:
        runner = await _start(_config(broker_url, redis_prefix, app))
        try:
            assert await publish_uplinks(MQTT_HOST, MQTT_PORT, [
                tts_uplink("tps-1", b"\x01", f_port=1, f_cnt=1, received_at=FUTURE, application_id=app),
                tts_uplink("tps-1", b"\x00", f_port=1, f_cnt=2, received_at=_ms(t1), application_id=app),
                tts_uplink("tps-2", b"\x01", f_port=1, f_cnt=1, received_at=_ms(t2), application_id=app),
                tts_uplink("tps-1", b"\x01", f_port=1, f_cnt=3, received_at=_ms(t3), application_id=app),
            ]) == 4

            async def both_current():
                found = await _spots(session, broker_url, redis_prefix)
                s1 = found.get(spot1)
                if s1 and spot2 in found and s1["status"]["observedAt"] == _ms(t3):
                    return found
                return None

            found = await wait_until(both_current)
            assert found[spot1]["status"]["value"] == "occupied"
            assert found[spot2]["status"]["value"] == "occupied"
            assert found[spot2]["status"]["observedAt"] == _ms(t2)
            assert runner.counters()["dead_letter_reasons"] == {IMPLAUSIBLE_TIME: 1}

            client = _redis()
            try:
                stream = await client.xrange(f"{redis_prefix}:parking:deadletter")
                records = [orjson.loads(fields[b"r"]) for _, fields in stream]
                observed = {k.decode(): v.decode()
                            for k, v in (await client.hgetall(f"{redis_prefix}:parking:observed")).items()}
                state = {k.decode(): v.decode() for k, v in (await client.hgetall(f"{redis_prefix}:parking:state")).items()}
            finally:
                await client.aclose()
            assert [r["reason"] for r in records] == [IMPLAUSIBLE_TIME]
            dead = records[0]
            assert dead["device_id"] == "tps-1" and dead["stage"] == "admit"
            assert "9999-12-31" in dead["error"] and "future" in dead["error"]
            assert orjson.loads(dead["payload"])["uplink_message"]["received_at"] == FUTURE   # replayable
            # the future time reached neither the persisted newest observedAt nor the mapper state
            assert observed[spot1] == _ms(t3)
            assert all(not v.startswith("9999") for v in observed.values())
            assert state and all("9999-" not in v for v in state.values())
        finally:
            await runner.stop(grace=2)


@pytest.mark.needs_mqtt
@pytest.mark.needs_redis
async def test_a_persisted_future_time_is_repaired_at_start(redis_prefix, caplog):
    """State written before time admission existed (here: by a runner whose margin reaches past
    year 9999) holds 9999-12-31 for a spot; the next start repairs it and current readings flow."""
    from stadtlink.adapters.core.testing import publish_uplinks
    from stadtlink.broker_client.local_broker import running_broker

    app = redis_prefix
    spot1 = f"urn:ngsi-ld:ParkingSpot:{redis_prefix}:tps-1"
    observed_key, state_key = f"{redis_prefix}:parking:observed", f"{redis_prefix}:parking:state"
    async with running_broker() as broker_url, aiohttp.ClientSession() as session:
        runner = await _start(_config(broker_url, redis_prefix, app, time_admission={"future_margin_s": 1e12}))
        try:
            assert await publish_uplinks(MQTT_HOST, MQTT_PORT, [
                tts_uplink("tps-1", b"\x01", f_port=1, f_cnt=1, received_at=FUTURE, application_id=app)]) == 1

            async def frozen():
                client = _redis()
                try:
                    return (await client.hget(observed_key, spot1) or b"").startswith(b"9999")
                finally:
                    await client.aclose()

            await wait_until(frozen)
            assert await runner.wait_idle()
        finally:
            await runner.stop(grace=2)
        client = _redis()
        try:
            assert any(b"9999-" in v for v in (await client.hgetall(state_key)).values())   # mapper state too
        finally:
            await client.aclose()

        caplog.set_level("WARNING")
        runner = await _start(_config(broker_url, redis_prefix, app))
        try:
            client = _redis()
            try:
                assert await client.hget(observed_key, spot1) is None
                assert not any(b"9999-" in v for v in (await client.hgetall(state_key)).values())
            finally:
                await client.aclose()
            assert "in the future" in caplog.text
            now = datetime.now(timezone.utc) - timedelta(seconds=30)
            assert await publish_uplinks(MQTT_HOST, MQTT_PORT, [
                tts_uplink("tps-1", b"\x00", f_port=1, f_cnt=2, received_at=_ms(now), application_id=app)]) == 1

            async def current():
                s1 = (await _spots(session, broker_url, redis_prefix)).get(spot1)
                return s1 if s1 and s1["status"]["observedAt"] == _ms(now) else None

            s1 = await wait_until(current)
            assert s1["status"]["value"] == "free"
            dead = [r for _, r in await runner.deadletters.list(100)]
            assert dead == []
        finally:
            await runner.stop(grace=2)


@pytest.mark.needs_mqtt
@pytest.mark.needs_redis
async def test_floor_and_max_age_dead_letter_old_readings(redis_prefix):
    """A 1970 clock (before ``not_before``) and, with ``max_age_s``, a reading older than that are
    dead-lettered as well; an in-window reading passes (memory outbox, messages handed to the pipeline)."""
    from stadtlink.adapters.core.runner import Runner
    from stadtlink.adapters.core.reading import RawMessage
    from stadtlink.broker_client.local_broker import running_broker

    now = datetime.now(timezone.utc)
    async with running_broker() as broker_url:
        cfg = _config(broker_url, redis_prefix, redis_prefix, time_admission={"max_age_s": 3600})
        cfg["outbox"] = {"kind": "memory"}
        cfg["sources"] = []
        runner = Runner.from_config(cfg, adapter=ADAPTER)
        await runner.start()
        try:
            cases = [("1970-01-01T00:00:00Z", True), (_ms(now - timedelta(hours=2)), True),
                     (_ms(now + timedelta(minutes=10)), True), (_ms(now - timedelta(minutes=30)), False),
                     (_ms(now + timedelta(minutes=2)), False)]
            for i, (stamp, _) in enumerate(cases):
                topic, body = tts_uplink("tps-1", b"\x01", f_port=1, f_cnt=10 + i, received_at=stamp,
                                         application_id=redis_prefix)
                await runner.pipeline.process(RawMessage("mqtt", orjson.dumps(body), now, topic), "bosch-tps110")
            dead = [r for _, r in await runner.deadletters.list(100)]
            assert [r["reason"] for r in dead] == [IMPLAUSIBLE_TIME] * 3
            assert "1970-01-01T00:00:00.000Z is before" in dead[0]["error"]
            assert "before" in dead[1]["error"] and "future" in dead[2]["error"]
            assert runner.counters()["dead_letter_reasons"] == {IMPLAUSIBLE_TIME: 3}
        finally:
            await runner.stop(grace=2)


async def test_entities_with_a_future_observed_at_from_a_replay_or_tick_are_refused():
    """What did not come from a checked reading (dead-letter replay of an entity, derived entities)
    is checked at admission too: the entity is dead-lettered, the others are written."""
    from stadtlink.adapters.core.deadletter import MemoryDeadLetters
    from stadtlink.adapters.core.metrics import Metrics
    from stadtlink.adapters.core.pipeline import Pipeline
    from stadtlink.adapters.core.registry import DeviceRegistry

    outbox, dead = RecordingOutbox(), MemoryDeadLetters(100)
    pipe = Pipeline(ADAPTER, namespace="t", registry=DeviceRegistry(), outbox=outbox, deadletters=dead,
                    metrics=Metrics("parking"), check="off")
    ok = _ms(datetime.now(timezone.utc) - timedelta(seconds=5))
    ents = [{"id": "urn:ngsi-ld:ParkingSpot:t:a", "type": "ParkingSpot",
             "status": {"type": "Property", "value": "free", "observedAt": "9999-12-31T23:59:59.999Z"}},
            {"id": "urn:ngsi-ld:ParkingSpot:t:b", "type": "ParkingSpot",
             "status": {"type": "Property", "value": "free", "observedAt": ok}}]
    assert await pipe.admit_entities(ents) == 1
    assert [e["id"] for e in outbox.items] == ["urn:ngsi-ld:ParkingSpot:t:b"]
    records = [r for _, r in await dead.list(10)]
    assert [(r["reason"], r["entity"]["id"]) for r in records] == [(IMPLAUSIBLE_TIME, "urn:ngsi-ld:ParkingSpot:t:a")]
    assert "urn:ngsi-ld:ParkingSpot:t:a" not in pipe._last_obs


def test_time_admission_config_keys():
    base = {"adapter": "parking", "namespace": "x", "broker": {"url": "http://b:1026"}}
    cfg, _ = load_config(base, adapter=ADAPTER, env={})
    ta = cfg.time_admission.build()
    assert ta == TimeAdmission(future_margin_s=300.0, not_before=datetime(2000, 1, 1, tzinfo=timezone.utc))
    cfg, _ = load_config({**base, "time_admission": {"future_margin_s": 60, "not_before": "2015-06-01",
                                                     "max_age_s": 86400}}, adapter=ADAPTER, env={})
    ta = cfg.time_admission.build()
    assert ta.future_margin_s == 60 and ta.max_age_s == 86400
    assert ta.not_before == datetime(2015, 6, 1, tzinfo=timezone.utc)
    cfg, _ = load_config(base, adapter=ADAPTER, env={"STADTLINK_TIME_ADMISSION__FUTURE_MARGIN_S": "120"})
    assert cfg.time_admission.future_margin_s == 120
    with pytest.raises(ConfigError, match=r"time_admission\.future_margin_s"):
        load_config({**base, "time_admission": {"future_margin_s": -1}}, adapter=ADAPTER, env={})

"""The test kit itself: server processes, publishing helper, fixture → readings → entities, comparison."""
from __future__ import annotations

import asyncio
import os
import struct
import subprocess
import sys
import uuid

import aiohttp
import pytest
import redis

from stadtlink.adapters.core.adapter import AdapterSpec, LoRaWANProfile, MapContext
from stadtlink.adapters.core.entity import entity_id, geo_point, new_entity, prop
from stadtlink.adapters.core.errors import DecodeError, MappingError
from stadtlink.adapters.core.sources import MqttSource, MqttSourceConfig
from stadtlink.adapters.core.testing import (SHARED_MQTT, MosquittoProcess, assert_entities_match, entities_by_id,
                                             free_port, map_fixture, port_open, publish_uplinks, query_entities,
                                             run_profile, unique_name, wait_until)
from stadtlink.adapters.core.lorawan import chirpstack_uplink, tts_uplink


def _listening(port: int) -> bool:
    return port_open("127.0.0.1", port, timeout=0.5)


def test_mosquitto_stop_kill_restart(mosquitto):
    assert mosquitto.running and _listening(mosquitto.port)
    mosquitto.stop()
    assert not mosquitto.running and not _listening(mosquitto.port)
    mosquitto.start()
    assert _listening(mosquitto.port)
    mosquitto.kill()
    assert not _listening(mosquitto.port)
    mosquitto.restart()
    assert mosquitto.running


async def test_persistent_mosquitto_keeps_queued_messages_over_a_restart(mosquitto_persistent):
    broker = mosquitto_persistent
    topic = f"kit/{uuid.uuid4().hex}"
    cfg = MqttSourceConfig(host=broker.host, port=broker.port, topics=[topic], client_id=f"kit-{uuid.uuid4().hex[:6]}",
                           reconnect_min_s=0.05, reconnect_max_s=0.2)
    got: list[bytes] = []

    async def emit(m):
        got.append(m.payload)

    source = MqttSource(cfg)
    task = asyncio.create_task(source.run(emit))
    while not source.ready:
        await asyncio.sleep(0.02)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    # subscriber away: the broker queues; then the broker restarts
    assert await publish_uplinks(broker.host, broker.port, [(topic, b"while-away")]) == 1
    await asyncio.to_thread(broker.restart)
    task = asyncio.create_task(MqttSource(cfg).run(emit))
    try:
        for _ in range(300):
            if got:
                break
            await asyncio.sleep(0.02)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    assert got == [b"while-away"]


def test_redis_process(redis_server, redis_persistent):
    plain = redis.Redis.from_url(redis_server.url)
    plain.set("k", "v")
    redis_server.restart()
    assert redis.Redis.from_url(redis_server.url).get("k") is None     # no persistence
    durable = redis.Redis.from_url(redis_persistent.url)
    durable.set("k", "v")
    redis_persistent.kill()                                            # even a crash: AOF with fsync always
    redis_persistent.start()
    assert redis.Redis.from_url(redis_persistent.url).get("k") == b"v"


def test_mosquitto_bad_config_reports_log():
    proc = MosquittoProcess(extra_config="this_is_not_an_option 1")
    with pytest.raises(RuntimeError, match="mosquitto exited"):
        proc.start()
    proc.cleanup()


@pytest.mark.needs_mqtt
async def test_publish_uplinks_delivers_envelopes(shared_mqtt, unique_topic):
    app = unique_topic.rsplit("/", 1)[-1][:16]
    got: list = []
    host, port = shared_mqtt
    assert shared_mqtt == SHARED_MQTT
    src = MqttSource(MqttSourceConfig(host=host, port=port,
                                      topics=[f"v3/{app}@ttn/devices/+/up", f"application/{app}/device/+/event/up"]))

    async def emit(m):
        got.append(m)

    task = asyncio.create_task(src.run(emit))
    try:
        await wait_until(lambda: src.ready, what="the source connected")
        n = await publish_uplinks(host, port, [
            tts_uplink("d1", b"\x01", f_port=1, f_cnt=1, received_at="2024-05-01T12:00:00Z", application_id=app),
            chirpstack_uplink("0011223344556677", b"\x02", f_port=2, f_cnt=2, time="2024-05-01T12:00:00Z",
                              application_id=app),
        ])
        assert n == 2
        await wait_until(lambda: len(got) == 2, what="both uplinks")
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    assert sorted(m.topic.split("/")[0] for m in got) == ["application", "v3"]


async def test_local_broker_fixture(local_broker):
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{local_broker}/ngsi-ld/v1/entities", params={"type": "Device"}) as resp:
            assert resp.status == 200


# ------------------------------------------------------------------ end-to-end support

async def test_wait_until_returns_true_or_raises_naming_what_it_waited_for():
    calls = []

    def soon():
        calls.append(1)
        return len(calls) >= 3

    async def async_soon():
        calls.append(1)
        return len(calls) >= 5

    assert await wait_until(soon, timeout=5, interval=0.01) is True
    assert await wait_until(async_soon, timeout=5, interval=0.01) is True and len(calls) >= 5   # awaited
    assert await wait_until(lambda: {"found": 1}, timeout=5) == {"found": 1}        # the true result itself
    with pytest.raises(AssertionError, match="timed out after 0.2 s waiting for the answer; 42"):
        await wait_until(lambda: False, timeout=0.2, what="the answer", interval=0.01, detail=lambda: 42)


async def test_port_open_and_free_port(free_tcp_port):
    port = free_tcp_port
    assert not port_open("127.0.0.1", port, timeout=0.5)
    server = await asyncio.start_server(lambda r, w: w.close(), "127.0.0.1", port)
    try:
        assert port_open("127.0.0.1", port, timeout=0.5)
    finally:
        server.close()
        await server.wait_closed()
    assert unique_name() != unique_name() and unique_name("t").startswith("t-")


async def test_query_entities_reads_every_page(local_broker):
    from stadtlink.broker_client import NGSILDClient
    from stadtlink.schemas.contexts import STADTLINK_CONTEXT_URL

    ns = unique_name("q")
    entities = [new_entity(entity_id("Device", ns, f"d{i}"), "Device", value=prop(i)) for i in range(1203)]
    async with NGSILDClient(local_broker, context=STADTLINK_CONTEXT_URL) as client:
        result = await client.upsert(entities)
    assert not result.failed
    found = await query_entities(local_broker, "Device")
    assert len([e for e in found if f":{ns}:" in e["id"]]) == 1203                      # more than a page
    key_values = await query_entities(local_broker, "Device", key_values=True, limit=5)
    assert len(key_values) == 5 and all(isinstance(e["value"], int) for e in key_values)
    assert any(e["type"] == "Device" for e in await query_entities(local_broker))       # every type
    mine = await entities_by_id(local_broker, "Device", namespace=ns)
    assert len(mine) == 1203 and mine[entity_id("Device", ns, "d7")]["value"]["value"] == 7


def test_needs_mqtt_and_needs_redis_skip_when_the_server_does_not_answer(tmp_path):
    """In a pytest of its own whose shared servers are a port where nothing listens."""
    (tmp_path / "conftest.py").write_text('pytest_plugins = ["stadtlink.adapters.core.pytest_plugin"]\n')
    (tmp_path / "test_marked.py").write_text(
        "import pytest\n\n@pytest.mark.needs_mqtt\ndef test_uses_mqtt():\n    pass\n\n"
        "@pytest.mark.needs_redis\ndef test_uses_redis():\n    pass\n\ndef test_unmarked():\n    pass\n")
    nothing = f"127.0.0.1:{free_port()}"
    env = {**os.environ, "STADTLINK_TEST_MQTT": nothing, "STADTLINK_TEST_REDIS": nothing}
    done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider", str(tmp_path)],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert "1 passed, 2 skipped" in done.stdout, done.stdout + done.stderr
    assert f"the shared Mosquitto on {nothing} does not answer" in done.stdout
    assert f"the shared Redis on {nothing} does not answer" in done.stdout

"""The test kit itself: server processes, publishing helper, fixture → readings → entities, comparison."""
from __future__ import annotations

import asyncio
import socket
import struct
import uuid

import aiohttp
import pytest
import redis

from stadtlink.adapters.core.adapter import AdapterSpec, LoRaWANProfile, MapContext
from stadtlink.adapters.core.entity import entity_id, geo_point, new_entity, prop
from stadtlink.adapters.core.errors import DecodeError, MappingError
from stadtlink.adapters.core.pytest_plugin import local_broker, mosquitto, mosquitto_persistent, redis_persistent, redis_server  # noqa: F401
from stadtlink.adapters.core.sources import MqttSource, MqttSourceConfig
from stadtlink.adapters.core.testing import (MosquittoProcess, assert_entities_match, free_port, map_fixture, publish_uplinks,
                                   run_profile)
from stadtlink.adapters.core.lorawan import chirpstack_uplink, tts_uplink


def _listening(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


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


async def test_publish_uplinks_delivers_envelopes():
    app = f"kit{uuid.uuid4().hex[:8]}"
    got: list = []
    src = MqttSource(MqttSourceConfig(topics=[f"v3/{app}@ttn/devices/+/up", f"application/{app}/device/+/event/up"]))

    async def emit(m):
        got.append(m)

    task = asyncio.create_task(src.run(emit))
    try:
        while not src.ready:
            await asyncio.sleep(0.02)
        n = await publish_uplinks("127.0.0.1", 1883, [
            tts_uplink("d1", b"\x01", f_port=1, f_cnt=1, received_at="2024-05-01T12:00:00Z", application_id=app),
            chirpstack_uplink("0011223344556677", b"\x02", f_port=2, f_cnt=2, time="2024-05-01T12:00:00Z",
                              application_id=app),
        ])
        assert n == 2
        for _ in range(200):
            if len(got) == 2:
                break
            await asyncio.sleep(0.02)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    assert sorted(m.topic.split("/")[0] for m in got) == ["application", "v3"]


async def test_local_broker_fixture(local_broker):
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{local_broker}/ngsi-ld/v1/entities", params={"type": "Device"}) as resp:
            assert resp.status == 200


# ------------------------------------------------------------------ fixture → readings → entities

def _thermo(payload: bytes, f_port):
    if len(payload) != 3:
        raise DecodeError("bad-length", f"{len(payload)} bytes, expected 3")
    temp, hum = struct.unpack(">hB", payload)
    return {"temperature": temp / 10, "relativeHumidity": hum / 100}


THERMO = LoRaWANProfile(name="thermo", description="int16 °C/10 + uint8 %", payload_decoder=_thermo)


def _mapper(reading, ctx: MapContext):
    rec = ctx.require_device(reading)
    lon, lat = ctx.require(rec, "location")
    return [new_entity(entity_id("WeatherObserved", ctx.namespace, rec.id), "WeatherObserved",
                       location=geo_point(lon, lat),
                       temperature=prop(reading.values["temperature"], unit="CEL", observed_at=reading.observed_at))]


SPEC = AdapterSpec(name="thermo", description="", profiles={"thermo": THERMO}, mapper=_mapper)


def test_run_profile_bytes_hex_file_and_envelope(tmp_path):
    [r] = run_profile(THERMO, bytes.fromhex("00FA37"), f_port=1)
    assert r.values == {"temperature": 25.0, "relativeHumidity": 0.55} and r.device_id == "test-device"
    (tmp_path / "frame.hex").write_text("00 fa 37\n")
    assert run_profile(THERMO, tmp_path / "frame.hex")[0].values["temperature"] == 25.0
    topic, env = chirpstack_uplink("0011223344556677", b"\xff\xf6\x10", f_port=1, f_cnt=4, time="2024-05-01T12:00:00Z")
    [r] = run_profile(THERMO, env, topic=topic)
    assert r.values["temperature"] == -1.0 and r.device_id == "0011223344556677" and r.meta["f_cnt"] == 4
    with pytest.raises(DecodeError):
        run_profile(THERMO, b"\x00")


def test_map_fixture_and_assert_entities_match():
    registry = [{"id": "test-device", "lon": 10.78, "lat": 52.42}]
    entities = map_fixture(SPEC, bytes.fromhex("00FA37"), registry=registry, f_port=1, namespace="wob")
    expected = [{"id": "urn:ngsi-ld:WeatherObserved:wob:test-device", "type": "WeatherObserved",
                 "location": {"type": "GeoProperty", "value": {"type": "Point", "coordinates": [10.78, 52.42]}},
                 "temperature": {"type": "Property", "value": 25.0, "unitCode": "CEL",
                                 "observedAt": "1999-01-01T00:00:00.000Z"}}]
    assert_entities_match(entities, expected)                       # observedAt ignored by default
    with pytest.raises(AssertionError, match="observedAt"):
        assert_entities_match(entities, expected, ignore=())
    wrong = [dict(expected[0], temperature={"type": "Property", "value": 24.0, "unitCode": "CEL"})]
    with pytest.raises(AssertionError, match=r"\.temperature\.value: 25\.0 != expected 24\.0"):
        assert_entities_match(entities, wrong)
    with pytest.raises(AssertionError, match="missing"):
        assert_entities_match(entities, expected + [{"id": "urn:x", "type": "T"}])
    with pytest.raises(MappingError):
        map_fixture(SPEC, bytes.fromhex("00FA37"), registry=[], f_port=1)


def test_free_port_is_bindable():
    port = free_port()
    with socket.socket() as s:
        s.bind(("127.0.0.1", port))


def test_first_start_moves_off_a_port_someone_took():
    proc = MosquittoProcess()
    blocker = socket.socket()
    blocker.bind(("127.0.0.1", proc.port))
    blocker.listen()
    taken = proc.port
    try:
        proc.start()
        assert proc.port != taken and proc.running
        port = proc.port
        proc.restart()                      # a restart keeps its port
        assert proc.port == port and _listening(port)
    finally:
        proc.cleanup()
        blocker.close()

"""The MQTT client (adapters/core/sources/mqtt_client.py, paho's public external-loop API): groups,
delivered QoS, order, acknowledgements — against the shared Mosquitto (unique topics and client ids)."""
from __future__ import annotations

import asyncio
import uuid

import aiomqtt
import pytest
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from stadtlink.adapters.core.reading import RawMessage
from stadtlink.adapters.core.sources import MqttSource, MqttSourceConfig
from stadtlink.adapters.core.sources.mqtt_client import MqttSettings, connect
from stadtlink.adapters.core.testing import SHARED_MQTT, stop_task, wait_until

from .mqtt_helpers import quick_config

HOST, PORT = SHARED_MQTT


def _config(topic: str, **kw) -> MqttSourceConfig:
    return quick_config(topic, HOST, PORT, **kw)


def _payload(i: int) -> bytes:
    if i == 7:
        return bytes(range(256)) * 800            # 200 KiB: spans several 64 KiB socket reads
    if i == 8:
        return b""
    return f"m{i}-".encode() + b"x" * (i % 97)


async def _publish(topic: str, n: int, protocol: str) -> None:
    """QoS 1 publishes; with MQTT 5 each PUBLISH carries properties the client must skip."""
    version = aiomqtt.ProtocolVersion.V5 if protocol == "5" else aiomqtt.ProtocolVersion.V311
    async with aiomqtt.Client(HOST, PORT, identifier=f"stadtlink-pub-{uuid.uuid4().hex[:10]}",
                              protocol=version) as client:
        for i in range(n):
            props = None
            if protocol == "5":
                props = Properties(PacketTypes.PUBLISH)
                props.UserProperty = [("seq", str(i)), ("note", "ä" * (i % 5))]
                props.ContentType = "application/octet-stream"
                props.MessageExpiryInterval = 3600
            await client.publish(topic, _payload(i), qos=1, properties=props)


async def test_messages_read_together_come_as_one_group_with_their_delivered_qos():
    """A backlog queued in the session arrives in groups of several messages (one socket read),
    each message with its topic and the QoS it was delivered with: QoS 0 when published with 0."""
    topic = f"stadtlink-test/{uuid.uuid4().hex}/up"
    settings = MqttSettings(host=HOST, port=PORT, client_id=f"stadtlink-grp-{uuid.uuid4().hex[:8]}",
                            receive_maximum=50)
    async with connect(settings) as conn:
        await conn.subscribe([topic], qos=1)
    pub_id = f"stadtlink-pub-{uuid.uuid4().hex[:10]}"
    async with aiomqtt.Client(HOST, PORT, identifier=pub_id) as client:
        for i in range(40):      # queued in the offline session
            await client.publish(topic, f"q1-{i}".encode(), qos=1)
    groups: list[list] = []
    async with connect(settings) as conn:
        async def take(n_wanted: int):
            n = 0
            async for group in conn.groups():
                groups.append(group)
                for m in group:
                    conn.ack(m)
                n += len(group)
                if n >= n_wanted:
                    return
        await asyncio.wait_for(take(40), 20)
        async with aiomqtt.Client(HOST, PORT, identifier=pub_id) as client:
            await client.publish(topic, b"q0", qos=0)      # delivered with QoS 0 on our QoS 1 subscription
        await asyncio.wait_for(take(1), 20)
    flat = [m for g in groups for m in g]
    assert [m.payload for m in flat] == [f"q1-{i}".encode() for i in range(40)] + [b"q0"]
    assert [m.qos for m in flat] == [1] * 40 + [0]
    assert all(m.topic == topic for m in flat)
    assert max(len(g) for g in groups) > 1, [len(g) for g in groups]


@pytest.mark.parametrize("protocol", ["5", "3.1.1"])
async def test_every_message_arrives_in_order_intact_and_acked(protocol):
    """More messages than the broker lets us hold unacknowledged (receive_maximum 3, MQTT 5) and
    than one PUBACK flush: the collected PUBACKs must keep flowing, payloads arrive byte-exact and
    in order, and after a restart of the source under the same client id nothing comes again."""
    topic = f"stadtlink-test/{uuid.uuid4().hex}/up"
    client_id = f"stadtlink-cl-{uuid.uuid4().hex[:8]}"
    n = 150
    got: list[RawMessage] = []

    async def emit(message: RawMessage) -> None:
        got.append(message)

    source = MqttSource(_config(topic, client_id=client_id, protocol=protocol, receive_maximum=3),
                        adapter_name="test")
    task = asyncio.create_task(source.run(emit))
    try:
        await wait_until(lambda: source.ready, what="connect")
        await _publish(topic, n, protocol)
        await wait_until(lambda: len(got) >= n, what=f"{n} messages")
        await wait_until(lambda: source.stats()["acked"] >= n, what="acks")
        assert [m.payload for m in got] == [_payload(i) for i in range(n)]
        assert all(m.topic == topic and m.attributes == {"qos": 1, "retain": False} for m in got)
        assert source.stats()["ack_failures"] == 0
        await asyncio.sleep(0.3)
    finally:
        await stop_task(task)
    assert len(got) == n          # nothing twice

    again: list[RawMessage] = []

    async def emit_again(message: RawMessage) -> None:
        again.append(message)

    source2 = MqttSource(_config(topic, client_id=client_id, protocol=protocol), adapter_name="test")
    task = asyncio.create_task(source2.run(emit_again))
    try:
        await wait_until(lambda: source2.ready, what="reconnect")
        await _publish(topic, 1, protocol)     # a marker proves the session is live
        await wait_until(lambda: len(again) >= 1, what="marker")
        await asyncio.sleep(0.3)
        assert [m.payload for m in again] == [_payload(0)]   # acknowledged before: not redelivered
    finally:
        await stop_task(task)


async def test_acks_collected_before_a_refusal_are_written_before_the_disconnect():
    """A refused message closes the connection; the messages processed before it were acknowledged
    (their collected PUBACKs written before disconnecting), so only the refused one comes again."""
    topic = f"stadtlink-test/{uuid.uuid4().hex}/up"
    attempts: list[bytes] = []

    async def emit(message: RawMessage) -> None:
        attempts.append(message.payload)
        if message.payload == _payload(5) and attempts.count(message.payload) == 1:
            raise RuntimeError("outbox full")

    source = MqttSource(_config(topic), adapter_name="test")
    task = asyncio.create_task(source.run(emit))
    try:
        await wait_until(lambda: source.ready, what="connect")
        await _publish(topic, 6, "5")
        await wait_until(lambda: attempts.count(_payload(5)) == 2, what="redelivery of the refused message")
        await asyncio.sleep(0.3)
        assert [attempts.count(_payload(i)) for i in range(5)] == [1] * 5
    finally:
        await stop_task(task)


class _GroupEmit:
    """An ``emit`` with ``.group`` (as Pipeline.emitter makes it) whose group commit waits for ``gate``."""

    def __init__(self):
        self.groups: list[list[RawMessage]] = []
        self.gate = asyncio.Event()
        self.committed = 0

    async def __call__(self, message: RawMessage) -> None:   # pragma: no cover - the source uses .group
        raise AssertionError("the MQTT source must hand over groups")

    async def group(self, messages: list[RawMessage]) -> None:
        self.groups.append(messages)
        await self.gate.wait()
        self.committed += len(messages)


@pytest.mark.parametrize("protocol", ["5", "3.1.1"])
async def test_no_message_is_acknowledged_before_its_group_is_committed(protocol):
    """A backlog comes as groups; while a group's commit has not returned nothing of it is
    acknowledged — a source that dies there gets every message again under the same client id."""
    topic = f"stadtlink-test/{uuid.uuid4().hex}/up"
    client_id = f"stadtlink-cl-{uuid.uuid4().hex[:8]}"
    n = 60
    prime = MqttSettings(host=HOST, port=PORT, client_id=client_id, protocol=protocol)
    async with connect(prime) as conn:
        await conn.subscribe([topic], qos=1)
    await _publish(topic, n, protocol)             # queued in the offline session

    first = _GroupEmit()
    source = MqttSource(_config(topic, client_id=client_id, protocol=protocol), adapter_name="test")
    task = asyncio.create_task(source.run(first))
    try:
        await wait_until(lambda: first.groups, what="the first group")
        await asyncio.sleep(0.5)
        assert len(first.groups) == 1 and len(first.groups[0]) > 1       # waiting in its commit
        assert source.stats()["acked"] == 0
    finally:
        await stop_task(task)                        # dies in the middle of the group commit

    second = _GroupEmit()
    second.gate.set()
    source2 = MqttSource(_config(topic, client_id=client_id, protocol=protocol), adapter_name="test")
    task = asyncio.create_task(source2.run(second))
    try:
        await wait_until(lambda: second.committed >= n, what="redelivery of everything")
        await wait_until(lambda: source2.stats()["acked"] >= n, what="acks after the commits")
        got = [m.payload for g in second.groups for m in g]
        assert got == [_payload(i) for i in range(n)]          # all of it, in order, once
        assert any(len(g) > 1 for g in second.groups)
    finally:
        await stop_task(task)

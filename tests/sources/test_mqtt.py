"""MQTT source against real Mosquitto: the shared one (SHARED_MQTT, unique topics) and our own
throw-away brokers where a test stops or restarts the server."""
from __future__ import annotations

import asyncio
import uuid

import orjson
import pytest
from pydantic import ValidationError

from stadtlink.adapters.core.lorawan import parse_uplink, tts_uplink
from stadtlink.adapters.core.reading import RawMessage
from stadtlink.adapters.core.sources import MqttSource, MqttSourceConfig
from stadtlink.adapters.core.sources.mqtt_client import MqttError, MqttSettings, connect
from stadtlink.adapters.core.testing import SHARED_MQTT, MosquittoProcess, publish_uplinks, stop_task, wait_until

from .mqtt_helpers import Collector, make_pki, quick_config as _config

SHARED = SHARED_MQTT


def _uplinks(prefix: str, n: int) -> list[tuple[str, dict]]:
    out = []
    for i in range(n):
        topic, env = tts_uplink(f"{prefix}-dev", bytes([i % 256, 0x42]), f_port=1, f_cnt=i + 1,
                                received_at="2024-05-01T12:00:00Z", application_id=prefix)
        out.append((topic, env))
    return out


async def test_qos1_uplinks_are_emitted_and_acknowledged():
    app = f"t{uuid.uuid4().hex[:10]}"
    collector = Collector()
    source = MqttSource(_config(f"v3/{app}@ttn/devices/+/up"), adapter_name="test")
    task = asyncio.create_task(source.run(collector))
    try:
        await wait_until(lambda: source.ready, what="connect")
        await publish_uplinks(*SHARED, _uplinks(app, 3))
        await wait_until(lambda: len(collector.messages) == 3, what="3 messages")
        uplinks = [parse_uplink(m.payload, m.topic) for m in collector.messages]
        assert [u.f_cnt for u in uplinks] == [1, 2, 3]
        assert all(m.source == "mqtt" and m.topic == f"v3/{app}@ttn/devices/{app}-dev/up" for m in collector.messages)
        assert all(m.received_at.tzinfo is not None for m in collector.messages)
        await wait_until(lambda: source.stats()["acked"] == 3, what="acks")
    finally:
        await stop_task(task)
    assert not source.ready
    # Acknowledged means gone: the same session (same client id) gets nothing again.
    again = Collector()
    source2 = MqttSource(_config(f"v3/{app}@ttn/devices/+/up", client_id=source.client_id), adapter_name="test")
    task = asyncio.create_task(source2.run(again))
    try:
        await wait_until(lambda: source2.ready, what="reconnect")
        await publish_uplinks(*SHARED, _uplinks(app, 1))   # a marker proves the session is live
        await wait_until(lambda: len(again.messages) >= 1, what="marker")
        await asyncio.sleep(0.2)
        assert len(again.messages) == 1
    finally:
        await stop_task(task)


async def test_message_is_not_acked_before_emit_returns():
    """Emit never returns for the first message → no PUBACK; the next session with the same
    client id gets the message again."""
    topic = f"stadtlink-test/{uuid.uuid4().hex}/up"
    client_id = f"stadtlink-test-{uuid.uuid4().hex[:8]}"
    entered = asyncio.Event()

    async def stuck_emit(message: RawMessage) -> None:
        entered.set()
        await asyncio.Event().wait()

    source = MqttSource(_config(topic, client_id=client_id), adapter_name="test")
    task = asyncio.create_task(source.run(stuck_emit))
    try:
        await wait_until(lambda: source.ready, what="connect")
        await publish_uplinks(*SHARED, [(topic, b"first")])
        await asyncio.wait_for(entered.wait(), 5)
        assert source.stats()["acked"] == 0
    finally:
        await stop_task(task)

    collector = Collector()
    source2 = MqttSource(_config(topic, client_id=client_id), adapter_name="test")
    task = asyncio.create_task(source2.run(collector))
    try:
        await wait_until(lambda: b"first" in collector.payloads, what="redelivery")
        await wait_until(lambda: source2.stats()["acked"] == 1, what="ack")
    finally:
        await stop_task(task)


@pytest.mark.parametrize("protocol", ["5", "3.1.1"])
async def test_emit_failure_means_no_ack_and_redelivery_after_reconnect(protocol):
    topic = f"stadtlink-test/{uuid.uuid4().hex}/up"
    attempts: list[bytes] = []
    delivered: list[bytes] = []

    async def flaky_emit(message: RawMessage) -> None:
        attempts.append(message.payload)
        if message.payload == b"m1" and attempts.count(b"m1") == 1:
            raise RuntimeError("outbox full")
        delivered.append(message.payload)

    source = MqttSource(_config(topic, protocol=protocol), adapter_name="test")
    task = asyncio.create_task(source.run(flaky_emit))
    try:
        await wait_until(lambda: source.ready, what="connect")
        await publish_uplinks(*SHARED, [(topic, f"m{i}".encode()) for i in range(4)])
        await wait_until(lambda: {b"m0", b"m1", b"m2", b"m3"} <= set(delivered), what="all delivered")
        stats = source.stats()
        assert stats["emit_refused"] == 1
        assert stats["connects"] >= 2            # it disconnected and came back for the redelivery
        assert attempts.count(b"m1") == 2        # refused once, redelivered by the broker once
        assert delivered == [b"m0", b"m1", b"m2", b"m3"]   # order kept, nothing twice
    finally:
        await stop_task(task)


@pytest.mark.parametrize("protocol", ["5", "3.1.1"])
async def test_broker_restart_reconnects_resubscribes_and_loses_nothing(protocol):
    broker = MosquittoProcess(persistence=True)
    await asyncio.to_thread(broker.start)
    topic = f"stadtlink-test/{uuid.uuid4().hex}/up"
    collector = Collector()
    source = MqttSource(_config(topic, host=broker.host, port=broker.port, protocol=protocol), adapter_name="test")
    task = asyncio.create_task(source.run(collector))
    sent: list[bytes] = []

    async def publisher(n: int) -> None:
        for i in range(n):
            payload = f"msg-{i}".encode()
            while True:   # a QoS 1 publisher retries until the broker acknowledged
                try:
                    await publish_uplinks(broker.host, broker.port, [(topic, payload)])
                    break
                except MqttError:
                    await asyncio.sleep(0.05)
            sent.append(payload)
            await asyncio.sleep(0.01)

    try:
        await wait_until(lambda: source.ready, what="connect")
        pub = asyncio.create_task(publisher(60))
        await wait_until(lambda: len(sent) >= 15, what="first messages")
        await asyncio.to_thread(broker.stop)
        await wait_until(lambda: not source.ready, what="readiness false while the broker is down")
        await asyncio.sleep(0.3)
        await asyncio.to_thread(broker.start)
        await asyncio.wait_for(pub, 30)
        await wait_until(lambda: set(sent) <= set(collector.payloads), timeout=15, what="every message")
        assert source.ready
        assert source.stats()["connects"] >= 2
        assert set(collector.payloads) == {f"msg-{i}".encode() for i in range(60)}
    finally:
        await stop_task(task)
        await asyncio.to_thread(broker.cleanup)


async def test_readiness_false_while_broker_down_and_source_survives():
    broker = MosquittoProcess()
    await asyncio.to_thread(broker.start)
    topic = f"stadtlink-test/{uuid.uuid4().hex}"
    collector = Collector()
    source = MqttSource(_config(topic, host=broker.host, port=broker.port), adapter_name="test")
    task = asyncio.create_task(source.run(collector))
    try:
        await wait_until(lambda: source.ready, what="connect")
        await asyncio.to_thread(broker.kill)
        await wait_until(lambda: not source.ready, what="not ready")
        await asyncio.sleep(0.5)            # several failed reconnect attempts
        assert not task.done()
        assert source.stats()["connect_failures"] >= 1
        await asyncio.to_thread(broker.start)
        await wait_until(lambda: source.ready, what="ready again")
        await publish_uplinks(broker.host, broker.port, [(topic, b"after")])
        await wait_until(lambda: b"after" in collector.payloads, what="message after restart (re-subscribed)")
    finally:
        await stop_task(task)
        await asyncio.to_thread(broker.cleanup)


async def test_not_ready_when_broker_unreachable():
    from stadtlink.adapters.core.testing import free_port

    source = MqttSource(_config("x/y", port=free_port()), adapter_name="test")
    task = asyncio.create_task(source.run(Collector()))
    try:
        await wait_until(lambda: source.stats()["connect_failures"] >= 2, what="retries")
        assert not source.ready and not task.done()
    finally:
        await stop_task(task)


async def test_shared_subscription_splits_messages_exactly_once():
    topic = f"stadtlink-test/{uuid.uuid4().hex}/up"
    group = f"g{uuid.uuid4().hex[:8]}"
    a, b = Collector(), Collector()
    src_a = MqttSource(_config(topic, shared_group=group), adapter_name="test")
    src_b = MqttSource(_config(topic, shared_group=group), adapter_name="test")
    tasks = [asyncio.create_task(src_a.run(a)), asyncio.create_task(src_b.run(b))]
    try:
        await wait_until(lambda: src_a.ready and src_b.ready, what="both connected")
        sent = [f"s{i}".encode() for i in range(40)]
        await publish_uplinks(*SHARED, [(topic, p) for p in sent])
        await wait_until(lambda: len(a.messages) + len(b.messages) >= 40, what="40 messages")
        await asyncio.sleep(0.3)
        assert len(a.messages) + len(b.messages) == 40          # no message twice
        assert set(a.payloads) | set(b.payloads) == set(sent)   # none lost
        assert a.messages and b.messages                         # the load is split
        assert not set(a.payloads) & set(b.payloads)
    finally:
        for t in tasks:
            await stop_task(t)


async def test_shared_member_restart_with_stable_client_id_loses_nothing():
    """Replica B is away while messages arrive: its share waits in its session (see the module
    docstring) and comes when B returns with the same client id; every message once in total."""
    topic = f"stadtlink-test/{uuid.uuid4().hex}/up"
    group = f"g{uuid.uuid4().hex[:8]}"
    a, b = Collector(), Collector()

    def cfg(replica: str) -> MqttSourceConfig:
        return _config(topic, shared_group=group, client_id=f"{group}-{replica}")

    src_a, src_b = MqttSource(cfg("a"), adapter_name="t"), MqttSource(cfg("b"), adapter_name="t")
    task_a, task_b = asyncio.create_task(src_a.run(a)), asyncio.create_task(src_b.run(b))
    try:
        await wait_until(lambda: src_a.ready and src_b.ready, what="both connected")
        await stop_task(task_b)
        sent = [f"r{i}".encode() for i in range(20)]
        await publish_uplinks(*SHARED, [(topic, p) for p in sent])
        src_b = MqttSource(cfg("b"), adapter_name="t")
        task_b = asyncio.create_task(src_b.run(b))
        await wait_until(lambda: len(a.messages) + len(b.messages) >= 20, what="all 20")
        await asyncio.sleep(0.3)
        assert sorted(a.payloads + b.payloads) == sorted(sent)
    finally:
        await stop_task(task_a)
        await stop_task(task_b)


def test_config_shared_topics_and_validation():
    cfg = MqttSourceConfig(topics=["v3/+/devices/+/up"], shared_group="stadtlink-parking")
    assert cfg.subscription_topics() == ["$share/stadtlink-parking/v3/+/devices/+/up"]
    with pytest.raises(ValidationError):
        MqttSourceConfig(topics=["$share/g/x"])
    with pytest.raises(ValidationError):
        MqttSourceConfig(shared_group="a/b")
    with pytest.raises(ValidationError):
        MqttSourceConfig(password="x", password_env="Y")
    with pytest.raises(ValidationError):
        MqttSourceConfig(qos=2)
    with pytest.raises(ValidationError):
        MqttSourceConfig(unknown_key=1)
    assert MqttSourceConfig(protocol=5).protocol == "5"
    # profile options (json-map fields …) ride on the source config; the runtime passes them to decode()
    assert MqttSourceConfig(profile="json-map", options={"fields": {"t": "decoded.t"}}).options == {
        "fields": {"t": "decoded.t"}}


def test_password_never_shown_and_client_id_default(monkeypatch):
    monkeypatch.setenv("MQTT_PW_TEST", "s3cr3t-env")
    cfg = MqttSourceConfig(username="app@ttn", password="s3cr3t-value")
    assert "s3cr3t" not in repr(cfg) and "s3cr3t" not in str(cfg.model_dump())
    source = MqttSource(cfg, adapter_name="parking")
    assert source.client_id.startswith("stadtlink-parking-")
    assert MqttSource(cfg, adapter_name="parking").client_id != source.client_id
    assert MqttSource(MqttSourceConfig(client_id="fixed"), adapter_name="p").client_id == "fixed"
    settings = MqttSource(MqttSourceConfig(password_env="MQTT_PW_TEST"), adapter_name="p")._settings
    assert settings.password == "s3cr3t-env" and "s3cr3t" not in repr(settings)
    # config problems surface when the source is built, not later in its run loop
    from stadtlink.adapters.core.errors import ConfigError
    monkeypatch.delenv("MQTT_PW_TEST")
    with pytest.raises(ConfigError, match="MQTT_PW_TEST"):
        MqttSource(MqttSourceConfig(password_env="MQTT_PW_TEST"), adapter_name="p")
    with pytest.raises(ConfigError, match="tls"):
        MqttSource(MqttSourceConfig(tls={"ca": "/nonexistent/ca.pem"}), adapter_name="p")


async def test_password_authentication_against_own_broker(tmp_path):
    """username/password_file reach the broker; a wrong password keeps the source not ready."""
    import shutil
    import subprocess

    if shutil.which("mosquitto_passwd") is None:
        pytest.skip("mosquitto_passwd not installed")
    pwfile = tmp_path / "passwd"
    subprocess.run(["mosquitto_passwd", "-b", "-c", str(pwfile), "app", "right-pw"], check=True)
    (tmp_path / "pw.txt").write_text("right-pw\n")
    broker = MosquittoProcess(allow_anonymous=False, password_file=pwfile)
    await asyncio.to_thread(broker.start)
    try:
        good = MqttSource(_config("a/b", host=broker.host, port=broker.port, username="app",
                                  password_file=str(tmp_path / "pw.txt")), adapter_name="t")
        bad = MqttSource(_config("a/b", host=broker.host, port=broker.port, username="app", password="wrong"),
                         adapter_name="t")
        tasks = [asyncio.create_task(good.run(Collector())), asyncio.create_task(bad.run(Collector()))]
        try:
            await wait_until(lambda: good.ready, what="authenticated connect")
            await wait_until(lambda: bad.stats()["connect_failures"] >= 2, what="refused")
            assert not bad.ready
        finally:
            for t in tasks:
                await stop_task(t)
    finally:
        await asyncio.to_thread(broker.cleanup)


async def test_mqtt_client_publish_fails_cleanly_without_broker():
    from stadtlink.adapters.core.testing import free_port

    with pytest.raises(MqttError):
        async with connect(MqttSettings("127.0.0.1", free_port(), client_id="x", connect_timeout=1)):
            pass


async def test_tls_with_client_certificate(tmp_path):
    import shutil

    if shutil.which("openssl") is None:
        pytest.skip("openssl not installed")
    pki = make_pki(tmp_path)
    broker = MosquittoProcess(extra_config=f"cafile {pki['ca.crt']}\ncertfile {pki['server.crt']}\n"
                                           f"keyfile {pki['server.key']}\nrequire_certificate true\n")
    await asyncio.to_thread(broker.start)
    topic = f"stadtlink-test/{uuid.uuid4().hex}"
    try:
        collector = Collector()
        good = MqttSource(_config(topic, host=broker.host, port=broker.port,
                                  tls={"ca": pki["ca.crt"], "cert": pki["client.crt"], "key": pki["client.key"]}),
                          adapter_name="t")
        no_client_cert = MqttSource(_config(topic, host=broker.host, port=broker.port, tls={"ca": pki["ca.crt"]}),
                                    adapter_name="t")
        plain = MqttSource(_config(topic, host=broker.host, port=broker.port), adapter_name="t")
        tasks = [asyncio.create_task(s.run(collector if s is good else Collector()))
                 for s in (good, no_client_cert, plain)]
        try:
            await wait_until(lambda: good.ready, what="TLS connect")
            from stadtlink.adapters.core.sources.mqtt_client import make_tls_context
            ctx = make_tls_context(pki["ca.crt"], pki["client.crt"], pki["client.key"])
            async with connect(MqttSettings(broker.host, broker.port, client_id="tls-pub", tls=ctx,
                                            manual_ack=False, persistent_session=False)) as pub:
                await pub.publish(topic, b"over-tls", qos=1)
            await wait_until(lambda: collector.payloads == [b"over-tls"], what="message over TLS")
            await wait_until(lambda: no_client_cert.stats()["connect_failures"] >= 1
                             and plain.stats()["connect_failures"] >= 1, what="refusals")
            assert not no_client_cert.ready and not plain.ready
        finally:
            for t in tasks:
                await stop_task(t)
    finally:
        await asyncio.to_thread(broker.cleanup)


# -- leaving a shared group for good (SIGTERM of one replica) -------------------------------------


class _GatedCollector(Collector):
    """Emits only once ``gate`` is set: the broker's share for this member piles up meanwhile
    (in flight up to the ReceiveMaximum, the rest queued in its session)."""

    def __init__(self):
        super().__init__()
        self.gate = asyncio.Event()

    async def __call__(self, message: RawMessage) -> None:
        await self.gate.wait()
        self.messages.append(message)


@pytest.mark.parametrize("protocol", ["5", "3.1.1"])
async def test_leave_delivers_what_was_queued_after_the_unsubscribe(mosquitto, protocol):
    """What Mosquitto 2.0 does when a shared member unsubscribes: it assigns it nothing new but still
    delivers everything already assigned — in flight and queued in its session. leave() takes all of
    it, then ends the session: later messages all go to the other member, none is kept for the one
    that left."""
    topic = f"stadtlink-test/{uuid.uuid4().hex}/up"
    group = f"g{uuid.uuid4().hex[:8]}"
    a, b = _GatedCollector(), Collector()
    cfg = {"host": mosquitto.host, "port": mosquitto.port, "shared_group": group, "protocol": protocol,
           "receive_maximum": 10}
    src_a = MqttSource(_config(topic, client_id=f"{group}-a", **cfg), adapter_name="t")
    src_b = MqttSource(_config(topic, client_id=f"{group}-b", **cfg), adapter_name="t")
    tasks = [asyncio.create_task(src_a.run(a)), asyncio.create_task(src_b.run(b))]
    try:
        await wait_until(lambda: src_a.ready and src_b.ready, what="both connected")
        sent = [f"q{i}".encode() for i in range(400)]
        await publish_uplinks(mosquitto.host, mosquitto.port, [(topic, p) for p in sent])
        await wait_until(lambda: len(b.messages) >= 150, what="B's share")
        assert a.messages == []                # A's share waits: 10 in flight (ReceiveMaximum), the rest queued
        leaving = asyncio.create_task(src_a.leave(10.0))
        await asyncio.sleep(0.3)               # A has unsubscribed by now; its share is still to come
        a.gate.set()
        assert await leaving is True
        got = a.payloads + b.payloads
        assert len(got) == len(sent) and set(got) == set(sent)      # none lost, none twice
        assert len(a.messages) > 10            # more than its in-flight window: the queue came too
        stats = src_a.stats()
        # the messages handed over after leave() began: all but the group (read together, at most
        # the in-flight window: ReceiveMaximum 10 with MQTT 5, Mosquitto's max_inflight_messages
        # 20 with 3.1.1) that was waiting in emit
        window = 10 if protocol == "5" else 20
        assert stats["left"] == 1 and len(a.messages) - window <= stats["leave_drained"] < len(a.messages)
        assert stats["leave_incomplete"] == 0
        later = [f"l{i}".encode() for i in range(60)]
        await publish_uplinks(mosquitto.host, mosquitto.port, [(topic, p) for p in later])
        await wait_until(lambda: set(later) <= set(b.payloads), what="every later message at B")
        assert not set(later) & set(a.payloads)
        # A's session is gone (not merely disconnected): resuming it under A's id brings nothing
        again = Collector()
        src_again = MqttSource(_config(topic, client_id=f"{group}-a", host=mosquitto.host, port=mosquitto.port,
                                       protocol=protocol), adapter_name="t")
        t_again = asyncio.create_task(src_again.run(again))
        await wait_until(lambda: src_again.ready, what="A's id connected again")
        await asyncio.sleep(0.3)
        await stop_task(t_again)
        assert not set(later) & set(again.payloads)
    finally:
        a.gate.set()
        for t in tasks:
            await stop_task(t)


async def test_a_member_that_disconnects_without_leaving_keeps_its_share(mosquitto):
    """The problem leave() solves, as Mosquitto 2.0 shows it: a member gone without leaving keeps
    being assigned its share, kept in its persistent session for a client id that may never return."""
    topic = f"stadtlink-test/{uuid.uuid4().hex}/up"
    group = f"g{uuid.uuid4().hex[:8]}"
    a, b = Collector(), Collector()
    cfg = {"host": mosquitto.host, "port": mosquitto.port, "shared_group": group}
    src_a = MqttSource(_config(topic, **cfg), adapter_name="t")
    src_b = MqttSource(_config(topic, **cfg), adapter_name="t")
    task_a, task_b = asyncio.create_task(src_a.run(a)), asyncio.create_task(src_b.run(b))
    try:
        await wait_until(lambda: src_a.ready and src_b.ready, what="both connected")
        await stop_task(task_a)                      # gone, session kept (session_expiry_s 3600)
        sent = [f"x{i}".encode() for i in range(40)]
        await publish_uplinks(mosquitto.host, mosquitto.port, [(topic, p) for p in sent])
        await asyncio.sleep(0.5)
        assert 0 < len(b.messages) < len(sent)   # the rest waits for a client id that is gone
    finally:
        await stop_task(task_b)


async def test_leave_without_shared_group_keeps_the_session(mosquitto):
    """A plain subscription is not left: its session persists for the restart (same client id)."""
    topic = f"stadtlink-test/{uuid.uuid4().hex}/up"
    cid = f"plain-{uuid.uuid4().hex[:8]}"
    first = Collector()
    src = MqttSource(_config(topic, host=mosquitto.host, port=mosquitto.port, client_id=cid), adapter_name="t")
    task = asyncio.create_task(src.run(first))
    await wait_until(lambda: src.ready, what="connect")
    assert await src.leave(5.0) is False
    await stop_task(task)
    await publish_uplinks(mosquitto.host, mosquitto.port, [(topic, b"while-away")])
    second = Collector()
    src2 = MqttSource(_config(topic, host=mosquitto.host, port=mosquitto.port, client_id=cid), adapter_name="t")
    task2 = asyncio.create_task(src2.run(second))
    try:
        await wait_until(lambda: b"while-away" in second.payloads, what="the message kept in the session")
    finally:
        await stop_task(task2)


async def test_leave_gives_up_within_its_timeout_and_keeps_the_session(mosquitto):
    """A pipeline that cannot take the rest in time: leave() returns False within the bound and does
    not end the session, so a return under the same (stable) client id still gets what is left."""
    topic = f"stadtlink-test/{uuid.uuid4().hex}/up"
    group = f"g{uuid.uuid4().hex[:8]}"
    stuck = _GatedCollector()     # never opened
    cid = f"{group}-a"
    cfg = {"host": mosquitto.host, "port": mosquitto.port, "shared_group": group}
    src = MqttSource(_config(topic, client_id=cid, **cfg), adapter_name="t")
    task = asyncio.create_task(src.run(stuck))
    try:
        await wait_until(lambda: src.ready, what="connect")
        await publish_uplinks(mosquitto.host, mosquitto.port, [(topic, f"s{i}".encode()) for i in range(5)])
        await asyncio.sleep(0.2)
        t0 = asyncio.get_running_loop().time()
        assert await src.leave(0.5) is False
        assert asyncio.get_running_loop().time() - t0 < 2.0
        assert src.stats()["leave_incomplete"] == 1
    finally:
        await stop_task(task)
    back = Collector()
    src2 = MqttSource(_config(topic, client_id=cid, **cfg), adapter_name="t")
    task2 = asyncio.create_task(src2.run(back))
    try:
        await wait_until(lambda: len(back.messages) == 5, what="the 5 messages kept in the session")
    finally:
        await stop_task(task2)


def test_client_id_from_the_environment(monkeypatch):
    from stadtlink.adapters.core.errors import ConfigError

    monkeypatch.setenv("POD_NAME_TEST", "stadtlink-parking-2")
    cfg = MqttSourceConfig(client_id_env="POD_NAME_TEST", shared_group="g")
    assert MqttSource(cfg, adapter_name="parking").client_id == "stadtlink-parking-2"
    with pytest.raises(ValidationError, match="only one of client_id, client_id_env"):
        MqttSourceConfig(client_id="x", client_id_env="POD_NAME_TEST")
    monkeypatch.delenv("POD_NAME_TEST")
    with pytest.raises(ConfigError, match="POD_NAME_TEST is not set"):
        MqttSource(cfg, adapter_name="parking")

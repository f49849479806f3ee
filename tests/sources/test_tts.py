"""The Things Stack preset, the Storage API client against its stand-in, QoS downgrade warnings
(ChirpStack's default qos=0) against real Mosquitto, and ChirpStack Protobuf events."""
from __future__ import annotations

import asyncio
import logging
import shutil
import subprocess
import uuid
from datetime import datetime, timedelta, timezone

import orjson
import pytest
from pydantic import ValidationError

from stadtlink.adapters.core.errors import DecodeError
from stadtlink.adapters.core.lorawan import chirpstack_uplink, parse_uplink, tts_uplink
from stadtlink.adapters.core.sources import MqttSource, MqttSourceConfig
from stadtlink.adapters.core.sources.tts_storage import StorageClient, StorageError, uplink_identity
from stadtlink.adapters.core.testing import SHARED_MQTT, MosquittoProcess, publish_uplinks, stop_task, wait_until

from .tts_standins import TOY_TS_ADAPTER, StorageStandIn, TtsMqttStandIn, stored_uplink

UTC = timezone.utc


class Collector:
    def __init__(self):
        self.messages = []

    async def __call__(self, message) -> None:
        self.messages.append(message)


# -- the preset ---------------------------------------------------------------------------------------


def test_tts_preset_sets_what_the_things_stack_needs(tmp_path):
    key = tmp_path / "key"
    key.write_text("NNSXS.SECRET\n")
    cfg = MqttSourceConfig(network="tts", host="eu1.cloud.thethings.network",
                           tts={"application_id": "parking-wob", "api_key_file": str(key)})
    assert cfg.protocol == "3.1.1" and cfg.qos == 0
    assert cfg.port == 8883 and cfg.tls is not None
    assert cfg.username == "parking-wob@ttn"
    assert cfg.password_file == str(key)
    assert cfg.topics == ["v3/parking-wob@ttn/devices/+/up"]
    src = MqttSource(cfg, adapter_name="parking")
    assert src._settings.password == "NNSXS.SECRET"
    assert src.backfill is not None
    assert src.backfill.client.url == ("https://eu1.cloud.thethings.network/api/v3/as/applications/parking-wob/"
                                       "packages/storage/uplink_message")
    # open source deployment: no tenant; plain port given explicitly: no TLS
    cfg = MqttSourceConfig(network="tts", host="tts.local", port=1883,
                           tts={"application_id": "app1", "tenant_id": None, "api_key": "k",
                                "backfill": {"enabled": False}})
    assert cfg.username == "app1" and cfg.topics == ["v3/app1/devices/+/up"] and cfg.tls is None
    assert MqttSource(cfg, adapter_name="p").backfill is None


@pytest.mark.parametrize("extra, needle", [
    ({"protocol": "5"}, 'protocol: "3.1.1"'),
    ({"qos": 1}, "QoS 0 only"),
    ({"username": "x"}, "remove username"),
    ({"shared_group": "g"}, "no shared subscriptions"),
])
def test_tts_preset_refuses_what_the_things_stack_cannot_do(extra, needle):
    with pytest.raises(ValidationError, match=needle.replace("(", r"\(")):
        MqttSourceConfig(network="tts", tts={"application_id": "app1", "api_key": "k"}, **extra)


def test_tts_preset_needs_an_api_key_and_valid_ids():
    with pytest.raises(ValidationError, match="RIGHT_APPLICATION_TRAFFIC_READ"):
        MqttSourceConfig(network="tts", tts={"application_id": "app1"})
    with pytest.raises(ValidationError, match="application_id"):
        MqttSourceConfig(network="tts", tts={"application_id": "App_1", "api_key": "k"})
    with pytest.raises(ValidationError, match="network: tts"):
        MqttSourceConfig(tts={"application_id": "app1", "api_key": "k"})
    assert MqttSourceConfig(network="chirpstack").topics == ["application/+/device/+/event/up"]


# -- the MQTT server's CONNECT handling ---------------------------------------------------------------


async def test_mqtt5_against_the_things_stack_names_the_setting(caplog):
    server = await TtsMqttStandIn("app1@ttn", "NNSXS.KEY").start()
    try:
        caplog.set_level(logging.WARNING, logger="stadtlink.source.mqtt")
        for creds in ({"username": "app1@ttn", "password": "NNSXS.KEY"}, {}):
            caplog.clear()
            src = MqttSource(MqttSourceConfig(host="127.0.0.1", port=server.port, topics=["v3/app1@ttn/devices/+/up"],
                                              protocol="5", reconnect_min_s=0.05, reconnect_max_s=0.2,
                                              connect_timeout_s=3, **creds), adapter_name="t")
            task = asyncio.create_task(src.run(Collector()))
            try:
                await wait_until(lambda: src.stats()["connect_failures"] >= 1, what="a refused connect")
            finally:
                await stop_task(task)
            assert not src.ready
            text = "\n".join(r.getMessage() for r in caplog.records)
            assert 'set protocol: "3.1.1"' in text, text
        answers = [c["answer"] for c in server.connects if c["level"] == 5]
        assert "closed" in answers and 0x01 in answers    # as mystique answers (see tts_standins.py)
    finally:
        await server.stop()


async def test_the_preset_connects_and_receives_qos0_uplinks(caplog):
    server = await TtsMqttStandIn("app1@ttn", "NNSXS.KEY").start()
    try:
        cfg = MqttSourceConfig(network="tts", host="127.0.0.1", port=server.port, reconnect_min_s=0.05,
                               tts={"application_id": "app1", "api_key": "NNSXS.KEY", "backfill": {"enabled": False}})
        src = MqttSource(cfg, adapter_name="t")
        got = Collector()
        task = asyncio.create_task(src.run(got))
        try:
            await wait_until(lambda: src.ready and server.subscribed, what="connected and subscribed")
            assert server.connects[-1] == {"protocol_name": "MQTT", "level": 4, "username": True, "password": True,
                                           "answer": 0}
            topic, doc = tts_uplink("dev-1", b"\x01\x02", f_port=1, f_cnt=7, received_at="2024-05-01T10:00:00Z",
                                    application_id="app1")
            assert await server.publish(topic, orjson.dumps(doc)) == 1
            await wait_until(lambda: got.messages, what="the uplink")
            assert got.messages[0].topic == "v3/app1@ttn/devices/dev-1/up"
            assert src.stats()["qos_downgraded"] == 0      # subscribed at QoS 0: nothing below it
        finally:
            await stop_task(task)
        # a wrong key: refused with CONNACK 0x05, the log says what the login must be
        bad = MqttSource(MqttSourceConfig(network="tts", host="127.0.0.1", port=server.port, reconnect_min_s=0.05,
                                          tts={"application_id": "app1", "api_key": "wrong",
                                               "backfill": {"enabled": False}}), adapter_name="t")
        caplog.clear()
        caplog.set_level(logging.WARNING, logger="stadtlink.source.mqtt")
        task = asyncio.create_task(bad.run(Collector()))
        try:
            await wait_until(lambda: bad.stats()["connect_failures"] >= 1, what="refused login")
        finally:
            await stop_task(task)
        assert server.connects[-1]["answer"] == 0x05
        text = "\n".join(r.getMessage() for r in caplog.records)
        assert "'app1@ttn'" in text and "RIGHT_APPLICATION_TRAFFIC_READ" in text, text
    finally:
        await server.stop()


@pytest.mark.skipif(shutil.which("mosquitto_passwd") is None, reason="mosquitto_passwd not installed")
async def test_the_preset_connects_to_a_real_mosquitto_with_the_api_key_as_password(tmp_path):
    pwfile = tmp_path / "passwd"
    subprocess.run(["mosquitto_passwd", "-b", "-c", str(pwfile), "app1@ttn", "NNSXS.KEY"], check=True)
    (tmp_path / "key").write_text("NNSXS.KEY\n")
    broker = MosquittoProcess(allow_anonymous=False, password_file=pwfile, data_dir=tmp_path / "m")
    await asyncio.to_thread(broker.start)
    try:
        cfg = MqttSourceConfig(network="tts", host=broker.host, port=broker.port, reconnect_min_s=0.05,
                               tts={"application_id": "app1", "api_key_file": str(tmp_path / "key"),
                                    "backfill": {"enabled": False}})
        src = MqttSource(cfg, adapter_name="t")
        got = Collector()
        task = asyncio.create_task(src.run(got))
        try:
            await wait_until(lambda: src.ready, what="connected")
            from stadtlink.adapters.core.sources.mqtt_client import MqttSettings, connect

            pub = MqttSettings(host=broker.host, port=broker.port, client_id=f"pub-{uuid.uuid4().hex[:8]}",
                               username="app1@ttn", password="NNSXS.KEY", persistent_session=False,
                               manual_ack=False, receive_maximum=None)
            topic, doc = tts_uplink("dev-1", b"\x01\x02", f_port=1, f_cnt=1, received_at="2024-05-01T10:00:00Z",
                                    application_id="app1")
            async with connect(pub) as conn:
                await conn.publish(topic, orjson.dumps(doc), qos=0)
            await wait_until(lambda: got.messages, what="the uplink")
        finally:
            await stop_task(task)
    finally:
        await asyncio.to_thread(broker.cleanup)


# -- QoS downgrade (ChirpStack's default qos=0) ----------------------------------------------------------


async def test_qos0_publications_on_a_qos1_subscription_warn_once_per_topic_and_count(caplog):
    app = str(uuid.uuid4())
    topic_filter = f"application/{app}/device/+/event/up"
    src = MqttSource(MqttSourceConfig(host=SHARED_MQTT[0], port=SHARED_MQTT[1], topics=[topic_filter], qos=1,
                                      reconnect_min_s=0.05, connect_timeout_s=3), adapter_name="t")
    got = Collector()
    caplog.set_level(logging.WARNING, logger="stadtlink.source.mqtt")
    task = asyncio.create_task(src.run(got))
    try:
        await wait_until(lambda: src.ready, what="subscribed")
        ups = [chirpstack_uplink(f"70b3d57ed00000{i:02x}", b"\x01\x02", f_port=1, f_cnt=i + 1,
                                 time="2024-05-01T10:00:00Z", application_id=app) for i in range(5)]
        await publish_uplinks(*SHARED_MQTT, ups, qos=0)
        await publish_uplinks(*SHARED_MQTT, ups[:2], qos=1)
        await wait_until(lambda: len(got.messages) == 7, what="all 7 messages")
    finally:
        await stop_task(task)
    assert src.stats()["qos_downgraded"] == 5          # the QoS 1 ones are not counted
    from stadtlink.adapters.core.metrics import Metrics

    metrics = Metrics("t")
    metrics.source_stats.append(("mqtt", src.stats))
    assert 'stadtlink_source_qos_downgraded{adapter="t",source="mqtt"} 5.0' in metrics.render().decode()
    warnings = [r.getMessage() for r in caplog.records if "arrive at QoS 0" in r.getMessage()]
    assert len(warnings) == 1, warnings                 # once for the topic family, not per device
    assert "[integration.mqtt] qos=1" in warnings[0] and "queue_qos0_messages true" in warnings[0]
    assert f"application/{app}/device/+/event/up" in warnings[0]


def test_chirpstack_protobuf_events_are_refused_naming_json_true():
    # an integration.UplinkEvent as ChirpStack encodes it with json=false: field 1 deduplication_id
    # (string), field 7 f_cnt (varint), field 8 f_port, field 10 data (bytes)
    dedup = b"0e3a4c36-92c3-4f24-a9b8-8ac2a0f1a4a0"
    pb = b"\x0a" + bytes([len(dedup)]) + dedup + b"\x38\x0a\x40\x01\x52\x02\x01\x02"
    topic = "application/7a0e1c4d-0000-0000-0000-000000000001/device/70b3d57ed0000001/event/up"
    with pytest.raises(DecodeError) as err:
        parse_uplink(pb, topic)
    assert err.value.reason == "chirpstack-protobuf"
    assert "json=true" in str(err.value) and "[integration.mqtt]" in str(err.value)
    with pytest.raises(DecodeError) as err:             # broken JSON stays invalid-json
        parse_uplink(b'{"deviceInfo": ', topic)
    assert err.value.reason == "invalid-json"


async def test_a_protobuf_event_becomes_a_dead_letter_with_the_setting():
    from stadtlink.adapters.core.deadletter import MemoryDeadLetters
    from stadtlink.adapters.core.metrics import Metrics
    from stadtlink.adapters.core.outbox import MemoryOutbox
    from stadtlink.adapters.core.pipeline import Pipeline
    from stadtlink.adapters.core.reading import RawMessage
    from stadtlink.adapters.core.registry import DeviceRegistry

    dead = MemoryDeadLetters()
    pipe = Pipeline(TOY_TS_ADAPTER, namespace="t", registry=DeviceRegistry.load(inline=[]), outbox=MemoryOutbox(),
                    deadletters=dead, metrics=Metrics("t"), check="off")
    pb = b"\x0a\x05abcde\x38\x0a\x52\x02\xff\xfe"
    await pipe.process(RawMessage(source="mqtt", payload=pb, received_at=datetime.now(UTC),
                                  topic="application/a1/device/70b3d57ed0000001/event/up"), "toy-lora")
    [(_, rec)] = await dead.list(10)
    assert rec["reason"] == "chirpstack-protobuf" and "json=true" in rec["error"]
    from stadtlink.adapters.core.deadletter import decode_payload

    assert decode_payload(rec) == pb                    # the raw bytes are kept for a replay


# -- the Storage API client -------------------------------------------------------------------------------


async def _standin_with(n: int, app: str = "app1") -> tuple[StorageStandIn, datetime]:
    s = await StorageStandIn(api_key="NNSXS.KEY").start()
    t0 = datetime.now(UTC) - timedelta(minutes=10)
    for i in range(n):
        s.store(app, stored_uplink(app, f"dev-{i % 3}", i + 1, t0 + timedelta(seconds=i), bytes([i % 256, 1]))[1])
    return s, t0


async def test_storage_client_reads_pages_and_every_error_form():
    s, t0 = await _standin_with(12)
    client = StorageClient(s.url, "app1", "NNSXS.KEY", timeout_s=5, max_line_bytes=4096)
    try:
        page = await client.page(t0 - timedelta(seconds=1), 5)
        assert [d["uplink_message"]["f_cnt"] for d in page] == [1, 2, 3, 4, 5]
        assert s.requests[-1]["order"] == "received_at" and s.requests[-1]["limit"] == "5"
        rest = await client.page(t0 + timedelta(seconds=4, milliseconds=500), 100)
        assert [d["uplink_message"]["f_cnt"] for d in rest] == list(range(6, 13))
        # the same record from MQTT and from storage has the same identity
        assert uplink_identity(page[0]) == uplink_identity(orjson.loads(orjson.dumps(page[0])))
        # before any output: HTTP status + {"error": …}
        s.fail_next = 1
        with pytest.raises(StorageError) as err:
            await client.page(t0, 5)
        assert err.value.status == 503 and "storage unavailable" in str(err.value) and not err.value.permanent
        # after some output: 200 and an error line
        s.fail_midstream, s.fail_midstream_after = 1, 2
        with pytest.raises(StorageError, match="storage read failed"):
            await client.page(t0 - timedelta(seconds=1), 5)
        wrong = StorageClient(s.url, "app1", "nope", timeout_s=5, max_line_bytes=4096)
        with pytest.raises(StorageError) as err:
            await wrong.page(t0, 5)
        await wrong.close()
        assert err.value.status == 403 and err.value.permanent and "RIGHT_APPLICATION_TRAFFIC_READ" in str(err.value)
        # a record longer than max_line_bytes is skipped and counted, the others are read
        big = stored_uplink("app1", "dev-big", 99, t0 + timedelta(seconds=30), b"\x00" * 5000)[1]
        s.store("app1", big)
        page = await client.page(t0 + timedelta(seconds=11, milliseconds=500), 100)
        assert page == [] and client.oversized == 1
    finally:
        await client.close()
        await s.stop()


async def test_a_stalled_storage_answer_times_out():
    s, t0 = await _standin_with(5)
    s.stall_next, s.stall_s = 1, 3
    client = StorageClient(s.url, "app1", "NNSXS.KEY", timeout_s=0.5, max_line_bytes=4096)
    try:
        with pytest.raises(StorageError, match="within 0.5s"):
            await client.page(t0 - timedelta(seconds=1), 5)
        assert len(await client.page(t0 - timedelta(seconds=1), 5)) == 5    # the next one is fine
    finally:
        await client.close()
        await s.stop()


async def test_a_reconnect_triggers_a_catch_up_of_what_qos0_lost_meanwhile():
    """TTS keeps no session: what is published while we reconnect is gone from MQTT. With only
    start and reconnect as triggers (period_s: 0), the reconnect's catch-up fetches it."""
    from stadtlink.adapters.core.sources.tts_storage import MemoryBackfillStore

    storage, _ = await _standin_with(0)
    server = await TtsMqttStandIn("app1@ttn", "NNSXS.KEY").start()
    src = MqttSource(MqttSourceConfig(network="tts", host="127.0.0.1", port=server.port, reconnect_min_s=0.05,
                                      reconnect_max_s=0.2,
                                      tts={"application_id": "app1", "api_key": "NNSXS.KEY", "api_url": storage.url,
                                           "backfill": {"period_s": 0, "retry_min_s": 0.1}}), adapter_name="t")
    src.use_store(MemoryBackfillStore())
    got = Collector()
    task = asyncio.create_task(src.run(got))
    now = datetime.now(UTC) - timedelta(seconds=30)
    ups = [stored_uplink("app1", "dev-1", i + 1, now + timedelta(seconds=i), bytes([i, 1])) for i in range(6)]
    try:
        await wait_until(lambda: src.ready and server.subscribed and src.stats()["tts_backfill_runs"] >= 1,
                         what="connected, first catch-up done")
        for topic, doc in ups[:2]:                     # live
            storage.store("app1", doc)
            await server.publish(topic, orjson.dumps(doc))
        await wait_until(lambda: len(got.messages) == 2, what="2 live")
        await server.stop()                            # the server goes away …
        await wait_until(lambda: not src.ready, what="disconnected")
        for _, doc in ups[2:]:                         # … uplinks meanwhile reach only the storage
            storage.store("app1", doc)
        server.server = await asyncio.start_server(server._serve, "127.0.0.1", server.port)
        await wait_until(lambda: src.stats()["tts_backfill_uplinks"] == 4, what="the reconnect's catch-up")
        assert src.stats()["tts_backfill_runs"] == 2 and src.stats()["tts_backfill_skipped"] == 2
    finally:
        await stop_task(task)
        await server.stop()
        await storage.stop()
    f_cnts = sorted(orjson.loads(m.payload)["uplink_message"]["f_cnt"] for m in got.messages)
    assert f_cnts == [1, 2, 3, 4, 5, 6]
    assert all(m.attributes.get("backfill") == "tts-storage" for m in got.messages[2:])


async def test_a_future_stamped_record_does_not_move_the_watermark_past_now():
    """Storage records are untrusted: one stamped a day ahead must not make later catch-ups start
    after uplinks that are not read yet."""
    from stadtlink.adapters.core.sources.tts import TtsConfig
    from stadtlink.adapters.core.sources.tts_storage import TtsBackfill

    storage, _ = await _standin_with(0)
    now = datetime.now(UTC)
    storage.store("app1", stored_uplink("app1", "dev-1", 1, now - timedelta(seconds=20), b"\x01\x01")[1])
    storage.store("app1", stored_uplink("app1", "dev-2", 1, now + timedelta(days=1), b"\x01\x02")[1])
    cfg = TtsConfig(application_id="app1", api_key="NNSXS.KEY", api_url=storage.url,
                    backfill={"period_s": 0, "overlap_s": 5, "retry_min_s": 0.05})
    bf = TtsBackfill(cfg, api_url=storage.url, source_kind="mqtt", name="t", api_key="NNSXS.KEY")
    got = Collector()
    task = asyncio.create_task(bf.run(got))
    try:
        await wait_until(lambda: len(got.messages) == 2, what="both records")
        assert bf.stats()["tts_backfill_lag_seconds"] >= 0       # the watermark is not in the future
        late = stored_uplink("app1", "dev-3", 1, datetime.now(UTC), b"\x01\x03")[1]
        storage.store("app1", late)
        bf.kick("test")
        await wait_until(lambda: len(got.messages) == 3, what="the uplink stored after the future one")
    finally:
        await stop_task(task)
        await storage.stop()


@pytest.mark.parametrize("stamp", ["2020-08-20T09:52:33.563948371Z", "2024-05-01T10:00:00Z", "2024-05-01T10:00:00.5Z",
                                   "2024-05-01T12:00:00.123456789+02:00", "1969-12-31T23:59:59.999999Z"])
def test_the_fast_timestamp_path_agrees_with_the_general_parser(stamp):
    from stadtlink.adapters.core.sources.tts_storage import _stamp_us, _us
    from stadtlink.adapters.core.timeutil import parse_time

    assert _stamp_us(stamp) == _us(parse_time(stamp))


def test_uplink_identity_refuses_what_is_not_an_uplink():
    _, doc = stored_uplink("app1", "dev-1", 3, datetime(2024, 5, 1, tzinfo=UTC), b"\x01")
    assert uplink_identity(doc)[0].startswith(doc["end_device_ids"]["dev_eui"].lower() + "|3|1|")
    for bad in ({**doc, "received_at": "yesterday", "uplink_message": {**doc["uplink_message"], "received_at": 5}},
                {**doc, "uplink_message": None}, {"end_device_ids": {}}, [], "x",
                {**doc, "received_at": "2024-13-45T99:00:00Z"}):
        assert uplink_identity(bad) is None, bad


@pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl not installed")
async def test_the_preset_over_tls_with_a_private_ca_for_mqtt_and_the_storage_api(tmp_path):
    """An Enterprise cluster under its own CA: ``tls.ca`` serves the MQTT connection (port 8883
    style, TLS) and the Storage API's HTTPS alike."""
    import ssl

    from .mqtt_helpers import make_pki

    pki = make_pki(tmp_path)
    broker = MosquittoProcess(data_dir=tmp_path / "m", extra_config=f"cafile {pki['ca.crt']}\ncertfile "
                              f"{pki['server.crt']}\nkeyfile {pki['server.key']}\n")
    await asyncio.to_thread(broker.start)
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_ctx.load_cert_chain(pki["server.crt"], pki["server.key"])
    storage = await StorageStandIn(api_key="NNSXS.KEY", ssl_context=server_ctx).start()
    storage.store("app1", stored_uplink("app1", "dev-1", 1, datetime.now(UTC) - timedelta(seconds=5), b"\x01\x02")[1])
    src = MqttSource(MqttSourceConfig(network="tts", host=broker.host, port=broker.port, tls={"ca": pki["ca.crt"]},
                                      reconnect_min_s=0.05,
                                      tts={"application_id": "app1", "api_key": "NNSXS.KEY", "api_url": storage.url,
                                           "backfill": {"period_s": 0}}), adapter_name="t")
    got = Collector()
    task = asyncio.create_task(src.run(got))
    try:
        await wait_until(lambda: src.ready, what="TLS connect")
        await wait_until(lambda: src.stats()["tts_backfill_uplinks"] == 1, what="the stored uplink over HTTPS")
        assert storage.url.startswith("https://") and src.stats()["tts_backfill_failures"] == 0
    finally:
        await stop_task(task)
        await storage.stop()
        await asyncio.to_thread(broker.cleanup)

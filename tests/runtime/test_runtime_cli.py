"""`stadtlink` as a subprocess: adapters, decode, config schema, run (SIGTERM flush, SIGKILL + Redis)."""
from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import aiohttp
import orjson
import pytest
import redis.asyncio as aioredis
import yaml

from stadtlink.adapters.core import tts_uplink
from stadtlink.broker_client import NGSILDClient
from stadtlink.broker_client.local_broker import running_broker
from stadtlink.adapters.core.testing import SHARED_MQTT, SHARED_REDIS_URL
from rt_helpers import cli, free_port, wait_until
from rt_toy_adapter import ADAPTER


def test_adapters_lists_the_toy_and_reports_a_broken_plugin(cli_env):
    res = cli(["adapters", "--json"], cli_env)
    assert res.returncode == 0
    doc = orjson.loads(res.stdout)
    toy = next(a for a in doc["adapters"] if a["name"] == "toy")
    assert {p["name"] for p in toy["profiles"]} == {"toy-lora", "toy-json"}
    assert any(b["target"] == "rt_toy_adapter:BROKEN" and "not an AdapterSpec" in b["error"] for b in doc["broken"])
    res = cli(["adapters"], cli_env)
    assert res.returncode == 0 and b"toy-lora" in res.stdout and b"broken plugin" in res.stderr


def test_decode_raw_hex_and_base64(cli_env):
    res = cli(["decode", "toy-lora", "-", "--fport", "1"], cli_env, stdin=b"0866\n")
    assert res.returncode == 0, res.stderr
    readings = orjson.loads(res.stdout)
    assert readings[0]["values"] == {"temperature": 21.5} and readings[0]["meta"]["f_port"] == 1
    res = cli(["decode", "toy-lora", "-", "--fport", "1"], cli_env, stdin=b"CGY=")      # base64 of 08 66
    assert orjson.loads(res.stdout)[0]["values"] == {"temperature": 21.5}


def test_decode_uplink_to_entity_with_config_registry(cli_env, tmp_path):
    topic, doc = tts_uplink("dev-9", b"\x03\xe8", f_port=1, f_cnt=3, received_at="2024-05-01T12:00:00.123456789Z")
    (tmp_path / "up.json").write_bytes(orjson.dumps(doc))
    (tmp_path / "c.yaml").write_text(yaml.safe_dump({"namespace": "town", "broker": {"url": "http://x:1"},
                                                     "devices": [{"id": "dev-9", "lat": 51.0, "lon": 7.0}],
                                                     "settings": {"offset": 0.5}}))
    res = cli(["decode", "toy-lora", str(tmp_path / "up.json"), "--entity", "--config", str(tmp_path / "c.yaml")],
              cli_env)
    assert res.returncode == 0, res.stderr
    ent = orjson.loads(res.stdout)[0]
    assert ent["id"] == "urn:ngsi-ld:WeatherObserved:town:dev-9"
    assert ent["temperature"] == {"type": "Property", "value": 10.5, "unitCode": "CEL",
                                  "observedAt": "2024-05-01T12:00:00.123Z"}
    assert ent["location"]["value"]["coordinates"] == [7.0, 51.0]
    assert res.stderr == b""
    # without a registry: lenient, the missing registry data is listed on stderr
    res = cli(["decode", "toy-lora", str(tmp_path / "up.json"), "--entity"], cli_env)
    assert res.returncode == 0
    assert b"device 'dev-9' is not in the registry" in res.stderr and b"'location' missing" in res.stderr


def test_decode_raw_bytes_without_fport_when_the_profile_ignores_the_port(cli_env):
    res = cli(["decode", "toy-lora", "-"], cli_env, stdin=b"0866")
    assert res.returncode == 0, res.stderr
    reading = orjson.loads(res.stdout)[0]
    assert reading["values"] == {"temperature": 21.5} and "f_port" not in reading["meta"]
    # a built-in family whose decoder never reads the port (DL-MBX; TTN device repository vector)
    res = cli(["decode", "decentlab-dl-mbx", "-"], cli_env, stdin=b"02012F000304D200010BB1")
    assert res.returncode == 0, res.stderr
    assert orjson.loads(res.stdout)[0]["values"]["distance"] == 1.234


def test_decode_raw_bytes_of_a_port_dispatching_profile_asks_for_fport(cli_env):
    res = cli(["decode", "bosch-tps110", "-"], cli_env, stdin=b"01")
    assert res.returncode == 1 and b"give --fport" in res.stderr and b"Traceback" not in res.stderr
    res = cli(["decode", "bosch-tps110", "-", "--fport", "1"], cli_env, stdin=b"01")
    assert res.returncode == 0, res.stderr
    assert orjson.loads(res.stdout)[0]["values"]["occupied"] is True


def test_decode_a_polled_answer_without_device(cli_env):
    """A PEGELONLINE current measurement names no station: decoded as device 'cli' with a note,
    or as the --device given."""
    answer = b'{"timestamp": "2024-05-01T12:00:00+02:00", "value": 312.0}'
    res = cli(["decode", "pegelonline", "-"], cli_env, stdin=answer)
    assert res.returncode == 0, res.stderr
    reading = orjson.loads(res.stdout)[0]
    assert reading["device_id"] == "cli" and reading["values"]["water_level"] == 3.12
    assert b"give --device" in res.stderr
    res = cli(["decode", "pegelonline", "-", "--device", "593647aa-9fea-43ec-a7d6-6476a76ae868"], cli_env,
              stdin=answer)
    assert res.returncode == 0 and res.stderr == b""
    assert orjson.loads(res.stdout)[0]["device_id"] == "593647aa-9fea-43ec-a7d6-6476a76ae868"
    # an answer that is broken for another reason still fails with that reason
    res = cli(["decode", "pegelonline", "-"], cli_env, stdin=b'{"unexpected": true}')
    assert res.returncode == 1 and b"give --device" not in res.stderr and b"Traceback" not in res.stderr


def test_decode_api_json_with_options(cli_env):
    doc = b'{"device": "st-3", "t": 2.0, "time": "2024-05-01T12:00:00+02:00"}'
    res = cli(["decode", "toy-json", "-", "--options", '{"scale": 3}'], cli_env, stdin=doc)
    assert res.returncode == 0, res.stderr
    r = orjson.loads(res.stdout)[0]
    assert r["values"] == {"temperature": 6.0} and r["observed_at"] == "2024-05-01T10:00:00.000Z"


@pytest.mark.parametrize("args, stdin, message", [
    (["decode", "toy-lora", "-", "--fport", "1"], b"zz-not-bytes", b"not hex, base64, JSON or XML"),
    (["decode", "toy-lora", "-", "--fport", "1"], b"010203", b"bad-length"),
    (["decode", "toy-lora", "-", "--fport", "1"], b"dead", b"decoder-crash: RuntimeError: toy decoder bug"),
    (["decode", "toy-lora", "-"], b'{"hello": 1}', b"not-an-uplink"),
    (["decode", "toy-json", "-"], b"{broken", b"invalid-json"),
    (["decode", "toy-lora", "/nonexistent/file"], None, b"cannot read /nonexistent/file"),
])
def test_decode_bad_input_exits_1_with_a_message(cli_env, args, stdin, message):
    res = cli(args, cli_env, stdin=stdin)
    assert res.returncode == 1
    assert message in res.stderr and b"Traceback" not in res.stderr


def test_decode_unknown_profile_exits_2(cli_env):
    res = cli(["decode", "nope", "-"], cli_env, stdin=b"00")
    assert res.returncode == 2 and b"no installed adapter has a profile 'nope'" in res.stderr


def test_config_schema_includes_adapter_settings(cli_env):
    res = cli(["config", "schema"], cli_env)
    assert res.returncode == 0
    schema = orjson.loads(res.stdout)
    assert "broker" in schema["properties"] and "sources" in schema["properties"]
    ref = schema["x-adapter-settings"]["toy"]["$ref"]
    assert schema["$defs"][ref.split("/")[-1]]["properties"]["offset"]["type"] == "number"
    # the schema is usable: a config with bad toy settings fails, a good one passes
    import jsonschema

    jsonschema.Draft202012Validator.check_schema(schema)
    v = jsonschema.Draft202012Validator(schema)
    good = {"adapter": "toy", "namespace": "x", "broker": {"url": "http://b:1026"}, "settings": {"offset": 1.5},
            "sources": [{"kind": "mqtt", "host": SHARED_MQTT[0], "port": SHARED_MQTT[1]}]}
    assert list(v.iter_errors(good)) == []
    assert list(v.iter_errors({**good, "settings": {"offset": "warm"}}))
    assert list(v.iter_errors({**good, "sources": [{"kind": "mqtt", "port": "x"}]}))
    res = cli(["config", "schema", "--adapter", "toy"], cli_env)
    assert res.returncode == 0 and b"ToySettings" in res.stdout


def test_missing_delegate_is_reported(monkeypatch, capsys):
    from stadtlink.adapters.core import cli as cli_module

    monkeypatch.setitem(cli_module.DELEGATES, "ghost", ("stadtlink.adapters.core.no_such_module", "main", "x"))
    assert cli_module.main(["ghost", "--flag"]) == 1
    assert "'ghost' is not installed" in capsys.readouterr().err


def test_delegates_get_their_arguments(cli_env):
    res = cli(["validate", "--help"], cli_env)
    assert res.returncode == 0 and b"usage: stadtlink validate" in res.stdout
    res = cli(["broker", "--help"], cli_env)
    assert res.returncode == 0 and b"stadtlink broker" in res.stdout


# --- stadtlink run ------------------------------------------------------------------------------------------

def write_config(path: Path, *, broker_port: int, app: str, n_devices: int, outbox: dict | None = None,
                 client_id: str | None = None, broker: dict | None = None) -> Path:
    cfg = {
        "adapter": "toy",
        "namespace": "cli",
        "log_level": "INFO",
        "broker": {"url": f"http://127.0.0.1:{broker_port}", "flush_ms": 50, "retry_base_s": 0.1,
                   "retry_max_s": 0.5, "health_interval_s": 0.5, **(broker or {})},
        "http": {"host": "127.0.0.1", "port": free_port()},
        "shutdown_grace_s": 10,
        "sources": [{"kind": "mqtt", "topics": [f"v3/{app}/devices/+/up"], "profile": "toy-lora",
                     **({"client_id": client_id} if client_id else {})}],
        "devices": [{"id": f"d{i}", "lat": 50.0, "lon": 8.0} for i in range(n_devices)],
    }
    if outbox:
        cfg["outbox"] = outbox
    path.write_text(yaml.safe_dump(cfg))
    return path


def start_run(config: Path, env) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "stadtlink.adapters.core.cli", "run", "toy", "--config", str(config)],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)


async def readyz(config: Path) -> dict | None:
    port = yaml.safe_load(config.read_text())["http"]["port"]
    try:
        async with aiohttp.ClientSession() as s:
            async with s.get(f"http://127.0.0.1:{port}/readyz", timeout=aiohttp.ClientTimeout(total=1)) as r:
                return orjson.loads(await r.read())
    except (aiohttp.ClientError, asyncio.TimeoutError):
        return None


async def wait_source_connected(config: Path, timeout=15.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        doc = await readyz(config)
        if doc and doc["checks"].get("source:mqtt", {}).get("ok"):
            return True
        await asyncio.sleep(0.1)
    return False


async def publish(app: str, n: int, value_base: int = 0) -> None:
    import aiomqtt

    async with aiomqtt.Client(*SHARED_MQTT, identifier=f"rt-pub-{uuid.uuid4().hex[:8]}") as client:
        for i in range(n):
            topic, doc = tts_uplink(f"d{i}", (value_base + i).to_bytes(2, "big"), f_port=1, f_cnt=i + 1,
                                    received_at="2024-05-01T12:00:00Z", application_id=app)
            await client.publish(topic.replace("@ttn", ""), orjson.dumps(doc), qos=1)


async def broker_entities(url: str) -> dict:
    async with NGSILDClient(url, context=ADAPTER.context) as client:
        return {e["id"]: e async for e in client.query_entities(type="WeatherObserved")}


def stop(proc: subprocess.Popen, sig=signal.SIGTERM, timeout=20) -> int:
    if proc.poll() is None:
        proc.send_signal(sig)
    try:
        return proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(5)
        raise


async def test_run_sigterm_flushes_the_outbox_and_exits_0(cli_env, tmp_path):
    app = f"rt{uuid.uuid4().hex[:8]}"
    port = free_port()
    async with running_broker(port=port) as url:
        config = write_config(tmp_path / "c.yaml", broker_port=port, app=app, n_devices=15,
                              broker={"flush": "fixed", "flush_ms": 60_000, "batch_size": 500})   # nothing flushes by itself
        proc = start_run(config, cli_env)
        try:
            assert await wait_source_connected(config), proc.stderr.read1().decode() if proc.poll() else ""
            await publish(app, 15)
            port_http = yaml.safe_load(config.read_text())["http"]["port"]

            async def received():
                async with aiohttp.ClientSession() as s:
                    async with s.get(f"http://127.0.0.1:{port_http}/metrics") as r:
                        return await r.text()

            deadline = time.monotonic() + 10
            while 'stadtlink_received_total{adapter="toy"} 15.0' not in await received():
                assert time.monotonic() < deadline
                await asyncio.sleep(0.1)
            assert await broker_entities(url) == {}
            rc = await asyncio.to_thread(stop, proc)
            assert rc == 0
            assert len(await broker_entities(url)) == 15
            lines = [orjson.loads(line) for line in proc.stderr.read().splitlines() if line.startswith(b"{")]
            assert any(line["msg"] == "adapter stopped" and line["upserted"] == 15 for line in lines)
            assert all(line.get("adapter") == "toy" for line in lines)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait(5)


async def test_sigkill_with_redis_outbox_loses_nothing(cli_env, tmp_path, redis_prefix):
    app = f"rt{uuid.uuid4().hex[:8]}"
    port = free_port()
    n = 20
    config = write_config(tmp_path / "c.yaml", broker_port=port, app=app, n_devices=n,
                          outbox={"kind": "redis", "url": SHARED_REDIS_URL, "key_prefix": redis_prefix,
                                  "consumer": "rt-kill"},
                          client_id=f"rt-kill-{uuid.uuid4().hex[:8]}")
    stream = f"{redis_prefix}:toy:outbox"
    r = aioredis.from_url(SHARED_REDIS_URL)
    first = start_run(config, cli_env)
    second = None
    try:
        assert await wait_source_connected(config)
        await publish(app, n, value_base=100)                          # the broker is down: all wait in Redis
        deadline = time.monotonic() + 30
        while await r.xlen(stream) < n:
            assert time.monotonic() < deadline, "entities did not reach the Redis outbox"
            await asyncio.sleep(0.05)
        first.kill()                                                   # SIGKILL: no flush, no goodbye
        first.wait(5)
        assert await r.xlen(stream) == n
        async with running_broker(port=port) as url:
            second = start_run(config, cli_env)
            deadline = time.monotonic() + 20
            while len(ents := await broker_entities(url)) < n:
                assert time.monotonic() < deadline, f"only {len(ents)} of {n} arrived"
                await asyncio.sleep(0.1)
            assert {e["temperature"]["value"] for e in ents.values()} == {(100 + i) / 100 for i in range(n)}
            rc = await asyncio.to_thread(stop, second)
            assert rc == 0
            assert await r.xlen(stream) == 0
    finally:
        for p in (first, second):
            if p is not None and p.poll() is None:
                p.kill()
                p.wait(5)
        await r.aclose()


async def test_deadletter_list_and_replay(cli_env, tmp_path, redis_prefix):
    port = free_port()
    async with running_broker(port=port) as url:
        cfg = {"adapter": "toy", "namespace": "dl", "broker": {"url": url, "flush_ms": 20},
               "outbox": {"kind": "redis", "url": SHARED_REDIS_URL, "key_prefix": redis_prefix},
               "http": {"enabled": False}, "devices": [{"id": "dev-1", "lat": 50, "lon": 8}]}
        from stadtlink.adapters.core.runner import Runner
        from rt_helpers import QueueSource

        src = QueueSource()
        runner = Runner.from_config(cfg, adapter=ADAPTER, sources=[(src, "toy-lora", None)])
        await runner.start()
        try:
            topic, doc = tts_uplink("late", b"\x00\x64", f_port=1, f_cnt=1, received_at="2024-05-01T12:00:00Z")
            await wait_until(lambda: src.ready)
            await src.push(doc, topic=topic)
        finally:
            await runner.stop()
        (tmp_path / "c.yaml").write_text(yaml.safe_dump(cfg))
        res = cli(["deadletter", "list", "toy", "--config", str(tmp_path / "c.yaml"), "--json"], cli_env)
        assert res.returncode == 0, res.stderr
        listing = orjson.loads(res.stdout)
        assert listing["total"] == 1 and listing["records"][0]["reason"] == "unknown-device"
        # the operator fixes the registry, then replays
        cfg["devices"].append({"id": "late", "lat": 51, "lon": 9})
        (tmp_path / "c.yaml").write_text(yaml.safe_dump(cfg))
        # the broker runs in this event loop: the subprocess must not block it
        res = await asyncio.to_thread(cli, ["deadletter", "replay", "toy", "--config", str(tmp_path / "c.yaml")],
                                      cli_env)
        assert res.returncode == 0, res.stderr
        stats = orjson.loads(res.stdout)
        assert stats["replayed"] == 1 and stats["upserted"] == 1, res.stderr
        assert "urn:ngsi-ld:WeatherObserved:dl:late" in await broker_entities(url)
        res = cli(["deadletter", "list", "toy", "--config", str(tmp_path / "c.yaml"), "--json"], cli_env)
        assert orjson.loads(res.stdout)["total"] == 0


def test_profile_in_two_adapters_needs_adapter(cli_env):
    env = {**cli_env, "STADTLINK_EXTRA_ADAPTERS": "rt_toy_adapter:ADAPTER,rt_toy_adapter:TS_ADAPTER"}
    res = cli(["decode", "toy-lora", "-", "--fport", "1"], env, stdin=b"0866")
    assert res.returncode == 2 and b"name one with --adapter" in res.stderr
    res = cli(["decode", "toy-lora", "-", "--fport", "1", "--adapter", "toy-ts"], env, stdin=b"0866")
    assert res.returncode == 0 and orjson.loads(res.stdout)[0]["values"] == {"temperature": 21.5}


async def test_run_takes_config_and_adapter_from_the_environment(cli_env, tmp_path):
    port = free_port()
    config = write_config(tmp_path / "c.yaml", broker_port=port, app="rtenv", n_devices=1)
    env = {**cli_env, "STADTLINK_CONFIG": str(config), "STADTLINK_ADAPTER": "toy"}
    proc = subprocess.Popen([sys.executable, "-m", "stadtlink.adapters.core.cli", "run"], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        assert await wait_source_connected(config)
        doc = await readyz(config)
        assert doc["failing"] == ["broker"]                  # nothing listens on the broker port
        assert await asyncio.to_thread(stop, proc) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)


def test_deadletter_replay_needs_the_redis_outbox_and_list_a_running_adapter(cli_env, tmp_path):
    (tmp_path / "c.yaml").write_text(f"namespace: t\nbroker: {{url: 'http://127.0.0.1:1'}}\n"
                                     f"http: {{port: {free_port()}}}\n")
    res = cli(["deadletter", "replay", "toy", "--config", str(tmp_path / "c.yaml")], cli_env)
    assert res.returncode == 1 and b"outbox: {kind: redis}" in res.stderr
    res = cli(["deadletter", "list", "toy", "--config", str(tmp_path / "c.yaml")], cli_env)
    assert res.returncode == 1 and b"no running adapter answers at http://127.0.0.1:" in res.stderr


async def _received(config: Path) -> int:
    port = yaml.safe_load(config.read_text())["http"]["port"]
    async with aiohttp.ClientSession() as s:
        async with s.get(f"http://127.0.0.1:{port}/metrics") as r:
            text = await r.text()
    line = next(ln for ln in text.splitlines() if ln.startswith('stadtlink_received_total{adapter="toy"}'))
    return int(float(line.split()[-1]))


async def test_two_processes_on_one_shared_subscription_write_every_message_once(cli_env, tmp_path):
    """Two `stadtlink run` replicas, one shared subscription: the load is split and each message is
    received by exactly one of them; every message's entity reaches the broker."""
    app = f"rt{uuid.uuid4().hex[:8]}"
    port = free_port()
    n = 60
    async with running_broker(port=port) as url:
        configs, procs = [], []
        for k in range(2):
            cfg = write_config(tmp_path / f"c{k}.yaml", broker_port=port, app=app, n_devices=n,
                               client_id=f"rt-share-{app}-{k}")
            doc = yaml.safe_load(cfg.read_text())
            doc["sources"][0]["shared_group"] = f"grp-{app}"
            cfg.write_text(yaml.safe_dump(doc))
            configs.append(cfg)
            procs.append(start_run(cfg, cli_env))
        try:
            for cfg in configs:
                assert await wait_source_connected(cfg)
            await publish(app, n, value_base=200)
            deadline = time.monotonic() + 30
            while len(ents := await broker_entities(url)) < n:
                assert time.monotonic() < deadline, f"only {len(ents)} of {n} arrived"
                await asyncio.sleep(0.1)
            assert {e["temperature"]["value"] for e in ents.values()} == {(200 + i) / 100 for i in range(n)}
            counts = [await _received(cfg) for cfg in configs]
            assert sum(counts) == n, f"a message was delivered to both replicas or to none: {counts}"
            assert min(counts) > 0, f"the shared subscription did not split the load: {counts}"
            for proc in procs:
                assert await asyncio.to_thread(stop, proc) == 0
        finally:
            for proc in procs:
                if proc.poll() is None:
                    proc.kill()
                    proc.wait(5)


async def test_sigterm_of_a_shared_replica_mid_stream_loses_nothing(cli_env, tmp_path, mosquitto):
    """Two replicas with random client ids (a Deployment) on one shared subscription, a steady
    numbered stream; one gets SIGTERM mid-stream and never returns. Leaving the group on SIGTERM
    (unsubscribe, process what was assigned, end the session: MqttSource.leave) means every reading
    reaches the sink; without it Mosquitto keeps assigning half the stream to the gone replica's
    persistent session, and those readings are never delivered."""
    from stadtlink.adapters.core.sources.mqtt_client import MqttSettings, connect

    app = f"rt{uuid.uuid4().hex[:8]}"
    port = free_port()
    n = 600
    async with running_broker(port=port) as url:
        configs, procs = [], []
        for k in range(2):
            cfg = write_config(tmp_path / f"c{k}.yaml", broker_port=port, app=app, n_devices=n)
            doc = yaml.safe_load(cfg.read_text())
            doc["sources"][0].update(host=mosquitto.host, port=mosquitto.port, shared_group=f"grp-{app}")
            cfg.write_text(yaml.safe_dump(doc))
            configs.append(cfg)
            procs.append(start_run(cfg, cli_env))
        published = 0

        async def stream() -> None:   # one reading every 5 ms, each its own device (= entity)
            nonlocal published
            settings = MqttSettings(host=mosquitto.host, port=mosquitto.port, client_id=f"rt-pub-{app}",
                                    persistent_session=False, manual_ack=False, receive_maximum=None)
            async with connect(settings) as conn:
                for i in range(n):
                    topic, up = tts_uplink(f"d{i}", (1000 + i).to_bytes(2, "big"), f_port=1, f_cnt=i + 1,
                                           received_at="2024-05-01T12:00:00Z", application_id=app)
                    await conn.publish(topic.replace("@ttn", ""), orjson.dumps(up), qos=1)
                    published += 1
                    await asyncio.sleep(0.005)

        try:
            for cfg in configs:
                assert await wait_source_connected(cfg)
            publisher = asyncio.create_task(stream())
            await wait_until(lambda: published >= n // 3, timeout=30)
            assert await asyncio.to_thread(stop, procs[0]) == 0        # mid-stream, for good
            assert published < n, "the stream ended before the replica stopped"
            await asyncio.wait_for(publisher, 60)
            deadline = time.monotonic() + 20
            while len(ents := await broker_entities(url)) < n and time.monotonic() < deadline:
                await asyncio.sleep(0.2)
            missing = sorted(set(range(n)) - {int(e.split(":d")[-1]) for e in ents})
            assert not missing, f"{len(missing)} of {n} readings lost, e.g. {missing[:10]}"
            assert {e["temperature"]["value"] for e in ents.values()} == {(1000 + i) / 100 for i in range(n)}
            lines = [orjson.loads(ln) for ln in procs[0].stderr.read().splitlines() if ln.startswith(b"{")]
            assert any("left the shared group" in ln["msg"] for ln in lines), lines[-5:]
            first = next(ln["received"] for ln in lines if ln["msg"] == "adapter stopped")
            second = await _received(configs[1])
            assert 0 < first < n and second > 0
            # duplicates are allowed (at-least-once); with a clean leave there are none to report
            print(f"replica 0 received {first}, replica 1 {second}: {first + second - n} duplicates")
            assert first + second >= n
            assert await asyncio.to_thread(stop, procs[1]) == 0
        finally:
            for proc in procs:
                if proc.poll() is None:
                    proc.kill()
                    proc.wait(5)


async def test_sigkill_of_a_shared_replica_resumes_its_share_under_its_pod_name(cli_env, tmp_path, mosquitto,
                                                                               redis_prefix):
    """The crash case (no leave): a replica is SIGKILLed mid-stream and its container restarts in
    the same pod. Its MQTT client id is the pod name (client_id_env: POD_NAME, as the chart sets
    it), so the restarted process resumes its session — the share the broker queued there while it
    was down, and what it had received but not acknowledged — and every reading reaches the sink
    (the Redis outbox keeps what the killed process had acknowledged)."""
    from stadtlink.adapters.core.sources.mqtt_client import MqttSettings, connect

    app = f"rt{uuid.uuid4().hex[:8]}"
    port = free_port()
    n = 500
    async with running_broker(port=port) as url:
        configs, envs, procs = [], [], []
        for pod in ("pod-a", "pod-b"):
            cfg = write_config(tmp_path / f"{pod}.yaml", broker_port=port, app=app, n_devices=n,
                               outbox={"kind": "redis", "url": SHARED_REDIS_URL,
                                       "key_prefix": redis_prefix, "consumer": pod})
            doc = yaml.safe_load(cfg.read_text())
            doc["sources"][0].update(host=mosquitto.host, port=mosquitto.port, shared_group=f"grp-{app}",
                                     client_id_env="POD_NAME")
            cfg.write_text(yaml.safe_dump(doc))
            configs.append(cfg)
            envs.append({**cli_env, "POD_NAME": f"{app}-{pod}"})
            procs.append(start_run(cfg, envs[-1]))
        published = 0

        async def stream() -> None:
            nonlocal published
            settings = MqttSettings(host=mosquitto.host, port=mosquitto.port, client_id=f"rt-pub-{app}",
                                    persistent_session=False, manual_ack=False, receive_maximum=None)
            async with connect(settings) as conn:
                for i in range(n):
                    topic, up = tts_uplink(f"d{i}", (2000 + i).to_bytes(2, "big"), f_port=1, f_cnt=i + 1,
                                           received_at="2024-05-01T12:00:00Z", application_id=app)
                    await conn.publish(topic.replace("@ttn", ""), orjson.dumps(up), qos=1)
                    published += 1
                    await asyncio.sleep(0.005)

        restarted = None
        try:
            for cfg in configs:
                assert await wait_source_connected(cfg)
            publisher = asyncio.create_task(stream())
            await wait_until(lambda: published >= n // 4, timeout=30)
            procs[0].kill()                                     # SIGKILL: no leave, no flush
            await asyncio.to_thread(procs[0].wait, 5)
            await wait_until(lambda: published >= n // 2, timeout=30)   # its share queues in its session
            restarted = start_run(configs[0], envs[0])          # the container restarts: same pod name
            assert await wait_source_connected(configs[0])
            await asyncio.wait_for(publisher, 60)
            deadline = time.monotonic() + 30
            while len(ents := await broker_entities(url)) < n and time.monotonic() < deadline:
                await asyncio.sleep(0.2)
            missing = sorted(set(range(n)) - {int(e.split(":d")[-1]) for e in ents})
            assert not missing, f"{len(missing)} of {n} readings lost, e.g. {missing[:10]}"
            assert {e["temperature"]["value"] for e in ents.values()} == {(2000 + i) / 100 for i in range(n)}
            assert await _received(configs[0]) > 0              # the restarted process got its queued share
            for proc in (restarted, procs[1]):
                assert await asyncio.to_thread(stop, proc) == 0
        finally:
            for proc in (*procs, restarted):
                if proc is not None and proc.poll() is None:
                    proc.kill()
                    proc.wait(5)

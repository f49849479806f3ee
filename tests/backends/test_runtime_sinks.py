"""The runtime with ``broker: {kind: ...}`` and ``brokers: [...]``: configuration, start-up checks
that name the key, and two sinks written by one adapter process."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time

import pytest
import yaml

from stadtlink.adapters.core.config import load_config
from stadtlink.adapters.core.errors import ConfigError
from stadtlink.adapters.core.runner import Runner
from stadtlink.broker_client.local_broker import running_broker

from .servers import KeycloakServer, OrionV2Server, StellioServer

FAST = {"flush_ms": 20, "retry_base_s": 0.02, "retry_max_s": 0.1, "health_interval_s": 0.1, "timeout_s": 2.0}


def config(**over) -> dict:
    doc = {"adapter": "parking", "namespace": "town", "check": "off", "http": {"enabled": False},
           "outbox": {"kind": "memory"}, "sources": []}
    doc.update(over)
    return doc


def spot(i: int, status: str = "free") -> dict:
    return {"id": f"urn:ngsi-ld:ParkingSpot:town:{i}", "type": "ParkingSpot",
            "status": {"type": "Property", "value": status, "observedAt": "2026-11-29T10:00:00.000Z"}}


def error_of(doc: dict) -> str:
    with pytest.raises(ConfigError) as info:
        load_config(doc)
    return str(info.value)


def test_kind_defaults_to_orion_ld_and_each_kind_is_accepted():
    cfg, _ = load_config(config(broker={"url": "http://orion:1026"}))
    assert cfg.broker.kind == "orion-ld" and cfg.sink_configs()[0][:2] == ("broker", "broker")
    for kind in ("scorpio", "stellio", "ngsi-v2"):
        cfg, _ = load_config(config(broker={"kind": kind, "url": "http://b:1"}))
        assert cfg.primary_broker.kind == kind


def test_config_errors_name_the_key():
    assert error_of(config(broker={"kind": "orion-v3", "url": "http://b:1"})).startswith("broker.kind: Input should be")
    text = error_of(config(brokers=[{"url": "http://a:1"}, {"kind": "fiware", "url": "http://b:1"}]))
    assert text.startswith("brokers[1].kind:")
    assert "not both" in error_of(config(broker={"url": "http://a:1"}, brokers=[{"url": "http://b:1"}]))
    assert "broker: required key is missing" in error_of(config())
    named = error_of(config(brokers=[{"name": "x", "url": "http://a:1"}, {"name": "x", "url": "http://b:1"}]))
    assert "brokers[1].name: 'x' names two sinks" in named


def test_unnamed_sinks_of_one_kind_get_distinct_names():
    cfg, _ = load_config(config(brokers=[{"url": "http://a:1"}, {"url": "http://b:1"}, {"kind": "ngsi-v2",
                                                                                          "url": "http://c:1"}]))
    assert [n for n, _, _ in cfg.sink_configs()] == ["orion-ld-0", "orion-ld-1", "ngsi-v2"]
    assert [k for _, k, _ in cfg.sink_configs()] == ["brokers[0]", "brokers[1]", "brokers[2]"]


async def test_env_override_of_a_sink_in_the_list():
    cfg, _ = load_config(config(brokers=[{"url": "http://a:1"}, {"kind": "ngsi-v2", "url": "http://b:1"}]),
                         env={"STADTLINK_BROKERS__1__SERVICE": "town"})
    assert cfg.brokers[1].service == "town"


async def test_two_sinks_from_the_config_one_down_then_back():
    orion = OrionV2Server()
    await orion.start()
    try:
        async with running_broker() as ld_url:
            runner = Runner.from_config(config(brokers=[
                {"name": "local", "url": ld_url, **FAST},
                {"name": "v2", "kind": "ngsi-v2", "url": orion.url, "service": "town", **FAST},
            ]))
            await runner.start(sources=False, http=False)
            try:
                await runner.pipeline.admit_entities([spot(1), spot(2)])
                assert await runner.wait_idle(10)
                assert set(orion.store("town")) == {spot(1)["id"], spot(2)["id"]}
                await orion.stop()
                for i in range(3, 8):
                    await runner.pipeline.admit_entities([spot(i)])
                sinks = runner.sinks.sinks
                end = time.monotonic() + 5
                while sinks[0].outbox.depth and time.monotonic() < end:
                    await asyncio.sleep(0.02)
                assert sinks[0].outbox.depth == 0                       # the NGSI-LD broker did not wait
                _, checks = runner.readiness()
                assert checks["broker:local"]["ok"]
                end = time.monotonic() + 5
                while runner.readiness()[1]["broker:v2"]["ok"] and time.monotonic() < end:
                    await asyncio.sleep(0.02)
                assert not runner.readiness()[0]
                await orion.start()
                assert await runner.wait_idle(15)
                assert set(orion.store("town")) == {spot(i)["id"] for i in range(1, 8)}
                counters = runner.counters()
                assert counters["sinks"]["v2"]["upserted"] >= 7 and counters["sinks"]["local"]["upserted"] == 7
            finally:
                await runner.stop(grace=2)
    finally:
        await orion.stop()


async def test_wrong_credentials_of_the_second_sink_stop_the_start():
    async with KeycloakServer() as kc, StellioServer(keycloak=kc) as stellio, running_broker() as ld_url:
        runner = Runner.from_config(config(brokers=[
            {"url": ld_url},
            {"kind": "stellio", "url": stellio.url, "auth": {"kind": "oauth2", "token_url": kc.token_url,
                                                               "client_id": kc.client_id, "client_secret": "nope"}},
        ]))
        with pytest.raises(ConfigError) as info:
            await runner.start(sources=False, http=False)
    assert str(info.value).startswith("brokers[1].auth: the token endpoint refused")


async def test_unresolvable_url_stops_a_broker_that_is_down_does_not():
    runner = Runner.from_config(config(broker={"kind": "scorpio", "url": "http://scorpio.invalid:9090"}))
    with pytest.raises(ConfigError) as info:
        await runner.start(sources=False, http=False)
    assert str(info.value).startswith("broker.url: the host of http://scorpio.invalid:9090 does not resolve")
    down = Runner.from_config(config(broker={"kind": "scorpio", "url": "http://127.0.0.1:1", **FAST}))
    await down.start(sources=False, http=False)
    try:
        assert not down.ready
    finally:
        await down.stop(grace=0.2)
    strict = Runner.from_config(config(broker={"kind": "scorpio", "url": "http://127.0.0.1:1",
                                               "check_at_start": "strict"}))
    with pytest.raises(ConfigError, match=r"^broker.url: cannot reach"):
        await strict.start(sources=False, http=False)


def test_cli_reports_a_bad_kind_without_a_traceback(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(config(broker={"kind": "orion-v3", "url": "http://127.0.0.1:1"})))
    res = subprocess.run([sys.executable, "-m", "stadtlink.adapters.core.cli", "run", "parking", "--config", str(path)],
                         capture_output=True, text=True, timeout=60, check=False)
    assert res.returncode == 2
    assert ("configuration error: broker.kind: Input should be 'orion-ld', 'scorpio', 'stellio', 'ngsi-v2' "
            "or 'sensorthings'") in res.stderr
    assert "Traceback" not in res.stderr


async def test_cli_start_errors_name_the_key_without_a_traceback(tmp_path):
    """`stadtlink run` with a URL whose host does not resolve, and with wrong credentials of the
    second sink: exit code 2, one line naming the key, no stack trace."""
    import asyncio

    async def run(doc) -> tuple[int, str]:
        path = tmp_path / "c.yaml"
        path.write_text(yaml.safe_dump(doc), encoding="utf-8")
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "stadtlink.adapters.core.cli", "run", "parking", "--config", str(path),
            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        _, err = await asyncio.wait_for(proc.communicate(), 60)
        return proc.returncode, err.decode()

    rc, err = await run(config(broker={"kind": "scorpio", "url": "http://scorpio.invalid:9090"}))
    assert rc == 2 and "configuration error: broker.url: the host of http://scorpio.invalid:9090 does not resolve" \
        in err, err
    assert "Traceback" not in err
    async with KeycloakServer() as kc, StellioServer(keycloak=kc) as stellio, running_broker() as ld_url:
        rc, err = await run(config(brokers=[
            {"url": ld_url},
            {"kind": "stellio", "url": stellio.url, "auth": {"kind": "oauth2", "token_url": kc.token_url,
                                                               "client_id": kc.client_id, "client_secret": "nope"}}]))
    assert rc == 2 and "configuration error: brokers[1].auth: the token endpoint refused" in err, err
    assert "Traceback" not in err

"""Webhook source mounted on a real aiohttp app, exercised over real sockets."""
from __future__ import annotations

import asyncio
import contextlib

import aiohttp
import pytest
from aiohttp import web
from pydantic import ValidationError

from stadtlink.adapters.core.adapter import AdapterSpec
from stadtlink.adapters.core.errors import ConfigError
from stadtlink.adapters.core.reading import RawMessage
from stadtlink.adapters.core.sources import WebhookSource, WebhookSourceConfig, build_source
from stadtlink.adapters.core.testing import free_port

SPEC = AdapterSpec(name="hooks", description="", profiles={}, mapper=lambda r, c: [])


@contextlib.asynccontextmanager
async def serving(config: WebhookSourceConfig, emit):
    app = web.Application()
    source = build_source(config, adapter=SPEC, http_app=app)
    runner = web.AppRunner(app, shutdown_timeout=0.1)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    task = asyncio.create_task(source.run(emit)) if emit is not None else None
    try:
        async with aiohttp.ClientSession(base_url=f"http://127.0.0.1:{port}") as http:
            yield source, http
    finally:
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await runner.cleanup()


class Collector:
    def __init__(self):
        self.messages: list[RawMessage] = []

    async def __call__(self, message: RawMessage) -> None:
        self.messages.append(message)


async def test_token_header_or_bearer_accepted_202_and_emitted():
    collector = Collector()
    async with serving(WebhookSourceConfig(path="/uplink", token="t0ken"), collector) as (source, http):
        r = await http.post("/uplink", data=b'{"a":1}', headers={"X-Stadtlink-Token": "t0ken",
                                                                  "Content-Type": "application/json"})
        assert r.status == 202
        r = await http.post("/uplink", data=b'{"b":2}', headers={"Authorization": "Bearer t0ken"})
        assert r.status == 202
        assert source.ready
    assert [m.payload for m in collector.messages] == [b'{"a":1}', b'{"b":2}']
    msg = collector.messages[0]
    assert msg.source == "webhook" and msg.topic == "/uplink" and msg.attributes["content_type"] == "application/json"
    assert source.stats()["accepted"] == 2


@pytest.mark.parametrize("headers", [{}, {"X-Stadtlink-Token": "wrong"}, {"Authorization": "Bearer wrong"},
                                     {"Authorization": "Basic dDBrZW4="}, {"X-Stadtlink-Token": ""}])
async def test_missing_or_wrong_token_is_401(headers):
    collector = Collector()
    async with serving(WebhookSourceConfig(path="/uplink", token="t0ken"), collector) as (source, http):
        r = await http.post("/uplink", data=b"{}", headers=headers)
        assert r.status == 401
    assert not collector.messages and source.stats()["unauthorized"] == 1


async def test_body_over_1_mib_is_413():
    collector = Collector()
    async with serving(WebhookSourceConfig(path="/up", token="t"), collector) as (source, http):
        r = await http.post("/up", data=b"x" * (1024 * 1024 + 1), headers={"X-Stadtlink-Token": "t"})
        assert r.status == 413
        r = await http.post("/up", data=b"x" * (1024 * 1024), headers={"X-Stadtlink-Token": "t"})
        assert r.status == 202

        async def chunks():   # no Content-Length: the limit still holds
            for _ in range(3):
                yield b"y" * 600_000
        r = await http.post("/up", data=chunks(), headers={"X-Stadtlink-Token": "t"})
        assert r.status == 413
    assert len(collector.messages) == 1 and source.stats()["too_large"] == 2


async def test_refused_emit_is_503_so_the_sender_retries():
    async def full(message):
        raise RuntimeError("outbox full")

    async with serving(WebhookSourceConfig(path="/up", token="t"), full) as (source, http):
        r = await http.post("/up", data=b"{}", headers={"X-Stadtlink-Token": "t"})
        assert r.status == 503 and r.headers["Retry-After"]
    assert source.stats()["emit_refused"] == 1


async def test_not_running_is_503():
    async with serving(WebhookSourceConfig(path="/up", token="t"), None) as (source, http):
        r = await http.post("/up", data=b"{}", headers={"X-Stadtlink-Token": "t"})
        assert r.status == 503 and not source.ready


async def test_token_from_file_and_env(tmp_path, monkeypatch):
    (tmp_path / "tok").write_text("from-file\n")
    monkeypatch.setenv("HOOK_TOKEN_TEST", "from-env")
    collector = Collector()
    async with serving(WebhookSourceConfig(path="/f", token_file=str(tmp_path / "tok")), collector) as (_, http):
        assert (await http.post("/f", data=b"1", headers={"X-Stadtlink-Token": "from-file"})).status == 202
    async with serving(WebhookSourceConfig(path="/e", token_env="HOOK_TOKEN_TEST"), collector) as (_, http):
        assert (await http.post("/e", data=b"2", headers={"Authorization": "Bearer from-env"})).status == 202
        assert (await http.post("/e", data=b"3", headers={"Authorization": "Bearer from-file"})).status == 401


def test_config_and_build_errors(monkeypatch):
    with pytest.raises(ValidationError):
        WebhookSourceConfig(path="uplink")
    with pytest.raises(ValidationError):
        WebhookSourceConfig(path="/metrics")
    with pytest.raises(ValidationError):
        WebhookSourceConfig(token="a", token_env="B")
    with pytest.raises(ConfigError):
        build_source(WebhookSourceConfig(), adapter=SPEC)            # no http app
    monkeypatch.delenv("NOT_SET_TOKEN_XYZ", raising=False)
    with pytest.raises(ConfigError, match="NOT_SET_TOKEN_XYZ"):
        WebhookSource(WebhookSourceConfig(token_env="NOT_SET_TOKEN_XYZ"), http_app=web.Application())
    assert "secret" not in repr(WebhookSourceConfig(token="secret"))


async def test_chirpstack_non_uplink_events_are_acknowledged_not_emitted():
    collector = Collector()
    async with serving(WebhookSourceConfig(path="/cs", token="t"), collector) as (source, http):
        h = {"Authorization": "Bearer t"}
        assert (await http.post("/cs?event=join", data=b'{"j":1}', headers=h)).status == 202
        assert (await http.post("/cs?event=status", data=b'{"s":1}', headers=h)).status == 202
        assert (await http.post("/cs?event=up", data=b'{"u":1}', headers=h)).status == 202
        assert (await http.post("/cs?event=join", data=b"{}", headers={})).status == 401   # auth first
    assert [m.payload for m in collector.messages] == [b'{"u":1}']
    assert source.stats()["ignored"] == 2

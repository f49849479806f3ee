"""HTTP polling source against a real local aiohttp server."""
from __future__ import annotations

import asyncio
import time

import pytest
from aiohttp import web
from pydantic import ValidationError

from stadtlink.adapters.core.reading import RawMessage
from stadtlink.adapters.core.sources import HttpPollSource, HttpPollSourceConfig
from stadtlink.adapters.core.testing import free_port, stop_task, wait_until


class Feed:
    """A small HTTP server whose routes misbehave on purpose; it records every request."""

    def __init__(self):
        self.requests: dict[str, list[tuple[float, dict]]] = {}
        self.fail_first = 3
        self.runner: web.AppRunner | None = None
        self.port = free_port()

    def _record(self, request: web.Request) -> int:
        self.requests.setdefault(request.path, []).append((time.monotonic(), dict(request.headers)))
        return len(self.requests[request.path])

    async def etag(self, request):
        self._record(request)
        if request.headers.get("If-None-Match") == '"v1"':
            return web.Response(status=304)
        return web.Response(body=b'{"free": 12}', content_type="application/json", headers={"ETag": '"v1"'})

    async def last_modified(self, request):
        self._record(request)
        stamp = "Wed, 01 May 2024 12:00:00 GMT"
        if request.headers.get("If-Modified-Since") == stamp:
            return web.Response(status=304)
        return web.Response(body=b"<xml/>", content_type="application/xml", headers={"Last-Modified": stamp})

    async def flaky(self, request):
        n = self._record(request)
        if n <= self.fail_first:
            return web.Response(status=500, text="boom")
        return web.Response(body=f"ok {n}".encode(), content_type="text/plain")

    async def slow(self, request):
        self._record(request)
        await asyncio.sleep(30)
        return web.Response(text="late")

    async def fast(self, request):
        n = self._record(request)
        return web.Response(body=f"fast {n}".encode(), content_type="text/plain")

    async def big(self, request):
        self._record(request)
        return web.Response(body=b"x" * 5000)

    async def stream(self, request):
        """A chunked body arriving in pieces (no Content-Length)."""
        self._record(request)
        resp = web.StreamResponse(headers={"Content-Type": "application/octet-stream"})
        await resp.prepare(request)
        for i in range(40):
            await resp.write(bytes([i]) * 65536)
            await asyncio.sleep(0.001)
        await resp.write_eof()
        return resp

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def count(self, path: str) -> int:
        return len(self.requests.get(path, []))

    async def __aenter__(self):
        app = web.Application()
        app.router.add_get("/etag", self.etag)
        app.router.add_get("/lm", self.last_modified)
        app.router.add_get("/flaky", self.flaky)
        app.router.add_get("/slow", self.slow)
        app.router.add_get("/fast", self.fast)
        app.router.add_get("/big", self.big)
        app.router.add_get("/stream", self.stream)
        self.runner = web.AppRunner(app, shutdown_timeout=0.1)
        await self.runner.setup()
        await web.TCPSite(self.runner, "127.0.0.1", self.port).start()
        return self

    async def __aexit__(self, *exc):
        await self.runner.cleanup()


class Collector:
    def __init__(self):
        self.messages: list[RawMessage] = []

    async def __call__(self, message: RawMessage) -> None:
        self.messages.append(message)


def _config(*targets, **kw) -> HttpPollSourceConfig:
    kw.setdefault("interval_s", 0.05)
    kw.setdefault("jitter", 0.0)
    kw.setdefault("timeout_s", 1.0)
    kw.setdefault("retry_min_s", 0.05)
    kw.setdefault("retry_max_s", 0.4)
    return HttpPollSourceConfig(targets=list(targets), **kw)


async def test_etag_304_emits_nothing_and_message_carries_options():
    async with Feed() as feed:
        collector = Collector()
        source = HttpPollSource(_config({"url": f"{feed.base}/etag", "device": "garage-1",
                                         "options": {"role": "status", "b": 2}},
                                        options={"role": "static", "a": 1}, headers={"X-Api": "k"}))
        task = asyncio.create_task(source.run(collector))
        try:
            await wait_until(lambda: feed.count("/etag") >= 5, what="5 polls")
        finally:
            await stop_task(task)
        assert len(collector.messages) == 1
        msg = collector.messages[0]
        assert msg.source == "http" and msg.payload == b'{"free": 12}' and msg.topic == f"{feed.base}/etag"
        assert msg.device_hint == "garage-1"
        assert msg.attributes["options"] == {"role": "status", "a": 1, "b": 2}
        assert msg.attributes["role"] == "status"
        assert msg.attributes["status"] == 200 and msg.attributes["content_type"].startswith("application/json")
        first, *later = feed.requests["/etag"]
        assert "If-None-Match" not in first[1] and first[1]["X-Api"] == "k"
        assert all(h.get("If-None-Match") == '"v1"' for _, h in later)
        assert source.stats()["not_modified"] >= 4
        assert source.ready


async def test_last_modified_304():
    async with Feed() as feed:
        collector = Collector()
        source = HttpPollSource(_config({"url": f"{feed.base}/lm"}))
        task = asyncio.create_task(source.run(collector))
        try:
            await wait_until(lambda: feed.count("/lm") >= 3, what="3 polls")
        finally:
            await stop_task(task)
        assert [m.payload for m in collector.messages] == [b"<xml/>"]
        assert feed.requests["/lm"][1][1]["If-Modified-Since"] == "Wed, 01 May 2024 12:00:00 GMT"


async def test_server_errors_back_off_then_recover():
    async with Feed() as feed:
        feed.fail_first = 4
        collector = Collector()
        source = HttpPollSource(_config({"url": f"{feed.base}/flaky"}, interval_s=0.02, retry_min_s=0.03,
                                        retry_max_s=1.0))
        task = asyncio.create_task(source.run(collector))
        try:
            await wait_until(lambda: feed.count("/flaky") >= 2, what="two failures")
            assert not source.ready and not collector.messages
            await wait_until(lambda: collector.messages, what="recovery")
            assert source.ready
        finally:
            await stop_task(task)
        assert collector.messages[0].payload == b"ok 5"
        assert source.stats()["poll_failures"] == 4
        times = [t for t, _ in feed.requests["/flaky"]]
        gaps = [b - a for a, b in zip(times, times[1:])]
        # exponential backoff from min(retry_min_s, interval_s) = 0.02: 0.02, 0.04, 0.08, 0.16 s (±20 %)
        assert gaps[3] > gaps[0] and gaps[3] >= 0.16 * 0.8
        assert source._targets[0].backoff.attempt == 0      # reset by the successful poll


async def test_timeout_and_refused_connections_are_counted_not_fatal():
    async with Feed() as feed:
        dead = f"http://127.0.0.1:{free_port()}/nothing"
        source = HttpPollSource(_config({"url": f"{feed.base}/slow"}, {"url": dead}, timeout_s=0.2))
        task = asyncio.create_task(source.run(Collector()))
        try:
            await wait_until(lambda: source.stats()["poll_failures"] >= 4, what="failures")
            assert not task.done() and not source.ready
        finally:
            await stop_task(task)


async def test_slow_and_dead_targets_do_not_delay_the_others():
    async with Feed() as feed:
        collector = Collector()
        dead = f"http://127.0.0.1:{free_port()}/nothing"
        source = HttpPollSource(_config({"url": f"{feed.base}/slow"}, {"url": dead}, {"url": f"{feed.base}/fast"},
                                        timeout_s=5.0, concurrency=3))
        task = asyncio.create_task(source.run(collector))
        try:
            await wait_until(lambda: feed.count("/fast") >= 10, what="10 fast polls")
            slow_state = source._targets[0]
            # /slow's first request is still waiting for its 5 s timeout while /fast kept its cadence
            assert slow_state.ok is None and slow_state.failures == 0
        finally:
            await stop_task(task)
        assert feed.count("/slow") == 1
        assert all(m.topic == f"{feed.base}/fast" for m in collector.messages)
        assert source.ready                              # one of three targets answers
        assert source.stats()["targets_ok"] == 1


async def test_ready_min_share():
    async with Feed() as feed:
        dead = f"http://127.0.0.1:{free_port()}/nothing"
        strict = HttpPollSource(_config({"url": f"{feed.base}/fast"}, {"url": dead}, ready_min_share=0.75))
        lenient = HttpPollSource(_config({"url": f"{feed.base}/fast"}, {"url": dead}))
        assert not strict.ready and not lenient.ready      # nothing polled yet
        tasks = [asyncio.create_task(strict.run(Collector())), asyncio.create_task(lenient.run(Collector()))]
        try:
            await wait_until(lambda: strict.stats()["poll_failures"] >= 2 and strict.stats()["targets_ok"] == 1
                             and lenient.stats()["targets_ok"] == 1, what="both polled")
            assert lenient.ready and not strict.ready
        finally:
            for t in tasks:
                await stop_task(t)


async def test_refused_emit_keeps_no_validator_so_data_is_fetched_again():
    async with Feed() as feed:
        calls: list[bytes] = []

        async def emit(message):
            calls.append(message.payload)
            if len(calls) == 1:
                raise RuntimeError("outbox full")

        source = HttpPollSource(_config({"url": f"{feed.base}/etag"}))
        task = asyncio.create_task(source.run(emit))
        try:
            await wait_until(lambda: len(calls) >= 2 and feed.count("/etag") >= 4, what="re-fetch")
        finally:
            await stop_task(task)
        assert calls == [b'{"free": 12}', b'{"free": 12}']
        assert "If-None-Match" not in feed.requests["/etag"][1][1]
        assert source.stats()["emit_refused"] == 1


async def test_body_size_limit():
    async with Feed() as feed:
        collector = Collector()
        source = HttpPollSource(_config({"url": f"{feed.base}/big"}, max_body_bytes=1000))
        task = asyncio.create_task(source.run(collector))
        try:
            await wait_until(lambda: source.stats()["poll_failures"] >= 1, what="refusal")
        finally:
            await stop_task(task)
        assert not collector.messages


def test_config_validation():
    with pytest.raises(ValidationError):
        HttpPollSourceConfig(targets=[])
    with pytest.raises(ValidationError):
        HttpPollSourceConfig(targets=[{"url": "ftp://x"}])
    with pytest.raises(ValidationError):
        HttpPollSourceConfig(targets=[{"url": "http://x"}], interval_s=0)
    cfg = HttpPollSourceConfig(targets=[{"url": "http://x", "device": "d"}])
    assert cfg.kind == "http-poll" and cfg.interval_s == 60


async def test_chunked_body_is_read_completely_and_limited():
    async with Feed() as feed:
        collector = Collector()
        whole = HttpPollSource(_config({"url": f"{feed.base}/stream"}, interval_s=10))
        limited = HttpPollSource(_config({"url": f"{feed.base}/stream"}, interval_s=10, max_body_bytes=1_000_000))
        tasks = [asyncio.create_task(whole.run(collector)), asyncio.create_task(limited.run(collector))]
        try:
            await wait_until(lambda: collector.messages and limited.stats()["poll_failures"] >= 1, what="both polls")
        finally:
            for t in tasks:
                await stop_task(t)
        assert len(collector.messages) == 1
        body = collector.messages[0].payload
        assert body == b"".join(bytes([i]) * 65536 for i in range(40))


async def test_target_profile_and_secret_headers(monkeypatch):
    monkeypatch.setenv("FEED_KEY_TEST", "k-123")
    async with Feed() as feed:
        collector = Collector()
        source = HttpPollSource(_config({"url": f"{feed.base}/fast", "profile": "datex2-static"},
                                        {"url": f"{feed.base}/lm"}, headers_env={"X-Api-Key": "FEED_KEY_TEST"}))
        task = asyncio.create_task(source.run(collector))
        try:
            await wait_until(lambda: {m.topic for m in collector.messages} == {f"{feed.base}/fast", f"{feed.base}/lm"},
                             what="both targets")
        finally:
            await stop_task(task)
        by_url = {m.topic: m for m in collector.messages}
        assert by_url[f"{feed.base}/fast"].attributes["profile"] == "datex2-static"
        assert "profile" not in by_url[f"{feed.base}/lm"].attributes
        assert feed.requests["/fast"][0][1]["X-Api-Key"] == "k-123"
    monkeypatch.delenv("FEED_KEY_TEST")
    from stadtlink.adapters.core.errors import ConfigError
    with pytest.raises(ConfigError, match="FEED_KEY_TEST"):
        HttpPollSource(_config({"url": "http://x"}, headers_env={"X-Api-Key": "FEED_KEY_TEST"}))

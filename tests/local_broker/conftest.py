"""Fixtures for the local broker tests: a broker on a free port, a client session, a receiver."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import aiohttp
import pytest
from aiohttp import web


PARKING_CTX = "https://raw.githubusercontent.com/smart-data-models/dataModel.Parking/master/context.jsonld"
LINK_REL = 'rel="http://www.w3.org/ns/json-ld#context"; type="application/ld+json"'
PARKING_LINK = f"<{PARKING_CTX}>; {LINK_REL}"
CORE_CTX = "https://uri.etsi.org/ngsi-ld/v1/ngsi-ld-core-context-v1.8.jsonld"


@pytest.fixture
def broker(local_broker) -> str:
    """Base URL of the NGSI-LD API of a fresh broker (``http://127.0.0.1:PORT/ngsi-ld/v1``), the test
    kit's ``local_broker``."""
    return local_broker + "/ngsi-ld/v1"


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=20)) as session:
        yield session


@dataclass
class Received:
    method: str
    path: str
    query_string: str
    headers: dict
    body: dict


@dataclass
class Receiver:
    url: str
    queue: "asyncio.Queue[Received]" = field(default_factory=asyncio.Queue)
    status: int = 204

    async def next(self, timeout: float = 5.0) -> Received:
        return await asyncio.wait_for(self.queue.get(), timeout)

    async def nothing(self, wait: float = 0.5) -> bool:
        """True when no notification arrives within ``wait`` seconds."""
        try:
            await asyncio.wait_for(self.queue.get(), wait)
        except asyncio.TimeoutError:
            return True
        return False


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    """A real HTTP notification receiver on 127.0.0.1 recording every request."""
    box: dict = {}

    async def record(request: web.Request) -> web.Response:
        raw = await request.read()
        import json
        body = json.loads(raw) if raw else None
        box["r"].queue.put_nowait(Received(request.method, request.path, request.query_string,
                                           dict(request.headers), body))
        return web.Response(status=box["r"].status)

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", record)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    box["r"] = Receiver(url=f"http://127.0.0.1:{port}")
    try:
        yield box["r"]
    finally:
        await runner.cleanup()


def problem(body: dict) -> tuple[str, str]:
    """(short error type, title) of a ProblemDetails body; also checks its exact members."""
    assert set(body) == {"type", "title", "detail"}, body
    assert body["type"].startswith("https://uri.etsi.org/ngsi-ld/errors/")
    return body["type"].rsplit("/", 1)[1], body["title"]

"""A scripted stand-in for Orion-LD on a real socket (127.0.0.1, free port).

Each test queues the exact answers Orion-LD gives (reference/orion-ld.md) for a method + path, and
the server checks every request the client sends: Link header exact, ``Content-Type:
application/json``, ``Content-Length`` present and equal to the body size, never ``Transfer-Encoding:
chunked``, the ``NGSILD-Tenant`` header. Violations fail the test at teardown.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import orjson
from aiohttp import web
from aiohttp.test_utils import TestServer

from stadtlink.broker_client import RetryPolicy

CONTEXT = "https://smartdatamodels.org/context.jsonld"
LINK = '<https://smartdatamodels.org/context.jsonld>; rel="http://www.w3.org/ns/json-ld#context"; type="application/ld+json"'
ERR = "https://uri.etsi.org/ngsi-ld/errors/"
FAST_RETRY = RetryPolicy(attempts=4, base_delay=0.001, max_delay=0.01)


@dataclass
class Recorded:
    method: str
    raw_path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return orjson.loads(self.body)

    def q(self, name: str) -> str | None:
        values = self.query.get(name)
        return values[-1] if values else None


@dataclass
class Canned:
    status: int
    body: bytes | str | list | dict | None = None
    headers: dict[str, str] = field(default_factory=dict)

    def to_response(self) -> web.Response:
        body = self.body
        if isinstance(body, (list, dict)):
            body = orjson.dumps(body)
        elif isinstance(body, str):
            body = body.encode()
        headers = dict(self.headers)
        if body:
            headers.setdefault("Content-Type", "application/json")
        return web.Response(status=self.status, body=body or None, headers=headers)


Handler = Canned | Callable[[Recorded], Canned | Awaitable[Canned]]


class FakeOrion:
    def __init__(self, *, expect_link: str | None = LINK, expect_tenant: str | None = None) -> None:
        self.expect_link = expect_link
        self.expect_tenant = expect_tenant
        self.requests: list[Recorded] = []
        self.violations: list[str] = []
        self._routes: dict[tuple[str, str], list[Handler]] = {}
        self._sticky: dict[tuple[str, str], Handler] = {}
        self.server: TestServer | None = None

    # scripting ---------------------------------------------------------------------------
    def on(self, method: str, path: str, *answers: Handler) -> None:
        """Queue answers for METHOD /ngsi-ld/v1<path>, used once each in order."""
        self._routes.setdefault((method, "/ngsi-ld/v1" + path), []).extend(answers)

    def always(self, method: str, path: str, answer: Handler) -> None:
        self._sticky[(method, "/ngsi-ld/v1" + path)] = answer

    def calls(self, method: str | None = None, path: str | None = None) -> list[Recorded]:
        return [
            r
            for r in self.requests
            if (method is None or r.method == method) and (path is None or r.raw_path == "/ngsi-ld/v1" + path)
        ]

    @property
    def url(self) -> str:
        assert self.server is not None
        return str(self.server.make_url("")).rstrip("/")

    # server ------------------------------------------------------------------------------
    async def _handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        raw_path = request.rel_url.raw_path
        query: dict[str, list[str]] = {}
        for k, v in request.query.items():
            query.setdefault(k, []).append(v)
        rec = Recorded(request.method, raw_path, query, dict(request.headers), body)
        self.requests.append(rec)
        self._check(rec, request)
        key = (request.method, raw_path)
        queue = self._routes.get(key)
        if queue:
            handler: Handler | None = queue.pop(0)
        else:
            handler = self._sticky.get(key)
        if handler is None:
            self.violations.append(f"unexpected request {request.method} {raw_path}")
            return web.Response(status=599, text="no canned answer")
        answer = handler(rec) if callable(handler) else handler
        if hasattr(answer, "__await__"):
            answer = await answer  # type: ignore[misc]
        return answer.to_response()  # type: ignore[union-attr]

    def _check(self, rec: Recorded, request: web.Request) -> None:
        where = f"{rec.method} {rec.raw_path}"
        h = request.headers
        if "chunked" in h.get("Transfer-Encoding", "").lower():
            self.violations.append(f"{where}: chunked body")
        if rec.body:
            if h.get("Content-Length") != str(len(rec.body)):
                self.violations.append(f"{where}: Content-Length {h.get('Content-Length')!r} for {len(rec.body)} bytes")
            ld_json_without_link = h.get("Content-Type") == "application/ld+json" and "Link" not in h
            if h.get("Content-Type") != "application/json" and not ld_json_without_link:
                self.violations.append(f"{where}: Content-Type {h.get('Content-Type')!r}")
        link_expected = rec.raw_path.startswith("/ngsi-ld/") and h.get("Content-Type") != "application/ld+json"
        if link_expected and h.get("Link") != self.expect_link:
            self.violations.append(f"{where}: Link {h.get('Link')!r}")
        if h.get("NGSILD-Tenant") != self.expect_tenant:
            self.violations.append(f"{where}: NGSILD-Tenant {h.get('NGSILD-Tenant')!r}")

    async def start(self) -> None:
        app = web.Application(client_max_size=4 * 1024 * 1024)
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self.server = TestServer(app, host="127.0.0.1", port=0)
        await self.server.start_server()

    async def stop(self) -> None:
        if self.server is not None:
            await self.server.close()


def ids(prefix: str, n: int) -> list[str]:
    return [f"urn:ngsi-ld:{prefix}:{i}" for i in range(n)]


def entity(entity_id: str, **attrs: Any) -> dict[str, Any]:
    e: dict[str, Any] = {"id": entity_id, "type": "ParkingSpot"}
    e.update({k: {"type": "Property", "value": v} for k, v in attrs.items()})
    if not attrs:
        e["status"] = {"type": "Property", "value": "free", "observedAt": "2024-05-01T12:00:00.000Z"}
    return e



def echo_ids_201(rec: Recorded) -> Canned:
    """Experimental-mode answer to an upsert of only new entities: 201 with every id."""
    return Canned(201, [e["id"] for e in rec.json()])

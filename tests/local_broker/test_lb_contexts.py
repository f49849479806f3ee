"""Remote @context documents: downloaded from a real context server on 127.0.0.1, nested, cached,
retried, refused (503 LdContextNotAvailable) and recovered without a broker restart."""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import pytest
from aiohttp import web

from stadtlink.broker_client.local_broker import running_broker
from stadtlink.broker_client.local_broker.contexts import (
    ContextResolver,
    HttpContextFetcher,
    is_core_context_url,
)
from stadtlink.broker_client.local_broker.errors import NgsiError

from .conftest import CORE_CTX, problem

SPEED = "http://example.org/vocab/speed"
CAR = "http://example.org/vocab/Car"
COLOR = "http://example.org/vocab/color"


@dataclass
class ContextServer:
    """Serves context documents on 127.0.0.1; can be slowed, stopped and started again."""

    port: int = 0
    delay: float = 0.0
    hits: Counter = field(default_factory=Counter)
    runner: web.AppRunner | None = None

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.port}/{name}"

    async def start(self) -> None:
        app = web.Application()
        app.router.add_get("/{name}", self._serve)
        self.runner = web.AppRunner(app, access_log=None)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", self.port, reuse_address=True)
        await site.start()
        self.port = self.runner.addresses[0][1]

    async def stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()
            self.runner = None

    async def _serve(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        self.hits[name] += 1
        docs = {
            "plain.jsonld": {"@context": {"speed": SPEED, "Car": CAR}},
            # a compound context: a list naming another URL, an inline object and a core URL
            "compound.jsonld": {"@context": [self.url("plain.jsonld"), {"color": COLOR}, CORE_CTX]},
            # JSON-LD 1.1 @import with a URL relative to the document
            "imports.jsonld": {"@context": {"@import": "plain.jsonld", "color": COLOR}},
            "slow.jsonld": {"@context": {"speed": SPEED, "Car": CAR}},
            "notjson.jsonld": "this is not JSON",
            "nocontext.jsonld": {"speed": SPEED},
        }
        if name == "slow.jsonld" and self.delay:
            await asyncio.sleep(self.delay)
        if name.startswith("fresh"):  # any number of distinct URLs with the same content
            return web.json_response(docs["plain.jsonld"])
        if name not in docs:
            return web.json_response({"error": "not here"}, status=404)
        if isinstance(docs[name], str):
            return web.Response(text=docs[name], content_type="application/ld+json")
        return web.json_response(docs[name], content_type="application/ld+json")


@pytest.fixture
async def ctx_server() -> AsyncIterator[ContextServer]:
    server = ContextServer()
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


def link(url: str) -> dict:
    return {"Link": f'<{url}>; rel="http://www.w3.org/ns/json-ld#context"; type="application/ld+json"'}


async def answer(http, method, url, **kw):
    async with http.request(method, url, **kw) as r:
        raw = await r.read()
        return r.status, r.headers, (json.loads(raw) if raw else None)


CAR_ENTITY = {"id": "urn:ngsi-ld:Car:1", "type": "Car",
              "speed": {"type": "Property", "value": 80}, "color": {"type": "Property", "value": "red"}}


async def test_nested_context_is_downloaded_once_and_used(http, broker, ctx_server):
    compound = ctx_server.url("compound.jsonld")
    status, _, _ = await answer(http, "POST", f"{broker}/entities", json=CAR_ENTITY, headers=link(compound))
    assert status == 201
    status, headers, body = await answer(http, "GET", f"{broker}/entities/urn:ngsi-ld:Car:1", headers=link(compound))
    assert status == 200
    assert body["type"] == "Car" and body["speed"]["value"] == 80 and body["color"]["value"] == "red"
    assert compound in headers["Link"]
    # read with no context: the expanded names the nested documents defined
    _, _, expanded = await answer(http, "GET", f"{broker}/entities/urn:ngsi-ld:Car:1")
    assert expanded["type"] == CAR and expanded[SPEED]["value"] == 80 and expanded[COLOR]["value"] == "red"
    # read with only the nested document: color is not defined there
    _, _, partial = await answer(http, "GET", f"{broker}/entities/urn:ngsi-ld:Car:1",
                                 headers=link(ctx_server.url("plain.jsonld")))
    assert partial["speed"]["value"] == 80 and partial[COLOR]["value"] == "red"
    for _ in range(3):
        status, _, _ = await answer(http, "GET", f"{broker}/entities", params={"type": "Car"},
                                    headers=link(compound))
        assert status == 200
    assert ctx_server.hits == {"compound.jsonld": 1, "plain.jsonld": 1}  # cached, core never fetched


async def test_body_context_url_and_import_are_downloaded(http, broker, ctx_server):
    body = {**CAR_ENTITY, "@context": [ctx_server.url("imports.jsonld")]}
    status, _, _ = await answer(http, "POST", f"{broker}/entities", data=json.dumps(body),
                                headers={"Content-Type": "application/ld+json"})
    assert status == 201
    _, _, expanded = await answer(http, "GET", f"{broker}/entities/urn:ngsi-ld:Car:1")
    assert expanded["type"] == CAR and expanded[SPEED]["value"] == 80 and expanded[COLOR]["value"] == "red"
    assert ctx_server.hits == {"imports.jsonld": 1, "plain.jsonld": 1}


@pytest.mark.parametrize("name, why", [("missing.jsonld", "HTTP 404"), ("notjson.jsonld", "not JSON"),
                                       ("nocontext.jsonld", "no @context")])
async def test_unusable_context_is_503_without_retries(http, broker, ctx_server, name, why):
    url = ctx_server.url(name)
    status, _, body = await answer(http, "POST", f"{broker}/entities", json=CAR_ENTITY, headers=link(url))
    assert status == 503
    assert problem(body) == ("LdContextNotAvailable", "Unable to download context")
    assert url in body["detail"] and why in body["detail"]
    assert ctx_server.hits[name] == 1  # a definite answer is not retried
    status, _, _ = await answer(http, "GET", f"{broker}/entities/urn:ngsi-ld:Car:1")
    assert status == 404  # nothing was created
    # the failure is not cached: the next request asks again
    status, _, _ = await answer(http, "GET", f"{broker}/entities", params={"type": "Car"}, headers=link(url))
    assert status == 503 and ctx_server.hits[name] == 2


async def test_nested_url_failing_is_503(http, broker, ctx_server):
    status, _, body = await answer(http, "POST", f"{broker}/subscriptions", headers={"Content-Type": "application/ld+json"},
                                   data=json.dumps({"type": "Subscription", "entities": [{"type": "Car"}],
                                                    "notification": {"endpoint": {"uri": "http://127.0.0.1:9/n"}},
                                                    "@context": [ctx_server.url("plain.jsonld"),
                                                                 ctx_server.url("gone.jsonld")]}))
    assert status == 503 and ctx_server.url("gone.jsonld") in body["detail"]
    status, _, subs = await answer(http, "GET", f"{broker}/subscriptions")
    assert status == 200 and subs == []


async def test_slow_context_server(http, ctx_server):
    async with running_broker(context_timeout=0.5, context_attempts=2) as url:
        base = url + "/ngsi-ld/v1"
        ctx_server.delay = 0.2  # slow but within the timeout
        status, _, _ = await answer(http, "POST", f"{base}/entities", json=CAR_ENTITY,
                                    headers=link(ctx_server.url("slow.jsonld")))
        assert status == 201 and ctx_server.hits["slow.jsonld"] == 1
        # too slow: each attempt times out, then 503
        ctx_server.delay = 2
        status, _, body = await answer(http, "GET", f"{base}/entities", params={"type": "Car"},
                                       headers=link(ctx_server.url("slow.jsonld") + "?v=2"))
        # the same words as a closed port (test_context_server_goes_away_and_comes_back): the
        # answer does not describe the network
        assert status == 503 and "could not be reached" in body["detail"]
        assert ctx_server.hits["slow.jsonld"] == 3  # 1 before, 2 attempts now
        # other requests are served meanwhile: a slow download blocks only the requests needing it
        ctx_server.delay = 1.5
        slow = asyncio.ensure_future(answer(http, "GET", f"{base}/entities", params={"type": "Car"},
                                            headers=link(ctx_server.url("slow.jsonld") + "?v=3")))
        await asyncio.sleep(0.1)
        status, _, _ = await answer(http, "GET", f"{base}/entities/urn:ngsi-ld:Car:1")
        assert status == 200 and not slow.done()  # answered while the download still waits
        assert (await slow)[0] == 503


async def test_concurrent_requests_share_one_download(http, broker, ctx_server):
    ctx_server.delay = 0.3
    url = ctx_server.url("slow.jsonld")
    results = await asyncio.gather(*[
        answer(http, "GET", f"{broker}/entities", params={"type": "Car", "attrs": a}, headers=link(url))
        for a in ("speed", "color", "speed,color", "x", "y")])
    assert [r[0] for r in results] == [200] * 5
    assert ctx_server.hits["slow.jsonld"] == 1


async def test_context_server_goes_away_and_comes_back(http, broker, ctx_server):
    plain = ctx_server.url("plain.jsonld")
    status, _, _ = await answer(http, "POST", f"{broker}/entities", json=CAR_ENTITY, headers=link(plain))
    assert status == 201
    await ctx_server.stop()
    # what was downloaded stays usable; a URL not downloaded yet cannot be resolved
    status, _, body = await answer(http, "GET", f"{broker}/entities/urn:ngsi-ld:Car:1", headers=link(plain))
    assert status == 200 and body["speed"]["value"] == 80
    other = ctx_server.url("fresh-1.jsonld")
    status, _, body = await answer(http, "GET", f"{broker}/entities/urn:ngsi-ld:Car:1", headers=link(other))
    assert status == 503 and problem(body)[0] == "LdContextNotAvailable"
    assert body["detail"] == f"{other} (the context server could not be reached)"
    # back on the same port: the same broker uses it again, no restart
    await ctx_server.start()
    status, _, body = await answer(http, "GET", f"{broker}/entities/urn:ngsi-ld:Car:1", headers=link(other))
    assert status == 200 and body["speed"]["value"] == 80
    assert ctx_server.hits["fresh-1.jsonld"] == 1


async def test_context_dir_preloads_so_nothing_is_fetched(http, ctx_server, tmp_path):
    url = ctx_server.url("preloaded.jsonld")  # the server answers 404 for it
    (tmp_path / "p.jsonld").write_text(json.dumps({"@id": url, "@context": {"speed": SPEED, "Car": CAR}}))
    async with running_broker(context_dir=str(tmp_path)) as base_url:
        base = base_url + "/ngsi-ld/v1"
        status, _, _ = await answer(http, "POST", f"{base}/entities", json=CAR_ENTITY, headers=link(url))
        assert status == 201
        _, _, body = await answer(http, "GET", f"{base}/entities/urn:ngsi-ld:Car:1")
        assert body["type"] == CAR
    assert ctx_server.hits["preloaded.jsonld"] == 0


def test_core_context_urls_are_built_in():
    for version in ("", "-v1.3", "-v1.4", "-v1.5", "-v1.6", "-v1.7", "-v1.8", "-v1.9"):
        assert is_core_context_url(f"https://uri.etsi.org/ngsi-ld/v1/ngsi-ld-core-context{version}.jsonld")
    # anything else on uri.etsi.org is downloaded like any other URL
    for other in ("https://uri.etsi.org/ngsi-ld/v1/ngsi-ld-core-context-v1.2.jsonld",
                  "https://uri.etsi.org/ngsi-ld/v1/ngsi-ld-core-context-v1.10.jsonld",
                  "https://uri.etsi.org/ngsi-ld/v1/ngsi-ld-core-context-v1.8.json",
                  "https://uri.etsi.org/ngsi-ld/v1/other.jsonld"):
        assert not is_core_context_url(other), other


async def test_fetched_documents_are_bounded(ctx_server):
    resolver = ContextResolver(fetcher=HttpContextFetcher(timeout=2, allow_private=True), fetched_cache_size=2)
    try:
        for i in (1, 2, 3):
            await resolver.compile(ctx_server.url(f"fresh-{i}.jsonld"))
        assert list(resolver.fetched) == [ctx_server.url("fresh-2.jsonld"), ctx_server.url("fresh-3.jsonld")]
        resolver._cache.clear()  # the compiled form would otherwise answer without the document
        compiled = await resolver.compile(ctx_server.url("fresh-1.jsonld"))
        assert compiled.expand("speed") == SPEED
        assert ctx_server.hits["fresh-1.jsonld"] == 2  # evicted, so downloaded again
    finally:
        await resolver.close()


async def test_download_off_and_non_http_urls(ctx_server):
    resolver = ContextResolver(fetcher=False)
    with pytest.raises(NgsiError) as err:
        await resolver.compile(ctx_server.url("plain.jsonld"))
    assert err.value.status == 503
    assert ctx_server.hits["plain.jsonld"] == 0
    fetching = ContextResolver()
    try:
        with pytest.raises(NgsiError) as err:
            await fetching.compile("file:///etc/passwd")
        assert err.value.status == 503 and "http(s)" in err.value.detail
    finally:
        await fetching.close()


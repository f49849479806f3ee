"""The local broker against hostile requests (issue 19): catastrophic regular expressions, values
nested too deeply to serve back, deep geo-query coordinates, an entity the encoder cannot take,
and @context URLs pointing into the broker's own network."""
from __future__ import annotations

import asyncio
import json
import socket
import time

import aiohttp
import pytest
from aiohttp import web

from stadtlink.broker_client.local_broker import BROKER_KEY, create_app, running_broker

pytestmark = pytest.mark.timeout(120)

EVIL = "^(a+)+$"                                  # exponential backtracking in a backtracking engine
SUBJECT = "urn:ngsi-ld:Thing:" + "a" * 34 + "!"    # seconds to hours with Python's re


def thing(eid: str, **attrs) -> dict:
    ent = {"id": eid, "type": "Thing"}
    for k, v in attrs.items():
        ent[k] = {"type": "Property", "value": v}
    return ent


@pytest.fixture
def broker(local_broker):
    """The NGSI-LD API of the test kit's local broker."""
    return local_broker + "/ngsi-ld/v1"


@pytest.fixture
async def http():
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60)) as session:
        yield session


async def _post(http, url, body):
    async with http.post(url, json=body) as resp:
        return resp.status, await resp.read()


async def _get(http, url, **params):
    async with http.get(url, params=params) as resp:
        return resp.status, await resp.read()


async def _seed(http, broker):
    status, body = await _post(http, f"{broker}/entityOperations/upsert",
                               [thing(SUBJECT, name="a" * 34 + "!"), thing("urn:ngsi-ld:Thing:ok", name="ok")])
    assert status in (201, 204), body


@pytest.mark.parametrize("how", ["idPattern", "q", "post-query"])
async def test_backtracking_regex_answers_fast_and_blocks_no_one(http, broker, how):
    await _seed(http, broker)
    if how == "idPattern":
        slow = _get(http, f"{broker}/entities", type="Thing", idPattern=EVIL)
    elif how == "q":
        slow = _get(http, f"{broker}/entities", type="Thing", q="name~=(a+)+$")
    else:
        slow = _post(http, f"{broker}/entityOperations/query",
                     {"type": "Query", "entities": [{"type": "Thing", "idPattern": EVIL}]})
    t0 = time.monotonic()
    slow_task = asyncio.ensure_future(slow)
    await asyncio.sleep(0.05)
    t1 = time.monotonic()
    status, _ = await _get(http, f"{broker}/entities/urn:ngsi-ld:Thing:ok")
    concurrent = time.monotonic() - t1
    status_slow, body = await slow_task
    elapsed = time.monotonic() - t0
    assert status == 200 and status_slow == 200, body
    assert json.loads(body) == [], "nothing matches: the subject ends with '!'"
    assert elapsed < 1.0, f"the backtracking pattern took {elapsed:.2f} s"
    assert concurrent < 1.0, f"a concurrent request waited {concurrent:.2f} s"


async def test_regex_rules(http, broker):
    await _seed(http, broker)
    status, body = await _get(http, f"{broker}/entities", type="Thing", idPattern="Thing:o+k$")
    assert status == 200 and [e["id"] for e in json.loads(body)] == ["urn:ngsi-ld:Thing:ok"]
    # backreferences are not linear-time: refused with 400, as is an over-long pattern
    for pattern in (r"(a)\1", "a" * 2000):
        status, body = await _get(http, f"{broker}/entities", type="Thing", idPattern=pattern)
        assert status == 400 and json.loads(body)["title"] == "Invalid idPattern"
    status, body = await _post(http, f"{broker}/subscriptions", {
        "type": "Subscription", "entities": [{"type": "Thing", "idPattern": r"(x)\1"}],
        "notification": {"endpoint": {"uri": "http://127.0.0.1:9/n"}}})
    assert status == 400


async def test_value_nested_too_deep_is_refused_at_write(http, broker):
    deep: object = 1
    for _ in range(300):
        deep = [deep]
    status, body = await _post(http, f"{broker}/entities", thing("urn:ngsi-ld:Thing:deep", blob=deep))
    assert status == 400 and b"nested" in body
    status, body = await _post(http, f"{broker}/entityOperations/upsert",
                               [thing("urn:ngsi-ld:Thing:deep2", blob=deep), thing("urn:ngsi-ld:Thing:fine", n=1)])
    assert status == 400
    # the type stays queryable (before: stored, then every query of the type answered 500)
    await _seed(http, broker)
    status, body = await _get(http, f"{broker}/entities", type="Thing")
    assert status == 200 and len(json.loads(body)) == 2
    # what is within the limit is stored and served back
    ok: object = "x"
    for _ in range(60):
        ok = {"k": ok}
    status, _ = await _post(http, f"{broker}/entities", thing("urn:ngsi-ld:Thing:nested60", blob=ok))
    assert status == 201
    status, body = await _get(http, f"{broker}/entities/urn:ngsi-ld:Thing:nested60")
    assert status == 200 and json.loads(body)["blob"]["value"] == ok


async def test_deep_geo_coordinates_are_400(http, broker):
    await _seed(http, broker)
    for coords in ("[" * 3000 + "]" * 3000, "[[[[[[1,2]]]]]]"):
        status, body = await _get(http, f"{broker}/entities", type="Thing", georel="near;maxDistance==10",
                                  geometry="Point", coordinates=coords)
        assert status == 400, body
    status, body = await _post(http, f"{broker}/entityOperations/query", {
        "type": "Query", "entities": [{"type": "Thing"}],
        "geoQ": {"geometry": "Polygon", "georel": "within", "coordinates": [[[[[[[1, 2]]]]]]]}})
    assert status == 400, body


async def test_one_entity_the_encoder_cannot_take_does_not_fail_the_others(http):
    """Stored before any limit existed (put straight into the store): the answer and the
    notification leave it out and carry the others."""
    got: asyncio.Queue = asyncio.Queue()

    async def notified(request: web.Request) -> web.Response:
        got.put_nowait(await request.json())
        return web.Response(status=200)

    recv = web.Application()
    recv.router.add_post("/n", notified)
    recv_runner = web.AppRunner(recv)
    await recv_runner.setup()
    site = web.TCPSite(recv_runner, "127.0.0.1", 0)
    await site.start()
    recv_url = f"http://127.0.0.1:{recv_runner.addresses[0][1]}/n"
    app = create_app()
    runner = web.AppRunner(app)
    await runner.setup()
    bsite = web.TCPSite(runner, "127.0.0.1", 0)
    await bsite.start()
    base = f"http://127.0.0.1:{runner.addresses[0][1]}/ngsi-ld/v1"
    try:
        await _seed(http, base)
        status, _ = await _post(http, f"{base}/subscriptions", {
            "type": "Subscription", "entities": [{"type": "Thing"}],
            "notification": {"endpoint": {"uri": recv_url}}})
        assert status == 201
        broker = app[BROKER_KEY]
        tenant = broker.store.tenant(None)
        poisoned = tenant.entities[SUBJECT]
        deep: object = 1
        for _ in range(400):
            deep = [deep]
        poisoned.attrs[next(iter(poisoned.attrs))][0]["value"] = deep
        status, body = await _get(http, f"{base}/entities", type="Thing")
        assert status == 200
        assert [e["id"] for e in json.loads(body)] == ["urn:ngsi-ld:Thing:ok"]
        # a batch touching both: the notification still carries the healthy one
        from stadtlink.broker_client.local_broker.store import Change
        broker.notifier.process(list(tenant.subscriptions.values()),
                                [Change(poisoned, None, "entityUpdated"),
                                 Change(tenant.entities["urn:ngsi-ld:Thing:ok"], None, "entityUpdated")], {})
        note = await asyncio.wait_for(got.get(), 20)
        assert [e["id"] for e in note["data"]] == ["urn:ngsi-ld:Thing:ok"]
    finally:
        await runner.cleanup()
        await recv_runner.cleanup()


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def test_context_urls_into_the_private_network_are_refused_alike(http):
    hits = []

    async def serve(request: web.Request) -> web.Response:
        hits.append(request.path)
        if request.path == "/slow.jsonld":
            await asyncio.sleep(5)
        return web.json_response({"@context": {"speed": "https://example.org/speed"}})

    ctx_app = web.Application()
    ctx_app.router.add_get("/{name}", serve)
    ctx_runner = web.AppRunner(ctx_app)
    await ctx_runner.setup()
    await web.TCPSite(ctx_runner, "127.0.0.1", 0).start()
    open_url = f"http://127.0.0.1:{ctx_runner.addresses[0][1]}/ctx.jsonld"
    urls = {"open": open_url, "closed": f"http://127.0.0.1:{_closed_port()}/ctx.jsonld",
            "link-local": "http://169.254.169.254/latest/meta-data.jsonld",
            "private": "http://10.0.0.1/ctx.jsonld", "localhost": "http://localhost:1/ctx.jsonld",
            "mapped": "http://[::ffff:127.0.0.1]:1/ctx.jsonld"}
    try:
        # a broker serving other machines (context_allow_private=False) fetches nothing of these
        async with running_broker(context_allow_private=False, context_timeout=1, context_attempts=1) as url:
            details = {}
            for name, ctx_url in urls.items():
                async with http.get(f"{url}/ngsi-ld/v1/entities", params={"type": "Thing"},
                                    headers={"Link": f'<{ctx_url}>; rel="http://www.w3.org/ns/json-ld#context"'}) as resp:
                    body = await resp.json()
                    assert resp.status == 503, (name, body)
                    details[name] = body["detail"].replace(ctx_url, "URL")
            assert hits == [], "nothing was fetched from the private network"
            assert len(set(details.values())) == 1, details
        # the same broker with the flag (or listening on loopback only, as tests and the demo do)
        async with running_broker(context_allow_private=True, context_timeout=1, context_attempts=1) as url:
            details = {}
            for name in ("closed", "slow"):
                ctx_url = urls["closed"] if name == "closed" else open_url.replace("ctx", "slow")
                async with http.get(f"{url}/ngsi-ld/v1/entities", params={"type": "Thing"},
                                    headers={"Link": f'<{ctx_url}>; rel="http://www.w3.org/ns/json-ld#context"'}) as resp:
                    assert resp.status == 503
                    details[name] = (await resp.json())["detail"].replace(ctx_url, "URL")
            assert details["closed"] == details["slow"], "a closed port and a timeout answer alike"
            async with http.get(f"{url}/ngsi-ld/v1/entities", params={"type": "Thing"},
                                headers={"Link": f'<{open_url}>; rel="http://www.w3.org/ns/json-ld#context"'}) as resp:
                assert resp.status == 200
        async with running_broker() as url:     # on 127.0.0.1: allowed by default
            async with http.get(f"{url}/ngsi-ld/v1/entities", params={"type": "Thing"},
                                headers={"Link": f'<{open_url}>; rel="http://www.w3.org/ns/json-ld#context"'}) as resp:
                assert resp.status == 200
    finally:
        await ctx_runner.cleanup()


async def test_deeply_parenthesised_expressions_are_400(http, broker):
    """q, scopeQ and type expressions share one parser; before, 3,000 parentheses overflowed
    Python's recursion and answered 500."""
    await _seed(http, broker)
    deep = "(" * 3000 + "name==1" + ")" * 3000
    status, body = await _get(http, f"{broker}/entities", type="Thing", q=deep)
    assert status == 400, body
    status, body = await _get(http, f"{broker}/entities", type="(" * 3000 + "Thing" + ")" * 3000)
    assert status == 400, body
    status, body = await _get(http, f"{broker}/entities", type="Thing", q="(" * 50 + "name==\"ok\"" + ")" * 50)
    assert status == 200 and [e["id"] for e in json.loads(body)] == ["urn:ngsi-ld:Thing:ok"]


async def test_matching_cost_is_bounded_in_post_bodies(http, broker):
    """A POST body may be a megabyte: a q of 100,000 ORed terms or thousands of idPattern selectors
    would cost terms x entities on every query (and every change, in a subscription)."""
    await _seed(http, broker)
    huge_q = "|".join(f"name==\"x{i}\"" for i in range(20000))
    status, body = await _post(http, f"{broker}/entityOperations/query",
                               {"type": "Query", "entities": [{"type": "Thing"}], "q": huge_q})
    assert status == 400 and b"longer than" in body
    selectors = [{"type": "Thing", "idPattern": f"x{i}$"} for i in range(1000)]
    status, body = await _post(http, f"{broker}/entityOperations/query", {"type": "Query", "entities": selectors})
    assert status == 400
    status, body = await _post(http, f"{broker}/subscriptions", {
        "type": "Subscription", "entities": selectors, "notification": {"endpoint": {"uri": "http://127.0.0.1:9/n"}}})
    assert status == 400
    status, body = await _post(http, f"{broker}/subscriptions", {
        "type": "Subscription", "entities": [{"type": "Thing"}], "q": huge_q,
        "notification": {"endpoint": {"uri": "http://127.0.0.1:9/n"}}})
    assert status == 400
    # within the bounds: answered
    status, body = await _post(http, f"{broker}/entityOperations/query",
                               {"type": "Query", "entities": selectors[:99] + [{"type": "Thing", "id": "urn:ngsi-ld:Thing:ok"}]})
    assert status == 200 and [e["id"] for e in json.loads(body)] == ["urn:ngsi-ld:Thing:ok"]

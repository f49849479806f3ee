"""The notification receiver: both Orion-LD notifier header sets, secrets, bad bodies, duplicates,
slow handlers (the 200 must still come at once), MQTT envelopes."""
import asyncio
import time

import orjson
import pytest
from aiohttp import ClientSession, web

from stadtlink.broker_client.notify import NotificationReceiver
from stadtlink.adapters.core.testing import wait_until

SECRET = "s3cret"


def body(nid="urn:ngsi-ld:Notification:1", sub="urn:ngsi-ld:Subscription:stadtlink:parking", **kw):
    doc = {"id": nid, "type": "Notification", "subscriptionId": sub, "notifiedAt": "2024-05-01T10:00:00.000Z",
           "data": [{"id": "urn:ngsi-ld:ParkingSpot:x:1", "type": "ParkingSpot",
                     "status": {"type": "Property", "value": "free"}}]}
    doc.update(kw)
    return orjson.dumps(doc)


LEGACY_HEADERS = {"Content-Type": "application/json; charset=utf-8", "Accept": "application/json",
                  "User-Agent": "orion/1.7.0 libcurl/7.88", "Ngsiv2-AttrsFormat": "normalized",
                  "Fiware-Servicepath": "/", "X-Stadtlink-Secret": SECRET,
                  "Link": '<https://example.org/ctx.jsonld>; rel="http://www.w3.org/ns/json-ld#context"; type="application/ld+json"'}
NATIVE_HEADERS = {"Content-Type": "application/json", "Accept": "application/json", "User-Agent": "orionld/post-v1.7.0",
                  "Ngsild-Attribute-Format": "Normalized", "NGSILD-Tenant": "town", "X-Stadtlink-Secret": SECRET}


@pytest.fixture
async def served():
    receiver = NotificationReceiver(secret=SECRET, queue_size=4)
    got = []

    async def handler(note):
        got.append(note)

    receiver.add_handler(handler)
    runner = web.AppRunner(receiver.app("/notify"))
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]
    async with ClientSession() as http:
        yield receiver, got, http, f"http://127.0.0.1:{port}/notify"
    await runner.cleanup()


async def test_legacy_notifier(served):
    receiver, got, http, url = served
    async with http.post(url + "?subscriptionId=urn:ngsi-ld:Subscription:stadtlink:parking",
                         data=body(sub=None), headers=LEGACY_HEADERS) as r:
        assert r.status == 200
    assert await wait_until(lambda: got)
    note = got[0]
    assert note.subscription_id == "urn:ngsi-ld:Subscription:stadtlink:parking"
    assert note.attribute_format == "normalized"
    assert note.context == "https://example.org/ctx.jsonld"
    assert note.data[0]["status"]["value"] == "free"


async def test_native_notifier_and_jsonld(served):
    receiver, got, http, url = served
    async with http.post(url + "?subscriptionId=x", data=body(), headers=NATIVE_HEADERS) as r:
        assert r.status == 200
    ld = dict(NATIVE_HEADERS, **{"Content-Type": "application/ld+json"})
    async with http.post(url, data=body(nid="urn:ngsi-ld:Notification:2", **{"@context": ["https://c.example/ctx"]}),
                         headers=ld) as r:
        assert r.status == 200
    assert await wait_until(lambda: len(got) == 2)
    assert got[0].tenant == "town" and got[0].attribute_format == "Normalized"
    assert got[0].subscription_id == "urn:ngsi-ld:Subscription:stadtlink:parking", "the body's id wins over the query"
    assert got[1].context == ["https://c.example/ctx"]


async def test_wrong_or_missing_secret_is_401(served):
    receiver, got, http, url = served
    for headers in ({**NATIVE_HEADERS, "X-Stadtlink-Secret": "nope"},
                    {k: v for k, v in NATIVE_HEADERS.items() if k != "X-Stadtlink-Secret"}):
        async with http.post(url, data=body(), headers=headers) as r:
            assert r.status == 401
    assert receiver.counters["unauthorized"] == 2 and not got


@pytest.mark.parametrize("payload,ctype,status", [
    (b"{not json", "application/json", 400),
    (orjson.dumps({"id": "x", "type": "Entity", "data": []}), "application/json", 400),
    (orjson.dumps({"id": "x", "type": "Notification", "data": "nope", "subscriptionId": "s"}), "application/json", 400),
    (orjson.dumps({"id": "x", "type": "Notification", "data": []}), "application/json", 400),   # no subscription id
    (body(), "text/plain", 415),
])
async def test_bad_bodies(served, payload, ctype, status):
    receiver, got, http, url = served
    async with http.post(url, data=payload, headers={**NATIVE_HEADERS, "Content-Type": ctype}) as r:
        assert r.status == status
    await asyncio.sleep(0.05)
    assert not got


async def test_duplicate_notification_is_handled_once(served):
    receiver, got, http, url = served
    for _ in range(3):
        async with http.post(url, data=body(), headers=NATIVE_HEADERS) as r:
            assert r.status == 200
    await asyncio.sleep(0.1)
    assert len(got) == 1 and receiver.counters["duplicates"] == 2


async def test_slow_handler_does_not_delay_the_answer():
    receiver = NotificationReceiver(queue_size=100)
    release = asyncio.Event()
    handled = []

    async def slow(note):
        await release.wait()
        handled.append(note.id)

    receiver.add_handler(slow)
    runner = web.AppRunner(receiver.app())
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    url = f"http://127.0.0.1:{site._server.sockets[0].getsockname()[1]}/notify"
    try:
        async with ClientSession() as http:
            t0 = time.monotonic()
            for i in range(5):
                async with http.post(url, data=body(nid=f"n{i}"), headers={"Content-Type": "application/json"}) as r:
                    assert r.status == 200
            elapsed = time.monotonic() - t0
        assert not handled, "the handler is still blocked"
        assert elapsed < 2.0, f"answers waited for the handler ({elapsed:.2f}s)"
        release.set()
        assert await wait_until(lambda: len(handled) == 5)
    finally:
        release.set()
        await runner.cleanup()


async def test_full_queue_answers_503_so_the_broker_records_a_failure():
    receiver = NotificationReceiver(queue_size=1)   # workers never started: nothing drains
    runner = web.AppRunner(web.Application())
    app = runner.app
    app.router.add_post("/n", receiver.handle)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    url = f"http://127.0.0.1:{site._server.sockets[0].getsockname()[1]}/n"
    try:
        async with ClientSession() as http:
            statuses = []
            for i in range(3):
                async with http.post(url, data=body(nid=f"q{i}"), headers={"Content-Type": "application/json"}) as r:
                    statuses.append(r.status)
        assert statuses == [200, 503, 503]
        assert receiver.counters["queue_full"] == 2
    finally:
        await runner.cleanup()


async def test_mqtt_envelope_goes_through_the_same_handlers():
    receiver = NotificationReceiver(secret=SECRET)
    got = []
    receiver.add_handler(lambda n: _append(got, n))
    await receiver.start()
    try:
        env = {"metadata": {"Content-Type": "application/json", "Link": "<https://x/ctx>", "X-Stadtlink-Secret": SECRET},
               "body": orjson.loads(body(nid="m1"))}
        assert await receiver.handle_mqtt(orjson.dumps(env)) == "accepted"
        assert await receiver.handle_mqtt(orjson.dumps(env)) == "duplicate"
        assert await receiver.handle_mqtt(b'{"body": 3}') == "bad_request"
        wrong = dict(env, metadata={"X-Stadtlink-Secret": "no"})
        assert await receiver.handle_mqtt(orjson.dumps(wrong)) == "unauthorized"
        assert await wait_until(lambda: got)
        assert got[0].transport == "mqtt" and got[0].id == "m1"
    finally:
        await receiver.stop()


async def _append(lst, item):
    lst.append(item)

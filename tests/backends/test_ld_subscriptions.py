"""``stadtlink subscriptions apply`` against the Scorpio and Stellio stand-ins over real sockets:
create, idempotent re-apply, patch of a changed field, prune; and a notification in each broker's
own shape reaching the NotificationReceiver (which Stellio must see answer 200)."""

from __future__ import annotations

import asyncio
import copy
import subprocess
import sys
import time

import pytest
import yaml
from aiohttp import web

from stadtlink.broker_client.backends import make_backend
from stadtlink.broker_client.notify import NotificationReceiver
from stadtlink.broker_client.subscription_sync import ID_PREFIX, apply, desired_from_document

from .servers import ScorpioServer, StellioServer

CONTEXT = "https://smartdatamodels.org/context.jsonld"
PARKING_CONTEXT = "https://raw.githubusercontent.com/smart-data-models/dataModel.Parking/master/context.jsonld"
DOC = {
    "subscriptions": [
        {"name": "parking-changes", "entities": [{"type": "ParkingSpot"}], "watchedAttributes": ["status"],
         "notification": {"endpoint": {"uri": "http://127.0.0.1:9/notify"}, "attributes": ["status"]},
         "throttling": 5},
        {"name": "gauges", "entities": [{"type": "FloodMonitoring"}], "q": "currentLevel>2.0",
         "notification": {"endpoint": {"uri": "http://127.0.0.1:9/notify"}, "format": "keyValues"}},
    ]
}
KINDS = {"scorpio": (ScorpioServer, {"tenant": "town"}, "town"),
         "stellio": (StellioServer, {}, "urn:ngsi-ld:tenant:default")}


def spot(i: int, status: str) -> dict:
    return {"id": f"urn:ngsi-ld:ParkingSpot:town:{i}", "type": "ParkingSpot",
            "status": {"type": "Property", "value": status, "observedAt": "2026-11-29T10:00:00.000Z"},
            "name": {"type": "Property", "value": f"spot {i}"}}


@pytest.mark.parametrize("kind", sorted(KINDS))
async def test_apply_creates_is_idempotent_patches_and_prunes(kind):
    server_cls, options, tenant = KINDS[kind]
    async with server_cls() as server:
        backend = make_backend({"kind": kind, "url": server.url, "context": CONTEXT, **options})
        async with backend:
            foreign = await backend.create_subscription({
                "id": "urn:ngsi-ld:Subscription:by-hand", "type": "Subscription", "entities": [{"type": "X"}],
                "notification": {"endpoint": {"uri": "http://x/"}}})
            first = await apply(backend, desired_from_document(DOC))
            assert sorted(first.created) == [ID_PREFIX + "gauges", ID_PREFIX + "parking-changes"]
            stored = server.subscription_store(tenant)
            assert set(stored) == {foreign, ID_PREFIX + "gauges", ID_PREFIX + "parking-changes"}

            # re-apply: what the broker renders on GET compares equal to the file
            second = await apply(backend, desired_from_document(DOC))
            assert not second.changed, second.lines()
            assert sorted(second.unchanged) == [ID_PREFIX + "gauges", ID_PREFIX + "parking-changes"]

            changed = copy.deepcopy(DOC)
            changed["subscriptions"][0]["throttling"] = 10
            third = await apply(backend, desired_from_document(changed))
            assert third.patched == [ID_PREFIX + "parking-changes"] and not third.created
            assert stored[ID_PREFIX + "parking-changes"]["throttling"] == 10
            patches = [r for r in server.requests if r[0] == "PATCH"]
            assert len(patches) == 1 and patches[0][1].endswith("parking-changes")
            assert not (await apply(backend, desired_from_document(changed))).changed

            only_gauges = {"subscriptions": [DOC["subscriptions"][1]]}
            fourth = await apply(backend, desired_from_document(only_gauges), prune=True)
            assert fourth.deleted == [ID_PREFIX + "parking-changes"]
            assert set(stored) == {foreign, ID_PREFIX + "gauges"}      # never touches what it did not make


async def test_scorpio_answers_single_element_arrays_as_bare_values():
    """The quirk behind BrokerQuirks.subscription_scalar_lists: without it, every re-apply against
    Scorpio would patch a subscription with one notification attribute."""
    async with ScorpioServer() as server:
        backend = make_backend({"kind": "scorpio", "url": server.url, "context": CONTEXT})
        async with backend:
            await apply(backend, desired_from_document(DOC))
            got = await backend.get_subscription(ID_PREFIX + "parking-changes")
            assert got["notification"]["attributes"] == "status"        # compacted
            assert got["watchedAttributes"] == ["status"]                # FORCE_ARRAY_FIELDS
            assert got["entities"] == [{"type": "ParkingSpot"}]
            # a subscription on one registered type is made with that model's @context
            assert got["jsonldContext"] == PARKING_CONTEXT and got["timesSent"] == 0 and got["status"] == "active"
            assert backend.quirks.subscription_scalar_lists == ("notification.attributes", "notificationTrigger")
            # the same compare with the quirk switched off sees a difference (the test can fail)
            from stadtlink.broker_client.subscription_sync import _normalise

            want = desired_from_document(DOC)[0]
            assert _normalise(want) != _normalise(got)
            assert _normalise(want, backend.quirks.subscription_scalar_lists) == \
                _normalise(got, backend.quirks.subscription_scalar_lists)



@pytest.mark.parametrize("kind, absolute", [("scorpio", True), ("stellio", False)])
async def test_create_answers_201_with_the_brokers_location(kind, absolute):
    """Scorpio: RestResponse.created resolves the Location against the base URI; Stellio sends the
    path as given. The client takes the id from either."""
    from aiohttp import ClientSession

    server_cls, _, _ = KINDS[kind]
    body = {"id": "urn:ngsi-ld:Subscription:loc", "type": "Subscription", "entities": [{"type": "X"}],
            "notification": {"endpoint": {"uri": "http://x/"}}}
    async with server_cls() as server:
        async with ClientSession() as http:
            async with http.post(server.url + "/ngsi-ld/v1/subscriptions", json=body) as resp:
                assert resp.status == 201 and await resp.read() == b""
                location = resp.headers["Location"]
            async with http.post(server.url + "/ngsi-ld/v1/subscriptions", json=body) as resp:
                assert resp.status == 409
                assert (await resp.json())["type"].startswith("https://uri.etsi.org/ngsi-ld/errors/AlreadyExists")
            for method in ("GET", "PATCH", "DELETE"):
                async with http.request(method, server.url + "/ngsi-ld/v1/subscriptions/urn:ngsi-ld:Subscription:none",
                                        json={"throttling": 1} if method == "PATCH" else None) as resp:
                    assert resp.status == 404, method
        expected = "/ngsi-ld/v1/subscriptions/urn:ngsi-ld:Subscription:loc"
        assert location == (server.url + expected if absolute else expected)
        backend = make_backend({"kind": kind, "url": server.url})
        async with backend:
            body["id"] = "urn:ngsi-ld:Subscription:loc2"
            assert await backend.create_subscription(body) == "urn:ngsi-ld:Subscription:loc2"


async def test_stellio_renders_defaults_and_refuses_unknown_members():
    async with StellioServer() as server:
        backend = make_backend({"kind": "stellio", "url": server.url, "context": CONTEXT})
        async with backend:
            await apply(backend, desired_from_document(DOC))
            got = await backend.get_subscription(ID_PREFIX + "gauges")
            assert got["notificationTrigger"] == ["attributeCreated", "attributeUpdated"]
            assert got["notification"]["endpoint"]["accept"] == "application/json"
            assert got["status"] == "active" and "isActive" not in got and "createdAt" not in got
            from stadtlink.broker_client.errors import NGSILDError

            with pytest.raises(NGSILDError) as info:
                await backend.create_subscription({"id": "urn:ngsi-ld:Subscription:bad", "type": "Subscription",
                                                   "entities": [{"type": "X"}], "colour": "red",
                                                   "notification": {"endpoint": {"uri": "http://x/"}}})
            assert info.value.status == 400 and "colour" in str(info.value)


@pytest.mark.parametrize("kind", sorted(KINDS))
async def test_cli_apply_against_the_stand_in(kind, tmp_path):
    server_cls, options, _ = KINDS[kind]
    path = tmp_path / "subs.yaml"
    path.write_text(yaml.safe_dump(DOC), encoding="utf-8")
    async with server_cls() as server:
        cmd = [sys.executable, "-m", "stadtlink.broker_client.subscriptions", "apply", str(path), "--broker", server.url,
               "--kind", kind, "--context", CONTEXT]
        if options.get("tenant"):
            cmd += ["--tenant", options["tenant"]]
        for expected in ("created", "unchanged"):
            proc = await asyncio.create_subprocess_exec(*cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
            out, err = await proc.communicate()
            assert proc.returncode == 0, err.decode()
            assert out.decode().split().count(expected) == 2, out.decode()


@pytest.mark.parametrize("kind", sorted(KINDS))
async def test_a_notification_from_the_stand_in_reaches_the_receiver(kind):
    """An upsert of a watched attribute makes the stand-in POST its own notification shape to the
    subscriber; the receiver parses it and answers 200, which Stellio requires to count it delivered."""
    server_cls, options, tenant = KINDS[kind]
    receiver = NotificationReceiver()
    got = []

    async def handler(note):
        got.append(note)

    receiver.add_handler(handler)
    await receiver.start()
    runner = web.AppRunner(receiver.app("/notify"))
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]
    doc = copy.deepcopy(DOC)
    for sub in doc["subscriptions"]:
        sub["notification"]["endpoint"]["uri"] = f"http://127.0.0.1:{port}/notify"
    try:
        async with server_cls() as server:
            backend = make_backend({"kind": kind, "url": server.url, "context": CONTEXT, **options})
            async with backend:
                await apply(backend, desired_from_document(doc))
                result = await backend.write([spot(1, "occupied")])
                assert result.succeeded
                await server.wait_notifications()
                end = time.monotonic() + 5
                while not got and time.monotonic() < end:
                    await asyncio.sleep(0.01)
                [note] = got
                assert note.subscription_id == ID_PREFIX + "parking-changes"
                assert note.ngsi_version == "ld"
                assert note.data == [{"id": "urn:ngsi-ld:ParkingSpot:town:1", "type": "ParkingSpot",
                                      "status": spot(1, "occupied")["status"]}]     # only notification.attributes
                assert note.context == PARKING_CONTEXT     # the subscription's: its one type's model context
                if kind == "scorpio":
                    assert note.id.startswith("notification:") and note.tenant == "town"
                else:
                    assert note.id.startswith("urn:ngsi-ld:Notification:")
                assert server.notifications_sent == [(ID_PREFIX + "parking-changes", 200)]
                shown = await backend.get_subscription(ID_PREFIX + "parking-changes")
                if kind == "stellio":
                    assert shown["notification"]["status"] == "ok" and shown["notification"]["timesSent"] == 1
                else:
                    assert shown["timesSent"] == 1
                # an entity the subscription does not select, or an unwatched attribute: no notification
                await backend.write([{"id": "urn:ngsi-ld:Device:town:1", "type": "Device",
                                      "name": {"type": "Property", "value": "d"}}])
                await server.wait_notifications()
                assert len(server.notifications_sent) == 1
    finally:
        await runner.cleanup()
        await receiver.stop()


async def test_stellio_counts_a_204_as_a_failed_notification():
    """Why the receiver answers 200: a subscriber answering 204 is, for Stellio, a failure."""
    async def no_content(request):
        return web.Response(status=204)

    app = web.Application()
    app.router.add_post("/notify", no_content)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]
    doc = copy.deepcopy(DOC)
    doc["subscriptions"][0]["notification"]["endpoint"]["uri"] = f"http://127.0.0.1:{port}/notify"
    try:
        async with StellioServer() as server:
            backend = make_backend({"kind": "stellio", "url": server.url, "context": CONTEXT})
            async with backend:
                await apply(backend, desired_from_document(doc))
                await backend.write([spot(2, "free")])
                await server.wait_notifications()
                shown = await backend.get_subscription(ID_PREFIX + "parking-changes")
                assert server.notifications_sent == [(ID_PREFIX + "parking-changes", 204)]
                assert shown["notification"]["status"] == "failed"
    finally:
        await runner.cleanup()

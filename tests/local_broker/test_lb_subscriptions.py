"""Subscriptions CRUD and HTTP notifications delivered to a real receiver on 127.0.0.1."""

from __future__ import annotations

import asyncio
import json
import socket
import time

from .conftest import PARKING_CTX, PARKING_LINK, problem
from stadtlink.adapters.core.testing import wait_until

PLINK = {"Link": PARKING_LINK}


def subscription(uri: str, **extra) -> dict:
    body = {"type": "Subscription", "entities": [{"type": "ParkingSpot"}],
            "notification": {"endpoint": {"uri": uri}}}
    body.update(extra)
    return body


def spot(n: int, status: str = "free") -> dict:
    return {"id": f"urn:ngsi-ld:ParkingSpot:s:{n}", "type": "ParkingSpot",
            "status": {"type": "Property", "value": status, "observedAt": "2024-05-01T10:00:00Z"},
            "name": {"type": "Property", "value": f"S-{n}"}}


async def subscribe(http, broker, body, headers=PLINK) -> str:
    async with http.post(f"{broker}/subscriptions", json=body, headers=headers) as r:
        assert r.status == 201, await r.text()
        location = r.headers["Location"]
    assert location.startswith("/ngsi-ld/v1/subscriptions/")
    return location.rsplit("/", 1)[1]


async def get_sub(http, broker, sub_id, params=None, headers=PLINK):
    async with http.get(f"{broker}/subscriptions/{sub_id}", headers=headers, params=params) as r:
        return r.status, await r.json()


# ---------------------------------------------------------------------------------------------
# CRUD

async def test_subscription_crud(http, broker, receiver):
    sub_id = await subscribe(http, broker, subscription(receiver.url + "/notify", subscriptionName="spots",
                                                        watchedAttributes=["status"], q='status=="free"',
                                                        throttling=0.5, expiresAt="2099-01-01T00:00:00Z"))
    assert sub_id.startswith("urn:ngsi-ld:subscription:")
    status, body = await get_sub(http, broker, sub_id)
    assert status == 200
    assert body["id"] == sub_id and body["type"] == "Subscription"
    assert body["entities"] == [{"type": "ParkingSpot"}]
    assert body["watchedAttributes"] == ["status"]
    assert body["subscriptionName"] == "spots"
    # isActive is the client's member, shown when given; status is the broker's view
    assert "isActive" not in body and body["status"] == "active"
    assert body["expiresAt"] == "2099-01-01T00:00:00.000Z"
    assert body["throttling"] == 0.5
    assert body["notification"]["format"] == "normalized"
    assert body["notification"]["endpoint"] == {"uri": receiver.url + "/notify", "accept": "application/json"}
    assert "status" not in body["notification"]  # describes the last attempt: there was none
    assert body["jsonldContext"] == PARKING_CTX
    # read without the context: names come back expanded
    _, long_form = await get_sub(http, broker, sub_id, headers={})
    assert long_form["entities"][0]["type"] == "https://smartdatamodels.org/dataModel.Parking/ParkingSpot"
    _, sys = await get_sub(http, broker, sub_id, params={"options": "sysAttrs"})
    assert sys["createdAt"].endswith("Z") and sys["notification"]["timesSent"] == 0

    async with http.patch(f"{broker}/subscriptions/{sub_id}", json={"isActive": False, "throttling": 2},
                          headers=PLINK) as r:
        assert r.status == 204
    _, body = await get_sub(http, broker, sub_id)
    assert body["isActive"] is False and body["status"] == "paused" and body["throttling"] == 2
    async with http.patch(f"{broker}/subscriptions/{sub_id}", json={"id": "urn:x:y"}) as r:
        assert r.status == 400
        assert problem(await r.json())[1] == "The Subscription ID cannot be modified"
    async with http.patch(f"{broker}/subscriptions/{sub_id}", json={"throttling": "soon"}) as r:
        assert r.status == 400
    _, body = await get_sub(http, broker, sub_id)
    assert body["throttling"] == 2  # a rejected PATCH changes nothing

    async with http.get(f"{broker}/subscriptions", params={"count": "true", "limit": "5"}) as r:
        assert r.headers["NGSILD-Results-Count"] == "1"
        assert [s["id"] for s in await r.json()] == [sub_id]
    async with http.delete(f"{broker}/subscriptions/{sub_id}") as r:
        assert r.status == 204
    status, body = await get_sub(http, broker, sub_id)
    assert status == 404 and problem(body) == ("ResourceNotFound", "subscription not found")
    async with http.delete(f"{broker}/subscriptions/{sub_id}") as r:
        assert r.status == 404


async def test_subscription_list_paging(http, broker, receiver):
    made = [await subscribe(http, broker, subscription(receiver.url)) for _ in range(4)]
    async with http.get(f"{broker}/subscriptions", params={"limit": "2", "offset": "1"}) as r:
        assert [s["id"] for s in await r.json()] == made[1:3]


async def test_subscription_with_given_id_and_conflict(http, broker, receiver):
    body = subscription(receiver.url, id="urn:ngsi-ld:Subscription:mine")
    assert await subscribe(http, broker, body) == "urn:ngsi-ld:Subscription:mine"
    async with http.post(f"{broker}/subscriptions", json=body, headers=PLINK) as r:
        assert r.status == 409
        assert problem(await r.json()) == ("AlreadyExists", "A subscription with that ID already exists")


async def test_subscription_validation_errors(http, broker, receiver):
    good = subscription(receiver.url)
    bad_bodies = [
        {**good, "id": "not a uri"},
        {k: v for k, v in good.items() if k != "notification"},
        {"type": "Subscription", "notification": good["notification"]},
        {**good, "entities": []},
        {**good, "watchedAttributes": []},
        {**good, "type": "Other"},
        {**good, "q": "status=="},
        {**good, "throttling": -1},
        {**good, "expiresAt": "2001-01-01T00:00:00Z"},
        {**good, "notification": {"endpoint": {"uri": "no-uri"}}},
        {**good, "notification": {"endpoint": {"uri": "ftp://x/y"}}},
        {**good, "notification": {"endpoint": {"uri": receiver.url, "accept": "text/plain"}}},
        {**good, "notification": {"format": "fancy", "endpoint": {"uri": receiver.url}}},
        {**good, "notification": {"endpoint": {"uri": "mqtt://127.0.0.1:1883/t",
                                               "notifierInfo": [{"key": "MQTT-QoS", "value": "7"}]}}},
        {**good, "geoQ": {"georel": "near;maxDistance==10", "geometry": "Point"}},
        {**good, "timeInterval": 5, "watchedAttributes": ["status"]},
    ]
    for body in bad_bodies:
        async with http.post(f"{broker}/subscriptions", json=body, headers=PLINK) as r:
            assert r.status == 400, (body, await r.text())
            problem(await r.json())
    async with http.get(f"{broker}/subscriptions") as r:
        assert await r.json() == []


async def test_time_interval_and_mqtt_are_accepted_and_stored(http, broker, receiver):
    sub_id = await subscribe(http, broker, subscription(receiver.url, timeInterval=5))
    _, body = await get_sub(http, broker, sub_id)
    assert body["timeInterval"] == 5
    mqtt = subscription("mqtt://127.0.0.1:1883/stadtlink/test",
                        notification={"endpoint": {"uri": "mqtt://127.0.0.1:1883/stadtlink/test",
                                                   "notifierInfo": [{"key": "MQTT-Version", "value": "mqtt3.1.1"}]}})
    sub_id = await subscribe(http, broker, mqtt)
    _, body = await get_sub(http, broker, sub_id)
    assert body["notification"]["endpoint"]["notifierInfo"] == [{"key": "MQTT-Version", "value": "mqtt3.1.1"}]


async def test_subscription_tenant(http, broker, receiver):
    async with http.post(f"{broker}/subscriptions", json=subscription(receiver.url),
                         headers={**PLINK, "NGSILD-Tenant": "subs_t"}) as r:
        assert r.status == 201 and r.headers["NGSILD-Tenant"] == "subs_t"
    async with http.get(f"{broker}/subscriptions", headers={"NGSILD-Tenant": "subs_t"}) as r:
        assert len(await r.json()) == 1
    async with http.get(f"{broker}/subscriptions") as r:
        assert await r.json() == []
    async with http.get(f"{broker}/subscriptions", headers={"NGSILD-Tenant": "unknown_t"}) as r:
        assert r.status == 404


# ---------------------------------------------------------------------------------------------
# notifications

async def test_notification_shape_headers_and_query_param(http, broker, receiver):
    sub_id = await subscribe(http, broker, subscription(
        receiver.url + "/notify",
        notification={"endpoint": {"uri": receiver.url + "/notify",
                                   "receiverInfo": [{"key": "X-Api-Key", "value": "secret"}]}}))
    async with http.post(f"{broker}/entities", json=spot(1), headers={**PLINK, "X-Auth-Token": "tok"}) as r:
        assert r.status == 201
    got = await receiver.next()
    assert got.method == "POST" and got.path == "/notify"
    assert got.query_string == f"subscriptionId={sub_id}"
    assert got.headers["Content-Type"] == "application/json"
    assert got.headers["Link"] == PARKING_LINK
    assert got.headers["Ngsild-Attribute-Format"] == "Normalized"
    assert got.headers["X-Api-Key"] == "secret"
    assert got.headers["X-Auth-Token"] == "tok"
    assert "NGSILD-Tenant" not in got.headers
    body = got.body
    assert set(body) == {"id", "type", "subscriptionId", "notifiedAt", "data"}
    assert body["id"].startswith("urn:ngsi-ld:Notification:")
    assert body["type"] == "Notification" and body["subscriptionId"] == sub_id
    assert len(body["notifiedAt"]) == 24 and body["notifiedAt"].endswith("Z")
    assert body["data"] == [{"id": "urn:ngsi-ld:ParkingSpot:s:1", "type": "ParkingSpot",
                             "status": {"type": "Property", "value": "free", "observedAt": "2024-05-01T10:00:00.000Z"},
                             "name": {"type": "Property", "value": "S-1"}}]
    # no notification for entities of other types
    async with http.post(f"{broker}/entities", json={"id": "urn:ngsi-ld:Other:1", "type": "Other", "a": 1}) as r:
        assert r.status == 201
    assert await receiver.nothing(0.3)

    async def counters():
        _, s = await get_sub(http, broker, sub_id)
        n = s["notification"]
        return n.get("timesSent") == 1 and "lastSuccess" in n and s
    body = await wait_until(counters)
    assert body["notification"]["status"] == "ok"
    assert body["notification"]["lastNotification"].endswith("Z")


async def test_no_initial_notification_and_query_string_append(http, broker, receiver):
    await subscribe(http, broker, subscription(receiver.url + "/n?src=broker"))
    assert await receiver.nothing(0.3)
    async with http.post(f"{broker}/entityOperations/upsert", json=[spot(1)], headers=PLINK) as r:
        assert r.status == 201
    got = await receiver.next()
    assert got.path == "/n"
    assert got.query_string.startswith("src=broker&subscriptionId=urn:ngsi-ld:subscription:")


async def test_attributes_filter_and_keyvalues(http, broker, receiver):
    await subscribe(http, broker, subscription(receiver.url, notification={
        "attributes": ["status"], "format": "keyValues", "endpoint": {"uri": receiver.url}}))
    async with http.post(f"{broker}/entities", json=spot(1), headers=PLINK) as r:
        assert r.status == 201
    got = await receiver.next()
    assert got.headers["Ngsild-Attribute-Format"] == "Simplified"
    assert got.body["data"] == [{"id": "urn:ngsi-ld:ParkingSpot:s:1", "type": "ParkingSpot", "status": "free"}]


async def test_concise_and_ld_json_notifications(http, broker, receiver):
    await subscribe(http, broker, subscription(receiver.url, notification={
        "format": "concise", "endpoint": {"uri": receiver.url, "accept": "application/ld+json"}}))
    async with http.post(f"{broker}/entities", json=spot(1), headers=PLINK) as r:
        assert r.status == 201
    got = await receiver.next()
    assert got.headers["Content-Type"] == "application/ld+json"
    assert "Link" not in got.headers
    assert got.headers["Ngsild-Attribute-Format"] == "Concise"
    assert got.body["@context"] == PARKING_CTX
    assert got.body["data"][0]["name"] == "S-1"


async def test_watched_attributes_and_q(http, broker, receiver):
    await subscribe(http, broker, subscription(receiver.url, watchedAttributes=["status"], q='status=="occupied"'))
    async with http.post(f"{broker}/entities", json=spot(1), headers=PLINK) as r:
        assert r.status == 201
    assert await receiver.nothing(0.3)  # q does not match "free"
    url = f"{broker}/entities/urn:ngsi-ld:ParkingSpot:s:1/attrs"
    async with http.patch(url, json={"name": {"type": "Property", "value": "renamed"}}, headers=PLINK) as r:
        assert r.status == 204
    assert await receiver.nothing(0.3)  # name is not watched
    async with http.patch(url, json={"status": {"type": "Property", "value": "occupied"}}, headers=PLINK) as r:
        assert r.status == 204
    got = await receiver.next()
    assert got.body["data"][0]["status"]["value"] == "occupied"


async def test_entity_id_and_id_pattern_selection(http, broker, receiver):
    await subscribe(http, broker, subscription(receiver.url, entities=[
        {"id": "urn:ngsi-ld:ParkingSpot:s:2", "type": "ParkingSpot"},
        {"idPattern": ":s:3$", "type": "ParkingSpot"}]))
    async with http.post(f"{broker}/entityOperations/upsert", json=[spot(1), spot(2), spot(3)], headers=PLINK) as r:
        assert r.status == 201
    got = await receiver.next()
    assert sorted(e["id"] for e in got.body["data"]) == ["urn:ngsi-ld:ParkingSpot:s:2", "urn:ngsi-ld:ParkingSpot:s:3"]
    assert await receiver.nothing(0.3)


async def test_throttling_fractional_seconds(http, broker, receiver):
    sub_id = await subscribe(http, broker, subscription(receiver.url, throttling=1.5))
    url = f"{broker}/entityOperations/upsert"
    async with http.post(url, json=[spot(1, "free")], headers=PLINK) as r:
        assert r.status == 201
    sent = time.monotonic()
    first = await receiver.next()
    async with http.post(url, json=[spot(1, "occupied")], headers=PLINK) as r:
        assert r.status == 204
    assert await receiver.nothing(0.3)  # within the throttling window: dropped
    await asyncio.sleep(max(0.0, 1.6 - (time.monotonic() - sent)))
    async with http.post(url, json=[spot(1, "closed")], headers=PLINK) as r:
        assert r.status == 204
    second = await receiver.next()
    assert first.body["data"][0]["status"]["value"] == "free"
    assert second.body["data"][0]["status"]["value"] == "closed"
    _, body = await get_sub(http, broker, sub_id)
    assert body["notification"]["timesSent"] == 2


async def test_inactive_and_expired_subscriptions_do_not_notify(http, broker, receiver):
    sub_id = await subscribe(http, broker, subscription(receiver.url, isActive=False))
    async with http.post(f"{broker}/entities", json=spot(1), headers=PLINK) as r:
        assert r.status == 201
    assert await receiver.nothing(0.3)
    async with http.patch(f"{broker}/subscriptions/{sub_id}", json={"isActive": True}) as r:
        assert r.status == 204
    async with http.patch(f"{broker}/entities/urn:ngsi-ld:ParkingSpot:s:1/attrs", headers=PLINK,
                          json={"status": {"type": "Property", "value": "occupied"}}) as r:
        assert r.status == 204
    assert (await receiver.next()).body["subscriptionId"] == sub_id
    expires = time.time() + 1.0
    soon = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(expires)) + f".{int(expires % 1 * 1000):03d}Z"
    async with http.patch(f"{broker}/subscriptions/{sub_id}", json={"expiresAt": soon}) as r:
        assert r.status == 204
    await asyncio.sleep(1.2)
    _, body = await get_sub(http, broker, sub_id)
    assert body["status"] == "expired"
    async with http.patch(f"{broker}/entities/urn:ngsi-ld:ParkingSpot:s:1/attrs", headers=PLINK,
                          json={"status": {"type": "Property", "value": "free"}}) as r:
        assert r.status == 204
    assert await receiver.nothing(0.3)


async def test_failed_status_when_receiver_is_down(http, broker):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        dead_port = s.getsockname()[1]
    sub_id = await subscribe(http, broker, subscription(f"http://127.0.0.1:{dead_port}/notify"))
    started = time.monotonic()
    async with http.post(f"{broker}/entities", json=spot(1), headers=PLINK) as r:
        assert r.status == 201
    assert time.monotonic() - started < 2  # the writer does not wait for the receiver

    async def failed():
        _, body = await get_sub(http, broker, sub_id)
        return body["notification"].get("status") == "failed" and body
    body = await wait_until(failed)
    n = body["notification"]
    assert n["timesSent"] == 1 and n["timesFailed"] == 1
    assert n["lastFailure"].endswith("Z") and "lastSuccess" not in n


async def test_failed_status_on_receiver_error_then_ok(http, broker, receiver):
    receiver.status = 500
    sub_id = await subscribe(http, broker, subscription(receiver.url))
    async with http.post(f"{broker}/entities", json=spot(1), headers=PLINK) as r:
        assert r.status == 201
    await receiver.next()

    async def status_is(expected):
        _, body = await get_sub(http, broker, sub_id)
        return body["notification"].get("status") == expected and body
    await wait_until(lambda: status_is("failed"))
    receiver.status = 200
    async with http.patch(f"{broker}/entities/urn:ngsi-ld:ParkingSpot:s:1/attrs", headers=PLINK,
                          json={"status": {"type": "Property", "value": "occupied"}}) as r:
        assert r.status == 204
    await receiver.next()
    body = await wait_until(lambda: status_is("ok"))
    assert body["notification"]["timesSent"] == 2 and body["notification"]["timesFailed"] == 1


async def test_tenant_header_in_notifications(http, broker, receiver):
    t = {"NGSILD-Tenant": "notif_t"}
    await subscribe(http, broker, subscription(receiver.url), headers={**PLINK, **t})
    async with http.post(f"{broker}/entities", json=spot(1), headers={**PLINK, **t}) as r:
        assert r.status == 201
    got = await receiver.next()
    assert got.headers["NGSILD-Tenant"] == "notif_t"
    async with http.post(f"{broker}/entities", json=spot(2), headers=PLINK) as r:  # default tenant
        assert r.status == 201
    assert await receiver.nothing(0.3)


async def test_notification_from_merge_replace_and_delete_attr(http, broker, receiver):
    await subscribe(http, broker, subscription(receiver.url, watchedAttributes=["name"]))
    async with http.post(f"{broker}/entities", json=spot(1), headers=PLINK) as r:
        assert r.status == 201
    assert (await receiver.next()).body["data"][0]["name"]["value"] == "S-1"
    entity_url = f"{broker}/entities/urn:ngsi-ld:ParkingSpot:s:1"
    async with http.patch(entity_url, json={"name": "merged"}, headers=PLINK) as r:
        assert r.status == 204
    assert (await receiver.next()).body["data"][0]["name"]["value"] == "merged"
    async with http.put(entity_url, json={"type": "ParkingSpot", "name": "replaced"}, headers=PLINK) as r:
        assert r.status == 204
    assert (await receiver.next()).body["data"][0]["name"]["value"] == "replaced"
    # the default triggers (attributeCreated, attributeUpdated) leave deletions out
    _, sub = await get_sub(http, broker, (await subscribe(http, broker, subscription(receiver.url + "/x"))))
    assert sub["notificationTrigger"] == ["attributeCreated", "attributeUpdated"]
    async with http.delete(f"{entity_url}/attrs/name", headers=PLINK) as r:
        assert r.status == 204
    assert await receiver.nothing(0.3)
    await subscribe(http, broker, subscription(receiver.url, notificationTrigger=["entityUpdated"]))
    async with http.patch(entity_url, json={"status": "urn:ngsi-ld:null"}, headers=PLINK) as r:
        assert r.status == 204
    got = await receiver.next()
    assert "status" not in got.body["data"][0]  # entityUpdated: the entity as it is now


async def test_entity_deleted_trigger(http, broker, receiver):
    await subscribe(http, broker, subscription(receiver.url, notificationTrigger=["entityDeleted"]))
    async with http.post(f"{broker}/entities", json=spot(1), headers=PLINK) as r:
        assert r.status == 201
    assert await receiver.nothing(0.3)
    async with http.delete(f"{broker}/entities/urn:ngsi-ld:ParkingSpot:s:1") as r:
        assert r.status == 204
    got = await receiver.next()
    data = got.body["data"]
    assert len(data) == 1 and set(data[0]) == {"id", "type", "deletedAt"}
    assert data[0]["id"] == "urn:ngsi-ld:ParkingSpot:s:1" and data[0]["type"] == "ParkingSpot"
    assert data[0]["deletedAt"].endswith("Z")


async def test_attribute_deleted_trigger_notifies_ngsi_ld_null(http, broker, receiver):
    await subscribe(http, broker, subscription(receiver.url, notificationTrigger=["attributeDeleted"]))
    await subscribe(http, broker, subscription(receiver.url + "/kv", notificationTrigger=["attributeDeleted"],
                                               notification={"endpoint": {"uri": receiver.url + "/kv"},
                                                             "format": "keyValues", "sysAttrs": False}))
    entity = {**spot(1), "ref": {"type": "Relationship", "object": "urn:ngsi-ld:X:1"},
              "street": {"type": "LanguageProperty", "languageMap": {"fr": "Grand Place", "nl": "Grote Markt"}},
              "kind": {"type": "VocabProperty", "vocab": "big"},
              "doc": {"type": "JsonProperty", "json": {"a": 1}},
              "speed": [{"type": "Property", "value": 1}, {"type": "Property", "value": 2, "datasetId": "urn:ds:2"}]}
    url = f"{broker}/entities/urn:ngsi-ld:ParkingSpot:s:1"
    async with http.post(f"{broker}/entities", json=entity, headers=PLINK) as r:
        assert r.status == 201
    async with http.patch(f"{url}/attrs/status", json={"type": "Property", "value": "occupied"}, headers=PLINK) as r:
        assert r.status == 204
    assert await receiver.nothing(0.3)  # created / updated attributes do not count

    async def deletion(method, path, **kw):
        async with http.request(method, url + path, headers=PLINK, **kw) as r:
            assert r.status == 204, await r.text()
        got = {}
        for _ in range(2):
            n = await receiver.next()
            got[n.path] = n.body["data"][0]
        return got["/"], got["/kv"]

    normalized, kv = await deletion("DELETE", "/attrs/name")
    assert normalized["name"] == {"type": "Property", "value": "urn:ngsi-ld:null"} and kv["name"] == "urn:ngsi-ld:null"
    assert normalized["status"]["value"] == "occupied"  # the rest of the entity as usual
    normalized, _ = await deletion("PATCH", "", json={"ref": "urn:ngsi-ld:null"})  # merge-patch
    assert normalized["ref"] == {"type": "Relationship", "object": "urn:ngsi-ld:null"}
    normalized, _ = await deletion("PATCH", "/attrs", json={"street": {"type": "LanguageProperty",
                                                                       "languageMap": {"@none": "urn:ngsi-ld:null"}}})
    assert normalized["street"] == {"type": "LanguageProperty", "languageMap": {"@none": "urn:ngsi-ld:null"}}
    normalized, _ = await deletion("PATCH", "/attrs/kind", json={"type": "VocabProperty", "vocab": "urn:ngsi-ld:null"})
    assert normalized["kind"] == {"type": "VocabProperty", "vocab": "urn:ngsi-ld:null"}
    normalized, _ = await deletion("PATCH", "", json={"doc": {"type": "JsonProperty", "json": "urn:ngsi-ld:null"}})
    assert normalized["doc"] == {"type": "JsonProperty", "json": "urn:ngsi-ld:null"}
    # one instance of a multi-attribute: the others stay, the deleted one is null
    normalized, kv = await deletion("DELETE", "/attrs/speed", params={"datasetId": "urn:ds:2"})
    assert normalized["speed"] == [{"type": "Property", "value": 1},
                                   {"type": "Property", "value": "urn:ngsi-ld:null", "datasetId": "urn:ds:2"}]
    assert kv["speed"] == {"dataset": {"@none": 1, "urn:ds:2": "urn:ngsi-ld:null"}}
    async with http.get(url, headers=PLINK) as r:
        stored = await r.json()
    assert {"name", "ref", "street", "kind", "doc"}.isdisjoint(stored) and stored["speed"]["value"] == 1
    # every instance at once (deleteAll): one null
    async with http.post(f"{url}/attrs", headers=PLINK, json={"speed": {"type": "Property", "value": 3,
                                                                         "datasetId": "urn:ds:3"}}) as r:
        assert r.status == 204
    normalized, _ = await deletion("DELETE", "/attrs/speed", params={"deleteAll": "true"})
    assert normalized["speed"] == {"type": "Property", "value": "urn:ngsi-ld:null"}
    # the entity goes: with attributeDeleted (and no entityDeleted) its attributes are notified as null
    async with http.delete(url) as r:
        assert r.status == 204
    got = {}
    for _ in range(2):
        n = await receiver.next()
        got[n.path] = n.body["data"][0]
    assert got["/"]["deletedAt"].endswith("Z") and got["/"]["type"] == "ParkingSpot"
    assert got["/"]["status"] == {"type": "Property", "value": "urn:ngsi-ld:null"}
    assert got["/kv"]["status"] == "urn:ngsi-ld:null"


async def test_subscription_dataset_id_selects_instances(http, broker, receiver):
    sub_id = await subscribe(http, broker, subscription(receiver.url, datasetId=["urn:ds:fr"]))
    _, body = await get_sub(http, broker, sub_id)
    assert body["datasetId"] == ["urn:ds:fr"]
    entity = {**spot(1), "label": [{"type": "Property", "value": "default"},
                                   {"type": "Property", "value": "french", "datasetId": "urn:ds:fr"},
                                   {"type": "Property", "value": "german", "datasetId": "urn:ds:de"}]}
    async with http.post(f"{broker}/entities", json=entity, headers=PLINK) as r:
        assert r.status == 201
    data = (await receiver.next()).body["data"][0]
    assert data["label"] == {"type": "Property", "value": "french", "datasetId": "urn:ds:fr"}
    assert "name" not in data  # no instance with that datasetId
    async with http.post(f"{broker}/subscriptions", headers=PLINK,
                         json=subscription(receiver.url, datasetId=[])) as r:
        assert r.status == 400


async def test_receiver_info_copies_request_header(http, broker, receiver):
    await subscribe(http, broker, subscription(receiver.url, notification={"endpoint": {
        "uri": receiver.url, "receiverInfo": [{"key": "X-Correlation", "value": "urn:ngsi-ld:request"}]}}))
    async with http.post(f"{broker}/entities", json=spot(1), headers={**PLINK, "X-Correlation": "abc"}) as r:
        assert r.status == 201
    got = await receiver.next()
    assert got.headers["X-Correlation"] == "abc"
    assert json.loads(json.dumps(got.body))["data"][0]["id"] == "urn:ngsi-ld:ParkingSpot:s:1"


async def test_percent_encoded_q_ld_json_data_context_and_expires_patch(http, broker, receiver):
    sub_id = await subscribe(http, broker, subscription(receiver.url, q='name=="S%2D1"', notification={
        "endpoint": {"uri": receiver.url, "accept": "application/ld+json"}}))
    async with http.post(f"{broker}/entityOperations/upsert", json=[spot(1), spot(2)], headers=PLINK) as r:
        assert r.status == 201
    got = await receiver.next()
    assert [e["id"] for e in got.body["data"]] == ["urn:ngsi-ld:ParkingSpot:s:1"]
    assert got.body["data"][0]["@context"] == PARKING_CTX
    async with http.patch(f"{broker}/subscriptions/{sub_id}", json={"expiresAt": "2001-01-01T00:00:00Z"}) as r:
        assert r.status == 400
    async with http.get(f"{broker}/subscriptions/{sub_id}", headers={"Accept": "application/geo+json"}) as r:
        assert r.status == 406


async def test_subscription_list_pagination_links(http, broker, receiver):
    for _ in range(3):
        await subscribe(http, broker, subscription(receiver.url))
    async with http.get(f"{broker}/subscriptions", params={"limit": "1", "offset": "2"},
                        headers={"Accept": "application/ld+json"}) as r:
        assert r.headers["Link"] == '</ngsi-ld/v1/subscriptions?limit=1&offset=1>; rel="prev"; type="application/ld+json"'


async def test_time_interval_sends_periodically(http, broker, receiver):
    async with http.post(f"{broker}/entities", json=spot(1), headers=PLINK) as r:
        assert r.status == 201
    sub_id = await subscribe(http, broker, subscription(receiver.url, timeInterval=1, q='status=="free"'))
    first = await receiver.next(timeout=5)
    second = await receiver.next(timeout=5)
    for got in (first, second):
        assert got.body["subscriptionId"] == sub_id
        assert [e["id"] for e in got.body["data"]] == ["urn:ngsi-ld:ParkingSpot:s:1"]
    gap = (time.mktime(time.strptime(second.body["notifiedAt"][:19], "%Y-%m-%dT%H:%M:%S"))
           - time.mktime(time.strptime(first.body["notifiedAt"][:19], "%Y-%m-%dT%H:%M:%S")))
    assert 0 < gap <= 3
    # changes do not trigger a timeInterval subscription; entities no longer matching q are left out
    async with http.patch(f"{broker}/subscriptions/{sub_id}", json={"isActive": False}) as r:
        assert r.status == 204
    await asyncio.sleep(0.1)
    while not receiver.queue.empty():
        receiver.queue.get_nowait()
    assert await receiver.nothing(1.5)


async def test_json_ld_context_member_compacts_notifications(http, broker, receiver):
    # created without a Link (core context), notified with the Parking context named in jsonldContext
    sub = {"type": "Subscription", "entities": [{"type": "https://smartdatamodels.org/dataModel.Parking/ParkingSpot"}],
           "jsonldContext": PARKING_CTX, "notification": {"endpoint": {"uri": receiver.url}}}
    async with http.post(f"{broker}/subscriptions", json=sub) as r:
        assert r.status == 201
    async with http.post(f"{broker}/entities", json=spot(1), headers=PLINK) as r:
        assert r.status == 201
    got = await receiver.next()
    assert got.body["data"][0]["type"] == "ParkingSpot" and "name" in got.body["data"][0]
    assert got.headers["Link"] == PARKING_LINK
    sub["jsonldContext"] = "http://127.0.0.1:9/unknown.jsonld"
    async with http.post(f"{broker}/subscriptions", json=sub) as r:
        assert r.status == 503


async def test_notification_pick_and_omit(http, broker, receiver):
    sub_id = await subscribe(http, broker, subscription(
        receiver.url, notification={"endpoint": {"uri": receiver.url}, "pick": ["id", "name"]}))
    _, body = await get_sub(http, broker, sub_id)
    assert body["notification"]["pick"] == ["id", "name"]
    async with http.post(f"{broker}/entities", json=spot(1), headers=PLINK) as r:
        assert r.status == 201
    got = await receiver.next()
    assert got.body["data"] == [{"id": "urn:ngsi-ld:ParkingSpot:s:1", "name": {"type": "Property", "value": "S-1"}}]
    await subscribe(http, broker, subscription(
        receiver.url + "/omit", notification={"endpoint": {"uri": receiver.url + "/omit"}, "omit": ["type", "status"],
                                              "format": "keyValues"}))
    async with http.patch(f"{broker}/entities/urn:ngsi-ld:ParkingSpot:s:1/attrs/name", headers=PLINK,
                          json={"type": "Property", "value": "renamed"}) as r:
        assert r.status == 204
    by_path = {}
    for _ in range(2):
        n = await receiver.next()
        by_path[n.path] = n.body["data"]
    assert by_path["/omit"] == [{"id": "urn:ngsi-ld:ParkingSpot:s:1", "name": "renamed"}]
    assert by_path["/"] == [{"id": "urn:ngsi-ld:ParkingSpot:s:1", "name": {"type": "Property", "value": "renamed"}}]
    # invalid combinations (ETSI 028_08)
    for notification in ({"pick": ["id"], "omit": ["id"]}, {"pick": ["id"], "attributes": ["name"]},
                         {"omit": ["name"], "attributes": ["name"]}, {"pick": []}, {"pick": [3]}):
        async with http.post(f"{broker}/subscriptions", headers=PLINK, json=subscription(
                receiver.url, notification={"endpoint": {"uri": receiver.url}, **notification})) as r:
            assert r.status == 400, notification


async def test_subscription_scope_q(http, broker, receiver):
    await subscribe(http, broker, subscription(receiver.url, scopeQ="/Madrid/#"))
    async with http.post(f"{broker}/subscriptions", headers=PLINK,
                         json=subscription(receiver.url, scopeQ="Madrid")) as r:
        assert r.status == 400
    async with http.post(f"{broker}/entities", json={**spot(1), "scope": "/Berlin/Mitte"}, headers=PLINK) as r:
        assert r.status == 201
    assert await receiver.nothing(0.3)
    async with http.post(f"{broker}/entities", json={**spot(2), "scope": "/Madrid/Centro"}, headers=PLINK) as r:
        assert r.status == 201
    assert (await receiver.next()).body["data"][0]["id"] == "urn:ngsi-ld:ParkingSpot:s:2"

"""Twins against an NGSI-v2 broker: ``subscriptions apply`` makes v2 subscriptions from the same
file, and the notification receiver takes Orion's v2 notifications next to NGSI-LD ones."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time

import orjson
import pytest
import yaml
from aiohttp import ClientSession, web

from stadtlink.broker_client.backends import make_backend
from stadtlink.broker_client.notify import NotificationReceiver, parse_notification
from stadtlink.broker_client.subscription_sync import (
    SubscriptionFileError,
    apply_v2,
    desired_from_document,
    to_ngsi_v2_subscription,
)

from .servers import OrionV2Server

DOC = {
    "subscriptions": [
        {"name": "parking-changes", "entities": [{"type": "ParkingSpot"}], "watchedAttributes": ["status"],
         "notification": {"endpoint": {"uri": "http://127.0.0.1:9/notify"}, "attributes": ["status"]},
         "throttling": 5},
        {"name": "gauges", "entities": [{"type": "FloodMonitoring"}], "q": "currentLevel>2.0",
         "notification": {"endpoint": {"uri": "http://127.0.0.1:9/notify",
                                       "receiverInfo": [{"key": "X-Stadtlink-Secret", "value": "s"}]},
                          "format": "keyValues"}},
    ]
}


def test_translation_to_a_v2_subscription():
    parking, gauges = [to_ngsi_v2_subscription(b) for b in desired_from_document(DOC)]
    assert parking == {
        "description": "stadtlink:parking-changes",
        "subject": {"entities": [{"idPattern": ".*", "type": "ParkingSpot"}], "condition": {"attrs": ["status"]}},
        "notification": {"http": {"url": "http://127.0.0.1:9/notify"}, "attrs": ["status"], "attrsFormat": "normalized"},
        "throttling": 5,
        "status": "active",
    }
    assert gauges["subject"]["condition"] == {"expression": {"q": "currentLevel>2.0"}}
    assert gauges["notification"]["httpCustom"] == {"url": "http://127.0.0.1:9/notify",
                                                    "headers": {"X-Stadtlink-Secret": "s"}}
    assert gauges["notification"]["attrsFormat"] == "keyValues"


def test_format_without_v2_equivalent_is_a_file_error():
    doc = yaml.safe_load(yaml.safe_dump(DOC))
    doc["subscriptions"][0]["notification"]["format"] = "concise"
    with pytest.raises(SubscriptionFileError, match="no NGSI-v2 equivalent"):
        to_ngsi_v2_subscription(desired_from_document(doc)[0])


async def test_apply_v2_is_idempotent_patches_and_prunes_only_its_own():
    async with OrionV2Server() as orion:
        backend = make_backend({"kind": "ngsi-v2", "url": orion.url, "service": "town"})
        async with backend:
            foreign = await backend.create_subscription(
                {"description": "made by hand", "subject": {"entities": [{"idPattern": ".*"}]},
                 "notification": {"http": {"url": "http://x/"}}})
            first = await apply_v2(backend, desired_from_document(DOC))
            assert sorted(line.split(" ")[0] for line in first.created) == ["gauges", "parking-changes"]
            second = await apply_v2(backend, desired_from_document(DOC))
            assert not second.changed and len(second.unchanged) == 2
            changed = yaml.safe_load(yaml.safe_dump(DOC))
            changed["subscriptions"][0]["throttling"] = 10
            third = await apply_v2(backend, desired_from_document(changed))
            assert [line.split(" ")[0] for line in third.patched] == ["parking-changes"]
            parking = next(s for s in orion.subscriptions.values() if s.body["description"] == "stadtlink:parking-changes")
            assert parking.body["throttling"] == 10 and parking.service == "town"
            del changed["subscriptions"][0]["throttling"]
            fourth = await apply_v2(backend, desired_from_document(changed))
            assert [line.split(" ")[0] for line in fourth.recreated] == ["parking-changes"]
            only_gauges = {"subscriptions": [DOC["subscriptions"][1]]}
            fifth = await apply_v2(backend, desired_from_document(only_gauges), prune=True)
            assert [line.split(" ")[0] for line in fifth.deleted] == ["parking-changes"]
        descriptions = sorted(s.body["description"] for s in orion.subscriptions.values())
        assert descriptions == ["made by hand", "stadtlink:gauges"]
        assert foreign in orion.subscriptions


async def test_cli_apply_kind_ngsi_v2(tmp_path):
    path = tmp_path / "subs.yaml"
    path.write_text(yaml.safe_dump(DOC), encoding="utf-8")
    async with OrionV2Server() as orion:
        cmd = [sys.executable, "-m", "stadtlink.broker_client.subscriptions", "apply", str(path), "--broker", orion.url,
               "--kind", "ngsi-v2", "--service", "town", "--service-path", "/twins"]
        proc = await asyncio.create_subprocess_exec(*cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        out, err = await proc.communicate()
        assert proc.returncode == 0, err.decode()
        assert out.decode().count("created") == 2
        assert {s.service_path for s in orion.subscriptions.values()} == {"/twins"}
        bad = [sys.executable, "-m", "stadtlink.broker_client.subscriptions", "list", "--broker", orion.url,
               "--kind", "ngsi-v2", "--service", "not-valid!"]
        proc = await asyncio.create_subprocess_exec(*bad, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        _, err = await proc.communicate()
        assert proc.returncode == 2 and "service" in err.decode() and "Traceback" not in err.decode()


# -- notifications ----------------------------------------------------------------------------------

# As Orion sends it (fiware-orion test/functionalTest/cases/0000_subs_attrs_deletion/
# delete_attribute_in_condition.test): no id, no type, "metadata": {} on every attribute.
V2_NOTIFICATION = {
    "subscriptionId": "5f1d2c3b4a5e6f7a8b9c0d1e",
    "data": [{
        "id": "urn:ngsi-ld:ParkingSpot:town:1", "type": "ParkingSpot",
        "status": {"type": "Text", "value": "occupied",
                   "metadata": {"timestamp": {"type": "DateTime", "value": "2026-11-29T10:00:00.000Z"}}},
        "location": {"type": "geo:json", "value": {"type": "Point", "coordinates": [10.78, 52.42]}, "metadata": {}},
        "refParkingSite": {"type": "Text", "value": "urn:ngsi-ld:OffStreetParking:town:pr", "metadata": {}},
        "temperature": {"type": "Number", "value": 4.5, "metadata": {"unitCode": {"type": "Text", "value": "CEL"}}},
    }],
}
V2_HEADERS = {"Content-Type": "application/json; charset=utf-8", "Accept": "application/json",
              "User-Agent": "orion/4.2.0 libcurl/7.88", "Ngsiv2-Attrsformat": "normalized",
              "Fiware-Service": "town", "Fiware-Servicepath": "/", "Fiware-Correlator": "abc; cbnotif=1"}


def test_parse_v2_notification_converts_to_ngsi_ld():
    note = parse_notification(V2_NOTIFICATION, headers=V2_HEADERS)
    assert note.ngsi_version == "v2" and note.subscription_id == "5f1d2c3b4a5e6f7a8b9c0d1e"
    assert note.tenant == "town" and note.attribute_format == "normalized"
    [entity] = note.data
    assert entity["status"] == {"type": "Property", "value": "occupied", "observedAt": "2026-11-29T10:00:00.000Z"}
    assert entity["location"]["type"] == "GeoProperty"
    assert entity["refParkingSite"] == {"type": "Relationship", "object": "urn:ngsi-ld:OffStreetParking:town:pr"}
    assert entity["temperature"] == {"type": "Property", "value": 4.5, "unitCode": "CEL"}
    assert note.raw_data == V2_NOTIFICATION["data"]
    other = parse_notification(V2_NOTIFICATION, headers=V2_HEADERS)
    assert other.id != note.id          # no id in v2: never mistaken for a duplicate


def test_key_values_v2_notification_kept_as_is():
    doc = {"subscriptionId": "x1", "data": [{"id": "urn:ngsi-ld:ParkingSpot:town:1", "type": "ParkingSpot",
                                               "status": "free"}]}
    note = parse_notification(doc, headers={"Ngsiv2-AttrsFormat": "keyValues"})
    assert note.data == doc["data"] and note.attribute_format == "keyValues"


@pytest.mark.parametrize("doc", [
    {"subscriptionId": "x1", "data": "nope"},
    {"subscriptionId": "", "data": []},
    {"subscriptionId": "x1", "data": [{"type": "T"}]},
])
def test_bad_v2_notifications_are_refused(doc):
    from stadtlink.broker_client.notify import BadNotification

    with pytest.raises(BadNotification):
        parse_notification(doc)


async def test_receiver_takes_both_formats_over_http():
    receiver = NotificationReceiver(secret="s3cret")
    got = []

    async def handler(note):
        got.append(note)

    receiver.add_handler(handler)
    runner = web.AppRunner(receiver.app("/notify"))
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]
    ld = {"id": "urn:ngsi-ld:Notification:1", "type": "Notification", "subscriptionId": "urn:ngsi-ld:Subscription:x",
          "notifiedAt": "2026-11-29T10:00:00.000Z",
          "data": [{"id": "urn:ngsi-ld:ParkingSpot:town:2", "type": "ParkingSpot",
                    "status": {"type": "Property", "value": "free"}}]}
    try:
        async with ClientSession() as http:
            for doc, headers in ((V2_NOTIFICATION, V2_HEADERS), (ld, {"Content-Type": "application/json"})):
                async with http.post(f"http://127.0.0.1:{port}/notify", data=orjson.dumps(doc),
                                     headers={**headers, "X-Stadtlink-Secret": "s3cret"}) as resp:
                    assert resp.status == 200
        end = time.monotonic() + 2
        while len(got) < 2 and time.monotonic() < end:
            await asyncio.sleep(0.01)
    finally:
        await runner.cleanup()
    assert [n.ngsi_version for n in got] == ["v2", "ld"]
    assert got[0].data[0]["status"]["value"] == "occupied" and got[1].data[0]["status"]["value"] == "free"

"""The client against the project's local NGSI-LD broker over real sockets (both on 127.0.0.1)."""

from __future__ import annotations

import asyncio
import uuid

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from stadtlink.broker_client import (
    AlreadyExists,
    LdContextNotAvailable,
    NGSILDClient,
    NonExistingTenant,
    ResourceNotFound,
    RetryPolicy,
)

local_broker = pytest.importorskip("stadtlink.broker_client.local_broker")

PARKING = "https://raw.githubusercontent.com/smart-data-models/dataModel.Parking/master/context.jsonld"
FAST = RetryPolicy(attempts=2, base_delay=0.001, max_delay=0.01)


def spot(run: str, i: int, status: str = "free", observed: str = "2024-05-01T12:00:00.000Z") -> dict:
    return {
        "id": f"urn:ngsi-ld:ParkingSpot:{run}:{i:04d}",
        "type": "ParkingSpot",
        "status": {"type": "Property", "value": status, "observedAt": observed},
        "name": {"type": "Property", "value": f"Spot {i}"},
        "location": {"type": "GeoProperty", "value": {"type": "Point", "coordinates": [8.68 + i * 1e-4, 49.41]}},
        "refParkingSite": {"type": "Relationship", "object": f"urn:ngsi-ld:OffStreetParking:{run}:P1"},
    }


@pytest.fixture
def broker_url(local_broker):
    """The test kit's in-process local broker."""
    return local_broker


@pytest.fixture
async def client(broker_url):
    async with NGSILDClient(broker_url, context=PARKING, retry=FAST) as c:
        yield c


@pytest.fixture
def run() -> str:
    return uuid.uuid4().hex[:8]


async def test_create_get_roundtrip(client, run):
    entity = spot(run, 1)
    assert await client.create_entity(entity) == entity["id"]
    got = await client.get_entity(entity["id"])
    assert got["type"] == "ParkingSpot"
    assert got["status"]["value"] == "free" and got["status"]["observedAt"] == "2024-05-01T12:00:00.000Z"
    assert got["location"]["value"]["coordinates"] == [8.6801, 49.41]
    assert got["refParkingSite"]["object"] == f"urn:ngsi-ld:OffStreetParking:{run}:P1"
    kv = await client.get_entity(entity["id"], options="keyValues", attrs=["status"])
    assert kv["status"] == "free" and "name" not in kv
    with pytest.raises(AlreadyExists):
        await client.create_entity(entity)


async def test_upsert_many_chunks_then_query_and_count(client, run):
    entities = [spot(run, i) for i in range(450)]
    result = await client.upsert(entities)
    assert result.failed == [] and result.succeeded == [e["id"] for e in entities]
    assert await client.count_entities(type="ParkingSpot", id_pattern=f"urn:ngsi-ld:ParkingSpot:{run}:.*") == 450
    got = [e async for e in client.query_entities(type="ParkingSpot", id_pattern=f".*:{run}:.*",
                                                   options="keyValues", page_size=100)]
    assert [e["id"] for e in got] == [e["id"] for e in entities]
    assert got[7]["status"] == "free"
    some = [e async for e in client.query_entities(type="ParkingSpot", q='status=="free"', limit=120)]
    assert len(some) == 120


async def test_upsert_update_merges_and_replace_replaces(client, run):
    first = spot(run, 1)
    await client.upsert([first])
    changed = {"id": first["id"], "type": "ParkingSpot",
               "status": {"type": "Property", "value": "occupied", "observedAt": "2024-05-01T12:05:00.000Z"}}
    result = await client.upsert([changed, spot(run, 2)])  # one updated, one created
    assert result.succeeded == [first["id"], spot(run, 2)["id"]] and result.failed == []
    got = await client.get_entity(first["id"], options="keyValues")
    assert got["status"] == "occupied" and got["name"] == "Spot 1"  # update keeps other attributes
    await client.upsert([changed], mode="replace")
    got = await client.get_entity(first["id"], options="keyValues")
    assert got["status"] == "occupied" and "name" not in got


async def test_batch_errors_per_entity(client, run):
    existing, new = spot(run, 1), spot(run, 2)
    await client.create_entity(existing)
    created = await client.create_many([existing, new])
    assert created.succeeded == [new["id"]]
    assert created.failed[0].entity_id == existing["id"] and created.failed[0].problem.status == 409
    assert created.failed[0].retryable is False

    missing = spot(run, 3)
    updated = await client.update_many([dict(existing, name={"type": "Property", "value": "renamed"}), missing])
    assert updated.succeeded == [existing["id"]]
    assert updated.failed[0].entity_id == missing["id"] and updated.failed[0].problem.status == 404

    deleted = await client.delete_many([existing["id"], new["id"], missing["id"]])
    assert deleted.succeeded == [existing["id"], new["id"]] and deleted.failed_ids == [missing["id"]]
    with pytest.raises(ResourceNotFound):
        await client.get_entity(existing["id"])


async def test_attribute_operations(client, run):
    e = spot(run, 1)
    await client.create_entity(e)
    partial = await client.update_attributes(e["id"], {
        "status": {"type": "Property", "value": "occupied"},
        "unknownAttr": {"type": "Property", "value": 1},
    })
    assert partial.updated == ["status"] and [n.attribute for n in partial.not_updated] == ["unknownAttr"]
    appended = await client.append_attributes(e["id"], {"name": {"type": "Property", "value": "x"},
                                                        "width": {"type": "Property", "value": 2.5, "unitCode": "MTR"}},
                                              no_overwrite=True)
    assert appended.updated == ["width"] and [n.attribute for n in appended.not_updated] == ["name"]
    await client.merge_entity(e["id"], {"name": {"type": "Property", "value": "merged"}})
    await client.delete_attribute(e["id"], "width")
    got = await client.get_entity(e["id"], options="keyValues")
    assert got["name"] == "merged" and got["status"] == "occupied" and "width" not in got
    await client.replace_entity(e["id"], {"id": e["id"], "type": "ParkingSpot", "status": {"type": "Property", "value": "free"}})
    got = await client.get_entity(e["id"], options="keyValues")
    assert got == {"id": e["id"], "type": "ParkingSpot", "status": "free"}
    await client.delete_entity(e["id"])


async def test_subscription_roundtrip_with_notification(client, run):
    received: list[dict] = []
    got_one = asyncio.Event()

    async def notify(request: web.Request) -> web.Response:
        received.append(await request.json())
        got_one.set()
        return web.Response(status=204)

    app = web.Application()
    app.router.add_post("/notify", notify)
    receiver = TestServer(app, host="127.0.0.1", port=0)
    await receiver.start_server()
    try:
        sub_id = await client.create_subscription({
            "entities": [{"type": "ParkingSpot"}],
            "watchedAttributes": ["status"],
            "q": f'name=="Spot {run}"',
            "notification": {"endpoint": {"uri": str(receiver.make_url("/notify")), "accept": "application/json"},
                             "format": "keyValues", "attributes": ["status"]},
        })
        assert sub_id.startswith("urn:ngsi-ld:")
        sub = await client.get_subscription(sub_id)
        assert sub["id"] == sub_id and sub["status"] == "active"
        assert sub_id in [s["id"] async for s in client.list_subscriptions(page_size=2)]

        e = dict(spot(run, 1), name={"type": "Property", "value": f"Spot {run}"})
        await client.upsert([e])
        await asyncio.wait_for(got_one.wait(), 5)
        note = received[0]
        assert note["subscriptionId"] == sub_id
        assert note["data"] == [{"id": e["id"], "type": "ParkingSpot", "status": "free"}]

        await client.update_subscription(sub_id, {"isActive": False})
        assert (await client.get_subscription(sub_id))["status"] == "paused"
        await client.delete_subscription(sub_id)
        with pytest.raises(ResourceNotFound):
            await client.get_subscription(sub_id)
    finally:
        await receiver.close()


async def test_tenants(broker_url, run):
    tenant = f"town_{run}"
    async with NGSILDClient(broker_url, context=PARKING, tenant=tenant, retry=FAST) as town:
        with pytest.raises(NonExistingTenant):
            await town.get_entity(spot(run, 1)["id"])
        assert (await town.upsert([spot(run, 1)])).succeeded == [spot(run, 1)["id"]]
        assert (await town.get_entity(spot(run, 1)["id"]))["id"] == spot(run, 1)["id"]
    async with NGSILDClient(broker_url, context=PARKING, retry=FAST) as default:
        with pytest.raises(ResourceNotFound):
            await default.get_entity(spot(run, 1)["id"])


async def test_unknown_context_is_ld_context_not_available(broker_url, run):
    async with NGSILDClient(broker_url, context="https://example.invalid/ctx.jsonld", retry=FAST) as c:
        with pytest.raises(LdContextNotAvailable) as info:
            await c.get_entity(spot(run, 1)["id"])
    assert info.value.status == 503


async def test_413_from_local_broker_splits_batches(run):
    async with (
        local_broker.running_broker(max_body=20_000) as url,
        NGSILDClient(url, context=PARKING, retry=FAST, max_body_bytes=200_000) as c,
    ):
        entities = [spot(run, i) for i in range(150)]  # ~60 kB in one chunk
        result = await c.upsert(entities)
        assert result.failed == [] and len(result.succeeded) == 150
        assert await c.count_entities(type="ParkingSpot") == 150


async def test_health_and_backend_write(client, broker_url, run):
    assert await client.health() is True
    result = await client.write([spot(run, 1)])
    assert result.succeeded == [spot(run, 1)["id"]]

"""Batch splitting by entity count and by body bytes; oversize entities; 413 handling; local checks."""

from __future__ import annotations

from bc_fakes import CONTEXT, ERR, FAST_RETRY, Canned, Recorded, entity, ids

from stadtlink.broker_client import NGSILDClient


def entity_with_payload(entity_id: str, size: int) -> dict:
    return {"id": entity_id, "type": "ParkingSpot", "blob": {"type": "Property", "value": "x" * size}}


def echo_201(rec: Recorded) -> Canned:
    return Canned(201, [e["id"] for e in rec.json()])


async def test_chunks_respect_count_and_byte_limits(orion):
    orion.always("POST", "/entityOperations/upsert", echo_201)
    all_ids = ids("ParkingSpot", 300)
    entities = [entity_with_payload(i, 900) for i in all_ids]  # ~1 kB each
    async with NGSILDClient(orion.url, context=CONTEXT, retry=FAST_RETRY, max_body_bytes=50_000) as c:
        result = await c.upsert(entities)
    assert result.succeeded == all_ids and result.failed == []
    calls = orion.calls()
    assert all(len(c.body) <= 50_000 for c in calls)
    assert all(len(c.json()) <= 200 for c in calls)
    assert sum(len(c.json()) for c in calls) == 300
    assert len(calls) >= 300 * 950 // 50_000
    # order preserved across chunks
    assert [e["id"] for c in calls for e in c.json()] == all_ids


async def test_default_limits_200_entities_and_900k_bytes(orion, client):
    orion.always("POST", "/entityOperations/upsert", echo_201)
    small = [entity(i) for i in ids("ParkingSpot", 401)]
    result = await client.upsert(small)
    assert len(result.succeeded) == 401
    assert [len(c.json()) for c in orion.calls()] == [200, 200, 1]
    big = [entity_with_payload(i, 20_000) for i in ids("OffStreetParking", 100)]  # ~2 MB total
    orion.requests.clear()
    result = await client.upsert(big)
    assert len(result.succeeded) == 100
    assert all(len(c.body) <= 900_000 for c in orion.calls())
    assert len(orion.calls()) == 3


async def test_entity_larger_than_limit_is_a_per_entity_failure(orion):
    orion.always("POST", "/entityOperations/upsert", echo_201)
    small_id, huge_id = "urn:ngsi-ld:ParkingSpot:small", "urn:ngsi-ld:ParkingSpot:huge"
    async with NGSILDClient(orion.url, context=CONTEXT, retry=FAST_RETRY, max_body_bytes=10_000) as c:
        result = await c.upsert([entity(small_id), entity_with_payload(huge_id, 20_000)])
    assert result.succeeded == [small_id]
    assert result.failed[0].entity_id == huge_id
    assert result.failed[0].retryable is False and result.failed[0].problem.status == 413
    assert [e["id"] for e in orion.calls()[0].json()] == [small_id]


async def test_413_from_broker_splits_the_chunk(orion, client):
    def limit_4k(rec: Recorded) -> Canned:
        if len(rec.body) > 4_000:
            return Canned(413, {"type": ERR + "BadRequestData", "title": "Request Entity too large",
                                "detail": f"payload size: {len(rec.body)}, max size supported: 4000"})
        return echo_201(rec)

    orion.always("POST", "/entityOperations/upsert", limit_4k)
    all_ids = ids("ParkingSpot", 8)
    result = await client.upsert([entity_with_payload(i, 900) for i in all_ids] + [entity_with_payload("urn:ngsi-ld:X:big", 5000)])
    assert result.succeeded == all_ids
    assert [f.entity_id for f in result.failed] == ["urn:ngsi-ld:X:big"]
    assert result.failed[0].problem.status == 413 and not result.failed[0].retryable


async def test_invalid_items_fail_locally_and_are_not_sent(orion, client):
    orion.always("POST", "/entityOperations/upsert", echo_201)
    good = "urn:ngsi-ld:ParkingSpot:good"
    result = await client.upsert([
        entity(good),
        {"type": "ParkingSpot"},  # no id
        {"id": "spot-7", "type": "ParkingSpot"},  # not a URI
        "not an entity",
        {"id": "urn:ngsi-ld:ParkingSpot:set", "type": "ParkingSpot", "x": {"type": "Property", "value": {1, 2}}},
    ])
    assert result.succeeded == [good]
    failed = {f.entity_id: f for f in result.failed}
    assert set(failed) == {"<item 1>", "spot-7", "<item 3>", "urn:ngsi-ld:ParkingSpot:set"}
    assert all(not f.retryable for f in result.failed)
    assert "not a URI" in failed["spot-7"].problem.detail
    assert [e["id"] for e in orion.calls()[0].json()] == [good]


async def test_all_items_invalid_sends_nothing(orion, client):
    result = await client.upsert([{"id": "nope"}])
    assert result.succeeded == [] and len(result.failed) == 1
    assert orion.requests == []
    result = await client.upsert([])
    assert result.succeeded == [] and result.failed == []
    assert orion.requests == []


async def test_delete_many_chunks_ids(orion, client):
    orion.always("POST", "/entityOperations/delete", Canned(204))
    all_ids = ids("ParkingSpot", 250)
    result = await client.delete_many(all_ids + ["bad id"])
    assert result.succeeded == all_ids and result.failed_ids == ["bad id"]
    assert [len(c.json()) for c in orion.calls()] == [200, 50]

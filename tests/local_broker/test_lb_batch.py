"""Batch operations: status codes and body shapes of create / upsert / update / delete / merge."""

from __future__ import annotations

import asyncio

from .conftest import PARKING_CTX, PARKING_LINK

PLINK = {"Link": PARKING_LINK}


def spot(n: int, status: str = "free", **extra) -> dict:
    return {"id": f"urn:ngsi-ld:ParkingSpot:b:{n}", "type": "ParkingSpot",
            "status": {"type": "Property", "value": status}, **extra}


async def post(http, broker, op, body, headers=PLINK, params=None):
    async with http.post(f"{broker}/entityOperations/{op}", json=body, headers=headers, params=params) as r:
        raw = await r.read()
        return r.status, dict(r.headers), (await r.json(content_type=None) if raw else None)


async def kv(http, broker, entity_id):
    async with http.get(f"{broker}/entities/{entity_id}", headers=PLINK, params={"options": "keyValues"}) as r:
        return r.status, await r.json()


async def test_create_all_new_is_201_bare_id_array_without_link(http, broker):
    status, headers, body = await post(http, broker, "create", [spot(1), spot(2)])
    assert status == 201
    assert body == ["urn:ngsi-ld:ParkingSpot:b:1", "urn:ngsi-ld:ParkingSpot:b:2"]
    assert "Link" not in headers and "Location" not in headers
    assert headers["Content-Type"] == "application/json"


async def test_create_existing_is_207_with_already_exists_item(http, broker):
    await post(http, broker, "create", [spot(1)])
    status, _, body = await post(http, broker, "create", [spot(1), spot(3), {"type": "ParkingSpot"},
                                                          {"id": "bad", "type": "ParkingSpot"}])
    assert status == 207
    assert list(body) == ["success", "errors"]
    assert body["success"] == ["urn:ngsi-ld:ParkingSpot:b:3"]
    errors = {e["entityId"]: e["error"] for e in body["errors"]}
    assert errors["urn:ngsi-ld:ParkingSpot:b:1"] == {
        "type": "https://uri.etsi.org/ngsi-ld/errors/AlreadyExists", "title": "Entity already exists",
        "detail": "Cannot create an existing entity", "status": 409}
    assert errors["No Entity::id"]["status"] == 400
    assert errors["bad"]["status"] == 400
    assert list(errors["bad"]) == ["type", "title", "detail", "status"]


async def test_upsert_codes_201_204_and_created_only(http, broker):
    status, _, body = await post(http, broker, "upsert", [spot(1), spot(2)])
    assert (status, body) == (201, ["urn:ngsi-ld:ParkingSpot:b:1", "urn:ngsi-ld:ParkingSpot:b:2"])
    status, headers, body = await post(http, broker, "upsert", [spot(1, "occupied"), spot(2)])
    assert (status, body) == (204, None)
    status, _, body = await post(http, broker, "upsert", [spot(1), spot(3)])
    assert (status, body) == (201, ["urn:ngsi-ld:ParkingSpot:b:3"])
    assert (await kv(http, broker, "urn:ngsi-ld:ParkingSpot:b:1"))[1]["status"] == "free"


async def test_upsert_with_errors_is_207(http, broker):
    status, _, body = await post(http, broker, "upsert", [spot(1), {"id": "urn:ngsi-ld:X:1"},
                                                          spot(2, extra=None)])
    assert status == 207
    assert body["success"] == ["urn:ngsi-ld:ParkingSpot:b:1"]
    ids = [e["entityId"] for e in body["errors"]]
    assert ids == ["urn:ngsi-ld:X:1", "urn:ngsi-ld:ParkingSpot:b:2"]


async def test_upsert_replace_is_default_and_keeps_created_at(http, broker):
    await post(http, broker, "upsert", [spot(1, width={"type": "Property", "value": 2})])
    async with http.get(f"{broker}/entities/urn:ngsi-ld:ParkingSpot:b:1", headers=PLINK,
                        params={"options": "sysAttrs"}) as r:
        before = await r.json()
    await asyncio.sleep(0.01)
    status, _, _ = await post(http, broker, "upsert", [spot(1, "occupied")])
    assert status == 204
    async with http.get(f"{broker}/entities/urn:ngsi-ld:ParkingSpot:b:1", headers=PLINK,
                        params={"options": "sysAttrs"}) as r:
        after = await r.json()
    assert "width" not in after
    assert after["createdAt"] == before["createdAt"]
    assert after["modifiedAt"] > before["modifiedAt"]


async def test_upsert_update_merges_attributes(http, broker):
    await post(http, broker, "upsert", [spot(1, width={"type": "Property", "value": 2})])
    status, _, _ = await post(http, broker, "upsert", [spot(1, "occupied")], params={"options": "update"})
    assert status == 204
    _, entity = await kv(http, broker, "urn:ngsi-ld:ParkingSpot:b:1")
    assert entity["status"] == "occupied" and entity["width"] == 2


async def test_upsert_duplicate_ids_in_one_batch(http, broker):
    dup = [spot(1, "free", width={"type": "Property", "value": 1}), spot(1, "occupied")]
    status, _, body = await post(http, broker, "upsert", dup)
    assert (status, body) == (201, ["urn:ngsi-ld:ParkingSpot:b:1"])
    _, entity = await kv(http, broker, "urn:ngsi-ld:ParkingSpot:b:1")
    assert entity["status"] == "occupied" and "width" not in entity  # replace: last wins
    dup = [spot(2, "free", width={"type": "Property", "value": 1}), spot(2, "occupied")]
    status, _, body = await post(http, broker, "upsert", dup, params={"options": "update"})
    assert (status, body) == (201, ["urn:ngsi-ld:ParkingSpot:b:2"])
    _, entity = await kv(http, broker, "urn:ngsi-ld:ParkingSpot:b:2")
    assert entity["status"] == "occupied" and entity["width"] == 1  # update: merged


async def test_upsert_options_update_and_replace_together_is_400(http, broker):
    async with http.post(f"{broker}/entityOperations/upsert?options=update&options=replace",
                         json=[spot(1)], headers=PLINK) as r:
        assert r.status == 400
        assert (await r.json())["title"] == "URI Param Error"


async def test_batch_update(http, broker):
    await post(http, broker, "create", [spot(1), spot(2)])
    status, _, body = await post(http, broker, "update", [spot(1, "occupied"), spot(2, "occupied")])
    assert (status, body) == (204, None)
    status, _, body = await post(http, broker, "update", [spot(1, "free"), spot(9)])
    assert status == 207
    assert body["success"] == ["urn:ngsi-ld:ParkingSpot:b:1"]
    assert body["errors"] == [{"entityId": "urn:ngsi-ld:ParkingSpot:b:9", "error": {
        "type": "https://uri.etsi.org/ngsi-ld/errors/ResourceNotFound", "title": "Entity not found",
        "detail": "urn:ngsi-ld:ParkingSpot:b:9", "status": 404}}]
    # noOverwrite: new attributes are added, existing ones kept, and the entity is reported (207)
    status, _, body = await post(http, broker, "update", [spot(2, "free", width={"type": "Property", "value": 3})],
                                 params={"options": "noOverwrite"})
    assert status == 207
    assert body["success"] == []
    assert body["errors"][0]["entityId"] == "urn:ngsi-ld:ParkingSpot:b:2"
    assert body["errors"][0]["error"]["detail"] == "status"
    _, entity = await kv(http, broker, "urn:ngsi-ld:ParkingSpot:b:2")
    assert entity["status"] == "occupied" and entity["width"] == 3
    status, _, _ = await post(http, broker, "update", [{"id": "urn:ngsi-ld:ParkingSpot:b:2", "type": "ParkingSpot",
                                                        "height": 1.9}], params={"options": "noOverwrite"})
    assert status == 204


async def test_batch_delete(http, broker):
    await post(http, broker, "create", [spot(1), spot(2)])
    status, _, body = await post(http, broker, "delete", ["urn:ngsi-ld:ParkingSpot:b:1"])
    assert (status, body) == (204, None)
    assert (await kv(http, broker, "urn:ngsi-ld:ParkingSpot:b:1"))[0] == 404
    status, _, body = await post(http, broker, "delete", ["urn:ngsi-ld:ParkingSpot:b:1"])
    assert status == 207
    assert body["success"] == [] and body["errors"][0]["error"]["status"] == 404


async def test_batch_merge(http, broker):
    await post(http, broker, "create", [spot(1, width={"type": "Property", "value": 2})])
    status, _, _ = await post(http, broker, "merge", [{"id": "urn:ngsi-ld:ParkingSpot:b:1",
                                                       "status": "occupied", "width": "urn:ngsi-ld:null"}])
    assert status == 204
    _, entity = await kv(http, broker, "urn:ngsi-ld:ParkingSpot:b:1")
    assert entity["status"] == "occupied" and "width" not in entity
    # a JSON null value is no NGSI-LD Null: BadRequestData for that entity (ETSI 057_03_02)
    status, _, body = await post(http, broker, "merge", [
        {"id": "urn:ngsi-ld:ParkingSpot:b:1", "status": {"type": "Property", "value": None}},
        {"id": "urn:ngsi-ld:ParkingSpot:b:9", "status": {"type": "Property", "value": None}}])
    assert status == 207 and body["success"] == []
    assert [e["error"]["type"].rsplit("/", 1)[1] for e in body["errors"]] == ["BadRequestData"] * 2
    _, entity = await kv(http, broker, "urn:ngsi-ld:ParkingSpot:b:1")
    assert entity["status"] == "occupied"


async def test_batch_context_rules_are_per_item(http, broker):
    # json + @context in an item → per-entity error, not a 400 for the request
    status, _, body = await post(http, broker, "upsert",
                                 [spot(1), {**spot(2), "@context": PARKING_CTX}], headers={})
    assert status == 207
    assert [e["entityId"] for e in body["errors"]] == ["urn:ngsi-ld:ParkingSpot:b:2"]
    # ld+json: each item carries its own @context
    async with http.post(f"{broker}/entityOperations/upsert", headers={"Content-Type": "application/ld+json"},
                         json=[{**spot(3), "@context": PARKING_CTX}, spot(4)]) as r:
        assert r.status == 207
        body = await r.json()
    assert body["success"] == ["urn:ngsi-ld:ParkingSpot:b:3"]
    assert body["errors"][0]["entityId"] == "urn:ngsi-ld:ParkingSpot:b:4"
    assert (await kv(http, broker, "urn:ngsi-ld:ParkingSpot:b:3"))[1]["type"] == "ParkingSpot"


async def test_batch_body_must_be_an_array(http, broker):
    status, _, body = await post(http, broker, "upsert", {"id": "urn:ngsi-ld:X:1", "type": "X"})
    assert status == 400 and body["title"] == "Invalid Payload Body"
    status, _, body = await post(http, broker, "upsert", [])
    assert status == 400 and body["detail"] == "Empty Array"
    status, _, body = await post(http, broker, "create", [spot(1)], params={"options": "update"})
    assert status == 400 and body["title"] == "Unsupported URI parameter"


async def test_batch_upsert_of_200_entities(http, broker):
    batch = [spot(i, width={"type": "Property", "value": i, "unitCode": "MTR",
                            "observedAt": "2024-05-01T10:00:00Z"}) for i in range(200)]
    status, _, body = await post(http, broker, "upsert", batch, params={"options": "update"})
    assert status == 201 and len(body) == 200
    status, _, body = await post(http, broker, "upsert", batch, params={"options": "update"})
    assert status == 204
    async with http.get(f"{broker}/entities", params={"type": "ParkingSpot", "count": "true", "limit": "0"},
                        headers=PLINK) as r:
        assert r.headers["NGSILD-Results-Count"] == "200"
        assert await r.json() == []

"""Paged queries with count, POST query, and subscription CRUD against canned Orion-LD answers."""

from __future__ import annotations

import pytest
from bc_fakes import ERR, Canned, Recorded

from stadtlink.broker_client import BadRequestData, InvalidResponse, ResourceNotFound

TOTAL = 2345
ALL = [{"id": f"urn:ngsi-ld:ParkingSpot:{i:05d}", "type": "ParkingSpot", "status": "free"} for i in range(TOTAL)]


def paging_broker(rec: Recorded) -> Canned:
    """Orion-LD paging rules: limit 1..1000 (0 only with count), offset >= 0, count header."""
    limit = int(rec.q("limit") or 20)
    offset = int(rec.q("offset") or 0)
    if limit > 1000:
        return Canned(400, {"type": ERR + "BadRequestData", "title": "Invalid value for URI parameter /limit/",
                            "detail": "must be an integer value <= 1000"})
    if limit == 0 and rec.q("count") != "true":
        return Canned(400, {"type": ERR + "BadRequestData", "title": "Bad value for URI parameter /limit/", "detail": "0"})
    page = ALL[offset: offset + limit]
    headers = {"NGSILD-Results-Count": str(TOTAL)} if rec.q("count") == "true" else {}
    return Canned(200, page, headers)


async def test_iterates_over_every_page(orion, client):
    orion.always("GET", "/entities", paging_broker)
    got = [e async for e in client.query_entities(type="ParkingSpot", options="keyValues")]
    assert got == ALL
    calls = orion.calls("GET", "/entities")
    assert [(c.q("limit"), c.q("offset")) for c in calls] == [("1000", "0"), ("1000", "1000"), ("1000", "2000")]
    assert all(c.q("type") == "ParkingSpot" and c.q("options") == "keyValues" for c in calls)


async def test_limit_caps_total_and_page_size(orion, client):
    orion.always("GET", "/entities", paging_broker)
    got = [e async for e in client.query_entities(type="ParkingSpot", limit=250, page_size=100)]
    assert got == ALL[:250]
    assert [(c.q("limit"), c.q("offset")) for c in orion.calls()] == [("100", "0"), ("100", "100"), ("50", "200")]
    with pytest.raises(ValueError):
        [e async for e in client.query_entities(type="ParkingSpot", page_size=1001)]


async def test_exact_multiple_of_page_size_ends_with_empty_page(orion, client):
    orion.always("GET", "/entities", lambda rec: Canned(200, ALL[:2000][int(rec.q("offset")): int(rec.q("offset")) + int(rec.q("limit"))]))
    got = [e async for e in client.query_entities(type="ParkingSpot")]
    assert len(got) == 2000 and len(orion.calls()) == 3


async def test_count_entities_uses_count_header_and_limit_zero(orion, client):
    orion.always("GET", "/entities", paging_broker)
    assert await client.count_entities(type="ParkingSpot", q='status=="free"') == TOTAL
    sent = orion.calls()[0]
    assert (sent.q("count"), sent.q("limit"), sent.q("q")) == ("true", "0", 'status=="free"')


async def test_count_without_header_is_invalid_response(orion, client):
    orion.on("GET", "/entities", Canned(200, []))
    with pytest.raises(InvalidResponse):
        await client.count_entities(type="T")


async def test_query_parameters_lists_and_geo(orion, client):
    orion.on("GET", "/entities", Canned(200, []))
    got = [e async for e in client.query_entities(
        type=["ParkingSpot", "OffStreetParking"], id=["urn:a:1", "urn:a:2"], attrs=["status"],
        id_pattern="urn:ngsi-ld:ParkingSpot:.*", georel="near;maxDistance==2000", geometry="Point",
        coordinates=[8.68, 49.41], geoproperty="location")]
    assert got == []
    sent = orion.calls()[0]
    assert sent.q("type") == "ParkingSpot,OffStreetParking" and sent.q("id") == "urn:a:1,urn:a:2"
    assert sent.q("idPattern") == "urn:ngsi-ld:ParkingSpot:.*"
    assert sent.q("georel") == "near;maxDistance==2000" and sent.q("coordinates") == "[8.68,49.41]"
    assert sent.q("geometry") == "Point" and sent.q("geoproperty") == "location"


async def test_too_broad_query_400(orion, client):
    orion.on("GET", "/entities", Canned(400, {"type": ERR + "BadRequestData", "title": "Too broad query",
                                              "detail": "Need at least one of: entity-id, entity-type, geo-location, attribute-list, Q-filter, local=true"}))
    with pytest.raises(BadRequestData):
        [e async for e in client.query_entities()]


async def test_non_array_page_is_invalid_response(orion, client):
    orion.on("GET", "/entities", Canned(200, {"id": "x"}))
    with pytest.raises(InvalidResponse):
        [e async for e in client.query_entities(type="T")]


async def test_post_query_paged_and_counted(orion, client):
    def post_query(rec: Recorded) -> Canned:
        body = rec.json()
        assert body["type"] == "Query" and body["entities"] == [{"type": "ParkingSpot"}]
        return paging_broker(rec)

    orion.always("POST", "/entityOperations/query", post_query)
    got = [e async for e in client.query_entities_post({"entities": [{"type": "ParkingSpot"}]}, limit=1500)]
    assert got == ALL[:1500]
    assert await client.count_entities_post({"entities": [{"type": "ParkingSpot"}]}) == TOTAL
    assert [(c.q("limit"), c.q("offset")) for c in orion.calls()] == [("1000", "0"), ("500", "1000"), ("0", None)]


SUB = {
    "entities": [{"type": "ParkingSpot"}],
    "watchedAttributes": ["status"],
    "notification": {"endpoint": {"uri": "http://127.0.0.1:9999/notify", "accept": "application/json"}, "format": "normalized"},
}


@pytest.mark.parametrize("sub_id", ["urn:ngsi-ld:Subscription:5c1b2a9e-7c55-11ee-9e48-0242ac120003",  # legacy
                                    "urn:ngsi-ld:subscription:5c1b2a9e-7c55-11ee-9e48-0242ac120003"])  # experimental
async def test_subscription_crud(orion, client, sub_id):
    orion.on("POST", "/subscriptions", Canned(201, None, {"Location": f"/ngsi-ld/v1/subscriptions/{sub_id}"}))
    orion.on("GET", f"/subscriptions/{sub_id}", Canned(200, dict(SUB, id=sub_id, type="Subscription", isActive=True, status="active")))
    orion.on("PATCH", f"/subscriptions/{sub_id}", Canned(204))
    orion.on("DELETE", f"/subscriptions/{sub_id}", Canned(204),
             Canned(404, {"type": ERR + "ResourceNotFound", "title": "Subscription not found", "detail": sub_id}))

    assert await client.create_subscription(SUB) == sub_id
    assert orion.calls()[0].json()["type"] == "Subscription"
    assert (await client.get_subscription(sub_id))["status"] == "active"
    await client.update_subscription(sub_id, {"isActive": False})
    assert orion.calls()[2].json() == {"isActive": False}
    await client.delete_subscription(sub_id)
    with pytest.raises(ResourceNotFound):
        await client.delete_subscription(sub_id)


async def test_subscription_create_without_location_uses_given_id(orion, client):
    orion.on("POST", "/subscriptions", Canned(201), Canned(201))
    assert await client.create_subscription(dict(SUB, id="urn:ngsi-ld:Subscription:mine")) == "urn:ngsi-ld:Subscription:mine"
    with pytest.raises(InvalidResponse):
        await client.create_subscription(SUB)


async def test_list_subscriptions_paged(orion, client):
    subs = [dict(SUB, id=f"urn:ngsi-ld:Subscription:{i}", type="Subscription") for i in range(7)]
    orion.always("GET", "/subscriptions", lambda rec: Canned(200, subs[int(rec.q("offset")): int(rec.q("offset")) + int(rec.q("limit"))]))
    got = [s async for s in client.list_subscriptions(page_size=3)]
    assert [s["id"] for s in got] == [s["id"] for s in subs]
    assert [c.q("offset") for c in orion.calls()] == ["0", "3", "6"]

"""Entity CRUD and attribute operations against canned Orion-LD answers (both modes)."""

from __future__ import annotations

import pytest
from bc_fakes import CONTEXT, ERR, FAST_RETRY, LINK, Canned, FakeOrion, entity

from stadtlink.broker_client import (
    AlreadyExists,
    BadRequestData,
    BrokerUnavailable,
    Entity,
    NGSILDClient,
    OperationNotSupported,
    ResourceNotFound,
)

E1 = "urn:ngsi-ld:ParkingSpot:town:E1"


async def test_create_entity_201_location_and_headers(orion, client):
    orion.on("POST", "/entities", Canned(201, None, {"Location": f"/ngsi-ld/v1/entities/{E1}"}))
    assert await client.create_entity(entity(E1)) == E1
    sent = orion.calls("POST", "/entities")[0]
    assert sent.headers["Content-Type"] == "application/json"
    assert sent.headers["Link"] == LINK
    assert int(sent.headers["Content-Length"]) == len(sent.body)
    assert "Transfer-Encoding" not in sent.headers
    assert sent.json()["id"] == E1


async def test_create_entity_accepts_model(orion, client):
    orion.on("POST", "/entities", Canned(201, None, {"Location": f"/ngsi-ld/v1/entities/{E1}"}))
    model = Entity.model_validate(entity(E1))
    assert await client.create_entity(model) == E1
    assert orion.calls()[0].json() == entity(E1)


async def test_create_existing_409_and_not_retried(orion, client):
    orion.on("POST", "/entities", Canned(409, {"type": ERR + "AlreadyExists", "title": "Entity already exists", "detail": E1}))
    with pytest.raises(AlreadyExists) as info:
        await client.create_entity(entity(E1))
    assert (info.value.status, info.value.detail) == (409, E1)


async def test_create_not_retried_on_503(orion, client):
    orion.always("POST", "/entities", Canned(503))
    with pytest.raises(BrokerUnavailable) as info:
        await client.create_entity(entity(E1))
    assert info.value.status == 503
    assert len(orion.calls("POST", "/entities")) == 1


async def test_get_entity_path_unencoded_with_attrs_and_options(orion, client):
    orion.on("GET", f"/entities/{E1}", Canned(200, {"id": E1, "type": "ParkingSpot", "status": "free"}))
    got = await client.get_entity(E1, attrs=["status", "name"], options="keyValues")
    assert got["status"] == "free"
    sent = orion.calls()[0]
    assert sent.raw_path == f"/ngsi-ld/v1/entities/{E1}"
    assert sent.q("attrs") == "status,name" and sent.q("options") == "keyValues"
    assert sent.body == b""


async def test_get_entity_http_uri_id_goes_raw_into_path(orion, client):
    eid = "http://a.b.c/entity/E1"
    orion.on("GET", f"/entities/{eid}", Canned(200, {"id": eid, "type": "T"}))
    assert (await client.get_entity(eid))["id"] == eid


async def test_get_missing_entity_404(orion, client):
    orion.on("GET", f"/entities/{E1}", Canned(404, {"type": ERR + "ResourceNotFound", "title": "Entity Not Found", "detail": E1}))
    with pytest.raises(ResourceNotFound):
        await client.get_entity(E1)


async def test_update_attributes_204_and_207_both_modes(orion, client):
    legacy = b'{"updated":["location"],"notUpdated":[{"attributeName":"A3","reason":"attribute doesn\'t exist: https://uri.etsi.org/ngsi-ld/default-context/A3"}]}'
    experimental = b'{"updated":["location"],"notUpdated":[{"attributes":["A3"],"statusCode":404,"title":"Attribute Not Found"}]}'
    path = f"/entities/{E1}/attrs"
    orion.on("PATCH", path, Canned(204), Canned(207, legacy, {"Link": LINK}), Canned(207, experimental, {"Link": LINK}))
    attrs = {"location": {"type": "GeoProperty", "value": {"type": "Point", "coordinates": [8.6, 49.4]}},
             "A3": {"type": "Property", "value": 3}}

    full = await client.update_attributes(E1, attrs)
    assert full.ok and full.updated == ["location", "A3"]

    result = await client.update_attributes(E1, attrs)
    assert result.updated == ["location"]
    assert [(n.attribute, n.status) for n in result.not_updated] == [("A3", None)]
    assert result.not_updated[0].reason.startswith("attribute doesn't exist")

    result = await client.update_attributes(E1, attrs)
    assert result.updated == ["location"]
    assert [(n.attribute, n.status, n.reason) for n in result.not_updated] == [("A3", 404, "Attribute Not Found")]
    assert all(r.method == "PATCH" for r in orion.calls())


async def test_update_attributes_only_unknown_gives_207_with_empty_updated(orion, client):
    body = {"updated": [], "notUpdated": [{"attributes": ["X", "Y"], "statusCode": 404, "title": "Attribute Not Found"}]}
    orion.on("PATCH", f"/entities/{E1}/attrs", Canned(207, body))
    result = await client.update_attributes(E1, {"X": {"type": "Property", "value": 1}, "Y": {"type": "Property", "value": 2}})
    assert result.updated == [] and [n.attribute for n in result.not_updated] == ["X", "Y"]


async def test_update_attributes_entity_missing_404(orion, client):
    orion.on("PATCH", f"/entities/{E1}/attrs", Canned(404, {"type": ERR + "ResourceNotFound", "title": "Entity does not exist", "detail": E1}))
    with pytest.raises(ResourceNotFound):
        await client.update_attributes(E1, {"a": {"type": "Property", "value": 1}})


async def test_append_attributes_no_overwrite_207(orion, client):
    body = {"updated": ["b"], "notUpdated": [{"attributeName": "a", "reason": "attribute already exists: overwrite is not allowed"}]}
    orion.on("POST", f"/entities/{E1}/attrs", Canned(207, body), Canned(204))
    result = await client.append_attributes(E1, {"a": {"type": "Property", "value": 1}, "b": {"type": "Property", "value": 2}}, no_overwrite=True)
    assert result.updated == ["b"] and result.not_updated[0].attribute == "a"
    assert orion.calls()[0].q("options") == "noOverwrite"
    result = await client.append_attributes(E1, {"c": {"type": "Property", "value": 1}})
    assert result.updated == ["c"] and orion.calls()[1].q("options") is None


async def test_merge_entity_experimental_204(orion, client):
    orion.on("PATCH", f"/entities/{E1}", Canned(204))
    await client.merge_entity(E1, {"status": {"type": "Property", "value": "occupied"}})
    assert orion.calls()[0].json() == {"status": {"type": "Property", "value": "occupied"}}


async def test_merge_entity_legacy_service_not_found_is_operation_not_supported(orion, client):
    service_not_found = {"type": ERR + "ResourceNotFound", "title": "Service Not Found", "detail": f"/ngsi-ld/v1/entities/{E1}"}
    orion.on("PATCH", f"/entities/{E1}", Canned(404, service_not_found))
    orion.on("GET", f"/entities/{E1}", Canned(200, {"id": E1, "type": "ParkingSpot"}))
    with pytest.raises(OperationNotSupported) as info:
        await client.merge_entity(E1, {"status": {"type": "Property", "value": "occupied"}})
    assert info.value.status == 404
    # remembered: the next call does not even try
    calls = len(orion.calls())
    with pytest.raises(OperationNotSupported):
        await client.replace_entity(E1, entity(E1))
    assert len(orion.calls()) == calls


async def test_merge_entity_missing_entity_is_resource_not_found(orion, client):
    not_found = {"type": ERR + "ResourceNotFound", "title": "Entity Not Found", "detail": E1}
    orion.on("PATCH", f"/entities/{E1}", Canned(404, not_found))
    orion.on("GET", f"/entities/{E1}", Canned(404, not_found))
    with pytest.raises(ResourceNotFound) as info:
        await client.merge_entity(E1, {"status": {"type": "Property", "value": "occupied"}})
    assert not isinstance(info.value, OperationNotSupported)


async def test_replace_entity_put(orion, client):
    orion.on("PUT", f"/entities/{E1}", Canned(204))
    await client.replace_entity(E1, entity(E1))
    assert orion.calls()[0].method == "PUT"


async def test_delete_entity_and_attribute(orion, client):
    orion.on("DELETE", f"/entities/{E1}", Canned(204), Canned(404, {"type": ERR + "ResourceNotFound", "title": "Entity not found", "detail": E1}))
    orion.on("DELETE", f"/entities/{E1}/attrs/status", Canned(204))
    await client.delete_entity(E1)
    with pytest.raises(ResourceNotFound):
        await client.delete_entity(E1)
    await client.delete_attribute(E1, "status", dataset_id="urn:ngsi-ld:dataset:a")
    assert orion.calls()[-1].q("datasetId") == "urn:ngsi-ld:dataset:a"


async def test_tenant_header_and_api_url_forms():
    fake = FakeOrion(expect_tenant="town_7")
    await fake.start()
    try:
        for base in (fake.url, fake.url + "/", fake.url + "/ngsi-ld/v1", fake.url + "/ngsi-ld/v1/"):
            fake.on("GET", f"/entities/{E1}", Canned(200, {"id": E1, "type": "T"}, {"NGSILD-Tenant": "town_7"}))
            async with NGSILDClient(base, tenant="town_7", context=CONTEXT, retry=FAST_RETRY) as c:
                await c.get_entity(E1)
        assert [r.raw_path for r in fake.requests] == [f"/ngsi-ld/v1/entities/{E1}"] * 4
    finally:
        await fake.stop()
    assert fake.violations == []


async def test_context_list_sends_first_as_single_link():
    fake = FakeOrion()
    await fake.start()
    try:
        fake.on("DELETE", f"/entities/{E1}", Canned(204))
        async with NGSILDClient(fake.url, context=[CONTEXT, "https://example.org/other.jsonld"], retry=FAST_RETRY) as c:
            await c.delete_entity(E1)
        assert fake.requests[0].headers["Link"] == LINK
    finally:
        await fake.stop()
    assert fake.violations == []


async def test_no_context_sends_no_link():
    fake = FakeOrion(expect_link=None)
    await fake.start()
    try:
        fake.on("DELETE", f"/entities/{E1}", Canned(204))
        async with NGSILDClient(fake.url, retry=FAST_RETRY) as c:
            await c.delete_entity(E1)
    finally:
        await fake.stop()
    assert fake.violations == []


@pytest.mark.parametrize("tenant", ["has space", "x" * 51, "a/b", ""])
def test_bad_tenant_names_refused_early(tenant):
    with pytest.raises(ValueError):
        NGSILDClient("http://127.0.0.1:1026", tenant=tenant)


def test_bad_url_refused():
    with pytest.raises(ValueError):
        NGSILDClient("127.0.0.1:1026")


async def test_using_a_closed_client_is_a_clear_error():
    c = NGSILDClient("http://127.0.0.1:9")
    with pytest.raises(RuntimeError, match="not open"):
        await c.get_entity(E1)


async def test_body_context_switches_to_ld_json_without_link(orion, client):
    orion.on("POST", "/subscriptions", Canned(201, None, {"Location": "/ngsi-ld/v1/subscriptions/urn:ngsi-ld:Subscription:s1"}))
    sub = {"entities": [{"type": "ParkingSpot"}], "notification": {"endpoint": {"uri": "http://127.0.0.1:1/n"}}, "@context": CONTEXT}
    await client.create_subscription(sub)
    sent = orion.calls()[0]
    assert sent.headers["Content-Type"] == "application/ld+json" and "Link" not in sent.headers


async def test_bad_request_without_detail_member(orion, client):
    orion.on("POST", "/entities", Canned(400, {"type": ERR + "BadRequestData", "title": "Invalid URI - no colon found", "detail": "id"}))
    with pytest.raises(BadRequestData) as info:
        await client.create_entity({"id": "x", "type": "T"})
    assert info.value.title == "Invalid URI - no colon found"

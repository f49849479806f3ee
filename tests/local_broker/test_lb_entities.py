"""Entity CRUD, attribute operations and @context round trips over real sockets."""

from __future__ import annotations

import asyncio

from .conftest import PARKING_CTX, PARKING_LINK, problem

JSON = {"Content-Type": "application/json"}
PLINK = {"Link": PARKING_LINK}
SDM = "https://smartdatamodels.org/"


def spot(n: int = 1, **extra) -> dict:
    entity = {
        "id": f"urn:ngsi-ld:ParkingSpot:test:{n}",
        "type": "ParkingSpot",
        "status": {"type": "Property", "value": "free", "observedAt": "2024-05-01T10:00:00Z"},
        "name": {"type": "Property", "value": f"P-{n}"},
        "location": {"type": "GeoProperty", "value": {"type": "Point", "coordinates": [8.68, 50.11]}},
        "refParkingSite": {"type": "Relationship", "object": "urn:ngsi-ld:ParkingSite:test:1"},
    }
    entity.update(extra)
    return entity


async def create(http, broker, entity, headers=PLINK):
    async with http.post(f"{broker}/entities", json=entity, headers=headers) as r:
        assert r.status == 201, await r.text()
        return r


async def get(http, broker, entity_id, headers=PLINK, params=None):
    async with http.get(f"{broker}/entities/{entity_id}", headers=headers, params=params) as r:
        return r.status, dict(r.headers), await r.json(content_type=None)


async def test_create_answers_201_with_location_and_no_body(http, broker):
    async with http.post(f"{broker}/entities", json=spot(), headers=PLINK) as r:
        assert r.status == 201
        assert r.headers["Location"] == "/ngsi-ld/v1/entities/urn:ngsi-ld:ParkingSpot:test:1"
        assert await r.read() == b""
        assert "NGSILD-Tenant" not in r.headers


async def test_create_twice_is_409_already_exists(http, broker):
    await create(http, broker, spot())
    async with http.post(f"{broker}/entities", json=spot(), headers=PLINK) as r:
        assert r.status == 409
        assert r.headers["Content-Type"] == "application/json"
        assert "Link" not in r.headers
        body = await r.json()
        assert problem(body) == ("AlreadyExists", "Entity already exists")
        assert body["detail"] == "urn:ngsi-ld:ParkingSpot:test:1"


async def test_get_with_same_context_gives_short_names(http, broker):
    await create(http, broker, spot())
    status, headers, body = await get(http, broker, "urn:ngsi-ld:ParkingSpot:test:1")
    assert status == 200
    assert headers["Link"] == PARKING_LINK
    assert body["type"] == "ParkingSpot"
    assert body["name"] == {"type": "Property", "value": "P-1"}
    assert body["status"]["observedAt"] == "2024-05-01T10:00:00.000Z"
    assert body["refParkingSite"] == {"type": "Relationship", "object": "urn:ngsi-ld:ParkingSite:test:1"}
    assert body["location"]["value"] == {"type": "Point", "coordinates": [8.68, 50.11]}


async def test_get_without_link_gives_long_uris(http, broker):
    await create(http, broker, spot())
    status, headers, body = await get(http, broker, "urn:ngsi-ld:ParkingSpot:test:1", headers={})
    assert status == 200
    assert "ngsi-ld-core-context" in headers["Link"]
    assert body["type"] == SDM + "dataModel.Parking/ParkingSpot"
    assert SDM + "name" in body and "name" not in body
    assert SDM + "dataModel.Parking/refParkingSite" in body
    assert "status" in body  # SDM maps status to the core term ngsi-ld:status
    assert "location" in body  # a core term stays short


async def test_written_without_context_reads_default_vocab(http, broker):
    await create(http, broker, {"id": "urn:ngsi-ld:Thing:1", "type": "Thing", "temp": 21.5}, headers=JSON)
    status, _, body = await get(http, broker, "urn:ngsi-ld:Thing:1", headers={})
    assert body == {"id": "urn:ngsi-ld:Thing:1", "type": "Thing", "temp": {"type": "Property", "value": 21.5}}
    status, _, body = await get(http, broker, "urn:ngsi-ld:Thing:1")  # Parking context does not define temp
    assert body["temp"]["value"] == 21.5


async def test_ld_json_accept_puts_context_in_body_and_no_link(http, broker):
    await create(http, broker, spot())
    status, headers, body = await get(http, broker, "urn:ngsi-ld:ParkingSpot:test:1",
                                      headers={**PLINK, "Accept": "application/ld+json"})
    assert status == 200
    assert headers["Content-Type"] == "application/ld+json"
    assert "Link" not in headers
    assert body["@context"] == PARKING_CTX  # the reader's context, as the spec (and ETSI) expect
    assert body["type"] == "ParkingSpot"


async def test_create_with_ld_json_body_context(http, broker):
    entity = {**spot(2), "@context": [PARKING_CTX]}
    await create(http, broker, entity, headers={"Content-Type": "application/ld+json"})
    _, _, body = await get(http, broker, "urn:ngsi-ld:ParkingSpot:test:2")
    assert body["type"] == "ParkingSpot" and "name" in body


async def test_get_unknown_entity_404(http, broker):
    status, headers, body = await get(http, broker, "urn:ngsi-ld:ParkingSpot:nope")
    assert status == 404
    assert problem(body) == ("ResourceNotFound", "Entity Not Found")
    assert "Link" not in headers


async def test_keyvalues_concise_sysattrs_and_format_override(http, broker):
    await create(http, broker, spot())
    eid = "urn:ngsi-ld:ParkingSpot:test:1"
    _, _, kv = await get(http, broker, eid, params={"options": "keyValues"})
    assert kv == {"id": eid, "type": "ParkingSpot", "status": "free", "name": "P-1",
                  "location": {"type": "Point", "coordinates": [8.68, 50.11]},
                  "refParkingSite": "urn:ngsi-ld:ParkingSite:test:1"}
    _, _, concise = await get(http, broker, eid, params={"options": "concise"})
    assert concise["name"] == "P-1"
    assert concise["status"] == {"value": "free", "observedAt": "2024-05-01T10:00:00.000Z"}
    assert concise["refParkingSite"] == {"object": "urn:ngsi-ld:ParkingSite:test:1"}
    _, _, sys = await get(http, broker, eid, params={"options": "sysAttrs"})
    assert sys["createdAt"].endswith("Z") and len(sys["createdAt"]) == 24
    assert "createdAt" in sys["status"] and "modifiedAt" in sys["status"]
    _, _, overridden = await get(http, broker, eid, params={"options": "keyValues", "format": "normalized"})
    assert overridden["name"] == {"type": "Property", "value": "P-1"}
    _, _, only = await get(http, broker, eid, params={"attrs": "name"})
    assert set(only) == {"id", "type", "name"}


async def test_concise_input_is_accepted(http, broker):
    entity = {"id": "urn:ngsi-ld:ParkingSpot:c:1", "type": "ParkingSpot", "name": "C-1",
              "status": {"value": "occupied", "observedAt": "2024-05-01T10:00:00.123456Z"},
              "location": {"type": "Point", "coordinates": [8.0, 50.0]},
              "refParkingSite": {"object": "urn:ngsi-ld:ParkingSite:x"}}
    await create(http, broker, entity)
    _, _, body = await get(http, broker, "urn:ngsi-ld:ParkingSpot:c:1")
    assert body["name"] == {"type": "Property", "value": "C-1"}
    assert body["status"] == {"type": "Property", "value": "occupied", "observedAt": "2024-05-01T10:00:00.123Z"}
    assert body["location"]["type"] == "GeoProperty"
    assert body["refParkingSite"]["type"] == "Relationship"


async def test_create_validation_errors(http, broker):
    cases = [
        ({"id": "not-a-uri", "type": "T"}, "Invalid URI - no colon found"),
        ({"id": "urn:ngsi-ld:T:1"}, "Entity type is missing"),
        ({"id": "urn:ngsi-ld:T:1", "type": "T", "a": {"type": "Property", "value": None}},
         "The use of NULL value is not recommended for JSON-LD (the whole attribute gets ignored)"),
        ({"id": "urn:ngsi-ld:T:1", "type": "T", "a": None},
         "The use of NULL value is not recommended for JSON-LD (the whole attribute gets ignored)"),
        ({"id": "urn:ngsi-ld:T:1", "type": "T", "r": {"type": "Relationship", "object": None}},
         "The use of NULL value is not recommended for JSON-LD (the whole attribute gets ignored)"),
        ({"id": "urn:ngsi-ld:T:1", "type": "T", "a": {"type": "Property"}},
         "Missing /value/ field for Property at creation time"),
        ({"id": "urn:ngsi-ld:T:1", "type": "T", "a": {"type": "Foo", "value": 1}},
         "Invalid value for attribute /type/"),
        ({"id": "urn:ngsi-ld:T:1", "type": "T", "a": {"type": "Property", "value": 1, "observedAt": "yesterday"}},
         "Invalid ISO8601 timestamp"),
        ({"id": "urn:ngsi-ld:T:1", "type": "T", "location": {"type": "GeoProperty", "value": {"type": "Point"}}},
         "Mandatory Field /coordinates/ missing for a GeoProperty value"),
        ({"id": "urn:ngsi-ld:T:1", "type": "T", "location": {"type": "GeoProperty", "value": {"type": "Point", "coordinates": [1]}}},
         "Invalid GeoJSON"),
        ({"id": "urn:ngsi-ld:T:1", "type": "T", "location": {"type": "GeoProperty", "value": {"type": "Blob", "coordinates": [1, 2]}}},
         "Invalid value for the /type/ field of a GeoProperty value (invalid geometry)"),
        ({"id": "urn:ngsi-ld:T:1", "type": "T", "a": {"type": "Property", "value": 1, "unitCode": 5}},
         "Invalid JSON type - not a string"),
        ({"id": 5, "type": "T"}, "Not a JSON String"),
        ({"id": "urn:ngsi-ld:T:1", "@id": "urn:ngsi-ld:T:1", "type": "T"}, "Duplicated field"),
    ]
    for body, title in cases:
        async with http.post(f"{broker}/entities", json=body) as r:
            assert r.status == 400, (body, await r.text())
            assert problem(await r.json()) == ("BadRequestData", title), body
    # nothing got stored
    async with http.get(f"{broker}/entities", params={"type": "T"}) as r:
        assert await r.json() == []


async def test_delete_entity(http, broker):
    await create(http, broker, spot())
    async with http.delete(f"{broker}/entities/urn:ngsi-ld:ParkingSpot:test:1") as r:
        assert r.status == 204
    status, _, body = await get(http, broker, "urn:ngsi-ld:ParkingSpot:test:1")
    assert status == 404
    async with http.delete(f"{broker}/entities/urn:ngsi-ld:ParkingSpot:test:1") as r:
        assert r.status == 404
        assert problem(await r.json()) == ("ResourceNotFound", "Entity not found")


async def test_append_and_no_overwrite(http, broker):
    await create(http, broker, spot())
    url = f"{broker}/entities/urn:ngsi-ld:ParkingSpot:test:1/attrs"
    async with http.post(url, json={"name": {"type": "Property", "value": "renamed"},
                                    "category": {"type": "Property", "value": ["onStreet"]}}, headers=PLINK) as r:
        assert r.status == 204
    async with http.post(url, params={"options": "noOverwrite"}, headers=PLINK,
                         json={"name": {"type": "Property", "value": "again"},
                               "width": {"type": "Property", "value": 2.5}}) as r:
        assert r.status == 207
        body = await r.json()
        assert body["updated"] == ["width"]
        assert body["notUpdated"][0]["attributes"] == ["name"]
    _, _, entity = await get(http, broker, "urn:ngsi-ld:ParkingSpot:test:1", params={"options": "keyValues"})
    assert entity["name"] == "renamed" and entity["category"] == ["onStreet"] and entity["width"] == 2.5
    # noOverwrite still adds an instance with a new datasetId (ETSI 010_04_02)
    async with http.post(url, params={"options": "noOverwrite"}, headers=PLINK,
                         json={"name": [{"type": "Property", "value": "again"},
                                        {"type": "Property", "value": "fr", "datasetId": "urn:ds:fr"}]}) as r:
        assert r.status == 204
    _, _, entity = await get(http, broker, "urn:ngsi-ld:ParkingSpot:test:1")
    assert [(i["value"], i.get("datasetId")) for i in entity["name"]] == [("renamed", None), ("fr", "urn:ds:fr")]
    # a multi-attribute in keyValues / simplified (NGSI-LD 1.8): {"dataset": {datasetId: value}}
    _, _, entity = await get(http, broker, "urn:ngsi-ld:ParkingSpot:test:1", params={"options": "keyValues"})
    assert entity["name"] == {"dataset": {"@none": "renamed", "urn:ds:fr": "fr"}}
    async with http.post(f"{broker}/entities/urn:ngsi-ld:ParkingSpot:none/attrs", json={"a": 1}) as r:
        assert r.status == 404
        assert problem(await r.json()) == ("ResourceNotFound", "Entity does not exist")


async def test_patch_attrs_never_creates_and_answers_207_experimental_shape(http, broker):
    await create(http, broker, spot())
    url = f"{broker}/entities/urn:ngsi-ld:ParkingSpot:test:1/attrs"
    async with http.patch(url, headers=PLINK, json={"status": {"type": "Property", "value": "occupied"},
                                                     "A3": {"type": "Property", "value": 3}}) as r:
        assert r.status == 207
        assert r.headers["Link"] == PARKING_LINK
        assert await r.json() == {"updated": ["status"], "notUpdated": [
            {"attributes": ["A3"], "statusCode": 404, "title": "Attribute Not Found"}]}
    async with http.patch(url, headers=PLINK, json={"A3": {"type": "Property", "value": 3}}) as r:
        assert r.status == 207
        assert (await r.json())["updated"] == []
    async with http.patch(url, headers=PLINK, json={"status": {"type": "Property", "value": "free"}}) as r:
        assert r.status == 204
    _, _, entity = await get(http, broker, "urn:ngsi-ld:ParkingSpot:test:1", params={"options": "keyValues"})
    assert entity["status"] == "free" and "A3" not in entity


async def test_patch_attrs_ngsi_null_deletes(http, broker):
    await create(http, broker, spot())
    url = f"{broker}/entities/urn:ngsi-ld:ParkingSpot:test:1/attrs"
    async with http.patch(url, headers=PLINK, json={"name": "urn:ngsi-ld:null"}) as r:
        assert r.status == 204
    _, _, entity = await get(http, broker, "urn:ngsi-ld:ParkingSpot:test:1")
    assert "name" not in entity


async def test_patch_single_attribute(http, broker):
    await create(http, broker, spot())
    base = f"{broker}/entities/urn:ngsi-ld:ParkingSpot:test:1/attrs"
    async with http.patch(f"{base}/status", headers=PLINK,
                          json={"value": "occupied", "observedAt": "2024-05-01T11:00:00+02:00"}) as r:
        assert r.status == 204
    _, _, entity = await get(http, broker, "urn:ngsi-ld:ParkingSpot:test:1")
    assert entity["status"] == {"type": "Property", "value": "occupied", "observedAt": "2024-05-01T09:00:00.000Z"}
    async with http.patch(f"{base}/nothere", headers=PLINK, json={"value": 1}) as r:
        assert r.status == 404


async def test_delete_attribute_with_dataset_id_and_delete_all(http, broker):
    entity = {"id": "urn:ngsi-ld:T:m", "type": "T", "speed": [
        {"type": "Property", "value": 10},
        {"type": "Property", "value": 20, "datasetId": "urn:ngsi-ld:Dataset:gps"},
        {"type": "Property", "value": 30, "datasetId": "urn:ngsi-ld:Dataset:radar"}]}
    await create(http, broker, entity, headers=JSON)
    _, _, body = await get(http, broker, "urn:ngsi-ld:T:m", headers={})
    assert [i["value"] for i in body["speed"]] == [10, 20, 30]
    url = f"{broker}/entities/urn:ngsi-ld:T:m/attrs/speed"
    async with http.delete(url, params={"datasetId": "urn:ngsi-ld:Dataset:gps"}) as r:
        assert r.status == 204
    _, _, body = await get(http, broker, "urn:ngsi-ld:T:m", headers={})
    assert [i["value"] for i in body["speed"]] == [10, 30]
    async with http.delete(url) as r:  # the default instance
        assert r.status == 204
    _, _, body = await get(http, broker, "urn:ngsi-ld:T:m", headers={})
    assert body["speed"] == {"type": "Property", "value": 30, "datasetId": "urn:ngsi-ld:Dataset:radar"}
    async with http.delete(url, params={"datasetId": "urn:ngsi-ld:Dataset:gps"}) as r:
        assert r.status == 404
    async with http.delete(url, params={"deleteAll": "true"}) as r:
        assert r.status == 204
    _, _, body = await get(http, broker, "urn:ngsi-ld:T:m", headers={})
    assert "speed" not in body


async def test_merge_patch_entity(http, broker):
    await create(http, broker, spot())
    url = f"{broker}/entities/urn:ngsi-ld:ParkingSpot:test:1"
    async with http.patch(url, headers={**PLINK, "Content-Type": "application/merge-patch+json"},
                          data=b'{"status": {"value": "occupied"}, "name": "urn:ngsi-ld:null", "width": 2.1}') as r:
        assert r.status == 204, await r.text()
    _, _, entity = await get(http, broker, "urn:ngsi-ld:ParkingSpot:test:1")
    # value merged, observedAt kept, name deleted, width added
    assert entity["status"] == {"type": "Property", "value": "occupied", "observedAt": "2024-05-01T10:00:00.000Z"}
    assert "name" not in entity and entity["width"]["value"] == 2.1


async def test_put_replaces_entity_and_keeps_created_at(http, broker):
    await create(http, broker, spot())
    _, _, before = await get(http, broker, "urn:ngsi-ld:ParkingSpot:test:1", params={"options": "sysAttrs"})
    await asyncio.sleep(0.01)
    url = f"{broker}/entities/urn:ngsi-ld:ParkingSpot:test:1"
    async with http.put(url, headers=PLINK, json={"type": "ParkingSpot", "name": "only"}) as r:
        assert r.status == 204
    _, _, after = await get(http, broker, "urn:ngsi-ld:ParkingSpot:test:1", params={"options": "sysAttrs"})
    assert set(after) == {"id", "type", "name", "createdAt", "modifiedAt"}
    assert after["createdAt"] == before["createdAt"]
    assert after["modifiedAt"] > before["modifiedAt"]


async def test_language_property_and_lang(http, broker):
    entity = {"id": "urn:ngsi-ld:T:l", "type": "T",
              "street": {"type": "LanguageProperty", "languageMap": {"de": "Hauptstraße", "en": "Main Street"}}}
    await create(http, broker, entity, headers=JSON)
    _, _, body = await get(http, broker, "urn:ngsi-ld:T:l", headers={})
    assert body["street"] == {"type": "LanguageProperty", "languageMap": {"de": "Hauptstraße", "en": "Main Street"}}
    _, _, body = await get(http, broker, "urn:ngsi-ld:T:l", headers={}, params={"lang": "en"})
    assert body["street"] == {"type": "Property", "value": "Main Street", "lang": "en"}
    _, _, body = await get(http, broker, "urn:ngsi-ld:T:l", headers={}, params={"options": "keyValues", "lang": "de"})
    assert body["street"] == "Hauptstraße"
    async with http.patch(f"{broker}/entities/urn:ngsi-ld:T:l/attrs",
                          json={"street": {"type": "LanguageProperty", "languageMap": {"@none": "urn:ngsi-ld:null"}}}) as r:
        assert r.status == 204
    _, _, body = await get(http, broker, "urn:ngsi-ld:T:l", headers={})
    assert "street" not in body


async def test_entity_ids_with_slashes_in_path(http, broker):
    await create(http, broker, {"id": "http://a.b.c/entity/E1", "type": "T", "a": 1}, headers=JSON)
    status, _, body = await get(http, broker, "http://a.b.c/entity/E1", headers={})
    assert status == 200 and body["id"] == "http://a.b.c/entity/E1"
    async with http.patch(f"{broker}/entities/http://a.b.c/entity/E1/attrs/a", json={"value": 2}) as r:
        assert r.status == 204
    _, _, body = await get(http, broker, "http://a.b.c/entity/E1", headers={})
    assert body["a"]["value"] == 2


async def test_partial_update_of_sub_attribute_and_type_mismatch(http, broker):
    entity = {"id": "urn:ngsi-ld:T:p", "type": "T",
              "isParked": {"type": "Relationship", "object": "urn:ngsi-ld:P:1",
                           "providedBy": {"type": "Relationship", "object": "urn:ngsi-ld:Person:Bob"}}}
    await create(http, broker, entity, headers=JSON)
    url = f"{broker}/entities/urn:ngsi-ld:T:p/attrs/isParked"
    async with http.patch(url, json={"providedBy": {"type": "Relationship", "object": "urn:ngsi-ld:Person:Ann"}}) as r:
        assert r.status == 204
    _, _, body = await get(http, broker, "urn:ngsi-ld:T:p", headers={})
    assert body["isParked"] == {"type": "Relationship", "object": "urn:ngsi-ld:P:1",
                                "providedBy": {"type": "Relationship", "object": "urn:ngsi-ld:Person:Ann"}}
    async with http.patch(url, json={"type": "Property", "value": 3}) as r:
        assert r.status == 400
        assert problem(await r.json())[1] == "Attribute type mismatch"


async def test_retrieve_with_unknown_attrs_is_404_and_id_type_are_not_attrs(http, broker):
    await create(http, broker, spot())
    status, _, body = await get(http, broker, "urn:ngsi-ld:ParkingSpot:test:1", params={"attrs": "nothere"})
    assert status == 404
    async with http.get(f"{broker}/entities", params={"attrs": "id,type"}) as r:
        assert r.status == 400


async def test_invalid_entity_type_names(http, broker):
    for bad in ("type", "id", "with space", "@type"):
        async with http.post(f"{broker}/entities", json={"id": "urn:ngsi-ld:T:bad", "type": bad}) as r:
            assert r.status == 400, bad


async def test_empty_entity_id_in_path_is_400(http, broker):
    async with http.post(f"{broker}/entities//attrs", json={"a": 1}) as r:
        assert r.status == 400
    async with http.patch(f"{broker}/entities/", json={"a": 1}) as r:
        assert r.status == 400


async def test_ngsi_null_with_dataset_id_deletes_one_instance(http, broker):
    entity = {"id": "urn:ngsi-ld:T:n", "type": "T", "name": [
        {"type": "Property", "value": "Eiffel Tower", "datasetId": "urn:ngsi-ld:Dataset:01"},
        {"type": "Property", "value": "The iron lady", "datasetId": "urn:ngsi-ld:Dataset:02"}]}
    await create(http, broker, entity, headers=JSON)
    async with http.patch(f"{broker}/entities/urn:ngsi-ld:T:n/attrs", json={"name": {
            "type": "Property", "value": "urn:ngsi-ld:null", "datasetId": "urn:ngsi-ld:Dataset:01"}}) as r:
        assert r.status == 204
    _, _, body = await get(http, broker, "urn:ngsi-ld:T:n", headers={})
    assert body["name"] == {"type": "Property", "value": "The iron lady", "datasetId": "urn:ngsi-ld:Dataset:02"}
    async with http.patch(f"{broker}/entities/urn:ngsi-ld:T:n", json={"name": {
            "type": "Property", "value": "urn:ngsi-ld:null", "datasetId": "urn:ngsi-ld:Dataset:02"}}) as r:
        assert r.status == 204
    _, _, body = await get(http, broker, "urn:ngsi-ld:T:n", headers={})
    assert "name" not in body


async def test_pick_and_omit(http, broker):
    await create(http, broker, spot())
    eid = "urn:ngsi-ld:ParkingSpot:test:1"
    _, _, body = await get(http, broker, eid, params={"pick": "id,name"})
    assert body == {"id": eid, "name": {"type": "Property", "value": "P-1"}}
    _, _, body = await get(http, broker, eid, params={"omit": "type,location,status,refParkingSite"})
    assert body == {"id": eid, "name": {"type": "Property", "value": "P-1"}}
    for params in ({"pick": "name", "omit": "name"}, {"pick": "name", "attrs": "name"}, {"pick": "id,,name"},
                   {"pick": "id,locatedAt{name}"}):
        status, _, _ = await get(http, broker, eid, params=params)
        assert status == 400, params
    # nothing left after pick/omit: 404 (NGSI-LD §4.21, ETSI 018_19)
    for params in ({"pick": "unknown"}, {"omit": "id,type,name,location,status,refParkingSite"}):
        status, _, body = await get(http, broker, eid, params=params)
        assert status == 404 and problem(body)[0] == "ResourceNotFound", params


async def test_attribute_names_in_paths_and_scope(http, broker):
    await create(http, broker, spot(scope="/Madrid/Gardens"))
    url = f"{broker}/entities/urn:ngsi-ld:ParkingSpot:test:1/attrs"
    # not attribute names: 400 before looking for the entity or the attribute (ETSI 055_03)
    for name in ("@invalid", "scope", "id", "type", "createdAt"):
        for method in ("PUT", "PATCH"):
            async with http.request(method, f"{url}/{name}", json={"type": "Property", "value": 1},
                                    headers=PLINK) as r:
                assert r.status == 400, (method, name)
                assert problem(await r.json()) == ("BadRequestData", "Invalid attribute name")
    async with http.put(f"{url}/brandName", json={"type": "Property", "value": 1}, headers=PLINK) as r:
        assert r.status == 404
    # DELETE .../attrs/scope removes the scope member
    _, _, body = await get(http, broker, "urn:ngsi-ld:ParkingSpot:test:1")
    assert body["scope"] == "/Madrid/Gardens"
    async with http.delete(f"{url}/scope", headers=PLINK) as r:
        assert r.status == 204
    _, _, body = await get(http, broker, "urn:ngsi-ld:ParkingSpot:test:1")
    assert "scope" not in body and body["name"]["value"] == "P-1"
    async with http.delete(f"{url}/scope", headers=PLINK) as r:
        assert r.status == 404


async def test_scope_append_and_update(http, broker):
    await create(http, broker, spot(1, scope="/Madrid/Gardens"))
    await create(http, broker, spot(2))
    url1 = f"{broker}/entities/urn:ngsi-ld:ParkingSpot:test:1"
    url2 = f"{broker}/entities/urn:ngsi-ld:ParkingSpot:test:2"
    async with http.post(f"{url1}/attrs", params={"options": "noOverwrite"}, json={"scope": "/CompanyA"},
                         headers=PLINK) as r:
        assert r.status == 204
    _, _, body = await get(http, broker, "urn:ngsi-ld:ParkingSpot:test:1")
    assert body["scope"] == ["/Madrid/Gardens", "/CompanyA"]  # noOverwrite adds values
    async with http.post(f"{url1}/attrs", json={"scope": "/CompanyB"}, headers=PLINK) as r:
        assert r.status == 204
    _, _, body = await get(http, broker, "urn:ngsi-ld:ParkingSpot:test:1")
    assert body["scope"] == "/CompanyB"  # append with overwrite replaces
    async with http.patch(f"{url1}/attrs", json={"scope": "/CompanyC"}, headers=PLINK) as r:
        assert r.status == 204
    _, _, body = await get(http, broker, "urn:ngsi-ld:ParkingSpot:test:1")
    assert body["scope"] == "/CompanyC"
    async with http.patch(f"{url2}/attrs", json={"scope": "/CompanyC"}, headers=PLINK) as r:
        assert r.status == 207  # update never adds, scope included (ETSI 011_05_02)
        assert (await r.json())["notUpdated"][0]["attributes"] == ["scope"]
    _, _, body = await get(http, broker, "urn:ngsi-ld:ParkingSpot:test:2")
    assert "scope" not in body

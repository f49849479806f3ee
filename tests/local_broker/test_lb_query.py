"""GET /entities and POST /entityOperations/query: filters, q, geo, paging, count, formats."""

from __future__ import annotations

import pytest

from .conftest import PARKING_LINK, problem

PLINK = {"Link": PARKING_LINK}


def spot(n: int, status: str, width: float, lon: float, lat: float, **extra) -> dict:
    return {
        "id": f"urn:ngsi-ld:ParkingSpot:q:{n}", "type": "ParkingSpot",
        "status": {"type": "Property", "value": status, "observedAt": f"2024-05-0{n % 9 + 1}T10:00:00Z"},
        "width": {"type": "Property", "value": width, "unitCode": "MTR",
                  "accuracy": {"type": "Property", "value": n}},
        "location": {"type": "GeoProperty", "value": {"type": "Point", "coordinates": [lon, lat]}},
        "refParkingSite": {"type": "Relationship", "object": f"urn:ngsi-ld:ParkingSite:q:{n % 2}"},
        **extra,
    }


@pytest.fixture
async def populated(http, broker):
    entities = [
        spot(1, "free", 2.0, 8.6800, 50.1100, name={"type": "Property", "value": "Alpha"}),
        spot(2, "occupied", 2.5, 8.6810, 50.1100, name={"type": "Property", "value": "Beta"}),
        spot(3, "free", 3.0, 8.7000, 50.1200, name={"type": "Property", "value": "alphabet"}),
        spot(4, "closed", 2.2, 9.0000, 51.0000),
        {"id": "urn:ngsi-ld:OffStreetParking:q:1", "type": "OffStreetParking",
         "availableSpotNumber": {"type": "Property", "value": 12},
         "extra": {"type": "Property", "value": {"nested": {"level": 3}}}},
    ]
    async with http.post(f"{broker}/entityOperations/create", json=entities, headers=PLINK) as r:
        assert r.status == 201
    return broker


async def ids(http, url, params, headers=PLINK):
    async with http.get(f"{url}/entities", params=params, headers=headers) as r:
        assert r.status == 200, await r.text()
        return [e["id"].rsplit(":", 2)[-2] + ":" + e["id"].rsplit(":", 1)[-1] if False else e["id"].rsplit(":", 1)[-1]
                for e in await r.json()]


async def test_type_id_idpattern_attrs(http, populated):
    assert await ids(http, populated, {"type": "ParkingSpot"}) == ["1", "2", "3", "4"]
    assert await ids(http, populated, {"type": "ParkingSpot,OffStreetParking"}) == ["1", "2", "3", "4", "1"]
    assert await ids(http, populated, {"type": "ParkingSpot",
                                       "id": "urn:ngsi-ld:ParkingSpot:q:3,urn:ngsi-ld:ParkingSpot:q:1"}) == ["1", "3"]
    assert await ids(http, populated, {"type": "ParkingSpot",
                                       "idPattern": "^urn:ngsi-ld:ParkingSpot:q:[23]$"}) == ["2", "3"]
    assert await ids(http, populated, {"attrs": "availableSpotNumber"}) == ["1"]
    assert await ids(http, populated, {"type": "ParkingSpot", "id": "urn:ngsi-ld:OffStreetParking:q:1"}) == []
    # without the context the short type is another type
    assert await ids(http, populated, {"type": "ParkingSpot"}, headers={}) == []


async def test_attrs_limits_returned_attributes(http, populated):
    async with http.get(f"{populated}/entities", params={"type": "ParkingSpot", "attrs": "status,name",
                                                         "options": "keyValues"}, headers=PLINK) as r:
        body = await r.json()
    assert body[0] == {"id": "urn:ngsi-ld:ParkingSpot:q:1", "type": "ParkingSpot", "status": "free", "name": "Alpha"}
    assert body[3] == {"id": "urn:ngsi-ld:ParkingSpot:q:4", "type": "ParkingSpot", "status": "closed"}


@pytest.mark.parametrize("q, expected", [
    ('status=="free"', ["1", "3"]),
    ('status!="free"', ["2", "4"]),
    ('status=="free","closed"', ["1", "3", "4"]),
    ("width>2.2", ["2", "3"]),
    ("width>=2.2", ["2", "3", "4"]),
    ("width<2.2", ["1"]),
    ("width<=2.2;width>2.0", ["4"]),
    ("width==2.1..2.6", ["2", "4"]),
    ('status=="free";width>2.5', ["3"]),
    ('status=="occupied"|width==3.0', ["2", "3"]),
    ('(status=="occupied"|status=="closed");width<2.4', ["4"]),
    ("name~=^[Aa]lpha", ["1", "3"]),
    ("name!~=^[Aa]lpha", ["2"]),
    ("name", ["1", "2", "3"]),
    ("!name", ["4"]),
    ("width.accuracy>=3", ["3", "4"]),
    ("width[accuracy]==1", []),
    ("width.unitCode==\"MTR\"", ["1", "2", "3", "4"]),
    ("status.observedAt>=2024-05-04T00:00:00Z", ["3", "4"]),
    ("refParkingSite==urn:ngsi-ld:ParkingSite:q:1", ["1", "3"]),
])
async def test_q_language(http, populated, q, expected):
    assert await ids(http, populated, {"type": "ParkingSpot", "q": q}) == expected


async def test_q_on_json_object_members(http, populated):
    assert await ids(http, populated, {"q": "extra[nested][level]==3"}) == ["1"]
    assert await ids(http, populated, {"q": "extra.nested.level==3"}) == ["1"]
    assert await ids(http, populated, {"q": "availableSpotNumber>10"}) == ["1"]


@pytest.mark.parametrize("q", ["status==", "(status==1", "status===1", "", "width>1..2"])
async def test_bad_q_is_400(http, populated, q):
    async with http.get(f"{populated}/entities", params={"type": "ParkingSpot", "q": q}, headers=PLINK) as r:
        assert r.status == 400, q
        body = await r.json()
        assert problem(body)[0] == "BadRequestData"


async def test_paging_count_and_limits(http, populated):
    async with http.get(f"{populated}/entities", params={"type": "ParkingSpot", "limit": "2", "offset": "1",
                                                         "count": "true"}, headers=PLINK) as r:
        assert r.headers["NGSILD-Results-Count"] == "4"
        assert [e["id"][-1] for e in await r.json()] == ["2", "3"]
    assert await ids(http, populated, {"type": "ParkingSpot", "offset": "10"}) == []
    async with http.get(f"{populated}/entities", params={"type": "ParkingSpot"}, headers=PLINK) as r:
        assert "NGSILD-Results-Count" not in r.headers
    for params, title in [({"limit": "1001"}, "Invalid value for URI parameter /limit/"),
                          ({"limit": "-1"}, "Bad value for URI parameter /limit/"),
                          ({"limit": "0"}, "Invalid value for URI parameter /limit/"),
                          ({"offset": "-3"}, "Bad value for URI parameter /offset/"),
                          ({"limit": "x"}, "Bad value for URI parameter /limit/")]:
        async with http.get(f"{populated}/entities", params={"type": "ParkingSpot", **params}, headers=PLINK) as r:
            assert r.status == 400, params
            assert problem(await r.json())[1] == title


async def test_default_page_size_and_creation_order(http, broker):
    batch = [{"id": f"urn:ngsi-ld:T:{i:03d}", "type": "T", "v": i} for i in range(30, 0, -1)]
    async with http.post(f"{broker}/entityOperations/upsert", json=batch) as r:
        assert r.status == 201
    async with http.get(f"{broker}/entities", params={"type": "T"}) as r:
        body = await r.json()
    assert len(body) == 20
    assert [e["v"]["value"] for e in body] == list(range(30, 10, -1))
    async with http.get(f"{broker}/entities", params={"type": "T", "limit": "1000"}) as r:
        assert len(await r.json()) == 30


async def test_too_broad_query(http, populated):
    # NGSI-LD §5.7.2 (ETSI 019_03_05): type, attrs, q, a geo-query or local=true is required;
    # ids or an id pattern alone are not enough
    for params in ({}, {"id": "urn:ngsi-ld:ParkingSpot:q:1"}, {"idPattern": ".*"}, {"limit": "5"}):
        async with http.get(f"{populated}/entities", params=params) as r:
            assert r.status == 400, params
            assert problem(await r.json()) == ("BadRequestData", "Too broad query")
    assert await ids(http, populated, {"id": "urn:ngsi-ld:ParkingSpot:q:1", "local": "true"}) == ["1"]


async def test_formats_in_query(http, populated):
    async with http.get(f"{populated}/entities", params={"type": "ParkingSpot", "id": "urn:ngsi-ld:ParkingSpot:q:1", "format": "concise"},
                        headers=PLINK) as r:
        body = await r.json()
    assert body[0]["name"] == "Alpha"
    assert body[0]["width"] == {"value": 2.0, "unitCode": "MTR", "accuracy": 1}
    async with http.get(f"{populated}/entities", params={"type": "ParkingSpot", "id": "urn:ngsi-ld:ParkingSpot:q:1", "options": "keyValues,sysAttrs"},
                        headers=PLINK) as r:
        assert r.status == 400
    async with http.get(f"{populated}/entities", params={"type": "ParkingSpot", "id": "urn:ngsi-ld:ParkingSpot:q:1", "options": "bogus"},
                        headers=PLINK) as r:
        assert r.status == 400
        assert problem(await r.json())[1] == "Invalid value for URI param /options/"


async def test_geo_near_within_intersects(http, populated):
    base = {"type": "ParkingSpot", "geometry": "Point", "coordinates": "[8.6800,50.1100]"}
    assert await ids(http, populated, {**base, "georel": "near;maxDistance==100"}) == ["1", "2"]
    assert await ids(http, populated, {**base, "georel": "near;maxDistance==50"}) == ["1"]
    assert await ids(http, populated, {**base, "georel": "near;minDistance==1000"}) == ["3", "4"]
    polygon = "[[[8.67,50.10],[8.69,50.10],[8.69,50.12],[8.67,50.12],[8.67,50.10]]]"
    poly = {"type": "ParkingSpot", "geometry": "Polygon", "coordinates": polygon}
    assert await ids(http, populated, {**poly, "georel": "within"}) == ["1", "2"]
    assert await ids(http, populated, {**poly, "georel": "intersects"}) == ["1", "2"]
    assert await ids(http, populated, {**poly, "georel": "disjoint"}) == ["3", "4"]
    assert await ids(http, populated, {"type": "ParkingSpot", "geometry": "Point", "coordinates": "[9.0,51.0]",
                                       "georel": "equals"}) == ["4"]
    assert await ids(http, populated, {"geometry": "Point", "coordinates": "[9.0,51.0]", "georel": "near;maxDistance==10"}) == ["4"]
    assert await ids(http, populated, {"type": "ParkingSpot", "geometry": "Point", "coordinates": "[9.0,51.0]",
                                       "georel": "contains"}) == ["4"]


async def test_geo_errors(http, populated):
    for params in ({"georel": "near;maxDistance==10", "geometry": "Point"},
                   {"georel": "near;maxDistance==10", "geometry": "Point", "coordinates": "[1]"},
                   {"georel": "sideways", "geometry": "Point", "coordinates": "[1,2]"},
                   {"georel": "within", "geometry": "Polygon", "coordinates": "[[[1,2],[3,4]]]"}):
        async with http.get(f"{populated}/entities", params={"type": "ParkingSpot", **params}, headers=PLINK) as r:
            assert r.status == 400, params


async def test_post_query(http, populated):
    url = f"{populated}/entityOperations/query"
    body = {"type": "Query", "entities": [{"type": "ParkingSpot", "idPattern": ".*:[12]$"},
                                          {"type": "OffStreetParking"}],
            "attrs": ["status", "availableSpotNumber"], "q": "status==\"free\"|availableSpotNumber>1"}
    async with http.post(url, json=body, headers=PLINK, params={"count": "true", "options": "keyValues"}) as r:
        assert r.status == 200
        assert r.headers["NGSILD-Results-Count"] == "2"
        result = await r.json()
    assert result == [{"id": "urn:ngsi-ld:ParkingSpot:q:1", "type": "ParkingSpot", "status": "free"},
                      {"id": "urn:ngsi-ld:OffStreetParking:q:1", "type": "OffStreetParking", "availableSpotNumber": 12}]
    geo = {"type": "Query", "geoQ": {"geometry": "Point", "coordinates": [8.68, 50.11], "georel": "near;maxDistance==100"}}
    async with http.post(url, json=geo, headers=PLINK, params={"limit": "1"}) as r:
        assert [e["id"] for e in await r.json()] == ["urn:ngsi-ld:ParkingSpot:q:1"]
    async with http.post(url, json={"type": "Query"}, headers=PLINK) as r:
        assert r.status == 400


async def test_geojson_accept(http, populated):
    async with http.get(f"{populated}/entities", params={"type": "ParkingSpot", "id": "urn:ngsi-ld:ParkingSpot:q:1"},
                        headers={**PLINK, "Accept": "application/geo+json"}) as r:
        assert r.headers["Content-Type"] == "application/geo+json"
        body = await r.json(content_type=None)
    assert body["type"] == "FeatureCollection"
    assert body["features"][0]["geometry"] == {"type": "Point", "coordinates": [8.68, 50.11]}


async def test_pagination_link_headers(http, populated):
    async with http.get(f"{populated}/entities", params={"type": "ParkingSpot", "limit": "1", "offset": "1"},
                        headers={**PLINK, "Accept": "application/ld+json"}) as r:
        links = [link.strip() for link in r.headers["Link"].split(",")]
    assert '</ngsi-ld/v1/entities?type=ParkingSpot&limit=1&offset=0>; rel="prev"; type="application/ld+json"' in links
    assert '</ngsi-ld/v1/entities?type=ParkingSpot&limit=1&offset=2>; rel="next"; type="application/ld+json"' in links
    async with http.get(f"{populated}/entities", params={"type": "ParkingSpot", "limit": "10"}, headers=PLINK) as r:
        assert r.headers["Link"] == PARKING_LINK  # one page: only the context


async def test_geo_with_polygon_and_line_entities(http, broker):
    square = {"type": "Polygon", "coordinates": [[[8.0, 50.0], [8.1, 50.0], [8.1, 50.1], [8.0, 50.1], [8.0, 50.0]]]}
    road = {"type": "LineString", "coordinates": [[7.9, 50.05], [8.2, 50.05]]}
    entities = [{"id": "urn:ngsi-ld:Area:1", "type": "Area", "location": {"type": "GeoProperty", "value": square}},
                {"id": "urn:ngsi-ld:Area:2", "type": "Area", "location": {"type": "GeoProperty", "value": road}}]
    async with http.post(f"{broker}/entityOperations/create", json=entities) as r:
        assert r.status == 201

    async def area_ids(params):
        async with http.get(f"{broker}/entities", params={"type": "Area", **params}) as r:
            assert r.status == 200, await r.text()
            return [e["id"][-1] for e in await r.json()]
    assert await area_ids({"georel": "contains", "geometry": "Point", "coordinates": "[8.05,50.02]"}) == ["1"]
    assert await area_ids({"georel": "near;maxDistance==1", "geometry": "Point", "coordinates": "[8.05,50.02]"}) == ["1"]
    # 0.01° north of the road: about 1.1 km
    assert await area_ids({"georel": "near;maxDistance==1200", "geometry": "Point", "coordinates": "[7.95,50.06]"}) == ["2"]
    assert await area_ids({"georel": "near;maxDistance==1000", "geometry": "Point", "coordinates": "[7.95,50.06]"}) == []
    crossing = "[[8.05,49.9],[8.05,50.2]]"
    assert await area_ids({"georel": "intersects", "geometry": "LineString", "coordinates": crossing}) == ["1", "2"]
    big = "[[[7.0,49.0],[9.0,49.0],[9.0,51.0],[7.0,51.0],[7.0,49.0]]]"
    assert await area_ids({"georel": "within", "geometry": "Polygon", "coordinates": big}) == ["1", "2"]
    small = "[[[8.01,50.01],[8.02,50.01],[8.02,50.02],[8.01,50.02],[8.01,50.01]]]"
    assert await area_ids({"georel": "within", "geometry": "Polygon", "coordinates": small}) == []
    assert await area_ids({"georel": "overlaps", "geometry": "Polygon", "coordinates": small}) == []
    assert await area_ids({"georel": "contains", "geometry": "Polygon", "coordinates": small}) == ["1"]


async def test_dataset_id_filter_on_rendering(http, broker):
    entity = {"id": "urn:ngsi-ld:Building:d", "type": "Building", "name": [
        {"type": "Property", "value": "Eiffel Tower"},
        {"type": "Property", "value": "Tour Eiffel", "datasetId": "urn:ngsi-ld:Dataset:fr"},
        {"type": "Property", "value": "Eiffelturm", "datasetId": "urn:ngsi-ld:Dataset:de"}],
        "height": {"type": "Property", "value": 330}}
    async with http.post(f"{broker}/entities", json=entity) as r:
        assert r.status == 201

    async def first(params):
        async with http.get(f"{broker}/entities", params={"type": "Building", **params}) as r:
            return (await r.json())[0]
    body = await first({"datasetId": "urn:ngsi-ld:Dataset:fr"})
    assert body["name"] == {"type": "Property", "value": "Tour Eiffel", "datasetId": "urn:ngsi-ld:Dataset:fr"}
    assert "height" not in body
    body = await first({"datasetId": "@none"})
    assert body["name"] == {"type": "Property", "value": "Eiffel Tower"} and body["height"]["value"] == 330
    body = await first({"datasetId": "urn:ngsi-ld:Dataset:es", "attrs": "name"})
    assert body == {"id": "urn:ngsi-ld:Building:d", "type": "Building"}


async def test_pick_and_omit_in_queries_drop_empty_entities(http, populated):
    async with http.get(f"{populated}/entities", params={"type": "ParkingSpot,OffStreetParking", "pick": "name",
                                                         "count": "true"}, headers=PLINK) as r:
        body = await r.json()
        assert r.headers["NGSILD-Results-Count"] == "3"
    # spot 4 and the OffStreetParking have no name: no member left, not in the result
    assert [e["name"]["value"] for e in body] == ["Alpha", "Beta", "alphabet"]
    assert all(set(e) == {"name"} for e in body)
    async with http.get(f"{populated}/entities", params={"type": "ParkingSpot", "omit": "id,location,width,status",
                                                         "options": "keyValues"}, headers=PLINK) as r:
        body = await r.json()
    assert body[0] == {"type": "ParkingSpot", "name": "Alpha", "refParkingSite": "urn:ngsi-ld:ParkingSite:q:1"}
    async with http.post(f"{populated}/entityOperations/query", params={"pick": "id", "limit": "2"},
                         json={"type": "Query", "entities": [{"type": "ParkingSpot"}]}, headers=PLINK) as r:
        assert await r.json() == [{"id": "urn:ngsi-ld:ParkingSpot:q:1"}, {"id": "urn:ngsi-ld:ParkingSpot:q:2"}]


@pytest.mark.parametrize("order_by, expected", [
    ("name", ["1", "2", "3", "4"]),              # "Alpha" < "Beta" < "alphabet"; no name: last
    ("name;desc", ["3", "2", "1", "4"]),         # missing values stay last
    ("width", ["1", "4", "2", "3"]),
    ("width;desc", ["3", "2", "4", "1"]),
    ("id;desc", ["4", "3", "2", "1"]),
    ("status,width;desc", ["4", "3", "1", "2"]),  # closed < free < occupied, then width descending
    ("width.accuracy;desc", ["4", "3", "2", "1"]),  # a sub-attribute's value
    ("status.observedAt;desc", ["4", "3", "2", "1"]),  # observedAt 05-02 … 05-05
    ("type;asc,name;desc", ["3", "2", "1", "4"]),
])
async def test_order_by(http, populated, order_by, expected):
    assert await ids(http, populated, {"type": "ParkingSpot", "orderBy": order_by}) == expected


async def test_order_by_pages_after_sorting_and_rejects_bad_values(http, populated):
    assert await ids(http, populated, {"type": "ParkingSpot", "orderBy": "width;desc", "limit": "2",
                                       "offset": "1"}) == ["2", "4"]
    async with http.post(f"{populated}/entityOperations/query", params={"orderBy": "id;desc"},
                         json={"type": "Query", "entities": [{"type": "ParkingSpot"}]}, headers=PLINK) as r:
        assert [e["id"][-1] for e in await r.json()] == ["4", "3", "2", "1"]
    # modifiedAt of the entity itself; ties keep creation order
    async with http.patch(f"{populated}/entities/urn:ngsi-ld:ParkingSpot:q:2/attrs/status", headers=PLINK,
                          json={"type": "Property", "value": "free"}) as r:
        assert r.status == 204
    assert await ids(http, populated, {"type": "ParkingSpot", "orderBy": "modifiedAt;desc"}) == ["2", "1", "3", "4"]
    assert (await ids(http, populated, {"type": "ParkingSpot", "orderBy": "status.modifiedAt;desc"}))[0] == "2"
    for bad in ("name;up", ";asc", "name,,id"):
        async with http.get(f"{populated}/entities", params={"type": "ParkingSpot", "orderBy": bad}) as r:
            assert r.status == 400, bad


async def test_scope_q(http, broker):
    for n, scope in ((1, "/Madrid/Gardens/ParqueNorte"),
                     (2, ["/Madrid/Gardens/ParqueNorte", "/CompanyA/OrganizationB/UnitC"]),
                     (3, "/Madrid/Streets/Gran"), (4, None)):
        entity = {"id": f"urn:ngsi-ld:B:{n}", "type": "B", **({"scope": scope} if scope else {})}
        async with http.post(f"{broker}/entities", json=entity) as r:
            assert r.status == 201
    for scope_q, expected in (("/Madrid/Gardens/ParqueNorte", ["1", "2"]), ("/Madrid/+/ParqueNorte", ["1", "2"]),
                              ("/Madrid/#", ["1", "2", "3"]), ("/CompanyA/#", ["2"]), ("/#", ["1", "2", "3"]),
                              ("/Madrid/Gardens/ParqueNorte;/CompanyA/OrganizationB/UnitC", ["2"]),
                              ("/Madrid/Streets/Gran,/CompanyA/OrganizationB/UnitC", ["2", "3"]),
                              ("(/Madrid/+/Gran|/CompanyA/#);/#", ["2", "3"]), ("/Madrid", [])):
        assert await ids(http, broker, {"type": "B", "scopeQ": scope_q}, headers={}) == expected, scope_q
    assert await ids(http, broker, {"scopeQ": "/CompanyA/#"}, headers={}) == ["2"]  # enough on its own
    async with http.post(f"{broker}/entityOperations/query", json={"type": "Query", "scopeQ": "/Madrid/+/Gran"}) as r:
        assert [e["id"] for e in await r.json()] == ["urn:ngsi-ld:B:3"]
    for bad in ("Madrid", "/Madrid/#/x", "/a;", "(/a"):
        async with http.get(f"{broker}/entities", params={"type": "B", "scopeQ": bad}) as r:
            assert r.status == 400, bad

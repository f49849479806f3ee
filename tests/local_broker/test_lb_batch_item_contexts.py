"""Per-item @context in batch create / upsert / update (reference/orion-ld.md §1.1): under
application/ld+json each array item brings its own @context, so one request holds entities of
several models each expanded through its own terms; the json / ld+json rule is applied per item
(a per-entity error in a 207); ld+json with a Link header is a 400 for the whole request."""

from __future__ import annotations

from .conftest import LINK_REL

DEVICE_CTX = "https://raw.githubusercontent.com/smart-data-models/dataModel.Device/master/context.jsonld"
WEATHER_CTX = "https://raw.githubusercontent.com/smart-data-models/dataModel.Weather/master/context.jsonld"
LDJSON = {"Content-Type": "application/ld+json"}


def item(kind: str, n: int, ctx: str | None, value: str = "urn:ngsi-ld:Device:1") -> dict:
    body = {"id": f"urn:ngsi-ld:{kind}:ic:{n}", "type": kind,
            "refDevice": {"type": "Relationship", "object": value}}
    if ctx is not None:
        body["@context"] = ctx
    return body


async def post(http, broker, op, body, headers=LDJSON, params=None):
    async with http.post(f"{broker}/entityOperations/{op}", json=body, headers=headers, params=params) as r:
        raw = await r.read()
        return r.status, (await r.json(content_type=None) if raw else None)


async def expanded(http, broker, entity_id) -> dict:
    """The entity read with the core context only: attribute names are the stored IRIs."""
    async with http.get(f"{broker}/entities/{entity_id}") as r:
        assert r.status == 200
        return await r.json()


async def test_create_upsert_and_update_expand_each_item_through_its_own_context(http, broker):
    status, body = await post(http, broker, "create",
                              [item("DeviceMeasurement", 1, DEVICE_CTX), item("WeatherObserved", 2, WEATHER_CTX)])
    assert status == 201 and len(body) == 2
    dm = await expanded(http, broker, "urn:ngsi-ld:DeviceMeasurement:ic:1")
    wo = await expanded(http, broker, "urn:ngsi-ld:WeatherObserved:ic:2")
    assert "https://smartdatamodels.org/dataModel.Device/refDevice" in dm
    assert "https://smartdatamodels.org/dataModel.Weather/refDevice" in wo
    assert dm["type"] == "https://smartdatamodels.org/dataModel.Device/DeviceMeasurement"

    status, _ = await post(http, broker, "upsert",
                           [item("DeviceMeasurement", 1, DEVICE_CTX, "urn:ngsi-ld:Device:2"),
                            item("WeatherObserved", 3, WEATHER_CTX)], params={"options": "update"})
    assert status in (201, 204, 207)
    dm = await expanded(http, broker, "urn:ngsi-ld:DeviceMeasurement:ic:1")
    assert dm["https://smartdatamodels.org/dataModel.Device/refDevice"]["object"] == "urn:ngsi-ld:Device:2"

    status, body = await post(http, broker, "update",
                              [item("WeatherObserved", 2, WEATHER_CTX, "urn:ngsi-ld:Device:9"),
                               item("WeatherObserved", 3, None)])
    assert status == 207
    assert [e["entityId"] for e in body["errors"]] == ["urn:ngsi-ld:WeatherObserved:ic:3"]   # no @context
    wo = await expanded(http, broker, "urn:ngsi-ld:WeatherObserved:ic:2")
    assert wo["https://smartdatamodels.org/dataModel.Weather/refDevice"]["object"] == "urn:ngsi-ld:Device:9"
    # written with the Device context, a Weather attribute would have landed elsewhere: the test can fail
    assert "https://smartdatamodels.org/dataModel.Device/refDevice" not in wo


async def test_ld_json_with_a_link_header_is_a_400_for_the_whole_batch(http, broker):
    headers = {**LDJSON, "Link": f"<{DEVICE_CTX}>; {LINK_REL}"}
    status, body = await post(http, broker, "create", [item("DeviceMeasurement", 5, DEVICE_CTX)], headers=headers)
    assert status == 400 and body["title"] == "invalid combination of HTTP headers Content-Type and Link"
    async with http.get(f"{broker}/entities/urn:ngsi-ld:DeviceMeasurement:ic:5") as r:
        assert r.status == 404


async def test_a_list_context_per_item_model_last(http, broker):
    ext = {"floorX": "https://stadtlink.github.io/terms/Test/floorX"}
    status, _ = await post(http, broker, "create", [{**item("DeviceMeasurement", 6, None), "@context": [ext, DEVICE_CTX],
                                                     "floorX": {"type": "Property", "value": 2}}])
    assert status == 201
    dm = await expanded(http, broker, "urn:ngsi-ld:DeviceMeasurement:ic:6")
    assert "https://stadtlink.github.io/terms/Test/floorX" in dm
    assert "https://smartdatamodels.org/dataModel.Device/refDevice" in dm

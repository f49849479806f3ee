"""Common request rules (§1), tenants (§6), @context resolution and bad input."""

from __future__ import annotations

import asyncio
import io
import json

import aiohttp

from stadtlink.broker_client.local_broker import running_broker

from .conftest import PARKING_CTX, PARKING_LINK, problem

ENTITY = {"id": "urn:ngsi-ld:T:1", "type": "T", "a": {"type": "Property", "value": 1}}


async def answer(http, method, url, **kw):
    async with http.request(method, url, **kw) as r:
        raw = await r.read()
        return r.status, r.headers, raw


async def test_content_type_rules(http, broker):
    url = f"{broker}/entities"
    data = json.dumps(ENTITY).encode()
    status, headers, raw = await answer(http, "POST", url, data=data, headers={"Content-Type": "text/plain"})
    assert status == 415 and problem(json.loads(raw))[1] == "unsupported format of payload"
    assert headers["Content-Type"] == "application/json"
    status, _, _ = await answer(http, "POST", url, data=data)  # no Content-Type at all
    assert status == 415
    status, _, _ = await answer(http, "POST", url, data=data, headers={"Content-Type": "application/merge-patch+json"})
    assert status == 415
    status, _, raw = await answer(http, "POST", url, data=json.dumps({**ENTITY, "@context": PARKING_CTX}),
                                  headers={"Content-Type": "application/json"})
    assert status == 400
    assert problem(json.loads(raw))[1] == "Mismatch between /Content-Type/ and contents of the request payload body"
    status, _, raw = await answer(http, "POST", url, data=data, headers={"Content-Type": "application/ld+json"})
    assert status == 400 and problem(json.loads(raw))[1] == "@context missing in JSON payload"
    status, _, raw = await answer(http, "POST", url, data=json.dumps({**ENTITY, "@context": PARKING_CTX}),
                                  headers={"Content-Type": "application/ld+json", "Link": PARKING_LINK})
    assert status == 400
    assert problem(json.loads(raw))[1] == "invalid combination of HTTP headers Content-Type and Link"
    status, _, _ = await answer(http, "POST", url, data=data,
                                headers={"Content-Type": "application/json; charset=utf-8"})
    assert status == 201
    status, _, _ = await answer(http, "PATCH", f"{url}/urn:ngsi-ld:T:1/attrs", data=b'{"a": 2}',
                                headers={"Content-Type": "application/merge-patch+json"})
    assert status == 204


async def test_accept_rules(http, broker):
    await answer(http, "POST", f"{broker}/entities", json=ENTITY)
    url = f"{broker}/entities/urn:ngsi-ld:T:1"
    status, headers, raw = await answer(http, "GET", url, headers={"Accept": "text/html"})
    assert status == 406 and problem(json.loads(raw))[1] == "Invalid Accept mime-type"
    for accept in ("*/*", "application/*", "application/json", "text/html, application/json;q=0.5"):
        status, headers, _ = await answer(http, "GET", url, headers={"Accept": accept})
        assert status == 200 and headers["Content-Type"] == "application/json", accept
        assert "Link" in headers
    status, headers, _ = await answer(http, "GET", url, headers={"Accept": "application/ld+json;q=0.9, application/json;q=0.9"})
    assert headers["Content-Type"] == "application/json"
    status, headers, raw = await answer(http, "GET", url, headers={"Accept": "application/ld+json"})
    assert headers["Content-Type"] == "application/ld+json" and "Link" not in headers
    assert "@context" in json.loads(raw)
    # no Accept header at all: application/json
    for target in (url, f"{broker}/entities?type=T", f"{broker}/subscriptions"):
        async with http.get(target, skip_auto_headers=["Accept"]) as r:
            assert "Accept" not in r.request_info.headers
            assert r.status == 200 and r.headers["Content-Type"] == "application/json", target


async def test_body_rules(http, broker):
    url = f"{broker}/entities"
    cases = [
        (b"{bad json", "InvalidRequest", "JSON Parse Error"),
        (b"{}", "BadRequestData", "Invalid Payload Body"),
        (b"[]", "InvalidRequest", "Invalid Payload Body"),  # an array where an entity belongs
        (b'[{"id": "urn:ngsi-ld:T:1", "type": "T"}]', "InvalidRequest", "Invalid Payload Body"),
        (b"", "BadRequestData", "payload missing"),
        (b"42", "InvalidRequest", "Invalid Payload Body"),
    ]
    for data, kind, title in cases:
        status, headers, raw = await answer(http, "POST", url, data=data, headers={"Content-Type": "application/json"})
        assert status == 400, data
        assert problem(json.loads(raw)) == (kind, title), data
        assert "Link" not in headers
    status, _, raw = await answer(http, "GET", f"{url}?type=T", data=b'{"a": 1}',
                                  headers={"Content-Type": "application/json"})
    assert status == 400 and problem(json.loads(raw))[1] == "Unexpected payload body"


async def test_413_above_max_body_and_broker_keeps_working(http, broker):
    big = b'{"id": "urn:ngsi-ld:T:big", "type": "T", "a": "' + b"x" * (2 * 1024 * 1024) + b'"}'
    status, headers, raw = await answer(http, "POST", f"{broker}/entities", data=io.BytesIO(big),
                                        headers={"Content-Type": "application/json"})
    assert status == 413
    body = json.loads(raw)
    assert problem(body)[1] == "Request Entity too large"
    assert body["detail"] == f"payload size: {len(big)}, max size supported: 1048576"
    status, _, _ = await answer(http, "POST", f"{broker}/entities", json=ENTITY)
    assert status == 201


async def test_413_for_chunked_body_without_length():
    async with running_broker(max_body=1000) as url:
        async def chunks():
            yield b'{"id": "urn:ngsi-ld:T:c", "type": "T", "a": "'
            for _ in range(10):
                yield b"y" * 500
            yield b'"}'
        async with aiohttp.ClientSession() as http:
            status, _, raw = await answer(http, "POST", f"{url}/ngsi-ld/v1/entities", data=chunks(),
                                          headers={"Content-Type": "application/json"})
            assert status == 413


async def test_uri_parameter_rules(http, broker):
    for method, path, query, title in [
        ("GET", "/entities", "type=T&foo=1", "Unknown URI parameter"),
        ("POST", "/entities", "foo=1", "Unknown URI parameter"),
        ("GET", "/subscriptions", "bar=1", "Unknown URI parameter"),
        ("POST", "/subscriptions", "bar=1", "Unknown URI parameter"),
        ("POST", "/entities", "count=true", "Unsupported URI parameter"),
        ("POST", "/entityOperations/delete", "options=update", "Unsupported URI parameter"),
        ("GET", "/entities", "type=", "Empty right-hand-side for a URI parameter"),
        ("GET", "/entities/urn:ngsi-ld:T:1", "foo=1", "Unknown URI parameter"),
        ("DELETE", "/entities/urn:ngsi-ld:T:1", "foo=1", "Unknown URI parameter"),
        ("POST", "/entityOperations/upsert", "foo=1", "Unknown URI parameter"),
        ("POST", "/entityOperations/query", "foo=1", "Unknown URI parameter"),
        ("GET", "/subscriptions/urn:x:1", "foo=1", "Unknown URI parameter"),
    ]:
        kw = {"json": ENTITY} if method == "POST" else {}
        status, _, raw = await answer(http, method, f"{broker}{path}?{query}", **kw)
        assert status == 400, (method, path, query)
        body = json.loads(raw)
        assert problem(body)[1] == title


async def test_paths_verbs_and_trailing_slash(http, broker):
    status, _, _ = await answer(http, "POST", f"{broker}/entities/", json=ENTITY)
    assert status == 201
    status, _, _ = await answer(http, "GET", f"{broker}/entities/?type=T")
    assert status == 200
    status, headers, raw = await answer(http, "PUT", f"{broker}/entities")
    assert status == 405 and raw == b"" and headers["Allow"] == "GET,POST"
    status, headers, raw = await answer(http, "DELETE", f"{broker}/entityOperations/upsert")
    assert status == 405 and headers["Allow"] == "POST"
    status, _, raw = await answer(http, "GET", f"{broker}/nothing/here")
    assert status == 404 and problem(json.loads(raw)) == ("ResourceNotFound", "Service Not Found")
    status, _, raw = await answer(http, "GET", broker.replace("/ngsi-ld/v1", "/other"))
    assert status == 404


async def test_error_bodies_have_exact_members(http, broker):
    status, headers, raw = await answer(http, "GET", f"{broker}/entities/urn:ngsi-ld:T:none")
    assert status == 404
    assert list(json.loads(raw)) == ["type", "title", "detail"]
    assert headers["Content-Type"] == "application/json" and "Link" not in headers


async def test_unknown_context_url_is_503_and_core_urls_are_built_in(http, broker):
    link = '<http://127.0.0.1:9/never.jsonld>; rel="http://www.w3.org/ns/json-ld#context"'
    status, _, raw = await answer(http, "POST", f"{broker}/entities", json=ENTITY, headers={"Link": link})
    assert status == 503
    assert problem(json.loads(raw)) == ("LdContextNotAvailable", "Unable to download context")
    for version in ("", "-v1.3", "-v1.6", "-v1.8", "-v1.9"):
        core = f"https://uri.etsi.org/ngsi-ld/v1/ngsi-ld-core-context{version}.jsonld"
        status, _, raw = await answer(http, "GET", f"{broker}/entities?type=T", headers={"Link": f"<{core}>"})
        assert status == 200, version
    status, _, raw = await answer(http, "GET", f"{broker}/entities?type=T", headers={"Link": "no-brackets"})
    assert status == 400


async def test_smart_data_models_alias_urls(http, broker):
    entity = {"id": "urn:ngsi-ld:WeatherObserved:1", "type": "WeatherObserved",
              "temperature": {"type": "Property", "value": 12.5, "unitCode": "CEL"}}
    raw_link = "<https://raw.githubusercontent.com/smart-data-models/dataModel.Weather/master/context.jsonld>"
    io_link = "<https://smart-data-models.github.io/dataModel.Weather/context.jsonld>"
    status, _, _ = await answer(http, "POST", f"{broker}/entities", json=entity, headers={"Link": raw_link})
    assert status == 201
    status, _, raw = await answer(http, "GET", f"{broker}/entities/urn:ngsi-ld:WeatherObserved:1",
                                  headers={"Link": io_link})
    assert json.loads(raw)["temperature"]["value"] == 12.5
    status, _, raw = await answer(http, "GET", f"{broker}/entities/urn:ngsi-ld:WeatherObserved:1")
    assert json.loads(raw)["type"].startswith("https://smartdatamodels.org/")


async def test_context_dir_preloads_files(http, tmp_path):
    (tmp_path / "mine.jsonld").write_text(json.dumps(
        {"@id": "http://example.org/mine.jsonld", "@context": {"speed": "http://example.org/speed"}}))
    (tmp_path / "other.json").write_text(json.dumps({"@context": {"Car": "http://example.org/Car"}}))
    (tmp_path / "index.json").write_text(json.dumps({"http://example.org/other.jsonld": "other.json"}))
    async with running_broker(context_dir=str(tmp_path)) as url:
        base = url + "/ngsi-ld/v1"
        status, _, _ = await answer(http, "POST", f"{base}/entities",
                                    json={"id": "urn:ngsi-ld:Car:1", "type": "Car", "speed": 3},
                                    headers={"Link": "<http://example.org/other.jsonld>"})
        assert status == 201
        status, _, raw = await answer(http, "GET", f"{base}/entities/urn:ngsi-ld:Car:1",
                                      headers={"Link": "<http://example.org/mine.jsonld>"})
        body = json.loads(raw)
        assert body["type"] == "http://example.org/Car"
        # written without a speed term (default vocab), read where speed means something else
        assert "speed" not in body
        assert body["ngsi-ld:default-context/speed"]["value"] == 3  # JSON-LD compact IRI
        status, _, raw = await answer(http, "POST", f"{base}/entities",
                                      json={"id": "urn:ngsi-ld:Car:2", "type": "Car", "speed": 3},
                                      headers={"Link": "<http://example.org/mine.jsonld>"})
        status, _, raw = await answer(http, "GET", f"{base}/entities/urn:ngsi-ld:Car:2",
                                      headers={"Link": "<http://example.org/mine.jsonld>"})
        assert json.loads(raw)["speed"]["value"] == 3
        # a compound context nesting another URL and a core context URL (as the ETSI suite uses)
        (tmp_path / "compound.jsonld").write_text(json.dumps({"@id": "http://example.org/compound.jsonld", "@context": [
            "http://example.org/mine.jsonld", "https://uri.etsi.org/ngsi-ld/v1/ngsi-ld-core-context-v1.8.jsonld"]}))
    async with running_broker(context_dir=str(tmp_path)) as url:
        base = url + "/ngsi-ld/v1"
        compound = {"Link": "<http://example.org/compound.jsonld>"}
        status, _, _ = await answer(http, "POST", f"{base}/entityOperations/create",
                                    json=[{"id": "urn:ngsi-ld:Car:3", "type": "Car", "speed": 4}], headers=compound)
        assert status == 201
        status, _, raw = await answer(http, "GET", f"{base}/entities/urn:ngsi-ld:Car:3",
                                      headers={"Link": "<http://example.org/mine.jsonld>"})
        assert json.loads(raw)["speed"]["value"] == 4
        status, _, raw = await answer(http, "GET", f"{base}/entities/urn:ngsi-ld:Car:3")
        assert json.loads(raw)["http://example.org/speed"]["value"] == 4
        status, headers, raw = await answer(http, "GET", f"{base}/entities/urn:ngsi-ld:Car:3",
                                            headers={**compound, "Accept": "application/ld+json"})
        assert json.loads(raw)["@context"] == "http://example.org/compound.jsonld"


async def test_tenants(http, broker):
    t = {"NGSILD-Tenant": "city_a"}
    status, _, raw = await answer(http, "GET", f"{broker}/entities?type=T", headers=t)
    assert status == 404
    assert json.loads(raw) == {"type": "https://uri.etsi.org/ngsi-ld/errors/NonExistingTenant",
                               "title": "No such tenant", "detail": "city_a"}
    status, headers, _ = await answer(http, "POST", f"{broker}/entities", json=ENTITY, headers=t)
    assert status == 201 and headers["NGSILD-Tenant"] == "city_a"
    status, _, raw = await answer(http, "GET", f"{broker}/entities?type=T", headers=t)
    assert [e["id"] for e in json.loads(raw)] == ["urn:ngsi-ld:T:1"]
    status, _, raw = await answer(http, "GET", f"{broker}/entities?type=T")  # default tenant is separate
    assert json.loads(raw) == []
    status, _, raw = await answer(http, "GET", f"{broker}/entities?type=T", headers={"Fiware-Service": "CITY_A"})
    assert len(json.loads(raw)) == 1  # names are lower-cased
    status, _, raw = await answer(http, "GET", f"{broker}/entities?type=T",
                                  headers={"NGSILD-Tenant": "city_a", "Fiware-Service": "city_b"})
    assert status == 400 and problem(json.loads(raw))[1] == "HTTP header duplication"
    for bad in ("has space", "x" * 51, "semi;colon"):
        status, _, raw = await answer(http, "GET", f"{broker}/entities?type=T", headers={"NGSILD-Tenant": bad})
        assert status == 400 and problem(json.loads(raw))[1] == "Invalid tenant name"
    status, headers, _ = await answer(http, "POST", f"{broker}/entityOperations/upsert", json=[ENTITY],
                                      headers={"NGSILD-Tenant": "city_c"})
    assert status == 201 and headers["NGSILD-Tenant"] == "city_c"
    status, _, _ = await answer(http, "POST", f"{broker}/entityOperations/update", json=[ENTITY],
                                headers={"NGSILD-Tenant": "city_d"})
    assert status == 404
    status, _, _ = await answer(http, "DELETE", f"{broker}/entities/urn:ngsi-ld:T:1", headers={"NGSILD-Tenant": "city_d"})
    assert status == 404


async def test_bad_input_never_breaks_the_broker(http, broker):
    garbage = [b"\x00\xff\xfe", b"[1, 2, 3]", b'{"id": [], "type": {}}', b'[{"id": 1}]', b'"string"',
               b'{"id": "urn:x:1", "type": "T", "a": {"type": "Property", "value": 1, "sub": null}}',
               b'{"id": "urn:x:1", "type": "T", "location": {"type": "GeoProperty", "value": "here"}}',
               b'{"id": "urn:x:1", "type": ["T", 5]}', b'{"id": "urn:x:1", "type": "T", "": 1}']
    for data in garbage:
        for path in ("/entities", "/entityOperations/upsert", "/entityOperations/delete",
                     "/entityOperations/query", "/subscriptions"):
            status, _, raw = await answer(http, "POST", f"{broker}{path}", data=data,
                                          headers={"Content-Type": "application/json"})
            assert 400 <= status < 500 or status in (201, 207), (path, data, status, raw)
    status, _, _ = await answer(http, "GET", f"{broker}/entities?type=T&q=%22%22%22")
    assert status == 400
    # still serving
    results = await asyncio.gather(*[answer(http, "POST", f"{broker}/entities",
                                            json={"id": f"urn:ngsi-ld:T:p{i}", "type": "T", "a": i})
                                     for i in range(20)])
    assert all(r[0] == 201 for r in results)


async def test_unimplemented_ngsi_ld_resources_are_501(http, broker):
    for path in ("/temporal/entities?type=T", "/csourceRegistrations?type=T", "/attributes"):
        status, _, raw = await answer(http, "GET", f"{broker}{path}")
        assert status == 501, path
        assert problem(json.loads(raw))[0] == "OperationNotSupported"

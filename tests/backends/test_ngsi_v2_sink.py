"""The NGSI-v2 sink against an Orion stand-in that answers as Orion's manual and functional tests
record (docs/backends/ngsi-v2.md)."""

from __future__ import annotations

import pytest

from stadtlink.broker_client import RetryPolicy
from stadtlink.broker_client.backends import (
    BackendConfigError,
    BrokerDown,
    check_backend,
    make_backend,
)
from stadtlink.broker_client.backends.ngsi_v2 import ids_in_description
from stadtlink.broker_client.errors import BrokerUnavailable, NGSILDError

from .servers import KeycloakServer, OrionV2Server

FAST = RetryPolicy(attempts=3, base_delay=0.001, max_delay=0.01)


def spot(i: int, status: str = "free", **extra) -> dict:
    e = {"id": f"urn:ngsi-ld:ParkingSpot:town:{i}", "type": "ParkingSpot",
         "status": {"type": "Property", "value": status, "observedAt": "2026-11-29T10:00:00.000Z"},
         "location": {"type": "GeoProperty", "value": {"type": "Point", "coordinates": [10.78, 52.42]}}}
    e.update(extra)
    return e


async def open_v2(server, **config):
    backend = make_backend({"kind": "ngsi-v2", "url": server.url, **config}, retry=FAST)
    await backend.open()
    return backend


@pytest.fixture
async def orion():
    async with OrionV2Server() as server:
        yield server


async def test_append_with_service_headers_and_v2_body(orion):
    backend = await open_v2(orion, service="Wolfsburg", service_path="/parking/")
    try:
        await check_backend(backend)
        result = await backend.write([spot(1), spot(2)])
    finally:
        await backend.close()
    assert result.ok and len(result.succeeded) == 2
    _, _, headers, body = orion.writes("/v2/op/update")[0]
    assert headers["Fiware-Service"] == "wolfsburg" and headers["Fiware-ServicePath"] == "/parking"
    assert "Link" not in headers and "NGSILD-Tenant" not in headers
    assert headers["Content-Type"] == "application/json" and int(headers["Content-Length"]) == len(body)
    stored = orion.store("wolfsburg", "/parking")[spot(1)["id"]]
    assert stored["status"] == {"type": "Text", "value": "free",
                                "metadata": {"timestamp": {"type": "DateTime", "value": "2026-11-29T10:00:00.000Z"}}}
    assert stored["location"]["type"] == "geo:json"


async def test_forbidden_characters_replaced_or_refused_before_sending(orion):
    backend = await open_v2(orion)
    try:
        result = await backend.write([
            spot(1, description={"type": "Property", "value": "Nord (P+R)"}),
            spot(2, status="free;occupied"),                 # enum attribute: not replaceable
            spot(3),
        ])
    finally:
        await backend.close()
    assert sorted(result.succeeded) == [spot(1)["id"], spot(3)["id"]]
    [failure] = result.failed
    assert failure.entity_id == spot(2)["id"] and not failure.retryable
    assert failure.problem.title == "Not representable in NGSI-v2" and "'status'" in failure.problem.detail
    assert orion.store()[spot(1)["id"]]["description"]["value"] == "Nord %28P+R%29"
    assert len(orion.writes("/v2/op/update")) == 1       # one bad entity did not block its batch


async def test_400_for_the_whole_request_is_bisected_to_the_bad_entity(orion):
    # A character the converter lets through but this Orion refuses: its whole request fails.
    backend = await open_v2(orion)
    import stadtlink.broker_client.backends.ngsi_v2_convert as conv

    entities = [spot(i) for i in range(8)]
    entities[5]["note"] = {"type": "Property", "value": "ok"}
    original = conv.FORBIDDEN_CHARS
    try:
        conv.FORBIDDEN_CHARS = frozenset(original - {"("})     # pretend our table missed '('
        entities[5]["note"]["value"] = "broken ("
        result = await backend.write(entities)
    finally:
        conv.FORBIDDEN_CHARS = original
        await backend.close()
    assert sorted(result.succeeded) == sorted(e["id"] for i, e in enumerate(entities) if i != 5)
    [failure] = result.failed
    assert failure.entity_id == entities[5]["id"] and not failure.retryable
    assert failure.problem.title == "BadRequest" and failure.problem.detail == "Invalid characters in attribute value"
    assert set(orion.store()) == {e["id"] for i, e in enumerate(entities) if i != 5}


async def test_partial_update_hint_resends_named_entities_alone(orion):
    orion.refuse = {spot(3)["id"]: ("Unprocessable", 422)}
    backend = await open_v2(orion)
    try:
        result = await backend.write([spot(i) for i in range(6)])
    finally:
        await backend.close()
    assert sorted(result.succeeded) == sorted(spot(i)["id"] for i in range(6) if i != 3)
    [failure] = result.failed
    assert failure.entity_id == spot(3)["id"] and failure.problem.status == 422
    assert failure.problem.title == "Unprocessable"
    bodies = [r[3] for r in orion.writes("/v2/op/update")]
    assert len(bodies) == 3      # the batch (PartialUpdate), the 5 others again, the named one alone


def test_description_parsing_is_only_a_hint():
    ids = ["E", "G", "urn:ngsi-ld:T:a:1", "F"]
    assert ids_in_description("do not exist: E/T - [ D ], G/T [entity itself]", ids) == ["E", "G"]
    assert ids_in_description("do not exist: urn:ngsi-ld:T:a:1/T - [entity itself]", ids) == ["urn:ngsi-ld:T:a:1"]
    assert ids_in_description("something else entirely", ids) == []
    assert ids_in_description(None, ids) == []


async def test_batches_cut_by_bytes_and_413_splits():
    async with OrionV2Server(max_body=3000) as server:
        backend = await open_v2(server, max_body_bytes=2500)
        try:
            result = await backend.write([spot(i) for i in range(30)])
            sizes = [len(r[3]) for r in server.writes("/v2/op/update")]
            assert result.ok and len(server.store()) == 30
            assert max(sizes) <= 2500 and len(sizes) > 1
            # a broker with a smaller limit than configured: 413, split in halves
            server.max_body = 1000
            server.requests.clear()
            result = await backend.write([spot(i, "occupied") for i in range(30)])
        finally:
            await backend.close()
    assert result.ok and len(result.succeeded) == 30
    assert all(e["status"]["value"] == "occupied" for e in server.store().values())


async def test_entity_bigger_than_the_limit_is_refused_locally():
    async with OrionV2Server() as server:
        backend = await open_v2(server, max_body_bytes=2000)
        try:
            result = await backend.write([spot(1, note={"type": "Property", "value": "x" * 5000}), spot(2)])
        finally:
            await backend.close()
    assert result.succeeded == [spot(2)["id"]]
    assert result.failed[0].problem.status == 413 and not result.failed[0].retryable


async def test_5xx_retried_then_raised_with_partial(orion):
    backend = await open_v2(orion, batch_size=2)
    try:
        orion.fail_next = [500, 500]                       # first batch: two 500s, then fine
        result = await backend.write([spot(1), spot(2)])
        assert result.ok
        orion.fail_next = [500] * 10
        with pytest.raises(NGSILDError) as info:
            await backend.write([spot(3), spot(4), spot(5)])
    finally:
        await backend.close()
    assert info.value.status == 500 and info.value.retryable and info.value.partial is not None
    assert len(orion.writes("/v2/op/update")) == 3 + 3   # 3 attempts each time; nothing after the raise


async def test_timeout_and_refused_connection_raise():
    async with OrionV2Server() as server:
        server.delay_s = 0.5
        backend = make_backend({"kind": "ngsi-v2", "url": server.url, "timeout_s": 0.1},
                               retry=RetryPolicy(attempts=2, base_delay=0.001, max_delay=0.01))
        await backend.open()
        try:
            with pytest.raises(BrokerUnavailable):
                await backend.write([spot(1)])
        finally:
            await backend.close()
    url = server.url  # stopped now
    backend = make_backend({"kind": "ngsi-v2", "url": url}, retry=RetryPolicy(attempts=1))
    await backend.open()
    try:
        with pytest.raises(BrokerUnavailable):
            await backend.write([spot(1)])
        with pytest.raises(BrokerDown) as info:
            await check_backend(backend, key="brokers[1]")
        assert info.value.key == "brokers[1].url" and "cannot reach" in str(info.value)
    finally:
        await backend.close()


async def test_host_that_does_not_resolve_is_a_config_error():
    backend = make_backend({"kind": "ngsi-v2", "url": "http://no-such-host.invalid:1026"}, key="brokers[1]")
    await backend.open()
    try:
        with pytest.raises(BackendConfigError) as info:
            await check_backend(backend, key="brokers[1]")
    finally:
        await backend.close()
    assert info.value.key == "brokers[1].url" and "does not resolve" in str(info.value)


async def test_oauth2_behind_a_pep_proxy_for_v2():
    async with KeycloakServer() as kc, OrionV2Server() as server:
        from aiohttp import web

        @web.middleware
        async def pep(request, handler):
            auth = request.headers.get("Authorization", "")
            if not kc.valid(auth[7:] if auth.startswith("Bearer ") else ""):
                return web.Response(status=401)
            return await handler(request)

        # put the PEP in front of the running stand-in
        await server.stop()
        original = server._record
        server._record = web.middleware(lambda request, handler: pep(request, lambda r: original(r, handler)))
        await server.start()
        auth = {"kind": "oauth2", "token_url": kc.token_url, "client_id": kc.client_id, "client_secret": kc.client_secret}
        backend = await open_v2(server, auth=auth)
        try:
            assert (await backend.write([spot(1)])).ok
            kc.revoke_all()
            assert (await backend.write([spot(2)])).ok
        finally:
            await backend.close()
        assert len(kc.writes("/token")) == 2
        assert set(server.store()) == {spot(1)["id"], spot(2)["id"]}


@pytest.mark.parametrize("config,key", [
    ({"service": "bad-name"}, "broker.service"),
    ({"tenant": "bad name"}, "broker.tenant"),
    ({"service_path": "parking"}, "broker.service_path"),
    ({"service_path": "/a,/b"}, "broker.service_path"),
    ({"ids": "short"}, "broker.ids"),
])
def test_v2_config_errors_name_the_key(config, key):
    with pytest.raises(BackendConfigError) as info:
        make_backend({"kind": "ngsi-v2", "url": "http://127.0.0.1:1026", **config})
    assert info.value.key == key


def test_unknown_kind_names_the_key():
    with pytest.raises(BackendConfigError) as info:
        make_backend({"kind": "orion-v3", "url": "http://127.0.0.1:1026"}, key="brokers[2]")
    assert info.value.key == "brokers[2].kind"
    assert "orion-ld, scorpio, stellio, ngsi-v2" in str(info.value)


async def test_ngsi_ld_url_on_a_v2_broker_is_a_config_error(orion):
    backend = make_backend({"kind": "orion-ld", "url": orion.url}, retry=FAST)
    await backend.open()
    try:
        with pytest.raises(BackendConfigError) as info:
            await check_backend(backend)
    finally:
        await backend.close()
    assert info.value.key == "broker.url" and "wrong kind" in str(info.value)

"""Stellio as a sink (docs/backends/stellio.md): its batch answers, its URN tenants, and Keycloak
client-credentials auth with a token that is cached, renewed before it expires and once on 401."""

from __future__ import annotations

import asyncio

import pytest

from stadtlink.broker_client import OAuth2ClientCredentials, RetryPolicy
from stadtlink.broker_client.backends import BackendConfigError, check_backend, make_backend
from stadtlink.broker_client.errors import Unauthorized

from .servers import KeycloakServer, StellioServer

FAST = RetryPolicy(attempts=2, base_delay=0.001, max_delay=0.01)
TENANT = "urn:ngsi-ld:tenant:default"


def spot(i: int, status: str = "free") -> dict:
    return {"id": f"urn:ngsi-ld:ParkingSpot:town:{i}", "type": "ParkingSpot",
            "status": {"type": "Property", "value": status}}


def bad(i: int) -> dict:
    return {"id": f"urn:ngsi-ld:ParkingSpot:town:bad{i}", "type": "ParkingSpot", "status": {"type": "Nonsense"}}


async def open_backend(config: dict):
    backend = make_backend({"kind": "stellio", **config}, retry=FAST)
    await backend.open()
    return backend


async def test_created_then_updated_and_207_with_entity_id():
    async with StellioServer() as server:
        backend = await open_backend({"url": server.url, "tenant": TENANT})
        try:
            r1 = await backend.write([spot(1)])
            # 201 lists only the created entity; the updated one is written too
            r2 = await backend.write([spot(1, "occupied"), spot(2)])
            r3 = await backend.write([spot(3), bad(1)])
        finally:
            await backend.close()
    assert r1.succeeded == [spot(1)["id"]]
    assert sorted(r2.succeeded) == [spot(1)["id"], spot(2)["id"]] and r2.ok
    assert server.store()[spot(1)["id"]]["status"]["value"] == "occupied"
    assert r3.succeeded == [spot(3)["id"]]
    assert [(f.entity_id, f.retryable, f.problem.status) for f in r3.failed] == [(bad(1)["id"], False, 400)]


async def test_all_failed_is_207_with_empty_success():
    async with StellioServer() as server:
        backend = await open_backend({"url": server.url})
        try:
            result = await backend.write([bad(1), bad(2)])
        finally:
            await backend.close()
    assert result.succeeded == [] and len(result.failed) == 2
    assert all(not f.retryable for f in result.failed)


async def test_urn_tenant_is_sent_and_unknown_tenant_is_a_config_error():
    async with StellioServer(tenants=(TENANT, "urn:ngsi-ld:tenant:wolfsburg")) as server:
        backend = await open_backend({"url": server.url, "tenant": "urn:ngsi-ld:tenant:wolfsburg"})
        try:
            await check_backend(backend, key="broker")
            await backend.write([spot(1)])
        finally:
            await backend.close()
        assert spot(1)["id"] in server.store("urn:ngsi-ld:tenant:wolfsburg")
        other = await open_backend({"url": server.url, "tenant": "urn:ngsi-ld:tenant:nowhere"})
        try:
            with pytest.raises(BackendConfigError) as info:
                await check_backend(other, key="brokers[1]")
        finally:
            await other.close()
    assert info.value.key == "brokers[1].tenant"
    assert "does not know tenant" in str(info.value)


def test_tenant_with_spaces_is_refused_naming_the_key():
    with pytest.raises(BackendConfigError) as info:
        make_backend({"kind": "stellio", "url": "http://127.0.0.1:8080", "tenant": "my town"})
    assert info.value.key == "broker.tenant"


async def test_request_over_2_mib_is_split():
    async with StellioServer() as server:
        big = [dict(spot(i), note={"type": "Property", "value": "x" * 300_000}) for i in range(10)]
        backend = await open_backend({"url": server.url, "max_body_bytes": 4_000_000})
        try:
            result = await backend.write(big)
        finally:
            await backend.close()
    assert result.ok and len(result.succeeded) == 10
    assert len(server.store()) == 10
    assert len(server.writes("upsert")) >= 3     # first one refused with 413, then halves


async def test_queries_page_at_most_100():
    async with StellioServer() as server:
        for i in range(250):
            server.store()[spot(i)["id"]] = spot(i)
        backend = await open_backend({"url": server.url})
        try:
            found = [e["id"] async for e in backend.query_entities(type="ParkingSpot")]
        finally:
            await backend.close()
    assert len(set(found)) == 250
    limits = {r[1].split("limit=")[1].split("&")[0] for r in server.requests if r[0] == "GET"}
    assert limits == {"100"}


@pytest.fixture
async def keycloak():
    async with KeycloakServer(expires_in=300) as kc:
        yield kc


def oauth(kc: KeycloakServer, secret: str | None = None) -> dict:
    return {"kind": "oauth2", "token_url": kc.token_url, "client_id": kc.client_id,
            "client_secret": secret or kc.client_secret}


async def test_oauth2_token_fetched_once_and_cached(keycloak):
    async with StellioServer(keycloak=keycloak) as server:
        backend = await open_backend({"url": server.url, "auth": oauth(keycloak)})
        try:
            await check_backend(backend)
            for i in range(5):
                assert (await backend.write([spot(i)])).ok
        finally:
            await backend.close()
    assert len(keycloak.writes("/token")) == 1
    assert server.unauthorized == 0


async def test_oauth2_401_refreshes_once_and_succeeds(keycloak):
    async with StellioServer(keycloak=keycloak) as server:
        backend = await open_backend({"url": server.url, "auth": oauth(keycloak)})
        try:
            assert (await backend.write([spot(1)])).ok
            keycloak.revoke_all()                          # the cached token stops being valid
            result = await backend.write([spot(2)])
        finally:
            await backend.close()
    assert result.ok
    assert server.unauthorized == 1
    assert len(keycloak.writes("/token")) == 2


async def test_oauth2_token_renewed_before_expiry():
    clock = [1000.0]
    async with KeycloakServer(expires_in=60) as kc, StellioServer(keycloak=kc) as server:
        auth = OAuth2ClientCredentials(kc.token_url, kc.client_id, kc.client_secret, clock=lambda: clock[0])
        backend = make_backend({"kind": "stellio", "url": server.url, "auth": auth}, retry=FAST)
        await backend.open()
        try:
            assert (await backend.write([spot(1)])).ok
            clock[0] += 47                                 # 60 s token: renewed after 48 s
            assert (await backend.write([spot(2)])).ok
            assert len(kc.writes("/token")) == 1
            clock[0] += 2
            assert (await backend.write([spot(3)])).ok
        finally:
            await backend.close()
        assert len(kc.writes("/token")) == 2
        assert server.unauthorized == 0


async def test_wrong_client_secret_is_a_config_error_naming_auth(keycloak):
    async with StellioServer(keycloak=keycloak) as server:
        backend = await open_backend({"url": server.url, "auth": oauth(keycloak, "wrong")})
        try:
            with pytest.raises(BackendConfigError) as info:
                await check_backend(backend)
        finally:
            await backend.close()
    assert info.value.key == "broker.auth"
    assert "unauthorized_client" in str(info.value)


async def test_persistent_401_raises_and_keeps_entities(keycloak):
    async with StellioServer(keycloak=keycloak) as server:
        backend = await open_backend({"url": server.url, "auth": oauth(keycloak)})
        try:
            assert (await backend.write([spot(1)])).ok
            # every token is refused from now on (e.g. the realm's key rotated)
            keycloak.valid = lambda token: False           # type: ignore[method-assign]
            with pytest.raises(Unauthorized):
                await backend.write([spot(2)])
        finally:
            await backend.close()
    assert spot(2)["id"] not in server.store()


async def test_same_auth_block_works_for_orion_ld_behind_a_pep_proxy(keycloak):
    """The PEP proxy answers 401 without a valid token exactly like Stellio's resource server."""
    from aiohttp import web

    from stadtlink.broker_client.local_broker import create_app

    broker_app = create_app()

    @web.middleware
    async def pep(request, handler):
        auth = request.headers.get("Authorization", "")
        if not keycloak.valid(auth[7:] if auth.startswith("Bearer ") else ""):
            return web.Response(status=401, headers={"WWW-Authenticate": "Bearer"})
        return await handler(request)

    broker_app.middlewares.append(pep)
    runner = web.AppRunner(broker_app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]
    try:
        backend = make_backend({"kind": "orion-ld", "url": f"http://127.0.0.1:{port}", "auth": oauth(keycloak)},
                               retry=FAST)
        await backend.open()
        try:
            await check_backend(backend)
            assert (await backend.write([spot(1)])).ok
            keycloak.revoke_all()
            assert (await backend.write([spot(2)])).ok
        finally:
            await backend.close()
    finally:
        await runner.cleanup()
    assert len(keycloak.writes("/token")) == 2
    await asyncio.sleep(0)


async def test_5xx_retried_then_raised_and_timeouts():
    from stadtlink.broker_client.errors import BrokerUnavailable, NGSILDError

    async with StellioServer() as server:
        backend = await open_backend({"url": server.url})
        try:
            server.fail_next = [500]                        # one 500, then the retry succeeds
            assert (await backend.write([spot(1)])).ok
            server.fail_next = [503] * 5
            with pytest.raises(NGSILDError) as info:
                await backend.write([spot(2)])
            assert info.value.status == 503 and info.value.retryable
        finally:
            await backend.close()
        assert spot(2)["id"] not in server.store()
        server.fail_next = []
        server.delay_s = 0.5
        slow = make_backend({"kind": "stellio", "url": server.url, "timeout_s": 0.1}, retry=FAST)
        await slow.open()
        try:
            with pytest.raises(BrokerUnavailable):
                await slow.write([spot(3)])
        finally:
            await slow.close()

"""Scorpio as a sink: every batch answer shape Scorpio is known to give (docs/backends/scorpio.md),
over real sockets. Whatever the shape, each entity ends up written or reported failed -- none is
taken for written when the answer did not say so."""

from __future__ import annotations

import pytest

from stadtlink.broker_client import RetryPolicy
from stadtlink.broker_client.backends import make_backend
from stadtlink.broker_client.errors import BrokerUnavailable, InternalError

from .servers import ScorpioServer

FAST = RetryPolicy(attempts=3, base_delay=0.001, max_delay=0.01)


def spot(i: int, status: str = "free") -> dict:
    return {"id": f"urn:ngsi-ld:ParkingSpot:town:{i}", "type": "ParkingSpot",
            "status": {"type": "Property", "value": status}}


def bad(i: int) -> dict:
    return {"id": f"urn:ngsi-ld:ParkingSpot:town:bad{i}", "type": "ParkingSpot", "status": {"type": "Nonsense"}}


async def write_until_settled(backend, entities, rounds: int = 5):
    """What the batcher does: send again only the retryable failures."""
    pending = list(entities)
    succeeded, permanent = [], []
    for _ in range(rounds):
        if not pending:
            break
        result = await backend.write(pending)
        succeeded += result.succeeded
        permanent += [f for f in result.failed if not f.retryable]
        retry = {f.entity_id for f in result.failed if f.retryable}
        pending = [e for e in pending if e["id"] in retry]
    return succeeded, permanent, pending


@pytest.fixture
async def scorpio():
    async with ScorpioServer() as server:
        yield server


async def backend_for(server, **extra):
    backend = make_backend({"kind": "scorpio", "url": server.url, **extra}, retry=FAST)
    await backend.open()
    return backend


async def test_all_new_201_then_all_existing_204(scorpio):
    backend = await backend_for(scorpio)
    try:
        r1 = await backend.write([spot(1), spot(2)])
        r2 = await backend.write([spot(1, "occupied"), spot(2)])
    finally:
        await backend.close()
    assert sorted(r1.succeeded) == [spot(1)["id"], spot(2)["id"]] and r1.ok
    assert r2.ok and len(r2.succeeded) == 2
    assert scorpio.store()[spot(1)["id"]]["status"]["value"] == "occupied"
    # the upsert asked for update semantics (Scorpio replaces without options=update)
    assert all("options=update" in r[1] for r in scorpio.writes("upsert"))


async def test_207_object_with_id_and_problem_details(scorpio):
    backend = await backend_for(scorpio)
    try:
        result = await backend.write([spot(1), bad(1), spot(2)])
    finally:
        await backend.close()
    assert sorted(result.succeeded) == [spot(1)["id"], spot(2)["id"]]
    assert [f.entity_id for f in result.failed] == [bad(1)["id"]]
    failure = result.failed[0]
    assert failure.retryable is False
    assert failure.problem.type.endswith("BadRequestData") and failure.problem.status == 400


async def test_every_entity_failed_is_400_with_errors_not_207(scorpio):
    backend = await backend_for(scorpio)
    try:
        result = await backend.write([bad(1), bad(2)])
    finally:
        await backend.close()
    assert result.succeeded == []
    assert sorted(f.entity_id for f in result.failed) == [bad(1)["id"], bad(2)["id"]]
    assert all(not f.retryable for f in result.failed)
    assert len(scorpio.writes("upsert")) == 1   # a 400 is an answer: no retry storm


async def test_every_entity_503_raises_and_keeps_them(scorpio):
    scorpio.unavailable_ids = {spot(1)["id"], spot(2)["id"]}
    backend = await backend_for(scorpio)
    try:
        with pytest.raises((BrokerUnavailable, InternalError)) as info:
            await backend.write([spot(1), spot(2)])
    finally:
        await backend.close()
    assert info.value.status == 503
    assert len(scorpio.writes("upsert")) == FAST.attempts   # retried, then given back to the outbox


async def test_one_entity_503_in_a_mixed_batch_is_retryable(scorpio):
    scorpio.unavailable_ids = {spot(2)["id"]}
    backend = await backend_for(scorpio)
    try:
        result = await backend.write([spot(1), spot(2)])
    finally:
        await backend.close()
    assert result.succeeded == [spot(1)["id"]]
    assert [(f.entity_id, f.retryable) for f in result.failed] == [(spot(2)["id"], True)]


async def test_issue_329_empty_207_is_resent_not_assumed():
    async with ScorpioServer(version="2.1.22") as server:
        server.store()[spot(1)["id"]] = spot(1)            # one existing, one new → mixed batch
        backend = await backend_for(server)
        try:
            first = await backend.write([spot(1, "occupied"), spot(2)])
            assert first.succeeded == []
            assert all(f.retryable and f.problem.title == "Not reported" for f in first.failed)
            succeeded, permanent, pending = await write_until_settled(backend, [spot(1, "occupied"), spot(2)])
        finally:
            await backend.close()
    assert sorted(succeeded) == [spot(1)["id"], spot(2)["id"]] and not permanent and not pending
    assert server.store()[spot(1)["id"]]["status"]["value"] == "occupied"


async def test_issue_451_204_for_a_mixed_batch():
    async with ScorpioServer(version="451") as server:
        server.store()[spot(1)["id"]] = spot(1)
        backend = await backend_for(server)
        try:
            result = await backend.write([spot(1, "occupied"), spot(2)])
        finally:
            await backend.close()
    assert sorted(result.succeeded) == [spot(1)["id"], spot(2)["id"]] and result.ok
    assert set(server.store()) == {spot(1)["id"], spot(2)["id"]}


async def test_issue_466_207_array_of_success_and_failure():
    async with ScorpioServer(version="466") as server:
        backend = await backend_for(server)
        try:
            result = await backend.write([spot(1), bad(1)])
        finally:
            await backend.close()
    assert result.succeeded == [spot(1)["id"]]
    assert [f.entity_id for f in result.failed] == [bad(1)["id"]]
    assert result.failed[0].problem.type.endswith("BadRequestData") and not result.failed[0].retryable


async def test_tenant_header_and_batch_limit(scorpio):
    backend = await backend_for(scorpio, tenant="town_a", batch_size=5000)
    try:
        assert backend.batch_size == 1000                    # scorpio.entity.batch-operations.upsert.max
        await backend.write([spot(1)])
    finally:
        await backend.close()
    assert spot(1)["id"] in scorpio.store("town_a")
    assert scorpio.writes("upsert")[0][2]["NGSILD-Tenant"] == "town_a"


async def test_413_splits_the_batch():
    async with ScorpioServer() as server:
        server.client_max_size = 1000     # Quarkus max-body-size stand-in
        await server.stop()
        await server.start()
        backend = await backend_for(server, max_body_bytes=100_000)
        try:
            entities = [spot(i) for i in range(12)]
            result = await backend.write(entities)
        finally:
            await backend.close()
    assert result.ok and len(result.succeeded) == 12
    assert len(server.store()) == 12
    statuses = [r for r in server.requests if r[0] == "POST"]
    assert len(statuses) > 1


async def test_timeout_raises_broker_unavailable():
    async with ScorpioServer() as server:
        server.delay_s = 0.5
        backend = make_backend({"kind": "scorpio", "url": server.url, "timeout_s": 0.1},
                               retry=RetryPolicy(attempts=2, base_delay=0.001, max_delay=0.01))
        await backend.open()
        try:
            with pytest.raises(BrokerUnavailable):
                await backend.write([spot(1)])
        finally:
            await backend.close()


async def test_401_behind_a_pep_proxy_refreshes_the_token_once():
    """Scorpio has no authentication of its own (docs/backends/scorpio.md): deployments put a PEP
    proxy in front that answers 401 without a valid bearer token. The same ``auth`` block fetches a
    client-credentials token, and after a 401 (token revoked) fetches a new one and sends again."""
    from aiohttp import web

    from .servers import KeycloakServer

    async with KeycloakServer() as kc, ScorpioServer() as server:
        @web.middleware
        async def pep(request, handler):
            auth = request.headers.get("Authorization", "")
            if not kc.valid(auth[7:] if auth.startswith("Bearer ") else ""):
                return web.Response(status=401, headers={"WWW-Authenticate": "Bearer"})
            return await handler(request)

        await server.stop()               # put the PEP in front of the running stand-in
        original = server._record
        server._record = web.middleware(lambda request, handler: pep(request, lambda r: original(r, handler)))
        await server.start()
        auth = {"kind": "oauth2", "token_url": kc.token_url, "client_id": kc.client_id,
                "client_secret": kc.client_secret}
        backend = await backend_for(server, auth=auth)
        try:
            assert (await backend.write([spot(1)])).ok
            kc.revoke_all()
            assert (await backend.write([spot(2)])).ok
        finally:
            await backend.close()
        assert len(kc.writes("/token")) == 2
        assert set(server.store()) == {spot(1)["id"], spot(2)["id"]}

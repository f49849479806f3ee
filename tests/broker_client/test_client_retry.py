"""Retries: backoff with jitter on 5xx / connection errors / timeouts, only for idempotent calls."""

from __future__ import annotations

import asyncio
import random

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from bc_fakes import CONTEXT, ERR, FAST_RETRY, Canned, entity

from stadtlink.broker_client import (
    BadRequestData,
    BrokerUnavailable,
    InternalError,
    NGSILDClient,
    OperationNotSupported,
    RetryPolicy,
)
from stadtlink.adapters.core.testing import free_port

E1 = "urn:ngsi-ld:ParkingSpot:E1"


async def test_503_twice_then_204_succeeds(orion, client):
    orion.on("POST", "/entityOperations/upsert", Canned(503), Canned(503), Canned(204))
    result = await client.upsert([entity(E1)])
    assert result.succeeded == [E1]
    calls = orion.calls("POST", "/entityOperations/upsert")
    assert len(calls) == 3
    assert calls[0].body == calls[2].body  # the very same bytes re-sent


async def test_400_is_not_retried(orion, client):
    orion.always("GET", f"/entities/{E1}", Canned(400, {"type": ERR + "BadRequestData", "title": "x", "detail": "y"}))
    with pytest.raises(BadRequestData):
        await client.get_entity(E1)
    assert len(orion.calls()) == 1


async def test_501_is_not_retried(orion, client):
    orion.always("GET", "/entities", Canned(501, {"type": ERR + "OperationNotSupported", "title": "x", "detail": "y"}))
    with pytest.raises(OperationNotSupported):
        async for _ in client.query_entities(type="T", extra_params={"orderBy": "name"}):
            pass
    assert len(orion.calls()) == 1


async def test_connection_refused_raises_broker_unavailable_after_n_attempts(monkeypatch):
    port = free_port()
    sleeps: list[float] = []
    real_sleep = asyncio.sleep

    async def recording_sleep(delay, *a, **k):
        sleeps.append(delay)
        await real_sleep(0)

    monkeypatch.setattr("stadtlink.broker_client.client.asyncio.sleep", recording_sleep)
    async with NGSILDClient(f"http://127.0.0.1:{port}", retry=RetryPolicy(attempts=3, base_delay=0.05, max_delay=1.0)) as c:
        with pytest.raises(BrokerUnavailable) as info:
            await c.upsert([entity(E1)])
    assert info.value.status is None
    assert "3 attempt" in info.value.detail
    assert len(sleeps) == 2
    assert 0 <= sleeps[0] <= 0.05 and 0 <= sleeps[1] <= 0.1  # full jitter within the exponential cap


async def test_connection_refused_retried_even_for_create_since_nothing_was_sent():
    port = free_port()
    attempts: list[int] = []

    async def handler(request: web.Request) -> web.Response:
        attempts.append(1)
        return web.Response(status=201, headers={"Location": f"/ngsi-ld/v1/entities/{E1}"})

    app = web.Application()
    app.router.add_post("/ngsi-ld/v1/entities", handler)
    server = TestServer(app, host="127.0.0.1", port=port)

    async def start_late():
        await asyncio.sleep(0.15)
        await server.start_server()

    starter = asyncio.create_task(start_late())
    try:
        async with NGSILDClient(f"http://127.0.0.1:{port}", retry=RetryPolicy(attempts=30, base_delay=0.02, max_delay=0.05)) as c:
            assert await c.create_entity(entity(E1)) == E1
        assert len(attempts) == 1
    finally:
        await starter
        await server.close()


async def test_post_create_not_retried_on_5xx_or_timeout(orion, client):
    orion.always("POST", "/entityOperations/create", Canned(500, {"type": ERR + "InternalError", "title": "x", "detail": "y"}))
    with pytest.raises(InternalError):
        await client.create_many([entity(E1)])
    assert len(orion.calls()) == 1

    async def slow(rec):
        await asyncio.sleep(0.5)
        return Canned(201, None, {"Location": "/ngsi-ld/v1/subscriptions/urn:x:1"})

    orion.always("POST", "/subscriptions", slow)
    async with NGSILDClient(orion.url, context=CONTEXT, timeout=0.1, retry=FAST_RETRY) as c:
        with pytest.raises(BrokerUnavailable, match="timeout"):
            await c.create_subscription({"entities": [{"type": "T"}], "notification": {"endpoint": {"uri": "http://x/"}}})
    assert len(orion.calls("POST", "/subscriptions")) == 1


async def test_timeout_on_idempotent_call_is_retried(orion):
    state = {"n": 0}

    async def slow_then_fast(rec):
        state["n"] += 1
        if state["n"] == 1:
            await asyncio.sleep(0.5)
        return Canned(204)

    orion.always("POST", "/entityOperations/upsert", slow_then_fast)
    async with NGSILDClient(orion.url, context=CONTEXT, timeout=0.2, retry=FAST_RETRY) as c:
        result = await c.upsert([entity(E1)])
    assert result.succeeded == [E1]
    assert state["n"] == 2


async def test_retry_after_header_is_honoured_within_max_delay(orion, monkeypatch):
    sleeps: list[float] = []
    real_sleep = asyncio.sleep

    async def recording_sleep(delay, *a, **k):
        sleeps.append(delay)
        await real_sleep(0)

    monkeypatch.setattr("stadtlink.broker_client.client.asyncio.sleep", recording_sleep)
    orion.on("GET", f"/entities/{E1}", Canned(503, b"", {"Retry-After": "3"}), Canned(200, {"id": E1, "type": "T"}))
    async with NGSILDClient(orion.url, context=CONTEXT, retry=RetryPolicy(attempts=3, base_delay=0.01, max_delay=2.0)) as c:
        await c.get_entity(E1)
    assert sleeps == [2.0]


def test_retry_policy_delay_bounds():
    policy = RetryPolicy(attempts=6, base_delay=0.2, max_delay=5.0)
    rng = random.Random(1)
    for n, cap in [(1, 0.2), (2, 0.4), (3, 0.8), (4, 1.6), (5, 3.2), (6, 5.0), (10, 5.0)]:
        samples = [policy.delay(n, rng) for _ in range(200)]
        assert all(0 <= s <= cap for s in samples)
        assert max(samples) > cap * 0.8  # full jitter spreads over the whole range
    with pytest.raises(ValueError):
        RetryPolicy(attempts=0)


async def test_patch_attrs_and_delete_are_retried(orion, client):
    orion.on("PATCH", f"/entities/{E1}/attrs", Canned(503), Canned(204))
    orion.on("DELETE", f"/entities/{E1}", Canned(502, b"Bad Gateway"), Canned(204))
    assert (await client.update_attributes(E1, {"status": {"type": "Property", "value": "free"}})).ok
    await client.delete_entity(E1)
    assert len(orion.calls()) == 4


async def test_append_no_overwrite_not_retried(orion, client):
    orion.always("POST", f"/entities/{E1}/attrs", Canned(503))
    with pytest.raises(BrokerUnavailable):
        await client.append_attributes(E1, {"a": {"type": "Property", "value": 1}}, no_overwrite=True)
    assert len(orion.calls()) == 1


async def test_health(orion, client):
    orion.on("GET", "/types", Canned(200, []), Canned(503), Canned(401, b""))
    assert await client.health() is True
    assert await client.health() is False
    assert await client.health() is False
    assert len(orion.calls()) == 3  # no retries for health
    async with NGSILDClient(f"http://127.0.0.1:{free_port()}", retry=FAST_RETRY) as c:
        assert await c.health() is False


async def test_connection_dropped_mid_request_retried_only_when_idempotent():
    """The broker dies mid-request: the connection closes without an answer."""
    calls: list[str] = []

    async def handler(request: web.Request) -> web.StreamResponse:
        await request.read()
        calls.append(request.path)
        if len([c for c in calls if c == request.path]) == 1:
            request.transport.close()  # type: ignore[union-attr]
            return web.Response(status=204)  # never reaches the client
        if request.path.endswith("/entities"):
            return web.Response(status=201, headers={"Location": f"/ngsi-ld/v1/entities/{E1}"})
        return web.Response(status=204)

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handler)
    server = TestServer(app, host="127.0.0.1", port=0)
    await server.start_server()
    try:
        async with NGSILDClient(str(server.make_url("")), retry=FAST_RETRY) as c:
            result = await c.upsert([entity(E1)])
            assert result.succeeded == [E1]
            with pytest.raises(BrokerUnavailable):
                await c.create_entity(entity(E1))
        assert calls.count("/ngsi-ld/v1/entityOperations/upsert") == 2
        assert calls.count("/ngsi-ld/v1/entities") == 1
    finally:
        await server.close()

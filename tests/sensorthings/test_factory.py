"""``broker: {kind: sensorthings, url, auth}`` through the backend factory and its start-up check."""

from __future__ import annotations

import base64

import pytest

from stadtlink.broker_client.backends import (
    KINDS,
    BackendConfigError,
    BrokerDown,
    check_backend,
    make_backend,
)
from stadtlink.broker_client.errors import Unauthorized
from stadtlink.broker_client.retry import RetryPolicy
from stadtlink.broker_client.sensorthings import SensorThingsBackend

from .frost_fake import start_fake_frost
from .helpers import weather


async def test_kind_sensorthings_writes_to_a_real_server(sta_server, ns):
    assert "sensorthings" in KINDS
    backend = make_backend({"kind": "sensorthings", "url": sta_server.url, "batch_size": 50})
    assert isinstance(backend, SensorThingsBackend) and backend.batch_size == 50
    async with backend:
        await check_backend(backend)
        assert await backend.health() is True
        assert (await backend.write([weather(ns)])).ok


async def test_start_up_check_names_the_key_at_fault(sta_server):
    wrong_path = make_backend({"kind": "sensorthings", "url": sta_server.url.replace("/v1.1", "/v9")})
    async with wrong_path:
        with pytest.raises(BackendConfigError, match=r"^broker\.url: .*404"):
            await check_backend(wrong_path)
    nowhere = make_backend({"kind": "sensorthings", "url": "http://127.0.0.1:9/FROST-Server/v1.1"},
                           retry=RetryPolicy(attempts=1))
    async with nowhere:  # down, not misconfigured: the runtime starts and the outbox waits
        with pytest.raises(BrokerDown, match=r"^broker\.url: cannot reach"):
            await check_backend(nowhere)
    with pytest.raises(BackendConfigError, match=r"^broker\.url"):
        make_backend({"kind": "sensorthings", "url": "frost:8080"})


async def test_token_auth_reaches_the_server():
    fake, runner = await start_fake_frost(authorization="Bearer s3cret")
    try:
        good = make_backend({"kind": "sensorthings", "url": fake.url, "auth": {"kind": "token", "value": "s3cret"}})
        async with good:
            await check_backend(good)
            assert (await good.write([weather("town")])).ok
        bad = make_backend({"kind": "sensorthings", "url": fake.url, "auth": {"kind": "token", "value": "nope"}})
        async with bad:
            with pytest.raises(BackendConfigError, match=r"^broker\.auth: .*refused the credentials \(HTTP 401\)"):
                await check_backend(bad)
            bad.conformance = []                          # as if the root had been readable
            with pytest.raises(Unauthorized):             # raised: the runtime keeps the batch, no dead letters
                await bad.write([weather("town", "other")])
        assert len(fake.store["Observations"]) == 3
    finally:
        await runner.cleanup()


async def test_basic_auth_as_frosts_basic_auth_provider_wants_it(monkeypatch):
    # FROST's BasicAuthProvider creates a user "write" (password "write") with create/update roles
    fake, runner = await start_fake_frost(authorization="Basic " + base64.b64encode(b"write:write").decode())
    monkeypatch.setenv("FROST_PASSWORD", "write")
    try:
        backend = make_backend({"kind": "sensorthings", "url": fake.url,
                                "auth": {"kind": "basic", "username": "write", "password_env": "FROST_PASSWORD"}})
        assert "write" in repr(backend.http.auth) and "FROST_PASSWORD" not in repr(backend.http.auth)
        async with backend:
            await check_backend(backend)
            assert (await backend.write([weather("town")])).ok
        monkeypatch.setenv("FROST_PASSWORD", "wrong")
        async with backend:
            with pytest.raises(BackendConfigError, match=r"^broker\.auth: .*HTTP 401"):
                await check_backend(backend)
    finally:
        await runner.cleanup()
    with pytest.raises(BackendConfigError, match=r"^broker\.auth: basic auth needs exactly one"):
        make_backend({"kind": "sensorthings", "url": fake.url, "auth": {"kind": "basic", "username": "write"}})


def test_a_tenant_is_refused_for_sensorthings():
    with pytest.raises(BackendConfigError, match=r"^broker\.tenant: SensorThings has no tenants"):
        make_backend({"kind": "sensorthings", "url": "http://frost:8080/FROST-Server/v1.1", "tenant": "town"})


async def test_a_runtime_config_with_a_sensorthings_sink(sta_server, ns):
    """``brokers:`` in an adapter config (validated by the runtime's model) → the SensorThings sink."""
    from stadtlink.adapters import climate
    from stadtlink.adapters.core.config import load_config

    config, _ = load_config({
        "adapter": "climate", "namespace": ns,
        "brokers": [{"name": "orion", "kind": "orion-ld", "url": "http://127.0.0.1:1026"},
                    {"name": "frost", "kind": "sensorthings", "url": sta_server.url, "batch_size": 100}],
        "sources": [], "settings": {},
    }, adapter=climate.ADAPTER, env={})
    (name, key, broker), = [s for s in config.sink_configs() if s[2].kind == "sensorthings"]
    assert (name, key) == ("frost", "brokers[1]")
    backend = make_backend(broker, key=key)
    assert isinstance(backend, SensorThingsBackend) and backend.batch_size == 100
    async with backend:
        await check_backend(backend, key=key)
        assert (await backend.write([weather(ns)])).ok


async def test_runtime_config_takes_basic_auth_and_data_array(monkeypatch, ns):
    """The adapter config (not only the factory) accepts FROST's basic auth and the dataArray switch."""
    from stadtlink.adapters import climate
    from stadtlink.adapters.core.config import load_config
    from stadtlink.adapters.core.errors import ConfigError

    fake, runner = await start_fake_frost(authorization="Basic " + base64.b64encode(b"write:write").decode())
    monkeypatch.setenv("FROST_PASSWORD", "write")
    try:
        doc = {"adapter": "climate", "namespace": ns, "sources": [], "settings": {},
               "broker": {"kind": "sensorthings", "url": fake.url, "data_array": False,
                          "auth": {"kind": "basic", "username": "write", "password_env": "FROST_PASSWORD"}}}
        config, _ = load_config(doc, adapter=climate.ADAPTER, env={})
        assert config.broker.data_array is False
        backend = make_backend(config.broker)
        assert backend.data_array_forced is False and "write" in repr(backend.http.auth)
        async with backend:
            await check_backend(backend)
            assert (await backend.write([weather(ns)])).ok
    finally:
        await runner.cleanup()
    # what the model refuses, naming the key
    for broker, key in (({"kind": "orion-ld", "url": "http://o:1026", "data_array": True}, "data_array"),
                        ({"kind": "orion-ld", "url": "http://o:1026",
                          "auth": {"kind": "basic", "username": "u", "password": "p"}}, "auth.kind"),
                        ({"kind": "sensorthings", "url": "http://f:8080/v1.1",
                          "auth": {"kind": "basic", "username": "u"}}, "basic auth needs exactly one")):
        with pytest.raises(ConfigError, match=key):
            load_config({**doc, "broker": broker}, adapter=climate.ADAPTER, env={})

"""Static tokens and OAuth2 client credentials against a real fake token endpoint."""

from __future__ import annotations

import logging
import os
from urllib.parse import parse_qs

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from bc_fakes import CONTEXT, FAST_RETRY, Canned, entity

from stadtlink.broker_client import (
    AuthenticationError,
    NGSILDClient,
    OAuth2ClientCredentials,
    StaticToken,
    Unauthorized,
)

E1 = "urn:ngsi-ld:ParkingSpot:E1"
SECRET = "s3cr3t-client-secret-value"


class TokenEndpoint:
    """Keycloak-like /protocol/openid-connect/token: counts grants, issues tok-1, tok-2, ..."""

    def __init__(self, expires_in: int = 300, status: int = 200) -> None:
        self.expires_in = expires_in
        self.status = status
        self.forms: list[dict[str, list[str]]] = []
        self.server: TestServer | None = None

    async def handle(self, request: web.Request) -> web.Response:
        assert request.content_type == "application/x-www-form-urlencoded"
        form = parse_qs((await request.read()).decode())
        self.forms.append(form)
        if self.status != 200:
            return web.json_response({"error": "unauthorized_client", "error_description": "Invalid client secret"}, status=self.status)
        return web.json_response({"access_token": f"tok-{len(self.forms)}", "token_type": "Bearer", "expires_in": self.expires_in})

    async def start(self) -> str:
        app = web.Application()
        app.router.add_post("/realms/town/protocol/openid-connect/token", self.handle)
        self.server = TestServer(app, host="127.0.0.1", port=0)
        await self.server.start_server()
        return str(self.server.make_url("/realms/town/protocol/openid-connect/token"))


@pytest.fixture
async def keycloak():
    endpoint = TokenEndpoint()
    endpoint.url = await endpoint.start()  # type: ignore[attr-defined]
    yield endpoint
    await endpoint.server.close()  # type: ignore[union-attr]


def bearer(rec) -> str:
    return rec.headers.get("Authorization", "")


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def test_oauth2_token_cached_and_reused(orion, keycloak):
    auth = OAuth2ClientCredentials(keycloak.url, "adapter-parking", SECRET, scope="ngsi-ld", audience="orion")
    orion.always("DELETE", f"/entities/{E1}", Canned(204))
    async with NGSILDClient(orion.url, context=CONTEXT, auth=auth, retry=FAST_RETRY) as c:
        for _ in range(5):
            await c.delete_entity(E1)
    assert len(keycloak.forms) == 1
    form = keycloak.forms[0]
    assert form == {"grant_type": ["client_credentials"], "client_id": ["adapter-parking"],
                    "client_secret": [SECRET], "scope": ["ngsi-ld"], "audience": ["orion"]}
    assert [bearer(r) for r in orion.calls()] == ["Bearer tok-1"] * 5


async def test_oauth2_refreshed_before_expiry(orion, keycloak):
    keycloak.expires_in = 300
    clock = FakeClock()
    auth = OAuth2ClientCredentials(keycloak.url, "c", SECRET, clock=clock)
    orion.always("DELETE", f"/entities/{E1}", Canned(204))
    async with NGSILDClient(orion.url, context=CONTEXT, auth=auth, retry=FAST_RETRY) as c:
        await c.delete_entity(E1)
        clock.now += 269  # before 300 - 30 s margin: still cached
        await c.delete_entity(E1)
        clock.now += 2  # past 270 s: renewed although the token has not expired yet
        await c.delete_entity(E1)
    assert [bearer(r) for r in orion.calls()] == ["Bearer tok-1", "Bearer tok-1", "Bearer tok-2"]
    assert OAuth2ClientCredentials.refresh_delay(10) == 8  # short tokens: 20 % margin


async def test_oauth2_one_refresh_and_retry_on_401(orion, keycloak):
    orion.on("GET", f"/entities/{E1}", Canned(401, b""), Canned(200, {"id": E1, "type": "T"}))
    auth = OAuth2ClientCredentials(keycloak.url, "c", SECRET)
    async with NGSILDClient(orion.url, context=CONTEXT, auth=auth, retry=FAST_RETRY) as c:
        assert (await c.get_entity(E1))["id"] == E1
    assert len(keycloak.forms) == 2
    assert [bearer(r) for r in orion.calls()] == ["Bearer tok-1", "Bearer tok-2"]


async def test_persistent_401_refreshes_once_then_raises(orion, keycloak):
    orion.always("POST", "/entityOperations/upsert", Canned(401, b""))
    auth = OAuth2ClientCredentials(keycloak.url, "c", SECRET)
    async with NGSILDClient(orion.url, context=CONTEXT, auth=auth, retry=FAST_RETRY) as c:
        with pytest.raises(Unauthorized):
            await c.upsert([entity(E1)])
    assert len(orion.calls()) == 2 and len(keycloak.forms) == 2


async def test_token_endpoint_refusal_is_authentication_error_without_secret(orion, keycloak, caplog):
    keycloak.status = 401
    auth = OAuth2ClientCredentials(keycloak.url, "c", SECRET)
    caplog.set_level(logging.DEBUG)
    async with NGSILDClient(orion.url, context=CONTEXT, auth=auth, retry=FAST_RETRY) as c:
        with pytest.raises(AuthenticationError) as info:
            await c.get_entity(E1)
    assert info.value.status == 401 and info.value.retryable is False
    assert "Invalid client secret" in info.value.detail
    assert orion.calls() == []
    assert SECRET not in caplog.text and SECRET not in str(info.value) and SECRET not in repr(info.value)


async def test_unreachable_token_endpoint_is_retryable_authentication_error(orion):
    auth = OAuth2ClientCredentials("http://127.0.0.1:9/token", "c", SECRET, timeout=1)
    async with NGSILDClient(orion.url, context=CONTEXT, auth=auth, retry=FAST_RETRY) as c:
        with pytest.raises(AuthenticationError) as info:
            await c.get_entity(E1)
    assert info.value.retryable is True


def test_secrets_not_in_repr():
    auth = OAuth2ClientCredentials("http://kc/token", "c", SECRET)
    assert SECRET not in repr(auth)
    assert "tok-value" not in repr(StaticToken("tok-value"))
    client = NGSILDClient("http://127.0.0.1:1026", auth=StaticToken("tok-value"))
    assert "tok-value" not in repr(client)


async def test_static_token_value_and_env(orion, monkeypatch):
    orion.always("DELETE", f"/entities/{E1}", Canned(204))
    monkeypatch.setenv("STADTLINK_TEST_TOKEN", "from-env")
    for auth, expected in [(StaticToken("plain"), "Bearer plain"), (StaticToken(env="STADTLINK_TEST_TOKEN"), "Bearer from-env")]:
        async with NGSILDClient(orion.url, context=CONTEXT, auth=auth, retry=FAST_RETRY) as c:
            await c.delete_entity(E1)
        assert bearer(orion.calls()[-1]) == expected
    monkeypatch.delenv("STADTLINK_TEST_TOKEN")
    async with NGSILDClient(orion.url, context=CONTEXT, auth=StaticToken(env="STADTLINK_TEST_TOKEN")) as c:
        with pytest.raises(AuthenticationError, match="STADTLINK_TEST_TOKEN"):
            await c.delete_entity(E1)
    with pytest.raises(ValueError):
        StaticToken("a", env="B")


async def test_static_token_file_reread_when_it_changes(orion, tmp_path):
    token_file = tmp_path / "token"
    token_file.write_text("first\n")
    orion.always("DELETE", f"/entities/{E1}", Canned(204))
    async with NGSILDClient(orion.url, context=CONTEXT, auth=StaticToken(file=token_file), retry=FAST_RETRY) as c:
        await c.delete_entity(E1)
        await c.delete_entity(E1)
        # Kubernetes replaces the mounted file on rotation (new inode, new mtime)
        replacement = tmp_path / "token.new"
        replacement.write_text("second-longer\n")
        os.replace(replacement, token_file)
        await c.delete_entity(E1)
    assert [bearer(r) for r in orion.calls()] == ["Bearer first", "Bearer first", "Bearer second-longer"]


async def test_static_token_file_reread_after_401(orion, tmp_path):
    token_file = tmp_path / "token"
    token_file.write_text("old")
    auth = StaticToken(file=token_file)

    def rotate_then_401(rec):
        # rotated with identical size and mtime: only the 401 makes the client look again
        st = os.stat(token_file)
        token_file.write_text("new")
        os.utime(token_file, ns=(st.st_atime_ns, st.st_mtime_ns))
        return Canned(401, b"")

    orion.on("DELETE", f"/entities/{E1}", rotate_then_401, Canned(204))
    async with NGSILDClient(orion.url, context=CONTEXT, auth=auth, retry=FAST_RETRY) as c:
        await c.delete_entity(E1)
    assert [bearer(r) for r in orion.calls()] == ["Bearer old", "Bearer new"]


async def test_missing_token_file_is_clear_error(orion, tmp_path):
    async with NGSILDClient(orion.url, context=CONTEXT, auth=StaticToken(file=tmp_path / "absent")) as c:
        with pytest.raises(AuthenticationError, match="absent"):
            await c.delete_entity(E1)


async def test_concurrent_requests_share_one_token_fetch(orion, keycloak):
    import asyncio

    orion.always("DELETE", f"/entities/{E1}", Canned(204))
    auth = OAuth2ClientCredentials(keycloak.url, "c", SECRET)
    async with NGSILDClient(orion.url, context=CONTEXT, auth=auth, retry=FAST_RETRY) as c:
        await asyncio.gather(*(c.delete_entity(E1) for _ in range(10)))
    assert len(keycloak.forms) == 1
    assert {bearer(r) for r in orion.calls()} == {"Bearer tok-1"}

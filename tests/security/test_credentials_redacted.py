"""Credentials stadtlink sends never come back out of it (issue 19).

Real HTTP servers (aiohttp on free ports) play a token endpoint and brokers that repeat what they
were sent -- a Keycloak-style ``error_description`` with the client secret, a 400/500 detail with
the ``Authorization`` header, a form echo -- and the test looks for the secret in every form in
the exceptions, dead letters and logs. A broker URL with user info is a configuration error, and
a token endpoint that is down at start is waited for like a broker that is down.
"""
from __future__ import annotations

import asyncio
import base64
import json
import os
import subprocess
import sys
import uuid
from datetime import datetime, timedelta, timezone
from urllib.parse import quote, quote_plus

import orjson
import pytest
from aiohttp import web

from stadtlink.adapters.core.lorawan import tts_uplink
from stadtlink.adapters.core.reading import RawMessage
from stadtlink.adapters.parking import ADAPTER
from stadtlink.broker_client import NGSILDClient, OAuth2ClientCredentials, StaticToken
from stadtlink.broker_client.errors import AuthenticationError, NGSILDError
from stadtlink.broker_client.sensorthings.basic_auth import BasicAuth
from stadtlink.adapters.core.testing import free_port

pytestmark = pytest.mark.timeout(120)

# characters that URL-encoding and JSON-escaping spell differently
CLIENT_SECRET = 'kc-Secret/+=&"\\ä-' + uuid.uuid4().hex[:8]
TOKEN = "eyJhbGciOiJSUzI1NiJ9.stadtlink-" + uuid.uuid4().hex
PASSWORD = "frost-pw:" + uuid.uuid4().hex[:10]


DEVICES = [{"id": "garage", "name": "P", "lat": 52.4, "lon": 10.7, "total_spots": 1},
           {"id": "tps-1", "name": "Platz 1", "lat": 52.4, "lon": 10.7, "site": "garage"}]


def _forms(secret: str) -> list[str]:
    return [secret, quote(secret, safe=""), quote_plus(secret), json.dumps(secret)[1:-1],
            json.dumps(secret, ensure_ascii=False)[1:-1]]


def assert_clean(text: str, *secrets: str) -> None:
    for secret in secrets:
        for form in _forms(secret):
            assert form not in text, f"secret form {form!r} leaked into: {text[:400]}"


class EchoServer:
    """A token endpoint and an NGSI-LD broker that repeat the credentials they were sent."""

    def __init__(self, port: int | None = None, *, broker_status: int = 400, token_status: int = 401):
        self.port = port or free_port()
        self.broker_status = broker_status
        self.token_status = token_status
        self.accepted: list[dict] = []
        self._runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def token(self, request: web.Request) -> web.Response:
        raw = await request.read()
        form = await request.post()
        if self.token_status == 200:
            return web.json_response({"access_token": TOKEN, "expires_in": 300, "token_type": "Bearer"})
        return web.json_response(
            {"error": "invalid_client",
             "error_description": f"client secret {form.get('client_secret')} is wrong (form: {raw.decode()})"},
            status=self.token_status)

    async def broker(self, request: web.Request) -> web.Response:
        authorization = request.headers.get("Authorization", "")
        if request.method == "GET" and request.path.endswith("/types"):
            return web.json_response([])
        if self.broker_status < 300 and authorization == f"Bearer {TOKEN}":
            self.accepted.extend(orjson.loads(await request.read()))
            return web.Response(status=204)
        body = {"type": "https://uri.etsi.org/ngsi-ld/errors/BadRequestData", "title": "Bad request",
                "detail": f"header 'Authorization: {authorization}' is not accepted",
                "headers": {str(k): v for k, v in request.headers.items()}}
        return web.Response(status=self.broker_status, body=orjson.dumps(body), content_type="application/json")

    async def start(self) -> "EchoServer":
        app = web.Application()
        app.router.add_post("/token", self.token)
        app.router.add_route("*", "/ngsi-ld/v1/{tail:.*}", self.broker)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()
        return self

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()


@pytest.fixture
async def echo():
    server = await EchoServer().start()
    yield server
    await server.stop()


async def test_token_endpoint_echoing_the_client_secret_is_redacted(echo, caplog):
    caplog.set_level("DEBUG")
    auth = OAuth2ClientCredentials(f"{echo.url}/token", "stadtlink", CLIENT_SECRET)
    async with NGSILDClient(echo.url, auth=auth) as client:
        with pytest.raises(AuthenticationError) as info:
            await client.upsert([{"id": "urn:ngsi-ld:T:1", "type": "T"}])
    exc = info.value
    assert exc.status == 401 and "invalid_client" in str(exc) and "***" in exc.detail
    assert_clean(" ".join([str(exc), repr(exc), str(exc.detail), caplog.text]), CLIENT_SECRET)


async def test_runtime_start_with_a_refusing_token_endpoint_names_the_key_without_the_secret(echo, caplog):
    from stadtlink.adapters.core.errors import ConfigError
    from stadtlink.adapters.core.runner import Runner

    caplog.set_level("DEBUG")
    cfg = {"adapter": "parking", "namespace": "sec", "http": {"enabled": False}, "outbox": {"kind": "memory"},
           "broker": {"url": echo.url, "auth": {"kind": "oauth2", "token_url": f"{echo.url}/token",
                                                "client_id": "stadtlink", "client_secret": CLIENT_SECRET}}}
    runner = Runner.from_config(cfg, adapter=ADAPTER)
    with pytest.raises(ConfigError) as info:
        await runner.start()
    await runner.stop(grace=1)
    assert str(info.value).startswith("broker.auth: the token endpoint refused")
    assert_clean(str(info.value) + caplog.text, CLIENT_SECRET)


@pytest.mark.parametrize("status", [400, 500])
async def test_broker_answer_repeating_the_authorization_header_is_redacted(echo, status, caplog):
    caplog.set_level("DEBUG")
    echo.broker_status = status
    async with NGSILDClient(echo.url, auth=StaticToken(TOKEN)) as client:
        client.retry = type(client.retry)(attempts=1)
        try:
            result = await client.upsert([{"id": "urn:ngsi-ld:T:1", "type": "T"}])
            texts = [repr(f.problem) for f in result.failed]
            assert result.failed and "***" in texts[0]
        except NGSILDError as exc:
            assert status == 500
            texts = [str(exc), repr(exc), repr(exc.body)]
            assert "***" in str(exc)
        with pytest.raises(NGSILDError) as info:
            await client.get_entity("urn:ngsi-ld:T:1")
        texts += [str(info.value), repr(info.value.body)]
    assert_clean(" ".join(texts) + caplog.text, TOKEN)


async def test_basic_auth_password_repeated_by_the_server_is_redacted(echo, caplog):
    """FROST-Server style Basic credentials (the Base64 blob and the decoded password)."""
    caplog.set_level("DEBUG")
    blob = base64.b64encode(f"stadtlink:{PASSWORD}".encode()).decode()
    async with NGSILDClient(echo.url, auth=BasicAuth("stadtlink", PASSWORD)) as client:
        with pytest.raises(NGSILDError) as info:
            await client.get_entity("urn:ngsi-ld:T:1")
    text = str(info.value) + repr(info.value.body) + caplog.text
    assert "Basic ***" in text
    assert_clean(text, PASSWORD, blob)


async def test_dead_letters_and_logs_of_the_runtime_hold_no_echoed_token(echo, caplog):
    """Through the Runner: the broker rejects the batch with a 400 that repeats the header; the
    entity is dead-lettered with the broker's problem -- redacted."""
    from stadtlink.adapters.core.runner import Runner

    caplog.set_level("DEBUG")
    cfg = {"adapter": "parking", "namespace": "sec", "http": {"enabled": False}, "outbox": {"kind": "memory"},
           "broker": {"url": echo.url, "flush_ms": 20, "auth": {"kind": "token", "value": TOKEN}},
           "devices": DEVICES, "settings": {"heartbeat_timeout_s": 86400}}
    runner = Runner.from_config(cfg, adapter=ADAPTER)
    await runner.start()
    try:
        stamp = (datetime.now(timezone.utc) - timedelta(seconds=5)).strftime("%Y-%m-%dT%H:%M:%S.000Z")
        topic, body = tts_uplink("tps-1", b"\x01", f_port=1, f_cnt=1, received_at=stamp)
        await runner.pipeline.process(RawMessage("mqtt", orjson.dumps(body), datetime.now(timezone.utc), topic),
                                      "bosch-tps110")
        for _ in range(400):
            records = [r for _, r in await runner.deadletters.list(100)]
            if records:
                break
            await asyncio.sleep(0.05)
        assert records and records[0]["stage"] == "write"
        dumped = orjson.dumps(records).decode()
        assert "Bearer ***" in dumped
        assert_clean(dumped + caplog.text, TOKEN)
    finally:
        await runner.stop(grace=1)


def test_broker_url_with_user_info_is_a_configuration_error_naming_the_key(tmp_path):
    secret = "pw-" + uuid.uuid4().hex[:8]
    cfg = tmp_path / "parking.yaml"
    cfg.write_text(f"namespace: sec\nbroker:\n  url: http://stadtlink:{secret}@127.0.0.1:9/\n"
                   "outbox: {kind: memory}\nhttp: {enabled: false}\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("STADTLINK_")}
    proc = subprocess.run([sys.executable, "-m", "stadtlink.adapters.core.cli", "run", "parking", "--config", str(cfg)],
                          capture_output=True, text=True, timeout=60, env=env)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 2, out
    assert "broker.url: user info (user:password@) is not allowed" in out
    assert "Traceback" not in out and secret not in out


def test_library_clients_refuse_user_info_too():
    from stadtlink.broker_client.backends import BackendConfigError, make_backend

    with pytest.raises(ValueError) as info:
        NGSILDClient("http://u:s3cr3t-x@broker:1026")
    assert "user info" in str(info.value) and "s3cr3t-x" not in str(info.value)
    with pytest.raises(BackendConfigError) as info:
        make_backend({"kind": "ngsi-v2", "url": "http://u:s3cr3t-x@orion:1026"}, key="brokers[1]")
    assert str(info.value).startswith("brokers[1].url:") and "s3cr3t-x" not in str(info.value)
    with pytest.raises(ValueError) as info:
        OAuth2ClientCredentials("https://c:s3cr3t-x@kc/token", "c", "x")
    assert "s3cr3t-x" not in str(info.value)


async def test_token_endpoint_down_at_start_is_waited_for_like_a_broker():
    """The adapter starts (readiness false, entities kept), and delivers once the endpoint is up."""
    from stadtlink.adapters.core.runner import Runner

    server = EchoServer(broker_status=204, token_status=200)
    broker = await EchoServer(broker_status=204, token_status=200).start()
    cfg = {"adapter": "parking", "namespace": "sec", "http": {"enabled": False}, "outbox": {"kind": "memory"},
           "broker": {"url": broker.url, "flush_ms": 20, "health_interval_s": 0.2, "retry_base_s": 0.1,
                      "retry_max_s": 0.5,
                      "auth": {"kind": "oauth2", "token_url": f"{server.url}/token", "client_id": "stadtlink",
                               "client_secret": CLIENT_SECRET}},
           "devices": DEVICES, "settings": {"heartbeat_timeout_s": 86400}}
    runner = Runner.from_config(cfg, adapter=ADAPTER)
    await runner.start()        # before the change: ConfigError (broker.auth: token endpoint ... failed)
    try:
        stamp = (datetime.now(timezone.utc) - timedelta(seconds=5)).strftime("%Y-%m-%dT%H:%M:%S.000Z")
        topic, body = tts_uplink("tps-1", b"\x01", f_port=1, f_cnt=1, received_at=stamp)
        await runner.pipeline.process(RawMessage("mqtt", orjson.dumps(body), datetime.now(timezone.utc), topic),
                                      "bosch-tps110")
        await asyncio.sleep(1.0)
        ready, checks = runner.readiness()
        assert not ready and not broker.accepted and runner.outbox.depth >= 1
        await server.start()     # the token endpoint comes up: the batcher's retry gets a token and writes
        for _ in range(400):
            if broker.accepted and runner.readiness()[0]:
                break
            await asyncio.sleep(0.05)
        assert "urn:ngsi-ld:ParkingSpot:sec:tps-1" in [e["id"] for e in broker.accepted]
        assert runner.readiness()[0]
    finally:
        await runner.stop(grace=1)
        await server.stop()
        await broker.stop()


async def test_sensorthings_server_repeating_basic_credentials_is_redacted(caplog):
    """A SensorThings service root (FROST-Server style Basic auth) that answers 400 with the
    request's Authorization header: the write's error carries neither the blob nor the password."""
    from stadtlink.broker_client.sensorthings import SensorThingsBackend

    caplog.set_level("DEBUG")
    seen: list[str] = []

    async def echo(request: web.Request) -> web.Response:
        seen.append(request.headers.get("Authorization", ""))
        return web.json_response({"code": 400, "type": "error",
                                  "message": f"bad header Authorization: {request.headers.get('Authorization')}"},
                                 status=400)

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", echo)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    blob = base64.b64encode(f"stadtlink:{PASSWORD}".encode()).decode()
    try:
        async with SensorThingsBackend(f"http://127.0.0.1:{port}/FROST-Server/v1.1",
                                       auth=BasicAuth("stadtlink", PASSWORD)) as backend:
            with pytest.raises(Exception) as info:
                await backend.write([{"id": "urn:ngsi-ld:WaterObserved:t:1", "type": "WaterObserved"}])
    finally:
        await runner.cleanup()
    assert seen and seen[0] == f"Basic {blob}"          # the server really got the credentials
    text = f"{info.value} {info.value!r} {getattr(info.value, 'problem', '')!r} {caplog.text}"
    assert "Basic ***" in text
    assert_clean(text, PASSWORD, blob)

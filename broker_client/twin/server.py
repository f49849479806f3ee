"""``stadtlink twin``: subscribe, receive, push to browsers (Server-Sent Events).

On start the server reads the current entities of the twin's types from the broker, applies its
subscriptions (stable ids, so restarts don't pile up subscriptions), and serves:

* ``/`` the page (vendored Leaflet, no CDN; tiles only if ``--tile-url`` is given),
* ``/events`` the SSE stream: one ``snapshot`` event, then ``update`` events,
* ``/notify`` the notification receiver,
* ``/api/entities`` the current state as JSON, ``/healthz``.

Security (docs/security.md, "Twin view" and "Notification receiver"):

* every entity value is data, never markup: the page builds its DOM with ``textContent`` and serves
  a strict Content-Security-Policy (scripts and styles from this origin only, no inline code, no
  framing), ``X-Content-Type-Options: nosniff``;
* optional access control (:class:`AccessControl`) for the page, the API and the stream;
* a notification is only a hint *which* entities changed: the twin reads those entities back from
  the broker and never shows what a notification body says, so a forged notification (someone who
  read the subscription's ``receiverInfo`` secret) cannot change what the twin shows;
* ``/events``: one serialized snapshot shared by all browsers, at most ``max_clients`` streams, a
  browser that stops reading is dropped after ``send_timeout`` with at most one 64 KiB chunk
  buffered for it.
"""
from __future__ import annotations

import argparse
import asyncio
import base64
import binascii
import hashlib
import hmac
import logging
import os
import secrets
import signal
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import orjson
from aiohttp import web
from aiohttp.abc import AbstractAccessLogger

from ..client import NGSILDClient
from ..errors import NGSILDError, BrokerUnavailable
from ..netaddr import is_loopback_host
from ..notify import NotificationReceiver, ReadBack
from ..subscription_sync import apply
from .model import TWIN_TYPES, TwinState

log = logging.getLogger("stadtlink.twin")
STATIC = Path(__file__).resolve().parent / "static"

TOKEN_ENV = "STADTLINK_TWIN_TOKEN"
BASIC_ENV = "STADTLINK_TWIN_BASIC_AUTH"
SESSION_COOKIE = "stadtlink_twin"
CHUNK = 64 * 1024            # the most a slow browser's stream buffers in this process (plus aiohttp's own)



def compact_entity(entity: Any) -> Any:
    from stadtlink.schemas.vocabulary import compact_entity as compact

    return compact(entity)

def _default_context() -> str:
    from stadtlink.schemas.contexts import STADTLINK_CONTEXT_URL

    return STADTLINK_CONTEXT_URL


def _read_secret(path: str | os.PathLike | None) -> str | None:
    if not path:
        return None
    text = Path(path).read_text(encoding="utf-8").strip()
    if not text:
        raise ValueError(f"{path} is empty")
    return text


@dataclass(frozen=True)
class AccessControl:
    """Who may see the twin: a bearer token and/or basic credentials (``user:password``).

    Browsers: basic credentials are asked by the browser itself; with a token, open
    ``/?access_token=TOKEN`` once: the server answers with an HttpOnly, SameSite=Strict session
    cookie (a digest of the token, never the token) and redirects to ``/`` so the token leaves the
    address bar. API clients send ``Authorization: Bearer TOKEN`` or ``Authorization: Basic ...``.
    ``/healthz`` (probes) and ``/notify`` (the broker; see the receiver's own rules) are not covered.
    """

    token: str | None = None
    basic: str | None = None      # "user:password"

    @property
    def enabled(self) -> bool:
        return bool(self.token or self.basic)

    @classmethod
    def from_sources(cls, *, token_file: str | None = None, basic_file: str | None = None,
                     environ: dict[str, str] | None = None) -> AccessControl:
        """Files first, then the environment (``STADTLINK_TWIN_TOKEN``, ``STADTLINK_TWIN_BASIC_AUTH``)."""
        env = os.environ if environ is None else environ
        token = _read_secret(token_file) or env.get(TOKEN_ENV) or None
        basic = _read_secret(basic_file) or env.get(BASIC_ENV) or None
        if basic is not None and ":" not in basic:
            raise ValueError("basic credentials must be 'user:password'")
        return cls(token=token, basic=basic)

    def session_value(self) -> str:
        assert self.token is not None
        return hmac.new(self.token.encode(), b"stadtlink-twin-session", hashlib.sha256).hexdigest()

    def allows(self, request: web.Request) -> bool:
        header = request.headers.get("Authorization", "")
        scheme, _, value = header.partition(" ")
        scheme = scheme.lower()
        value = value.strip()
        if self.token and scheme == "bearer" and hmac.compare_digest(value.encode(), self.token.encode()):
            return True
        if self.basic and scheme == "basic":
            try:
                given = base64.b64decode(value, validate=True)
            except (binascii.Error, ValueError):
                return False
            if hmac.compare_digest(given, self.basic.encode()):
                return True
        if self.token:
            cookie = request.cookies.get(SESSION_COOKIE, "")
            if cookie and hmac.compare_digest(cookie.encode(), self.session_value().encode()):
                return True
        return False

    def challenge(self) -> web.Response:
        scheme = 'Basic realm="stadtlink twin", charset="UTF-8"' if self.basic else 'Bearer realm="stadtlink twin"'
        return web.Response(status=401, text="authentication required\n", headers={"WWW-Authenticate": scheme})


def content_security_policy(tile_url: str | None) -> str:
    """Scripts, styles, data and images from this origin only (map tiles from the tile server)."""
    img = "'self' data:"
    if tile_url:
        parts = urlsplit(tile_url.replace("{s}", "a"))
        if parts.scheme in ("http", "https") and parts.netloc:
            host = parts.netloc
            if "{s}" in tile_url.split("/")[2]:
                host = "*." + host.split(".", 1)[1] if "." in host else host
            img += f" {parts.scheme}://{host}"
    return ("default-src 'none'; script-src 'self'; style-src 'self'; " f"img-src {img}; "
            "connect-src 'self'; font-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'")


#: query parameters whose values never reach a log line
_SECRET_QUERY = ("access_token",)


class RedactingAccessLogger(AbstractAccessLogger):
    """aiohttp's access log without secrets: ``/?access_token=…`` (the twin view's login link)
    is logged as ``/?access_token=***``."""

    def log(self, request: web.BaseRequest, response: web.StreamResponse, time: float) -> None:
        url = request.rel_url
        hidden = {k: "***" for k in _SECRET_QUERY if k in url.query}
        path = str(url.update_query(hidden)) if hidden else str(url)
        self.logger.info("%s %s %s %s %.3fs", request.remote, request.method, path, response.status, time)


class TwinServer:
    def __init__(self, broker_url: str, *, host: str = "127.0.0.1", port: int = 8080, tenant: str | None = None,
                 context: str | None = None, notify_url: str | None = None, tile_url: str | None = None,
                 name: str = "twin", throttling: float | None = None, client: NGSILDClient | None = None,
                 access: AccessControl | None = None, max_clients: int = 1000, send_timeout: float = 30.0):
        self.broker_url = broker_url
        self.host, self.port = host, port
        self.tenant = tenant
        self.context = context or _default_context()
        self._notify_url = notify_url
        self.tile_url = tile_url
        self.name = name
        self.throttling = throttling
        self.access = access if access is not None else AccessControl.from_sources()
        self.max_clients = max_clients
        self.send_timeout = send_timeout
        self.csp = content_security_policy(tile_url)
        self.state = TwinState()
        self.secret = secrets.token_urlsafe(24)
        self.receiver = NotificationReceiver(secret=self.secret, queue_size=10000)
        self.read_back: ReadBack | None = None
        self._clients: set[asyncio.Queue] = set()
        self._client = client
        self._runner: web.AppRunner | None = None
        self._snapshot_frame: bytes | None = None
        self._tasks: list[asyncio.Task] = []
        self.broker_ok = False
        self.counters = {"streams_refused": 0, "streams_dropped": 0}

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def notify_url(self) -> str:
        return self._notify_url or f"{self.url}/notify"

    # -- subscriptions ---------------------------------------------------------------------------
    def subscriptions(self) -> list[dict[str, Any]]:
        subs = []
        for etype in TWIN_TYPES:
            body: dict[str, Any] = {
                "id": f"urn:ngsi-ld:Subscription:stadtlink:{self.name}-{etype}",
                "type": "Subscription",
                "subscriptionName": f"{self.name}-{etype}",
                "entities": [{"type": etype}],
                "notification": {
                    "endpoint": {"uri": self.notify_url, "accept": "application/json",
                                 "receiverInfo": [{"key": self.receiver.secret_header, "value": self.secret}]},
                    "format": "normalized",
                },
            }
            if self.throttling:
                body["throttling"] = self.throttling
            subs.append(body)
        return subs

    async def _load_and_subscribe(self) -> None:
        assert self._client is not None
        for etype in TWIN_TYPES:
            async for ent in self._client.query_entities(type=etype, page_size=1000):
                self.state.update(compact_entity(ent), replace=True)
        self._snapshot_frame = None
        await apply(self._client, self.subscriptions(), prune=False)
        self.broker_ok = True
        await self._broadcast("status", {"broker": True})
        self._broadcast_frame(self._snapshot())

    async def _keep_connected(self) -> None:
        """Retry the initial load and subscriptions until the broker answers; then check it."""
        delay = 1.0
        while True:
            try:
                if not self.broker_ok:
                    await self._load_and_subscribe()
                    delay = 1.0
                else:
                    ok = await self._client.health()
                    if not ok:
                        raise BrokerUnavailable("health check failed")
                    # The broker may have restarted (in-memory brokers forget subscriptions).
                    await apply(self._client, self.subscriptions(), prune=False)
                await asyncio.sleep(10)
            except asyncio.CancelledError:
                raise
            except (NGSILDError, BrokerUnavailable, OSError) as exc:
                if self.broker_ok:
                    log.warning("broker unreachable: %s", exc)
                self.broker_ok = False
                await self._broadcast("status", {"broker": False})
                await asyncio.sleep(delay)
                delay = min(delay * 2, 30.0)

    # -- notifications: only which entities changed; their content is read back from the broker ---
    async def _show(self, entities: list[dict[str, Any]]) -> None:
        # each type was written with its own model's @context: terms the twin's context maps
        # elsewhere come back long, and get their model's short name back here
        updates = [item for item in (self.state.update(compact_entity(e), replace=True) for e in entities)
                   if item is not None]
        if updates:
            self._snapshot_frame = None
            await self._broadcast("update", updates)

    # -- the browsers' stream ----------------------------------------------------------------------
    def _snapshot(self) -> bytes:
        """The ``snapshot`` event, serialized once per state and shared by every stream."""
        if self._snapshot_frame is None:
            self._snapshot_frame = b"event: snapshot\ndata: " + orjson.dumps(self.state.snapshot()) + b"\n\n"
        return self._snapshot_frame

    async def _broadcast(self, event: str, data: Any) -> None:
        self._broadcast_frame(b"event: " + event.encode() + b"\ndata: " + orjson.dumps(data) + b"\n\n")

    def _broadcast_frame(self, frame: bytes) -> None:
        for queue in list(self._clients):
            try:
                queue.put_nowait(frame)
            except asyncio.QueueFull:   # a browser that stopped reading: its stream ends, it reconnects
                self._clients.discard(queue)
                self._drop(queue)

    def _drop(self, queue: asyncio.Queue) -> None:
        self.counters["streams_dropped"] += 1
        while not queue.empty():
            queue.get_nowait()
        queue.put_nowait(None)

    async def _send(self, resp: web.StreamResponse, frame: bytes) -> None:
        """Write in chunks, so a browser that stops reading holds at most one chunk here."""
        view = memoryview(frame)
        for start in range(0, len(view), CHUNK):
            await resp.write(view[start:start + CHUNK])

    async def _events(self, request: web.Request) -> web.StreamResponse:
        if len(self._clients) >= self.max_clients:
            self.counters["streams_refused"] += 1
            return web.Response(status=503, text="too many live streams\n", headers={"Retry-After": "10"})
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache",
                                           "X-Accel-Buffering": "no"})
        queue: asyncio.Queue = asyncio.Queue(maxsize=256)   # references to shared frames
        self._clients.add(queue)
        try:
            await resp.prepare(request)
            first = (b"retry: 2000\n\nevent: status\ndata: " + orjson.dumps({"broker": self.broker_ok})
                     + b"\n\n")
            await asyncio.wait_for(self._send(resp, first), self.send_timeout)
            await asyncio.wait_for(self._send(resp, self._snapshot()), self.send_timeout)
            while True:
                try:
                    frame = await asyncio.wait_for(queue.get(), 15)
                except asyncio.TimeoutError:
                    frame = b": keep-alive\n\n"
                if frame is None:
                    break
                await asyncio.wait_for(self._send(resp, frame), self.send_timeout)
        except asyncio.TimeoutError:     # a reader too slow for send_timeout: end its stream
            self.counters["streams_dropped"] += 1
            if request.transport is not None:
                request.transport.abort()
        except (ConnectionResetError, asyncio.CancelledError):
            pass
        finally:
            self._clients.discard(queue)
        return resp

    # -- app ---------------------------------------------------------------------------------------
    @web.middleware
    async def _guard(self, request: web.Request, handler) -> web.StreamResponse:
        """Access control (page, API, stream) and the security headers of every answer."""
        path = request.path
        response: web.StreamResponse
        guarded = self.access.enabled and path not in ("/healthz", "/notify")
        token = request.query.get("access_token") if guarded and path == "/" else None
        if token is not None and self.access.token \
                and hmac.compare_digest(token.encode(), self.access.token.encode()):
            response = web.Response(status=303, headers={"Location": "/"})
            response.set_cookie(SESSION_COOKIE, self.access.session_value(), httponly=True,
                                samesite="Strict", secure=request.secure, path="/")
        elif guarded and not self.access.allows(request):
            response = self.access.challenge()
        else:
            response = await handler(request)
        return response   # the security headers: _on_prepare, for every answer

    def _security_headers(self, response: web.StreamResponse) -> None:
        h = response.headers
        h["Content-Security-Policy"] = self.csp
        h["X-Content-Type-Options"] = "nosniff"
        h["X-Frame-Options"] = "DENY"
        h["Referrer-Policy"] = "no-referrer"
        h.setdefault("Cache-Control", "no-store")

    async def _on_prepare(self, request: web.Request, response: web.StreamResponse) -> None:
        self._security_headers(response)

    def app(self) -> web.Application:
        app = web.Application(middlewares=[self._guard], client_max_size=self.receiver.max_body)
        app.on_response_prepare.append(self._on_prepare)
        app.router.add_get("/", self._index)
        app.router.add_get("/config.json", self._config)
        app.router.add_get("/events", self._events)
        app.router.add_get("/api/entities", self._entities)
        app.router.add_get("/healthz", self._health)
        app.router.add_get("/favicon.ico", self._no_icon)
        app.router.add_post("/notify", self.receiver.handle)
        app.router.add_static("/static/", STATIC)
        return app

    async def _no_icon(self, request: web.Request) -> web.Response:
        return web.Response(status=204)

    async def _index(self, request: web.Request) -> web.FileResponse:
        return web.FileResponse(STATIC / "index.html")

    async def _config(self, request: web.Request) -> web.Response:
        return web.json_response({"tileUrl": self.tile_url, "types": list(TWIN_TYPES)})

    async def _entities(self, request: web.Request) -> web.Response:
        data = self._snapshot()
        body = data[len(b"event: snapshot\ndata: "):-2]
        return web.Response(body=body, content_type="application/json")

    async def _health(self, request: web.Request) -> web.Response:
        return web.json_response({"broker": self.broker_ok, "browsers": len(self._clients),
                                  "entities": len(self.state.entities), "notifications": self.receiver.counters,
                                  "twin": self.counters,
                                  "read_back": self.read_back.counters if self.read_back else None})

    async def start(self) -> None:
        if self._client is None:
            self._client = NGSILDClient(self.broker_url, tenant=self.tenant, context=self.context)
        await self._client.open()
        self.read_back = ReadBack(self._client, self._show, types=TWIN_TYPES)
        self.receiver.add_handler(self.read_back)
        await self.receiver.start()
        self._runner = web.AppRunner(self.app(), shutdown_timeout=1.0, access_log_class=RedactingAccessLogger)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port)
        await site.start()
        if self.port == 0:
            self.port = self._runner.addresses[0][1]
        self._tasks = [asyncio.create_task(self._keep_connected(), name="twin-broker")]

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self.read_back is not None:
            await self.read_back.stop()
        for queue in list(self._clients):
            if queue.full():
                self._drop(queue)
            else:
                queue.put_nowait(b"event: bye\ndata: {}\n\n")
        if self._runner is not None:
            await self._runner.cleanup()
        await self.receiver.stop(drain_timeout=1.0)
        if self._client is not None:
            await self._client.close()


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="stadtlink twin", description="Live twin view of a broker's entities.")
    p.add_argument("--broker", required=True, help="broker base URL, e.g. http://127.0.0.1:1026")
    p.add_argument("--tenant")
    p.add_argument("--context", help="@context URL the entities were written with (default: stadtlink's)")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8080)
    p.add_argument("--notify-url", help="URL the broker can reach this server's /notify at (default: http://HOST:PORT/notify)")
    p.add_argument("--tile-url", help="map tile URL template ({z}/{x}/{y}); none by default (no external network)")
    p.add_argument("--throttling", type=float, help="subscription throttling in seconds")
    p.add_argument("--name", default="twin", help="prefix of this twin's subscription names")
    p.add_argument("--token-file", help=f"file holding the access token for page, API and stream (or ${TOKEN_ENV})")
    p.add_argument("--basic-auth-file",
                   help=f"file holding 'user:password' for page, API and stream (or ${BASIC_ENV})")
    p.add_argument("--max-clients", type=int, default=1000, help="most live streams (/events) at once (default 1000)")
    p.add_argument("--send-timeout", type=float, default=30.0,
                   help="seconds a browser may take to read one chunk of its stream before it is dropped")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    try:
        access = AccessControl.from_sources(token_file=args.token_file, basic_file=args.basic_auth_file)
    except (OSError, ValueError) as exc:
        print(f"stadtlink twin: access control: {exc}", flush=True)
        return 2

    async def run() -> None:
        server = TwinServer(args.broker, host=args.host, port=args.port, tenant=args.tenant, context=args.context,
                            notify_url=args.notify_url, tile_url=args.tile_url, name=args.name,
                            throttling=args.throttling, access=access, max_clients=args.max_clients,
                            send_timeout=args.send_timeout)
        await server.start()
        protected = "access control on" if access.enabled else "no access control"
        if not access.enabled and not is_loopback_host(args.host):
            log.warning("the twin view listens on %s without access control: anyone who reaches it sees "
                        "every entity (--token-file / --basic-auth-file, docs/security.md)", args.host)
        print(f"twin view on {server.url}  (broker {args.broker}; {protected})", flush=True)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await stop.wait()
        await server.stop()

    asyncio.run(run())
    return 0

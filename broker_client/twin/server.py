"""``stadtlink twin``: subscribe, receive, push to browsers (Server-Sent Events).

On start the server reads the current entities of the twin's types from the broker, applies its
subscriptions (stable ids, so restarts don't pile up subscriptions), and serves:

* ``/`` the page (vendored Leaflet, no CDN; tiles only if ``--tile-url`` is given),
* ``/events`` the SSE stream: one ``snapshot`` event, then ``update`` events,
* ``/notify`` the notification receiver (shared secret sent by the broker as a receiverInfo header),
* ``/api/entities`` the current state as JSON, ``/healthz``.
"""
from __future__ import annotations

import argparse
import asyncio
import logging
import secrets
import signal
from pathlib import Path
from typing import Any

import orjson
from aiohttp import web

from ..client import NGSILDClient
from ..errors import NGSILDError, BrokerUnavailable
from ..notify import Notification, NotificationReceiver
from ..subscription_sync import apply
from .model import TWIN_TYPES, TwinState

log = logging.getLogger("stadtlink.twin")
STATIC = Path(__file__).resolve().parent / "static"
_DEFAULT_CONTEXT = None


def _default_context() -> str:
    from stadtlink.schemas.contexts import STADTLINK_CONTEXT_URL

    return STADTLINK_CONTEXT_URL


class TwinServer:
    def __init__(self, broker_url: str, *, host: str = "127.0.0.1", port: int = 8080, tenant: str | None = None,
                 context: str | None = None, notify_url: str | None = None, tile_url: str | None = None,
                 name: str = "twin", throttling: float | None = None, client: NGSILDClient | None = None):
        self.broker_url = broker_url
        self.host, self.port = host, port
        self.tenant = tenant
        self.context = context or _default_context()
        self._notify_url = notify_url
        self.tile_url = tile_url
        self.name = name
        self.throttling = throttling
        self.state = TwinState()
        self.secret = secrets.token_urlsafe(24)
        self.receiver = NotificationReceiver(secret=self.secret, queue_size=10000)
        self.receiver.add_handler(self._on_notification)
        self._clients: set[asyncio.Queue] = set()
        self._client = client
        self._runner: web.AppRunner | None = None
        self.broker_ok = False

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
                self.state.update(ent)
        await apply(self._client, self.subscriptions(), prune=False)
        self.broker_ok = True
        await self._broadcast("status", {"broker": True})
        await self._broadcast("snapshot", self.state.snapshot())

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

    # -- notifications → SSE ---------------------------------------------------------------------
    async def _on_notification(self, note: Notification) -> None:
        updates = [item for item in (self.state.update(e) for e in note.data) if item is not None]
        if updates:
            await self._broadcast("update", updates)

    async def _broadcast(self, event: str, data: Any) -> None:
        frame = b"event: " + event.encode() + b"\ndata: " + orjson.dumps(data) + b"\n\n"
        for queue in list(self._clients):
            try:
                queue.put_nowait(frame)
            except asyncio.QueueFull:   # a browser that stopped reading: drop it, it reconnects
                self._clients.discard(queue)

    async def _events(self, request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache",
                                           "X-Accel-Buffering": "no"})
        await resp.prepare(request)
        queue: asyncio.Queue = asyncio.Queue(maxsize=1000)
        self._clients.add(queue)
        try:
            await resp.write(b"retry: 2000\n\n")
            await resp.write(b"event: status\ndata: " + orjson.dumps({"broker": self.broker_ok}) + b"\n\n")
            await resp.write(b"event: snapshot\ndata: " + orjson.dumps(self.state.snapshot()) + b"\n\n")
            while True:
                try:
                    frame = await asyncio.wait_for(queue.get(), 15)
                except asyncio.TimeoutError:
                    frame = b": keep-alive\n\n"
                await resp.write(frame)
        except (ConnectionResetError, asyncio.CancelledError):
            pass
        finally:
            self._clients.discard(queue)
        return resp

    # -- app ---------------------------------------------------------------------------------------
    def app(self) -> web.Application:
        app = web.Application()
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
        return web.Response(body=orjson.dumps(self.state.snapshot()), content_type="application/json")

    async def _health(self, request: web.Request) -> web.Response:
        return web.json_response({"broker": self.broker_ok, "browsers": len(self._clients),
                                  "entities": len(self.state.entities), "notifications": self.receiver.counters})

    async def start(self) -> None:
        if self._client is None:
            self._client = NGSILDClient(self.broker_url, tenant=self.tenant, context=self.context)
        await self._client.open()
        await self.receiver.start()
        self._runner = web.AppRunner(self.app(), shutdown_timeout=1.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port)
        await site.start()
        if self.port == 0:
            self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self._task = asyncio.create_task(self._keep_connected(), name="twin-broker")

    async def stop(self) -> None:
        self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)
        for queue in list(self._clients):
            queue.put_nowait(b"event: bye\ndata: {}\n\n") if not queue.full() else None
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
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")

    async def run() -> None:
        server = TwinServer(args.broker, host=args.host, port=args.port, tenant=args.tenant, context=args.context,
                            notify_url=args.notify_url, tile_url=args.tile_url, name=args.name,
                            throttling=args.throttling)
        await server.start()
        print(f"twin view on {server.url}  (broker {args.broker})", flush=True)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await stop.wait()
        await server.stop()

    asyncio.run(run())
    return 0

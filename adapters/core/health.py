"""The adapter's HTTP server: ``/healthz`` (liveness), ``/readyz`` (readiness), ``/metrics``.

One aiohttp application per runner; the webhook source mounts its route on the same app.

* ``/healthz``: 200 while the event-loop heartbeat is fresh and the batcher task is alive.
* ``/readyz``: 200 when every source is ready, the broker answered its last request, and the
  outbox is reachable and under its limit; else 503. The JSON body names each check.
* ``/metrics``: Prometheus text format from the runner's own registry.
* ``/deadletters?limit=N``: read-only, the newest ``N`` (default 20, at most 500) dead letters and
  the total, as ``stadtlink deadletter list`` prints them — the only way to see those of the
  memory outbox, which live in the process. The body is capped at 1 MiB (``"truncated": true``).
"""
from __future__ import annotations

from typing import TYPE_CHECKING

import orjson
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST

if TYPE_CHECKING:  # pragma: no cover
    from .runner import Runner

RUNNER_KEY = web.AppKey("stadtlink_runner", object)


def _json(data: dict, status: int = 200) -> web.Response:
    return web.Response(body=orjson.dumps(data), status=status, content_type="application/json")


async def healthz(request: web.Request) -> web.Response:
    runner: Runner = request.app[RUNNER_KEY]  # type: ignore[assignment]
    ok, detail = runner.liveness()
    return _json({"status": "ok" if ok else "fail", **detail}, 200 if ok else 503)


async def readyz(request: web.Request) -> web.Response:
    runner: Runner = request.app[RUNNER_KEY]  # type: ignore[assignment]
    ready, checks = runner.readiness()
    failing = [name for name, c in checks.items() if not c["ok"]]
    return _json({"status": "ready" if ready else "not ready", "failing": failing, "checks": checks},
                 200 if ready else 503)


async def metrics(request: web.Request) -> web.Response:
    runner: Runner = request.app[RUNNER_KEY]  # type: ignore[assignment]
    body = runner.metrics.render()
    resp = web.Response(body=body)
    resp.headers["Content-Type"] = CONTENT_TYPE_LATEST
    return resp


MAX_DEADLETTERS = 500
MAX_DEADLETTER_BYTES = 1 << 20


async def deadletters(request: web.Request) -> web.Response:
    runner: Runner = request.app[RUNNER_KEY]  # type: ignore[assignment]
    raw = request.query.get("limit", "20")
    if not raw.isdigit() or len(raw) > 6:
        return _json({"error": "limit must be a positive integer"}, 400)
    limit = max(1, min(int(raw), MAX_DEADLETTERS))
    store = runner.deadletters
    if store is None:
        return _json({"error": "the adapter has not started its dead-letter store yet"}, 503)
    records = await store.list(limit)
    total = await store.count()
    out, size, truncated = [], 0, False
    for rec_id, record in records:
        item = {"id": rec_id, **record}
        blob = orjson.dumps(item, default=str)
        if size + len(blob) > MAX_DEADLETTER_BYTES:
            truncated = True
            break
        out.append(orjson.loads(blob))
        size += len(blob)
    return _json({"total": total, "records": out, "truncated": truncated})


def create_app(runner: "Runner") -> web.Application:
    app = web.Application()
    app[RUNNER_KEY] = runner
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/deadletters", deadletters)
    return app


class HttpServer:
    def __init__(self, app: web.Application, host: str, port: int):
        self.app = app
        self.host = host
        self.port = port
        self._runner: web.AppRunner | None = None
        self.bound_port: int | None = None

    async def start(self) -> None:
        self._runner = web.AppRunner(self.app, access_log=None, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port, reuse_address=True)
        await site.start()
        server = site._server  # the port actually bound (port 0 = any free port)
        sockets = getattr(server, "sockets", None) or []
        self.bound_port = sockets[0].getsockname()[1] if sockets else self.port

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None


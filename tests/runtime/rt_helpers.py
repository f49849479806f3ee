"""Test helpers: an in-test Source, a recording NGSI-LD batch endpoint (real HTTP), free ports."""
from __future__ import annotations

import asyncio
import socket
import subprocess
import sys
from datetime import datetime, timezone
from typing import Any

import orjson
from aiohttp import web

from stadtlink.adapters.core import RawMessage
from stadtlink.adapters.core.sources.base import SourceBase
from stadtlink.adapters.core.testing import free_port, wait_until


def cli(args, env, stdin: bytes | None = None) -> subprocess.CompletedProcess:
    """``stadtlink ARGS`` in a subprocess (the toy adapter on the path through ``env``)."""
    return subprocess.run([sys.executable, "-m", "stadtlink.adapters.core.cli", *args], env=env, input=stdin,
                          capture_output=True, timeout=60)


class QueueSource(SourceBase):
    """A Source fed by the test: ``await src.push(payload, ...)`` returns when emit returned (or raises)."""

    def __init__(self, name: str = "queue", source: str = "mqtt"):
        self.name = name
        self.source = source
        self._q: asyncio.Queue = asyncio.Queue()
        self._ready = False
        self.acked = 0
        self.refused = 0

    @property
    def ready(self) -> bool:
        return self._ready

    def stats(self) -> dict[str, float]:
        return {"acked": self.acked, "refused": self.refused}

    async def run(self, emit) -> None:
        self._ready = True
        try:
            while True:
                msg, fut = await self._q.get()
                try:
                    await emit(msg)
                except Exception as exc:  # noqa: BLE001 - hand the refusal back to the test
                    self.refused += 1
                    fut.set_exception(exc)
                else:
                    self.acked += 1
                    fut.set_result(None)
        finally:
            self._ready = False

    async def push(self, payload: Any, *, topic: str | None = None, device_hint: str | None = None,
                   attributes: dict | None = None) -> None:
        if isinstance(payload, (dict, list)):
            payload = orjson.dumps(payload)
        fut = asyncio.get_running_loop().create_future()
        msg = RawMessage(source=self.source, payload=payload, received_at=datetime.now(timezone.utc), topic=topic,
                         device_hint=device_hint, attributes=attributes or {})
        await self._q.put((msg, fut))
        await fut


class FakeBroker:
    """Answers ``POST /ngsi-ld/v1/entityOperations/upsert`` like Orion-LD (204, or 207 with the
    per-entity errors set in ``reject``/``transient``) and records every batch. Real HTTP."""

    def __init__(self, port: int | None = None):
        self.port = port or free_port()
        self.batches: list[list[dict]] = []
        self.entities: dict[str, dict] = {}
        self.reject: dict[str, int] = {}          # id -> status (permanent per-entity error)
        self.transient: dict[str, int] = {}       # id -> remaining 503 answers for that entity
        self.status_override: int | None = None   # whole-request answer (e.g. 503)
        self._runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def all_posted(self) -> list[dict]:
        return [e for b in self.batches for e in b]

    async def _upsert(self, request: web.Request) -> web.Response:
        if self.status_override:
            return web.Response(status=self.status_override, body=b'{"type":"x","title":"down"}',
                                content_type="application/json")
        body = orjson.loads(await request.read())
        self.batches.append(body)
        errors, success = [], []
        for ent in body:
            eid = ent["id"]
            if eid in self.reject:
                errors.append({"entityId": eid, "error": {
                    "type": "https://uri.etsi.org/ngsi-ld/errors/BadRequestData", "title": "Invalid entity",
                    "detail": "rejected by the test", "status": self.reject[eid]}})
            elif self.transient.get(eid, 0) > 0:
                self.transient[eid] -= 1
                errors.append({"entityId": eid, "error": {
                    "type": "https://uri.etsi.org/ngsi-ld/errors/InternalError", "title": "busy", "status": 503}})
            else:
                merged = dict(self.entities.get(eid, {}))
                merged.update(ent)
                self.entities[eid] = merged
                success.append(eid)
        if errors:
            return web.Response(status=207, body=orjson.dumps({"success": success, "errors": errors}),
                                content_type="application/json")
        return web.Response(status=204)

    async def _types(self, request: web.Request) -> web.Response:
        return web.json_response([])

    async def start(self) -> "FakeBroker":
        app = web.Application()
        app.router.add_post("/ngsi-ld/v1/entityOperations/upsert", self._upsert)
        app.router.add_get("/ngsi-ld/v1/types", self._types)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port, reuse_address=True).start()
        return self

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None


class BatcherRig:
    """A Batcher over a memory outbox and a real NGSILDClient, run as a task (``async with``)."""

    def __init__(self, url, *, semantics="latest-state", batch_size=5, flush_ms=50, max_length=1000,
                 flush: str | None = None, timeout: float = 2, health_interval_s: float = 0.2,
                 stop_timeout: float = 5):
        from stadtlink.adapters.core.batcher import Batcher
        from stadtlink.adapters.core.deadletter import MemoryDeadLetters
        from stadtlink.adapters.core.metrics import Metrics
        from stadtlink.adapters.core.outbox import MemoryOutbox
        from stadtlink.broker_client import NGSILDClient, RetryPolicy

        self.outbox = MemoryOutbox(max_length=max_length, backpressure_wait_s=0.2)
        self.dead = MemoryDeadLetters()
        self.metrics = Metrics("t")
        self.client = NGSILDClient(url, retry=RetryPolicy(attempts=2, base_delay=0.01, max_delay=0.02),
                                   timeout=timeout)
        self.batcher = Batcher(self.outbox, self.client, self.dead, self.metrics, semantics=semantics,
                               batch_size=batch_size, flush_ms=flush_ms, retry_base_s=0.02, retry_max_s=0.1,
                               health_interval_s=health_interval_s, **({"flush": flush} if flush else {}))
        self.stop_timeout = stop_timeout
        self.task = None

    async def __aenter__(self):
        await self.client.open()
        self.task = asyncio.create_task(self.batcher.run())
        return self

    async def __aexit__(self, *exc):
        self.batcher.close()
        try:
            await asyncio.wait_for(self.task, self.stop_timeout)
        finally:
            await self.client.close()

    async def idle(self, timeout=5.0):
        return await wait_until(lambda: self.outbox.depth == 0 and not self.batcher._carry, timeout, "the outbox drained")


def base_config(broker_url: str, **over: Any) -> dict:
    cfg = {
        "namespace": "test",
        "broker": {"url": broker_url, "batch_size": 50, "flush_ms": 20, "retry_base_s": 0.05, "retry_max_s": 0.2,
                   "timeout_s": 2},
        "http": {"host": "127.0.0.1", "port": 0},
        "shutdown_grace_s": 3,
        "devices": [
            {"id": "dev-1", "name": "Station 1", "lat": 52.4, "lon": 10.7, "profile": "toy-lora"},
            {"id": "dev-2", "name": "Station 2", "lat": 52.5, "lon": 10.8},
            {"id": "nolocation"},
        ],
    }
    for k, v in over.items():
        if isinstance(v, dict) and isinstance(cfg.get(k), dict):
            cfg[k] = {**cfg[k], **v}
        else:
            cfg[k] = v
    return cfg

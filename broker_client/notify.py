"""Receiving NGSI-LD notifications: an aiohttp handler twin developers mount or run.

Orion-LD's native notifier (``-experimental``) sends from the thread of the request that caused
the change and waits for our answer, so a slow receiver slows the writer (reference/orion-ld.md
§5). The receiver therefore answers at once -- **200** with an empty body, the one answer every
broker counts as delivered: Orion, Orion-LD and Scorpio take any 2xx, Stellio only 200 and marks a
204 as a failed notification (``BrokerQuirks.notification_success``, docs/backends/stellio.md) --
and hands each notification to the async handlers through a bounded queue. When the queue is full it answers 503: the broker then marks the
subscription's notification status ``failed`` — visible to operators — instead of the receiver
silently falling behind.

A notification's content is untrusted (the shared secret is readable by whoever may read the
subscription): :class:`ReadBack` takes only the ids of the changed entities and reads them back
from the broker; the twin view uses it (docs/security.md, "Notification receiver").

NGSI-v2 notifications from classic Orion (``{"subscriptionId", "data"}``) are accepted too, their
entities converted to NGSI-LD normalized. Both Orion-LD notifiers are accepted (legacy: ``Ngsiv2-Attrsformat``, ``Fiware-Servicepath``,
``charset``; native: ``Ngsild-Attribute-Format``), the subscription id is taken from the body or
the ``?subscriptionId=`` query parameter, JSON and JSON-LD bodies alike. The same handlers take MQTT
notifications (``{"metadata": {...}, "body": {...}}``) through :meth:`NotificationReceiver.handle_mqtt`.
"""
from __future__ import annotations

import asyncio
import hmac
import logging
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson
from aiohttp import web

log = logging.getLogger("stadtlink.notify")

_JSON_TYPES = ("application/json", "application/ld+json")


@dataclass(slots=True)
class Notification:
    id: str
    subscription_id: str
    notified_at: str | None
    data: list[dict[str, Any]]
    attribute_format: str | None = None       # Normalized / Concise / Simplified (native) or v2 names (legacy)
    tenant: str | None = None
    context: Any = None                       # body @context (ld+json) or the Link header URL
    headers: dict[str, str] = field(default_factory=dict)
    transport: str = "http"
    ngsi_version: str = "ld"                  # "v2": an NGSI-v2 notification, ``data`` converted to NGSI-LD
    raw_data: list[dict[str, Any]] | None = None  # v2 only: the entities as Orion sent them


Handler = Callable[[Notification], Awaitable[None]]


class BadNotification(ValueError):
    pass


def parse_notification(body: Any, *, subscription_id: str | None = None, headers: Mapping[str, str] | None = None,
                       transport: str = "http") -> Notification:
    """Validate a notification body (already JSON-decoded) and return it typed.

    NGSI-LD (``{"id", "type": "Notification", "subscriptionId", "data"}``) and NGSI-v2 (Orion:
    ``{"subscriptionId", "data"}``, no ``id`` nor ``type``) are both accepted. A v2 notification's
    normalized entities are converted to NGSI-LD normalized (``geo:json`` → GeoProperty,
    ``timestamp`` metadata → observedAt, ...; see broker_client/backends/ngsi_v2_convert.py) so
    handlers see one shape; ``raw_data`` keeps them as sent. v2 notifications carry no id: each
    gets a fresh one (no duplicate detection).
    """
    headers = {k.lower(): v for k, v in (headers or {}).items()}
    if not isinstance(body, dict):
        raise BadNotification("the body is not a JSON object")
    if "type" not in body and "id" not in body and "subscriptionId" in body and "data" in body:
        return _parse_v2_notification(body, headers, transport)
    if body.get("type") != "Notification":
        raise BadNotification("type is not 'Notification'")
    nid = body.get("id")
    if not isinstance(nid, str) or not nid:
        raise BadNotification("notification without id")
    data = body.get("data")
    if not isinstance(data, list) or not all(isinstance(e, dict) and isinstance(e.get("id"), str) for e in data):
        raise BadNotification("data is not a list of entities")
    sub = body.get("subscriptionId") or subscription_id
    if not isinstance(sub, str) or not sub:
        raise BadNotification("no subscriptionId in the body or the query")
    link = headers.get("link")
    context = body.get("@context")
    if context is None and link:
        context = link.split(";", 1)[0].strip().lstrip("<").rstrip(">")
    return Notification(
        id=nid, subscription_id=sub, notified_at=body.get("notifiedAt"), data=data,
        attribute_format=headers.get("ngsild-attribute-format") or headers.get("ngsiv2-attrsformat"),
        tenant=headers.get("ngsild-tenant") or headers.get("fiware-service"),
        context=context, headers=dict(headers), transport=transport,
    )


def _parse_v2_notification(body: dict[str, Any], headers: dict[str, str], transport: str) -> Notification:
    import uuid

    from .backends.ngsi_v2_convert import from_ngsi_v2

    data = body.get("data")
    if not isinstance(data, list) or not all(isinstance(e, dict) and isinstance(e.get("id"), str) for e in data):
        raise BadNotification("data is not a list of entities")
    sub = body.get("subscriptionId")
    if not isinstance(sub, str) or not sub:
        raise BadNotification("no subscriptionId in the NGSI-v2 notification")
    attrs_format = headers.get("ngsiv2-attrsformat") or "normalized"
    converted = [from_ngsi_v2(e) for e in data] if attrs_format == "normalized" else [dict(e) for e in data]
    return Notification(
        id=f"urn:stadtlink:notification:v2:{uuid.uuid4()}", subscription_id=sub, notified_at=None, data=converted,
        attribute_format=attrs_format, tenant=headers.get("fiware-service"), context=None, headers=dict(headers),
        transport=transport, ngsi_version="v2", raw_data=data,
    )


class NotificationReceiver:
    """Accepts notifications over HTTP (and MQTT), dispatches them to async handlers.

    ``secret``: when set, requests must carry ``secret_header: secret`` (configure it in the
    subscription as a ``receiverInfo`` pair, which Orion-LD sends as a header); others get 401.
    """

    def __init__(self, *, secret: str | None = None, secret_header: str = "X-Stadtlink-Secret",
                 queue_size: int = 1000, workers: int = 1, remember: int = 10000, max_body: int = 8 * 1024 * 1024):
        self._secret = secret
        self.secret_header = secret_header
        self._queue: asyncio.Queue[Notification] = asyncio.Queue(maxsize=queue_size)
        self._handlers: list[Handler] = []
        self._seen: OrderedDict[str, None] = OrderedDict()
        self._remember = remember
        self._workers = workers
        self._tasks: list[asyncio.Task] = []
        self.max_body = max_body
        self.counters = {"received": 0, "accepted": 0, "unauthorized": 0, "bad_request": 0, "duplicates": 0,
                         "queue_full": 0, "handled": 0, "handler_errors": 0}

    def add_handler(self, handler: Handler) -> Handler:
        self._handlers.append(handler)
        return handler

    # -- lifecycle ---------------------------------------------------------------------------
    async def start(self) -> None:
        if not self._tasks:
            self._tasks = [asyncio.create_task(self._work(), name=f"notify-worker-{i}") for i in range(self._workers)]

    async def stop(self, *, drain_timeout: float = 5.0) -> None:
        if self._tasks:
            try:
                await asyncio.wait_for(self._queue.join(), drain_timeout)
            except TimeoutError:
                log.warning("notification queue not drained within %.1fs", drain_timeout)
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []

    async def _work(self) -> None:
        while True:
            note = await self._queue.get()
            try:
                for handler in self._handlers:
                    try:
                        await handler(note)
                    except Exception:  # a handler's bug must not stop the receiver
                        self.counters["handler_errors"] += 1
                        log.exception("notification handler failed for %s", note.id)
                self.counters["handled"] += 1
            finally:
                self._queue.task_done()

    # -- intake --------------------------------------------------------------------------------
    def _is_new(self, nid: str) -> bool:
        if nid in self._seen:
            self._seen.move_to_end(nid)
            return False
        self._seen[nid] = None
        if len(self._seen) > self._remember:
            self._seen.popitem(last=False)
        return True

    def _enqueue(self, note: Notification) -> str:
        """'accepted', 'duplicate' or 'full'."""
        if note.id in self._seen:
            self.counters["duplicates"] += 1
            return "duplicate"
        try:
            self._queue.put_nowait(note)
        except asyncio.QueueFull:
            self.counters["queue_full"] += 1
            return "full"
        self._is_new(note.id)
        self.counters["accepted"] += 1
        return "accepted"

    async def handle(self, request: web.Request) -> web.Response:
        """The aiohttp handler: mount it with ``app.router.add_post(path, receiver.handle)``."""
        self.counters["received"] += 1
        if self._secret is not None:
            given = request.headers.get(self.secret_header, "")
            if not hmac.compare_digest(given.encode(), self._secret.encode()):
                self.counters["unauthorized"] += 1
                return web.json_response({"title": "missing or wrong shared secret"}, status=401)
        ctype = (request.content_type or "").lower()
        if ctype not in _JSON_TYPES:
            self.counters["bad_request"] += 1
            return web.json_response({"title": f"unsupported Content-Type {ctype!r}"}, status=415)
        if request.content_length is not None and request.content_length > self.max_body:
            self.counters["bad_request"] += 1
            return web.json_response({"title": "body too large"}, status=413)
        raw = await request.read()
        try:
            body = orjson.loads(raw)
            note = parse_notification(body, subscription_id=request.query.get("subscriptionId"),
                                      headers=request.headers)
        except (orjson.JSONDecodeError, BadNotification) as exc:
            self.counters["bad_request"] += 1
            return web.json_response({"title": "not an NGSI-LD notification", "detail": str(exc)}, status=400)
        if self._enqueue(note) == "full":
            return web.json_response({"title": "receiver queue full"}, status=503, headers={"Retry-After": "1"})
        return web.Response(status=200)   # not 204: Stellio counts only 200 as delivered

    async def handle_mqtt(self, payload: bytes) -> str:
        """An MQTT notification envelope ``{"metadata": {headers}, "body": {notification}}``."""
        self.counters["received"] += 1
        try:
            doc = orjson.loads(payload)
            if not isinstance(doc, dict) or not isinstance(doc.get("body"), dict):
                raise BadNotification("not a {metadata, body} envelope")
            meta = doc.get("metadata") if isinstance(doc.get("metadata"), dict) else {}
            if self._secret is not None:
                given = str(meta.get(self.secret_header, ""))
                if not hmac.compare_digest(given.encode(), self._secret.encode()):
                    self.counters["unauthorized"] += 1
                    return "unauthorized"
            note = parse_notification(doc["body"], headers={str(k): str(v) for k, v in meta.items()}, transport="mqtt")
        except (orjson.JSONDecodeError, BadNotification):
            self.counters["bad_request"] += 1
            return "bad_request"
        return self._enqueue(note)

    def app(self, path: str = "/notify") -> web.Application:
        """A standalone application: POST ``path``; starts and stops the workers with the app."""
        app = web.Application(client_max_size=self.max_body)
        app.router.add_post(path, self.handle)

        async def lifecycle(_app: web.Application):
            await self.start()
            yield
            await self.stop()

        app.cleanup_ctx.append(lifecycle)
        return app


class ReadBack:
    """A notification handler that trusts a notification only for *which* entities changed.

    The receiver's shared secret travels in the subscription's ``receiverInfo``, and NGSI-LD
    brokers return ``receiverInfo`` to everyone who may read the subscription: the secret keeps
    strangers out, not readers of subscriptions. So the content of a notification is never used:
    its entity ids are collected, the entities are read back from the broker (``GET /entities``
    with ``id`` and ``type``, ``batch`` ids per request, one request in flight) and ``handler``
    gets them as the broker holds them. A forged notification can at most make the receiver read
    real entities again; ids the broker does not know change nothing. More than ``max_pending``
    waiting ids (a flood) turn into one full read of ``types`` instead of an unbounded set.

        receiver.add_handler(ReadBack(client, show_entities, types=["ParkingSpot"]))
    """

    def __init__(self, client: Any, handler: Callable[[list[dict[str, Any]]], Awaitable[None]], *,
                 types: list[str] | tuple[str, ...], batch: int = 50, max_pending: int = 10000,
                 max_id_length: int = 1024) -> None:
        self.client = client
        self.handler = handler
        self.types = list(types)
        self.batch = batch
        self.max_pending = max_pending
        self.max_id_length = max_id_length
        self._pending: dict[str, None] = {}
        self._resync = False
        self._wake = asyncio.Event()
        self._task: asyncio.Task | None = None
        self.counters = {"notified_ids": 0, "read": 0, "unknown": 0, "errors": 0, "resyncs": 0}

    async def __call__(self, note: Notification) -> None:
        for entity in note.data:
            eid = entity.get("id")
            if not isinstance(eid, str) or len(eid) > self.max_id_length:
                continue
            self.counters["notified_ids"] += 1
            if len(self._pending) >= self.max_pending and eid not in self._pending:
                self._resync = True
                self._pending.clear()
                break
            self._pending[eid] = None
        if self._pending or self._resync:
            self._wake.set()
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._run(), name="notify-read-back")

    async def _read(self, **query: Any) -> list[dict[str, Any]]:
        # entities are written with their own model's @context: names the reader's context maps
        # elsewhere come back long and get their model's short names back
        from stadtlink.schemas.vocabulary import compact_entity

        return [compact_entity(e) async for e in self.client.query_entities(**query)]

    async def _run(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._pending or self._resync:
                try:
                    if self._resync:
                        self._resync = False
                        self.counters["resyncs"] += 1
                        found = await self._read(type=self.types, page_size=1000)
                        wanted = None
                    else:
                        ids = list(self._pending)[:self.batch]
                        for eid in ids:
                            del self._pending[eid]
                        found = await self._read(id=ids, type=self.types, page_size=self.batch)
                        wanted = set(ids)
                except asyncio.CancelledError:
                    raise
                except Exception as exc:  # noqa: BLE001 - the broker may be away; later changes notify again
                    self.counters["errors"] += 1
                    log.warning("reading back notified entities failed: %s", exc)
                    continue
                entities = [e for e in found if isinstance(e, dict)
                            and (wanted is None or e.get("id") in wanted)]
                self.counters["read"] += len(entities)
                if wanted is not None:
                    self.counters["unknown"] += len(wanted) - len(entities)
                if entities:
                    try:
                        await self.handler(entities)
                    except Exception:  # a handler's bug must not stop the read-back
                        log.exception("read-back handler failed")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None


__all__ = ["BadNotification", "Handler", "Notification", "NotificationReceiver", "ReadBack", "parse_notification"]

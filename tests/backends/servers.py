"""Stand-ins for Scorpio, Stellio, NGSI-v2 Orion and a Keycloak token endpoint, on real sockets.

Each answers the way that backend's own code and tests record (docs/backends/*.md name the
repository, file and commit): the status codes, the body shapes, the tenant rules and the limits.
They keep entities in memory so a test can check what really arrived. They are deliberately
written from those sources and not from stadtlink's parser: a shape the client misreads fails.

* :class:`ScorpioServer` -- ScorpioBroker c42c5aa, ``HttpUtils.generateBatchResult`` (201 / 204 /
  207 ``{"success", "errors": [{"id", "type": "Upsert", "ProblemDetails"}]}``; every entity failed
  → 400/404/409/503 with ``{"errors"}``) and the older shapes of issues #329 (empty 207), #451
  (204 for a mixed batch) and #466 (207 array), chosen with ``version``.
* :class:`StellioServer` -- stellio-context-broker 6bfcae9, ``EntityOperationHandler.upsert`` /
  ``BatchAPIResponses.kt`` / ``TenantWebFilter``: 201 (created ids only), 204, 207 ``{"success",
  "errors": [{"entityId", "error", "registrationId": null}]}`` also when all failed; unknown tenant
  → 404 NonexistentTenant; with authentication on, a bearer JWT from the Keycloak stand-in, else
  401 with ``WWW-Authenticate`` and no body (Spring Security); body above 2 MiB → 413.
* Both NGSI-LD stand-ins answer the subscription API (:class:`_LDSubscriptions`) the way each
  broker's subscription service does -- Scorpio ``SubscriptionController`` / ``SubscriptionService``
  / ``SubscriptionInfoDAO`` / ``JsonLdApi.compact``, Stellio ``SubscriptionHandler`` /
  ``Subscription.kt`` / ``NotificationParams.kt`` -- and notify subscribers after an upsert in
  each one's notification shape (Stellio counts only a 200 as delivered).
* :class:`OrionV2Server` -- fiware-orion c678400, orion-api.md and functional tests: ``POST
  /v2/op/update`` 204; forbidden characters → 400 BadRequest for the whole request, nothing
  stored; ``PartialUpdate`` / ``Unprocessable`` 422 with a description naming entities; 413
  ``RequestEntityTooLarge`` above ``max_body``; subscriptions; Fiware-Service (lower-cased) and
  Fiware-ServicePath partitions.
"""

from __future__ import annotations

import asyncio
import secrets
import time
import uuid
from dataclasses import dataclass
from typing import Any

import orjson
from aiohttp import web
from stadtlink.adapters.core.testing import free_port

ERR = "https://uri.etsi.org/ngsi-ld/errors/"
_ATTR_TYPES = {"Property", "Relationship", "GeoProperty", "LanguageProperty", "VocabProperty", "JsonProperty",
               "ListProperty", "ListRelationship"}


class _Server:
    """An aiohttp app on a fixed port that can be stopped and started again (same URL)."""

    def __init__(self) -> None:
        self.port = free_port()
        self._runner: web.AppRunner | None = None
        self.requests: list[tuple[str, str, dict[str, str], bytes]] = []
        self.delay_s = 0.0          # answer this late (timeouts)
        self.fail_next: list[int] = []   # answer these statuses first (5xx), one per request
        self.client_max_size = 64 * 1024 * 1024

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def routes(self, app: web.Application) -> None:  # pragma: no cover - overridden
        raise NotImplementedError

    @web.middleware
    async def _record(self, request: web.Request, handler):
        body = await request.read()
        self.requests.append((request.method, request.path_qs, dict(request.headers), body))
        if self.delay_s:
            await asyncio.sleep(self.delay_s)
        if self.fail_next:
            status = self.fail_next.pop(0)
            return web.json_response(self.error_body(status), status=status)
        return await handler(request)

    def error_body(self, status: int) -> Any:
        return {"type": ERR + "InternalError", "title": "Internal error", "status": status}

    async def start(self) -> _Server:
        app = web.Application(middlewares=[self._record], client_max_size=self.client_max_size)
        self.routes(app)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()
        return self

    async def stop(self) -> None:
        for task in list(getattr(self, "_notify_tasks", ())):
            task.cancel()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self):
        return await self.start()

    async def __aexit__(self, *exc):
        await self.stop()

    def writes(self, path_part: str) -> list[tuple[str, str, dict[str, str], bytes]]:
        return [r for r in self.requests if r[0] == "POST" and path_part in r[1]]


def _entity_problem(entity: Any) -> tuple[str, str] | None:
    """What an NGSI-LD broker refuses in one entity: (error type, title)."""
    if not isinstance(entity, dict) or not isinstance(entity.get("id"), str) or ":" not in entity["id"]:
        return "BadRequestData", "Entity id is not a URI"
    if not isinstance(entity.get("type"), str):
        return "BadRequestData", "Entity type missing"
    for name, attr in entity.items():
        if name in ("id", "type", "@context", "scope"):
            continue
        attrs = attr if isinstance(attr, list) else [attr]
        for a in attrs:
            if not isinstance(a, dict) or a.get("type") not in _ATTR_TYPES:
                return "BadRequestData", f"Attribute {name} has no valid type"
            if a.get("type") == "Property" and "value" not in a:
                return "BadRequestData", f"Property {name} without value"
    return None


# ------------------------------------------------------------------------------------------------
# NGSI-LD subscriptions (Scorpio and Stellio)
# ------------------------------------------------------------------------------------------------

CORE_CONTEXT = "https://uri.etsi.org/ngsi-ld/v1/ngsi-ld-core-context-v1.8.jsonld"


def _link_context(request: web.Request) -> str | None:
    link = request.headers.get("Link")
    return link.split(";")[0].strip().strip("<>") if link else None


def _selects(sub: dict[str, Any], entity: dict[str, Any], changed: set[str]) -> bool:
    """Entity selector (id / idPattern / type) and watchedAttributes of a subscription; ``q`` and
    geoQ are not evaluated by the stand-ins (a subscription with them never notifies)."""
    import re

    if sub.get("isActive") is False or sub.get("q") or sub.get("geoQ"):
        return False
    selectors = sub.get("entities") or [{}]
    if isinstance(selectors, dict):
        selectors = [selectors]
    matched = False
    for sel in selectors:
        if sel.get("type") and sel["type"] != entity.get("type"):
            continue
        if sel.get("id") and sel["id"] != entity.get("id"):
            continue
        if sel.get("idPattern") and not re.fullmatch(sel["idPattern"], entity.get("id", "")):
            continue
        matched = True
    watched = sub.get("watchedAttributes")
    if isinstance(watched, str):
        watched = [watched]
    return matched and (not watched or bool(changed & set(watched)))


class _LDSubscriptions:
    """``/ngsi-ld/v1/subscriptions`` of an NGSI-LD stand-in. The subclass says how its broker
    renders a subscription (``render_subscription``), where the Location points, which members a
    subscription may have, and what a notification looks like; everything is kept per tenant.
    After an upsert, ``notify_changed`` sends a notification to each matching subscriber."""

    notification_ok: tuple[int, ...] = (200, 201, 202, 203, 204)

    def _init_subscriptions(self) -> None:
        self.subscriptions: dict[str, dict[str, dict]] = {}   # tenant → id → stored subscription
        self.notifications_sent: list[tuple[str, int | str]] = []   # (subscription id, answer status / error)
        self._notify_tasks: set[asyncio.Task] = set()

    def subscription_store(self, tenant: str) -> dict[str, dict]:
        return self.subscriptions.setdefault(tenant, {})

    def _subscription_routes(self, app: web.Application) -> None:
        app.router.add_post("/ngsi-ld/v1/subscriptions", self.create_subscription)
        app.router.add_get("/ngsi-ld/v1/subscriptions", self.list_subscriptions)
        app.router.add_get("/ngsi-ld/v1/subscriptions/{id}", self.get_subscription)
        app.router.add_patch("/ngsi-ld/v1/subscriptions/{id}", self.patch_subscription)
        app.router.add_delete("/ngsi-ld/v1/subscriptions/{id}", self.delete_subscription)

    # hooks -------------------------------------------------------------------------------------
    def _sub_gate(self, request: web.Request, body_len: int) -> tuple[web.Response | None, str]:
        raise NotImplementedError

    def _problem(self, status: int, kind: str, title: str, detail: str | None = None) -> web.Response:
        raise NotImplementedError

    def _check_subscription(self, body: dict[str, Any], *, patch: bool) -> web.Response | None:
        return None

    def _new_subscription(self, body: dict[str, Any], request: web.Request) -> dict[str, Any]:
        return body

    def _location(self, sid: str) -> str:
        raise NotImplementedError

    def render_subscription(self, stored: dict[str, Any], request: web.Request) -> dict[str, Any]:
        raise NotImplementedError

    def _notification(self, sub: dict[str, Any], data: list[dict]) -> dict[str, Any]:
        raise NotImplementedError

    def _notification_sent(self, sub: dict[str, Any], status: int | None) -> None:
        pass

    #: most subscriptions one GET /subscriptions may ask for, and the default
    max_sub_limit = 1000
    default_sub_limit = 50

    # handlers ----------------------------------------------------------------------------------
    async def create_subscription(self, request: web.Request) -> web.Response:
        raw = await request.read()
        refused, tenant = self._sub_gate(request, len(raw))
        if refused is not None:
            return refused
        try:
            body = orjson.loads(raw)
        except orjson.JSONDecodeError:
            return self._problem(400, "InvalidRequest", "Invalid request")
        if not isinstance(body, dict):
            return self._problem(400, "BadRequestData", "Bad Request Data.")
        bad = self._check_subscription(body, patch=False)
        if bad is not None:
            return bad
        sub = self._new_subscription(dict(body), request)
        store = self.subscription_store(tenant)
        if sub["id"] in store:
            return self._problem(409, "AlreadyExists", "Already exists.", f"Subscription with id {sub['id']} exists")
        sub["_context"] = _link_context(request) or body.get("@context") or CORE_CONTEXT
        store[sub["id"]] = sub
        return web.Response(status=201, headers={"Location": self._location(sub["id"])})

    async def list_subscriptions(self, request: web.Request) -> web.Response:
        refused, tenant = self._sub_gate(request, 0)
        if refused is not None:
            return refused
        limit = int(request.query.get("limit", self.default_sub_limit))
        offset = int(request.query.get("offset", 0))
        if limit > self.max_sub_limit:
            return self._problem(403, "TooManyResults", "Too many results",
                                 f"You asked for {limit} results, but the supported maximum limit is {self.max_sub_limit}")
        subs = list(self.subscription_store(tenant).values())[offset:offset + limit]
        return web.json_response([self.render_subscription(s, request) for s in subs])

    async def get_subscription(self, request: web.Request) -> web.Response:
        refused, tenant = self._sub_gate(request, 0)
        if refused is not None:
            return refused
        sub = self.subscription_store(tenant).get(request.match_info["id"])
        if sub is None:
            return self._problem(404, "ResourceNotFound", "Resource not found.", "subscription not found")
        return web.json_response(self.render_subscription(sub, request))

    async def patch_subscription(self, request: web.Request) -> web.Response:
        raw = await request.read()
        refused, tenant = self._sub_gate(request, len(raw))
        if refused is not None:
            return refused
        store = self.subscription_store(tenant)
        sid = request.match_info["id"]
        if sid not in store:
            return self._problem(404, "ResourceNotFound", "Resource not found.", f"{sid} not found")
        fragment = orjson.loads(raw)
        bad = self._check_subscription({**store[sid], **fragment}, patch=True)
        if bad is not None:
            return bad
        # Scorpio: UPDATE subscriptions SET subscription=subscription || $2 (top-level jsonb merge);
        # Stellio: Subscription.mergeWithFragment (top-level map merge). Both: 204, no body.
        store[sid].update({k: v for k, v in fragment.items() if k != "@context"})
        return web.Response(status=204)

    async def delete_subscription(self, request: web.Request) -> web.Response:
        refused, tenant = self._sub_gate(request, 0)
        if refused is not None:
            return refused
        if self.subscription_store(tenant).pop(request.match_info["id"], None) is None:
            return self._problem(404, "ResourceNotFound", "Resource not found.", "subscription not found")
        return web.Response(status=204)

    # notifications -----------------------------------------------------------------------------
    def notify_changed(self, tenant: str, entities: list[dict[str, Any]]) -> None:
        """Schedule one notification per matching subscription for the entities just written."""
        for sub in list(self.subscription_store(tenant).values()):
            data = []
            for ent in entities:
                changed = {k for k in ent if k not in ("id", "type", "@context")}
                if not _selects(sub, ent, changed):
                    continue
                attrs = (sub.get("notification") or {}).get("attributes")
                stored = self._stored_entity(tenant, ent["id"])
                if attrs:
                    attrs = [attrs] if isinstance(attrs, str) else attrs
                    stored = {k: v for k, v in stored.items() if k in ("id", "type") or k in attrs}
                data.append(stored)
            if data:
                task = asyncio.get_running_loop().create_task(self._send(tenant, sub, data))
                self._notify_tasks.add(task)
                task.add_done_callback(self._notify_tasks.discard)

    def _stored_entity(self, tenant: str, eid: str) -> dict[str, Any]:
        raise NotImplementedError

    def _notification_headers(self, tenant: str, sub: dict[str, Any]) -> dict[str, str]:
        endpoint = (sub.get("notification") or {}).get("endpoint") or {}
        accept = endpoint.get("accept") or "application/json"
        headers = {str(p["key"]): str(p["value"]) for p in endpoint.get("receiverInfo") or [] if "key" in p}
        headers["Content-Type"] = accept
        if accept == "application/json":
            headers["Link"] = f'<{sub["_context"]}>; rel="http://www.w3.org/ns/json-ld#context"; ' \
                              'type="application/ld+json"'
        return headers

    async def _send(self, tenant: str, sub: dict[str, Any], data: list[dict]) -> None:
        import aiohttp

        uri = sub["notification"]["endpoint"]["uri"]
        body = orjson.dumps(self._notification(sub, data))
        try:
            async with aiohttp.ClientSession() as session:
                async with session.post(uri, data=body, headers=self._notification_headers(tenant, sub),
                                        timeout=aiohttp.ClientTimeout(total=5)) as resp:
                    status: int | None = resp.status
        except (aiohttp.ClientError, TimeoutError) as exc:
            status = None
            self.notifications_sent.append((sub["id"], type(exc).__name__))
        else:
            self.notifications_sent.append((sub["id"], status))
        self._notification_sent(sub, status)

    async def wait_notifications(self) -> None:
        while self._notify_tasks:
            await asyncio.gather(*list(self._notify_tasks), return_exceptions=True)


def _compact_arrays(node: Any, key: str | None = None, keep: frozenset[str] = frozenset()) -> Any:
    """JSON-LD compaction of arrays as Scorpio's JsonLdApi.compact does it: a one-element array
    becomes its element unless the member is in AppConstants.FORCE_ARRAY_FIELDS (``keep``)."""
    if isinstance(node, dict):
        return {k: _compact_arrays(v, k, keep) for k, v in node.items()}
    if isinstance(node, list):
        items = [_compact_arrays(v, key, keep) for v in node]
        return items[0] if len(items) == 1 and key not in keep else items
    return node


# ------------------------------------------------------------------------------------------------
# Scorpio
# ------------------------------------------------------------------------------------------------


# AppConstants.FORCE_ARRAY_FIELDS (the compacted names of the members Scorpio keeps as arrays)
_SCORPIO_FORCE_ARRAY = frozenset({"watchedAttributes", "entities", "properties", "relationships", "information",
                                  "receiverInfo", "notifierInfo", "updated", "notUpdated", "attributeTypes",
                                  "typeNames", "typeList"})


class ScorpioServer(_LDSubscriptions, _Server):
    """``version``: ``"c42c5aa"`` (current), ``"2.1.22"`` (#329: a mixed create/update upsert
    answers 207 with an empty body), ``"451"`` (a mixed upsert answers 204), ``"466"`` (207 as an
    array of ``{"id", "type": "Upsert", "success" | "failure"}``).

    Subscriptions (SubscriptionController / SubscriptionService / SubscriptionInfoDAO, c42c5aa):
    POST 201 with an absolute Location (``RestResponse.created``), an id made up as
    ``urn:<uuid>`` when the body has none, 409 AlreadyExists; the payload is stored with
    ``jsonldContext`` (the Link context) and ``timesSent``/``timesFailed`` 0
    (``SubscriptionTools.setInitTimesSentAndFailed``); GET renders it compacted, so a one-element
    array is a bare value unless the member is in FORCE_ARRAY_FIELDS, plus ``status``; PATCH merges
    top-level members (``subscription || $2``) and answers 204 (``generateSubscriptionResult`` on
    a result without successes: null → 204); DELETE 204 (``generateDeleteResult`` returns null);
    unknown id 404 NotFound; list ``limit`` above 1000 → 403 TooManyResults. Notifications:
    ``{"id": "notification:<long>", "type": "Notification", "subscriptionId", "notifiedAt",
    "data"}`` with the create request's Link and NGSILD-Tenant; any 2xx counts as delivered."""

    def __init__(self, version: str = "c42c5aa") -> None:
        super().__init__()
        self.version = version
        self.entities: dict[str, dict[str, dict]] = {}   # tenant → id → entity
        self.unavailable_ids: set[str] = set()           # entities whose write fails with 503
        self._init_subscriptions()

    def store(self, tenant: str | None = None) -> dict[str, dict]:
        return self.entities.setdefault(tenant or "", {})

    def routes(self, app: web.Application) -> None:
        app.router.add_post("/ngsi-ld/v1/entityOperations/upsert", self.upsert)
        app.router.add_get("/ngsi-ld/v1/types", self.types)
        self._subscription_routes(app)

    # subscriptions -----------------------------------------------------------------------------
    def _sub_gate(self, request: web.Request, body_len: int) -> tuple[web.Response | None, str]:
        return None, request.headers.get("NGSILD-Tenant") or ""

    def _problem(self, status: int, kind: str, title: str, detail: str | None = None) -> web.Response:
        # ErrorType: TooManyResults' type carries a trailing blank in Scorpio's source
        type_ = ERR + kind + (" " if kind == "TooManyResults" else "")
        return web.json_response({"type": type_, "title": title, "detail": detail or title, "status": status},
                                 status=status)

    def _check_subscription(self, body: dict[str, Any], *, patch: bool) -> web.Response | None:
        if body.get("type", "Subscription") != "Subscription":
            return self._problem(400, "BadRequestData", "Bad Request Data.", "type is not Subscription")
        if not body.get("entities") and not body.get("watchedAttributes"):
            return self._problem(400, "BadRequestData", "Bad Request Data.",
                                 "You have to specify entities or watched attributes")
        return None

    def _new_subscription(self, body: dict[str, Any], request: web.Request) -> dict[str, Any]:
        body.setdefault("id", f"urn:{uuid.uuid4()}")
        # the request's @context: the Link header, or under ld+json the body's own
        given = body.get("@context")
        given = given[0] if isinstance(given, list) and given and isinstance(given[0], str) else given
        body.setdefault("jsonldContext", _link_context(request) or (given if isinstance(given, str) else None)
                        or CORE_CONTEXT)
        body["timesSent"] = 0
        body["timesFailed"] = 0
        body.pop("@context", None)
        return body

    def _location(self, sid: str) -> str:
        return f"{self.url}/ngsi-ld/v1/subscriptions/{sid}"

    def render_subscription(self, stored: dict[str, Any], request: web.Request) -> dict[str, Any]:
        shown = {k: v for k, v in stored.items() if not k.startswith("_")}
        shown["status"] = "paused" if stored.get("isActive") is False else "active"
        return _compact_arrays(shown, keep=_SCORPIO_FORCE_ARRAY)

    def _stored_entity(self, tenant: str, eid: str) -> dict[str, Any]:
        return dict(self.store(tenant)[eid])

    def _notification(self, sub: dict[str, Any], data: list[dict]) -> dict[str, Any]:
        return {"id": f"notification:{-secrets.randbits(62)}", "type": "Notification", "subscriptionId": sub["id"],
                "notifiedAt": time.strftime("%Y-%m-%dT%H:%M:%S.000000Z", time.gmtime()), "data": data}

    def _notification_headers(self, tenant: str, sub: dict[str, Any]) -> dict[str, str]:
        headers = super()._notification_headers(tenant, sub)
        if tenant:
            headers["NGSILD-Tenant"] = tenant
        headers["Accept"] = headers["Content-Type"]
        return headers

    def _notification_sent(self, sub: dict[str, Any], status: int | None) -> None:
        key = "timesSent" if status is not None and 200 <= status < 300 else "timesFailed"
        sub[key] = sub.get(key, 0) + 1

    async def types(self, request: web.Request) -> web.Response:
        return web.json_response({"id": "urn:ngsi-ld:EntityTypeList:1", "type": "EntityTypeList", "typeList": []})

    async def upsert(self, request: web.Request) -> web.Response:
        try:
            entities = orjson.loads(await request.read())
        except orjson.JSONDecodeError:
            return web.json_response({"type": ERR + "InvalidRequest", "title": "Invalid request", "status": 400},
                                     status=400)
        store = self.store(request.headers.get("NGSILD-Tenant"))
        replace = "update" not in (request.query.get("options") or "").split(",")
        results: list[dict[str, Any]] = []   # NGSILDOperationResult.getJson()
        was_updated_all = True
        created: list[str] = []
        for entity in entities:
            eid = entity.get("id") if isinstance(entity, dict) else None
            problem = _entity_problem(entity)
            if problem is None and eid in self.unavailable_ids:
                problem = ("InternalError", "503")
                status = 503
            else:
                status = 400
            if problem is not None:
                results.append({"type": "Upsert", "id": eid, "failure": [
                    {"type": ERR + problem[0], "title": problem[1], "detail": problem[1], "status": status}]})
                continue
            existed = eid in store
            if existed and not replace:
                store[eid].update({k: v for k, v in entity.items() if k != "@context"})
            else:
                store[eid] = {k: v for k, v in entity.items() if k != "@context"}
            if not existed:
                created.append(eid)
            was_updated_all = was_updated_all and existed
            results.append({"type": "Upsert", "id": eid, "success": [{"attributes": []}], "_updated": existed})
        written = {r["id"] for r in results if "success" in r}
        self.notify_changed(request.headers.get("NGSILD-Tenant") or "",
                            [e for e in entities if isinstance(e, dict) and e.get("id") in written])
        return self._batch_answer(results, created, was_updated_all)

    def _batch_answer(self, results: list[dict], created: list[str], was_updated_all: bool) -> web.Response:
        errors = [r for r in results if "failure" in r]
        successes = [r["id"] for r in results if "success" in r]
        mixed = bool(created) and any(r.get("_updated") for r in results if "success" in r)
        if self.version == "2.1.22" and mixed and not errors:
            return web.Response(status=207)                        # #329: empty body
        if self.version == "451" and mixed and not errors:
            return web.Response(status=204)                        # #451
        if self.version == "466" and errors:
            items = [{k: v for k, v in r.items() if k != "_updated"} for r in results]
            return web.json_response(items, status=207)            # #466: array
        shaped = []
        for r in errors:
            shaped.append({"type": "Upsert", "id": r["id"], "ProblemDetails": r["failure"][0]})
        if errors and not successes:
            body = {"errors": shaped}
            if any("503" in orjson.dumps(e).decode() for e in shaped):
                return web.json_response(body, status=503)
            if all(e["ProblemDetails"]["status"] == 409 for e in shaped):
                return web.json_response(body, status=409)
            return web.json_response(body, status=400)
        if not errors:
            if was_updated_all:
                return web.Response(status=204)
            return web.json_response(created, status=201)
        return web.json_response({"success": successes, "errors": shaped}, status=207)


# ------------------------------------------------------------------------------------------------
# Keycloak (token endpoint only) and Stellio
# ------------------------------------------------------------------------------------------------


class KeycloakServer(_Server):
    """``POST /realms/<realm>/protocol/openid-connect/token`` with the client-credentials grant."""

    def __init__(self, realm: str = "stellio", client_id: str = "stadtlink", client_secret: str = "s3cret",
                 expires_in: int = 300) -> None:
        super().__init__()
        self.realm = realm
        self.client_id = client_id
        self.client_secret = client_secret
        self.expires_in = expires_in
        self.issued: dict[str, float] = {}   # token → expiry (monotonic)

    @property
    def token_url(self) -> str:
        return f"{self.url}/realms/{self.realm}/protocol/openid-connect/token"

    def routes(self, app: web.Application) -> None:
        app.router.add_post(f"/realms/{self.realm}/protocol/openid-connect/token", self.token)

    async def token(self, request: web.Request) -> web.Response:
        form = await request.post()
        if form.get("grant_type") != "client_credentials":
            return web.json_response({"error": "unsupported_grant_type"}, status=400)
        if form.get("client_id") != self.client_id or form.get("client_secret") != self.client_secret:
            return web.json_response({"error": "unauthorized_client",
                                      "error_description": "Invalid client or Invalid client credentials"}, status=401)
        token = secrets.token_urlsafe(24)
        self.issued[token] = time.monotonic() + self.expires_in
        return web.json_response({"access_token": token, "expires_in": self.expires_in, "token_type": "Bearer",
                                  "not-before-policy": 0, "scope": "profile email"})

    def valid(self, token: str) -> bool:
        expiry = self.issued.get(token)
        return expiry is not None and time.monotonic() < expiry

    def revoke_all(self) -> None:
        self.issued.clear()


# Subscription.kt / NotificationParams.kt / Endpoint.kt members (a Jackson data class with
# FAIL_ON_UNKNOWN_PROPERTIES: any other member is 400 "Member '<name>' is invalid")
_STELLIO_SUB_MEMBERS = {"id", "type", "subscriptionName", "createdAt", "modifiedAt", "description", "entities",
                        "watchedAttributes", "notificationTrigger", "timeInterval", "q", "geoQ", "scopeQ",
                        "notification", "isActive", "expiresAt", "@context", "throttling", "lang", "datasetId",
                        "jsonldContext", "jsonKeys", "expandValues", "status"}
_STELLIO_NOTIFICATION_MEMBERS = {"attributes", "pick", "omit", "format", "endpoint", "status", "timesSent",
                                 "lastNotification", "lastFailure", "lastSuccess", "sysAttrs", "join", "joinLevel",
                                 "showChanges"}
_STELLIO_ENDPOINT_MEMBERS = {"uri", "accept", "cooldown", "notifierInfo", "receiverInfo", "timeout"}


class StellioServer(_LDSubscriptions, _Server):
    """Subscriptions (subscription-service ``SubscriptionHandler.kt``, ``Subscription.kt``,
    ``NotificationParams.kt``, ``Endpoint.kt``, ``NotificationService.callSubscriber``, 6bfcae9):
    POST 201 with the relative Location ``/ngsi-ld/v1/subscriptions/<id>``, 409 AlreadyExists,
    unknown members 400, ``csf``/``temporalQ`` 501; GET renders the data class (Jackson NON_NULL):
    defaults filled in (``notificationTrigger``, ``notification.format``, ``endpoint.accept``),
    ``isActive`` only when false, ``timesSent`` only when above 0, ``status`` computed,
    ``createdAt``/``modifiedAt`` only with ``options=sysAttrs``; PATCH merges top-level members
    (``mergeWithFragment``) and answers 204; DELETE 204; unknown id 404 ResourceNotFound; every
    request passes the tenant and token gate. Notifications ``{"id": "urn:ngsi-ld:Notification:<uuid>",
    "type": "Notification", "subscriptionId", "notifiedAt", "data"}``; **only a 200 answer** counts
    as delivered, anything else sets ``notification.status`` to ``failed``."""

    notification_ok = (200,)
    max_sub_limit = 100     # application.pagination.limit-max
    default_sub_limit = 30  # application.pagination.limit-default

    def __init__(self, *, tenants: tuple[str, ...] = ("urn:ngsi-ld:tenant:default",),
                 keycloak: KeycloakServer | None = None, max_body: int = 2_097_152) -> None:
        super().__init__()
        self.tenants = tenants
        self.keycloak = keycloak
        self.max_body = max_body
        self.entities: dict[str, dict[str, dict]] = {}
        self.unauthorized = 0
        self._init_subscriptions()

    def store(self, tenant: str = "urn:ngsi-ld:tenant:default") -> dict[str, dict]:
        return self.entities.setdefault(tenant, {})

    def routes(self, app: web.Application) -> None:
        app.router.add_post("/ngsi-ld/v1/entityOperations/upsert", self.upsert)
        app.router.add_get("/ngsi-ld/v1/types", self.types)
        app.router.add_get("/ngsi-ld/v1/entities", self.query)
        self._subscription_routes(app)

    # subscriptions -----------------------------------------------------------------------------
    def _sub_gate(self, request: web.Request, body_len: int) -> tuple[web.Response | None, str]:
        return self._gate(request, body_len)

    def _problem(self, status: int, kind: str, title: str, detail: str | None = None) -> web.Response:
        # Spring ProblemDetail: the message is the title (SubscriptionHandlerTests expectations)
        return web.json_response({"type": ERR + kind, "title": detail or title}, status=status)

    def _check_subscription(self, body: dict[str, Any], *, patch: bool) -> web.Response | None:
        for name in body:
            if name in ("csf", "temporalQ"):
                return self._problem(501, "NotImplemented", f"Member '{name}' is not implemented")
            if name not in _STELLIO_SUB_MEMBERS and not name.startswith("_"):
                return self._problem(400, "BadRequestData", f"Member '{name}' is invalid")
        notification = body.get("notification") or {}
        for name in notification:
            if name not in _STELLIO_NOTIFICATION_MEMBERS:
                return self._problem(400, "BadRequestData", f"Member '{name}' is invalid")
        for name in notification.get("endpoint") or {}:
            if name not in _STELLIO_ENDPOINT_MEMBERS:
                return self._problem(400, "BadRequestData", f"Member '{name}' is invalid")
        if body.get("type") != "Subscription":
            return self._problem(400, "BadRequestData", "Type must be 'Subscription'")
        if body.get("entities") is None and body.get("watchedAttributes") is None:
            return self._problem(400, "BadRequestData", "At least one of 'entities' or 'watchedAttributes' is required")
        if body.get("throttling") is not None and body["throttling"] < 1:
            return self._problem(400, "BadRequestData", "The value of 'throttling' must be greater than zero (int)")
        uri = str((notification.get("endpoint") or {}).get("uri", ""))
        if uri.split(":", 1)[0] not in ("http", "https", "mqtt", "mqtts"):
            return self._problem(400, "BadRequestData", f"Invalid URI for endpoint: {uri}")
        return None

    def _new_subscription(self, body: dict[str, Any], request: web.Request) -> dict[str, Any]:
        body.setdefault("id", f"urn:ngsi-ld:Subscription:{uuid.uuid4()}")
        body.pop("@context", None)
        body["createdAt"] = time.strftime("%Y-%m-%dT%H:%M:%S.000000Z", time.gmtime())
        return body

    def _location(self, sid: str) -> str:
        return f"/ngsi-ld/v1/subscriptions/{sid}"

    def render_subscription(self, stored: dict[str, Any], request: web.Request) -> dict[str, Any]:
        """Subscription.prepareForRendering with media type application/json."""
        sys_attrs = "sysAttrs" in (request.query.get("options") or "")
        out: dict[str, Any] = {"id": stored["id"], "type": stored["type"]}
        for key in ("subscriptionName", "description"):
            if stored.get(key) is not None:
                out[key] = stored[key]
        if stored.get("entities") is not None:
            out["entities"] = [{k: e[k] for k in ("id", "idPattern", "type") if e.get(k) is not None}
                               for e in stored["entities"]]
        if stored.get("watchedAttributes") is not None:
            out["watchedAttributes"] = list(stored["watchedAttributes"])
        out["notificationTrigger"] = stored.get("notificationTrigger") or ["attributeCreated", "attributeUpdated"]
        for key in ("timeInterval", "q", "geoQ", "scopeQ"):
            if stored.get(key) is not None:
                out[key] = stored[key]
        n = stored["notification"]
        notification: dict[str, Any] = {}
        if n.get("attributes"):
            notification["attributes"] = list(n["attributes"])
        for key in ("pick", "omit"):
            if n.get(key):
                notification[key] = n[key]
        notification["format"] = n.get("format") or "normalized"
        endpoint = {"uri": n["endpoint"]["uri"], "accept": n["endpoint"].get("accept") or "application/json"}
        for key in ("cooldown", "notifierInfo", "receiverInfo", "timeout"):
            if n["endpoint"].get(key) is not None:
                endpoint[key] = n["endpoint"][key]
        notification["endpoint"] = endpoint
        if n.get("status") is not None:
            notification["status"] = n["status"]
        if n.get("timesSent"):
            notification["timesSent"] = n["timesSent"]
        for key in ("lastNotification", "lastFailure", "lastSuccess"):
            if n.get(key) is not None:
                notification[key] = n[key]
        if n.get("sysAttrs"):
            notification["sysAttrs"] = True
        for key in ("join", "joinLevel"):
            if n.get(key) is not None:
                notification[key] = n[key]
        if n.get("showChanges"):
            notification["showChanges"] = True
        out["notification"] = notification
        if stored.get("isActive") is False:
            out["isActive"] = False
        for key in ("expiresAt", "throttling", "lang"):
            if stored.get(key) is not None:
                out[key] = stored[key]
        for key in ("datasetId", "jsonldContext"):
            if stored.get(key):
                out[key] = stored[key]
        if sys_attrs:
            out["createdAt"] = stored["createdAt"]
            out["modifiedAt"] = stored.get("modifiedAt", stored["createdAt"])
        out["status"] = "paused" if stored.get("isActive") is False else "active"
        return out

    def _stored_entity(self, tenant: str, eid: str) -> dict[str, Any]:
        return dict(self.store(tenant)[eid])

    def _notification(self, sub: dict[str, Any], data: list[dict]) -> dict[str, Any]:
        return {"id": f"urn:ngsi-ld:Notification:{uuid.uuid4()}", "type": "Notification",
                "subscriptionId": sub["id"], "notifiedAt": time.strftime("%Y-%m-%dT%H:%M:%S.000000Z", time.gmtime()),
                "data": data}

    def _notification_headers(self, tenant: str, sub: dict[str, Any]) -> dict[str, str]:
        headers = super()._notification_headers(tenant, sub)
        if tenant != "urn:ngsi-ld:tenant:default":
            headers["NGSILD-Tenant"] = tenant
        return headers

    def _notification_sent(self, sub: dict[str, Any], status: int | None) -> None:
        """NotificationService: success only when the answer is 200 OK."""
        n = sub["notification"]
        now = time.strftime("%Y-%m-%dT%H:%M:%S.000000Z", time.gmtime())
        n["timesSent"] = n.get("timesSent", 0) + 1
        n["lastNotification"] = now
        ok = status in self.notification_ok
        n["status"] = "ok" if ok else "failed"
        n["lastSuccess" if ok else "lastFailure"] = now

    async def query(self, request: web.Request) -> web.Response:
        """PaginationQuery.kt: limit above application.pagination.limit-max (100) → 403 TooManyResults."""
        refused, tenant = self._gate(request, 0)
        if refused is not None:
            return refused
        limit = int(request.query.get("limit", 30))
        offset = int(request.query.get("offset", 0))
        if limit > 100:
            return web.json_response({"type": ERR + "TooManyResults", "status": 403,
                                      "title": f"You asked for {limit} results, but the supported maximum limit is 100"},
                                     status=403)
        wanted = request.query.get("type")
        found = [e for e in self.store(tenant).values() if wanted is None or e["type"] == wanted]
        return web.json_response(found[offset:offset + limit])

    def _gate(self, request: web.Request, body_len: int) -> tuple[web.Response | None, str]:
        tenant = request.headers.get("NGSILD-Tenant") or "urn:ngsi-ld:tenant:default"
        if tenant not in self.tenants:   # TenantWebFilter
            return web.json_response({"type": ERR + "NonexistentTenant", "title": f"Tenant {tenant} does not exist",
                                      "status": 404}, status=404), tenant
        if self.keycloak is not None:   # Spring Security resource server: 401, no body
            auth = request.headers.get("Authorization", "")
            token = auth[7:] if auth.startswith("Bearer ") else ""
            if not self.keycloak.valid(token):
                self.unauthorized += 1
                why = 'error="invalid_token", error_description="Jwt expired"' if token else ""
                return web.Response(status=401, headers={"WWW-Authenticate": ("Bearer " + why).strip()}), tenant
        if body_len > self.max_body:   # spring.http.codecs.max-in-memory-size
            return web.json_response({"type": ERR + "BadRequestData", "title": "Exceeded limit on max bytes to buffer",
                                      "status": 413}, status=413), tenant
        return None, tenant

    async def types(self, request: web.Request) -> web.Response:
        refused, _ = self._gate(request, 0)
        if refused is not None:
            return refused
        return web.json_response({"id": "urn:ngsi-ld:EntityTypeList:1", "type": "EntityTypeList", "typeList": []})

    async def upsert(self, request: web.Request) -> web.Response:
        raw = await request.read()
        refused, tenant = self._gate(request, len(raw))
        if refused is not None:
            return refused
        entities = orjson.loads(raw)
        store = self.store(tenant)
        success: list[str] = []
        errors: list[dict[str, Any]] = []
        created: list[str] = []
        for entity in entities:
            problem = _entity_problem(entity)
            eid = entity.get("id") if isinstance(entity, dict) else None
            if problem is not None:
                errors.append({"entityId": eid, "error": {"type": ERR + problem[0], "title": problem[1],
                                                          "status": 400}, "registrationId": None})
                continue
            if eid in store:
                store[eid].update({k: v for k, v in entity.items() if k != "@context"})
            else:
                store[eid] = {k: v for k, v in entity.items() if k != "@context"}
                created.append(eid)
            success.append(eid)
        self.notify_changed(tenant, [e for e in entities if isinstance(e, dict) and e.get("id") in success])
        if not errors and created:
            return web.json_response(created, status=201)
        if not errors:
            return web.Response(status=204)
        return web.json_response({"success": success, "errors": errors}, status=207)


# ------------------------------------------------------------------------------------------------
# Orion (NGSI-v2)
# ------------------------------------------------------------------------------------------------

_FORBIDDEN = set("<>\"'=;()")


def _v2_value_forbidden(value: Any) -> bool:
    if isinstance(value, str):
        return any(c in _FORBIDDEN for c in value)
    if isinstance(value, list):
        return any(_v2_value_forbidden(v) for v in value)
    if isinstance(value, dict):
        return any(_v2_value_forbidden(v) for v in value.values())
    return False


def _v2_id_bad(text: Any) -> bool:
    return not isinstance(text, str) or not 1 <= len(text) <= 256 or any(
        ord(c) <= 32 or ord(c) >= 127 or c in "?/#&" or c in _FORBIDDEN for c in text)


@dataclass
class V2Subscription:
    id: str
    body: dict[str, Any]
    service: str | None
    service_path: str


class OrionV2Server(_Server):
    def __init__(self, max_body: int = 1_000_000) -> None:
        super().__init__()
        self.max_body = max_body   # -inReqPayloadMaxSize
        self.entities: dict[tuple[str | None, str], dict[str, dict]] = {}
        self.subscriptions: dict[str, V2Subscription] = {}
        #: entity id → (error, status): the update of that entity fails the way Orion reports it
        self.refuse: dict[str, tuple[str, int]] = {}

    def store(self, service: str | None = None, path: str = "/") -> dict[str, dict]:
        return self.entities.setdefault((service, path), {})

    def error_body(self, status: int) -> Any:
        return {"error": "InternalServerError", "description": "Database Error"}

    def routes(self, app: web.Application) -> None:
        app.router.add_get("/v2", self.entry)
        app.router.add_get("/version", self.version)
        app.router.add_post("/v2/op/update", self.op_update)
        app.router.add_get("/v2/entities/{id}", self.get_entity)
        app.router.add_post("/v2/subscriptions", self.create_subscription)
        app.router.add_get("/v2/subscriptions", self.list_subscriptions)
        app.router.add_patch("/v2/subscriptions/{id}", self.patch_subscription)
        app.router.add_delete("/v2/subscriptions/{id}", self.delete_subscription)

    @staticmethod
    def _tenant(request: web.Request) -> tuple[str | None, str]:
        service = request.headers.get("Fiware-Service")
        path = request.headers.get("Fiware-ServicePath") or "/"
        return (service.lower() if service else None), (path.rstrip("/") or "/")

    async def entry(self, request: web.Request) -> web.Response:
        return web.json_response({"entities_url": "/v2/entities", "types_url": "/v2/types",
                                  "subscriptions_url": "/v2/subscriptions", "registrations_url": "/v2/registrations"})

    async def version(self, request: web.Request) -> web.Response:
        return web.json_response({"orion": {"version": "4.2.0"}})

    @staticmethod
    def _bad(description: str, error: str = "BadRequest", status: int = 400) -> web.Response:
        return web.json_response({"error": error, "description": description}, status=status)

    async def op_update(self, request: web.Request) -> web.Response:
        raw = await request.read()
        if len(raw) > self.max_body:   # rest.cpp: payload size check
            return self._bad(f"payload size: {len(raw)}, max size supported: {self.max_body}",
                             "RequestEntityTooLarge", 413)
        try:
            doc = orjson.loads(raw)
        except orjson.JSONDecodeError:
            return self._bad("Errors found in incoming JSON buffer", "ParseError")
        if doc.get("actionType") not in ("append", "appendStrict", "update", "delete", "replace"):
            return self._bad("invalid update action type: right ones are: append, appendStrict, delete, replace, update")
        entities = doc.get("entities")
        if not isinstance(entities, list):
            return self._bad("Invalid JSON type for entities (must be array)")
        # The whole request is checked before anything is stored (2681_bugfix_op_update_attr_value_checks).
        for ent in entities:
            if _v2_id_bad(ent.get("id")):
                return self._bad("Invalid characters in entity id")
            if _v2_id_bad(ent.get("type")):
                return self._bad("Invalid characters in entity type")
            for name, attr in ent.items():
                if name in ("id", "type"):
                    continue
                if _v2_id_bad(name):
                    return self._bad("Invalid characters in attribute name")
                if not isinstance(attr, dict):
                    continue
                if _v2_id_bad(attr.get("type", "Text")):
                    return self._bad("Invalid characters in attribute type")
                unrestricted = attr.get("type") == "TextUnrestricted" or (attr.get("metadata") or {}).get(
                    "TextUnrestricted", {}).get("value") is True
                if not unrestricted and _v2_value_forbidden(attr.get("value")):
                    return self._bad("Invalid characters in attribute value")
                for md_name, md in (attr.get("metadata") or {}).items():
                    if _v2_id_bad(md_name):
                        return self._bad("Invalid characters in metadata name")
                    if _v2_value_forbidden(md.get("value")):
                        return self._bad("Invalid characters in metadata value")
        service, path = self._tenant(request)
        store = self.store(service, path)
        refused: list[tuple[str, str, int]] = []
        for ent in entities:
            if ent["id"] in self.refuse:
                _, status = self.refuse[ent["id"]]
                refused.append((ent["id"], ent["type"], status))
                continue
            current = store.setdefault(ent["id"], {"id": ent["id"], "type": ent["type"]})
            for name, attr in ent.items():
                if name not in ("id", "type"):
                    current[name] = attr
        if not refused:
            return web.Response(status=204)
        described = ", ".join(f"{eid}/{etype} [entity itself]" for eid, etype, _ in refused)
        if len(refused) == len(entities):
            return self._bad(f"do not exist: {described}", "NotFound" if refused[0][2] == 404 else "Unprocessable",
                             refused[0][2])
        return self._bad(f"do not exist: {described}", "PartialUpdate", 422)

    async def get_entity(self, request: web.Request) -> web.Response:
        service, path = self._tenant(request)
        ent = self.store(service, path).get(request.match_info["id"])
        if ent is None:
            return self._bad("The requested entity has not been found. Check type and id", "NotFound", 404)
        return web.json_response(ent)

    async def create_subscription(self, request: web.Request) -> web.Response:
        body = orjson.loads(await request.read())
        if not isinstance(body.get("notification"), dict) or not isinstance(body.get("subject"), dict):
            return self._bad("notification and subject are mandatory")
        sid = uuid.uuid4().hex[:24]
        service, path = self._tenant(request)
        self.subscriptions[sid] = V2Subscription(sid, body, service, path)
        return web.Response(status=201, headers={"Location": f"/v2/subscriptions/{sid}"})

    async def list_subscriptions(self, request: web.Request) -> web.Response:
        service, _ = self._tenant(request)
        out = []
        for sub in self.subscriptions.values():
            if sub.service != service:
                continue
            shown = {"id": sub.id, **sub.body, "status": "active"}
            shown["notification"] = {**sub.body["notification"], "attrsFormat":
                                     sub.body["notification"].get("attrsFormat", "normalized"), "onlyChangedAttrs": False,
                                     "covered": False}
            out.append(shown)
        limit = int(request.query.get("limit", 20))
        offset = int(request.query.get("offset", 0))
        return web.json_response(out[offset:offset + limit])

    async def patch_subscription(self, request: web.Request) -> web.Response:
        sub = self.subscriptions.get(request.match_info["id"])
        if sub is None:
            return self._bad("The requested subscription has not been found. Check id", "NotFound", 404)
        sub.body.update(orjson.loads(await request.read()))
        return web.Response(status=204)

    async def delete_subscription(self, request: web.Request) -> web.Response:
        if self.subscriptions.pop(request.match_info["id"], None) is None:
            return self._bad("The requested subscription has not been found. Check id", "NotFound", 404)
        return web.Response(status=204)

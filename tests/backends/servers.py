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
* :class:`OrionV2Server` -- fiware-orion c678400, orion-api.md and functional tests: ``POST
  /v2/op/update`` 204; forbidden characters → 400 BadRequest for the whole request, nothing
  stored; ``PartialUpdate`` / ``Unprocessable`` 422 with a description naming entities; 413
  ``RequestEntityTooLarge`` above ``max_body``; subscriptions; Fiware-Service (lower-cased) and
  Fiware-ServicePath partitions.
"""

from __future__ import annotations

import asyncio
import secrets
import socket
import time
import uuid
from dataclasses import dataclass
from typing import Any

import orjson
from aiohttp import web

ERR = "https://uri.etsi.org/ngsi-ld/errors/"
_ATTR_TYPES = {"Property", "Relationship", "GeoProperty", "LanguageProperty", "VocabProperty", "JsonProperty",
               "ListProperty", "ListRelationship"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


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
# Scorpio
# ------------------------------------------------------------------------------------------------


class ScorpioServer(_Server):
    """``version``: ``"c42c5aa"`` (current), ``"2.1.22"`` (#329: a mixed create/update upsert
    answers 207 with an empty body), ``"451"`` (a mixed upsert answers 204), ``"466"`` (207 as an
    array of ``{"id", "type": "Upsert", "success" | "failure"}``)."""

    def __init__(self, version: str = "c42c5aa") -> None:
        super().__init__()
        self.version = version
        self.entities: dict[str, dict[str, dict]] = {}   # tenant → id → entity
        self.unavailable_ids: set[str] = set()           # entities whose write fails with 503

    def store(self, tenant: str | None = None) -> dict[str, dict]:
        return self.entities.setdefault(tenant or "", {})

    def routes(self, app: web.Application) -> None:
        app.router.add_post("/ngsi-ld/v1/entityOperations/upsert", self.upsert)
        app.router.add_get("/ngsi-ld/v1/types", self.types)

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


class StellioServer(_Server):
    def __init__(self, *, tenants: tuple[str, ...] = ("urn:ngsi-ld:tenant:default",),
                 keycloak: KeycloakServer | None = None, max_body: int = 2_097_152) -> None:
        super().__init__()
        self.tenants = tenants
        self.keycloak = keycloak
        self.max_body = max_body
        self.entities: dict[str, dict[str, dict]] = {}
        self.unauthorized = 0

    def store(self, tenant: str = "urn:ngsi-ld:tenant:default") -> dict[str, dict]:
        return self.entities.setdefault(tenant, {})

    def routes(self, app: web.Application) -> None:
        app.router.add_post("/ngsi-ld/v1/entityOperations/upsert", self.upsert)
        app.router.add_get("/ngsi-ld/v1/types", self.types)
        app.router.add_get("/ngsi-ld/v1/entities", self.query)

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

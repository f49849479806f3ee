"""The aiohttp application: NGSI-LD request rules (§1 of reference/orion-ld.md) and all routes."""

from __future__ import annotations

import asyncio
import contextlib
import copy
import logging
import re
import uuid
from urllib.parse import unquote, urlencode
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import orjson
from aiohttp import web

from . import errors as E
from .contexts import (CORE_CONTEXT_URL, CompiledContext, ContextResolver, HttpContextFetcher,
                       load_context_dir)
from .errors import NgsiError, bad_request, invalid_request, not_found
from .model import (DeleteMarker, Entity, check_entity_id, parse_attribute, parse_entity_body)
from .query import compile_geo, compile_order_by, compile_q, compile_scope_q
from .render import CONCISE, NORMALIZED, SIMPLIFIED, render_entity
from .store import (Change, Store, Tenant, check_tenant_name, delete_attribute, merge_attrs,
                    merge_instance, put_instances)
from .subscriptions import LINK_REL, Notifier, Subscription
from .timeutil import now as now_ms

log = logging.getLogger("stadtlink.broker_client.local_broker")

BASE = "/ngsi-ld/v1"
JSON = "application/json"
JSONLD = "application/ld+json"
GEOJSON = "application/geo+json"
MERGE_PATCH = "application/merge-patch+json"

KNOWN_PARAMS = {
    "id", "type", "idPattern", "attrs", "q", "geometry", "georel", "coordinates", "geoproperty",
    "geometryProperty", "csf", "limit", "offset", "count", "options", "format", "datasetId",
    "deleteAll", "timeproperty", "timerel", "timeAt", "endTimeAt", "lastN", "local", "details",
    "prettyPrint", "spaces", "lang", "scopeQ", "observedAt", "onlyIds", "entityMap", "pick", "omit",
    "join", "joinLevel", "containedBy", "attributeDetails", "orderBy", "collapse", "expandValues",
    "notificationTrigger", "reload", "kind", "url", "subscriptionId", "location", "doNotCompare",
}
KNOWN_OPTIONS = {"keyValues", "simplified", "concise", "normalized", "sysAttrs", "noOverwrite",
                 "update", "replace", "count", "append", "temporalValues", "aggregatedValues"}
_COMMON = {"prettyPrint", "spaces"}
_QUERY_PARAMS = {"id", "type", "idPattern", "attrs", "q", "geometry", "georel", "coordinates",
                 "geoproperty", "geometryProperty", "csf", "limit", "offset", "count", "options",
                 "format", "lang", "pick", "omit", "local", "scopeQ", "datasetId", "join",
                 "joinLevel", "containedBy", "entityMap", "orderBy"}
_RETRIEVE_PARAMS = {"attrs", "options", "format", "lang", "pick", "omit", "geometryProperty", "type",
                    "local", "datasetId", "join", "joinLevel", "containedBy", "entityMap"}


# NGSI-LD resources this stand-in does not serve: 501 rather than 404
_NOT_IMPLEMENTED = {"csourceRegistrations", "csourceSubscriptions", "jsonldContexts", "attributes",
                    "entityMap", "snapshots", "info"}


def _scope_list(scope: Any) -> list:
    return [scope] if isinstance(scope, str) else list(scope)


class Route:
    __slots__ = ("methods",)

    def __init__(self, methods: dict[str, tuple[Callable[..., Awaitable[web.StreamResponse]], set[str]]]):
        self.methods = methods


class Req:
    """What the handlers need about one request, after the common checks."""

    __slots__ = ("request", "params", "options", "tenant_name", "accept", "ctx", "body",
                 "content_type", "link_url", "path_args", "headers", "path")

    def __init__(self) -> None:
        self.params: dict[str, str] = {}
        self.options: set[str] = set()
        self.tenant_name: str | None = None
        self.accept = JSON
        self.ctx: CompiledContext | None = None
        self.body: Any = None
        self.content_type: str | None = None
        self.link_url: str | None = None
        self.path_args: tuple = ()
        self.headers: dict[str, str] = {}


def _mime(value: str | None) -> str | None:
    if not value:
        return None
    return value.split(";", 1)[0].strip().lower()


def _dumps(obj: Any) -> bytes:
    return orjson.dumps(obj)


def error_response(err: NgsiError) -> web.Response:
    return web.Response(status=err.status, body=_dumps(err.body()), content_type=JSON)


class BrokerApp:
    def __init__(self, *, context_dir: str | Path | None = None, max_body: int = 1024 * 1024,
                 page_size: int = 20, notification_timeout: float = 5.0,
                 context_timeout: float = 5.0, context_attempts: int = 3) -> None:
        documents = load_context_dir(Path(context_dir)) if context_dir else None
        self.resolver = ContextResolver(
            documents, fetcher=HttpContextFetcher(timeout=context_timeout, attempts=context_attempts))
        self.store = Store()
        self.notifier = Notifier(timeout=notification_timeout)
        self.max_body = max_body
        self.page_size = page_size
        self.periodic_task: asyncio.Task | None = None
        S = self
        self.static_routes: dict[str, Route] = {
            "/entities": Route({"GET": (S.query_entities, _QUERY_PARAMS),
                                "POST": (S.create_entity, {"local"})}),
            "/entityOperations/create": Route({"POST": (S.batch_create, {"local"})}),
            "/entityOperations/upsert": Route({"POST": (S.batch_upsert, {"options", "local"})}),
            "/entityOperations/update": Route({"POST": (S.batch_update, {"options", "local"})}),
            "/entityOperations/delete": Route({"POST": (S.batch_delete, {"local"})}),
            "/entityOperations/merge": Route({"POST": (S.batch_merge, {"options", "local"})}),
            "/entityOperations/query": Route({"POST": (S.post_query, {"limit", "offset", "count",
                                                                      "options", "format", "lang",
                                                                      "local", "pick", "omit",
                                                                      "orderBy"})}),
            "/subscriptions": Route({"GET": (S.list_subscriptions, {"limit", "offset", "count", "options"}),
                                     "POST": (S.create_subscription, set())}),
            "/types": Route({"GET": (S.list_types, {"details", "type", "local"})}),
        }
        self.entity_route = Route({
            "GET": (S.get_entity, _RETRIEVE_PARAMS),
            "DELETE": (S.delete_entity, {"type", "local"}),
            "PATCH": (S.merge_entity, {"options", "type", "format", "local"}),
            "PUT": (S.replace_entity, {"options", "type", "format", "local"}),
        })
        self.attrs_route = Route({
            "POST": (S.append_attrs, {"options", "type", "local"}),
            "PATCH": (S.update_attrs, {"options", "type", "local"}),
        })
        self.attr_route = Route({
            "PATCH": (S.patch_attr, {"options", "type", "local"}),
            "PUT": (S.put_attr, {"options", "type", "local"}),
            "DELETE": (S.delete_attr, {"datasetId", "deleteAll", "type", "lang", "local"}),
        })
        self._array_handlers = {S.batch_create, S.batch_upsert, S.batch_update, S.batch_delete,
                                S.batch_merge}
        self.subscription_route = Route({
            "GET": (S.get_subscription, {"options"}),
            "PATCH": (S.patch_subscription, set()),
            "DELETE": (S.delete_subscription, set()),
        })

    # ------------------------------------------------------------------------------------------
    # entry point

    async def handle(self, request: web.Request) -> web.StreamResponse:
        try:
            response = await self._handle(request)
        except NgsiError as err:
            response = error_response(err)
        except Exception:  # never let a request crash the broker
            log.exception("internal error on %s %s", request.method, request.path_qs)
            response = error_response(NgsiError(500, E.INTERNAL_ERROR, "Internal Error",
                                                "unexpected error in the local broker"))
        if log.isEnabledFor(logging.DEBUG):
            log.debug("%s %s -> %s", request.method, request.path_qs, response.status)
        return response

    def _route(self, path: str) -> tuple[Route, tuple]:
        route = self.static_routes.get(path)
        if route is not None:
            return route, ()
        if path.startswith("/entities/"):
            rest = path[len("/entities/"):]
            if rest.endswith("/attrs"):
                return self.attrs_route, (rest[:-len("/attrs")],)
            idx = rest.rfind("/attrs/")
            if idx > 0:
                return self.attr_route, (rest[:idx], rest[idx + len("/attrs/"):])
            return self.entity_route, (rest,)
        if path.startswith("/subscriptions/"):
            return self.subscription_route, (path[len("/subscriptions/"):],)
        if path.startswith("/temporal/") or path == "/temporal":
            raise NgsiError(501, E.OPERATION_NOT_SUPPORTED,
                            "Not Implemented in Orion-LD, please use Mintaka for this operation",
                            BASE + path)
        if path.split("/")[1] in _NOT_IMPLEMENTED:
            raise NgsiError(501, E.OPERATION_NOT_SUPPORTED, "Not implemented in the local broker",
                            BASE + path)
        raise NgsiError(404, E.RESOURCE_NOT_FOUND, "Service Not Found", BASE + path)

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        path = request.path
        if path.endswith("/") and len(path) > 1:
            if path == BASE + "/entities/" and request.method in ("PATCH", "PUT", "DELETE"):
                raise bad_request("Invalid resource id", "the id in the URL path is empty")
            path = path[:-1]
            if path.endswith("/"):
                raise invalid_request("Invalid URL PATH", "Double Slash")
        if path.startswith("/ngsi-ld/ex/v1/"):
            return self._extension(request, path)
        if not path.startswith(BASE + "/"):
            raise NgsiError(404, E.RESOURCE_NOT_FOUND, "Service Not Found", path)
        route, args = self._route(path[len(BASE):])
        if any(not a for a in args):
            raise bad_request("Invalid resource id", "an id in the URL path is empty")
        entry = route.methods.get(request.method)
        if entry is None:
            return web.Response(status=405, headers={"Allow": ",".join(route.methods)})
        handler, supported = entry
        req = Req()
        req.request = request
        req.path_args = args
        req.headers = {k: v for k, v in request.headers.items()}
        self._check_params(request, req, supported)
        self._check_tenant(request, req)
        req.accept = self._accept(request)
        if req.accept == GEOJSON and handler not in (self.query_entities, self.get_entity, self.post_query):
            raise NgsiError(406, E.BAD_REQUEST_DATA, "Invalid Accept mime-type",
                            "application/geo+json is only served for entities")
        await self._read_body(request, req)
        self._check_body_kind(req, handler)
        req.path = path
        return await handler(req)

    # ------------------------------------------------------------------------------------------
    # common request rules

    def _check_params(self, request: web.Request, req: Req, supported: set[str]) -> None:
        for name, value in request.query.items():
            if name not in KNOWN_PARAMS:
                raise invalid_request("Unknown URI parameter", name)
            if name not in supported and name not in _COMMON:
                raise bad_request("Unsupported URI parameter", name)
            if value == "":
                raise bad_request("Empty right-hand-side for a URI parameter", name)
            if name == "options":
                for opt in value.split(","):
                    if opt not in KNOWN_OPTIONS:
                        raise invalid_request("Invalid value for URI param /options/", opt)
                    req.options.add(opt)
            elif name in req.params:
                req.params[name] += "," + value
            else:
                req.params[name] = value
        opts = req.options
        if "update" in opts and "replace" in opts:
            raise bad_request("URI Param Error", "options: both /update/ and /replace/ present")
        if sum(1 for group in (("keyValues", "simplified"), ("concise",), ("normalized",))
               if any(o in opts for o in group)) > 1:
            raise bad_request("Incoherent value for /options/ URI param",
                              "keyValues/simplified, concise and normalized are mutually exclusive")
        if "sysAttrs" in opts and ("keyValues" in opts or "simplified" in opts):
            raise bad_request("Incoherent value for /options/ URI param",
                              "sysAttrs cannot be combined with keyValues")

    def _check_tenant(self, request: web.Request, req: Req) -> None:
        ngsild = request.headers.get("NGSILD-Tenant")
        fiware = request.headers.get("Fiware-Service")
        if ngsild is not None and fiware is not None and ngsild.lower() != fiware.lower():
            raise bad_request("HTTP header duplication",
                              "NGSILD-Tenant and Fiware-Service with different values")
        name = ngsild if ngsild is not None else fiware
        if name is not None and name != "":
            req.tenant_name = check_tenant_name(name)

    def _accept(self, request: web.Request) -> str:
        header = request.headers.get("Accept")
        if not header:
            return JSON
        best, best_q = None, -1.0
        for item in header.split(","):
            parts = [p.strip() for p in item.split(";")]
            mime = parts[0].lower()
            weight = 1.0
            for p in parts[1:]:
                if p.startswith("q="):
                    try:
                        weight = float(p[2:])
                    except ValueError:
                        weight = 0.0
            if mime in ("*/*", "application/*"):
                mime = JSON
            if mime not in (JSON, JSONLD, GEOJSON) or weight <= 0:
                continue
            if weight > best_q or (weight == best_q and mime == JSON):
                best, best_q = mime, weight
        if best is None:
            raise NgsiError(406, E.BAD_REQUEST_DATA, "Invalid Accept mime-type", header)
        return best

    async def _read_body(self, request: web.Request, req: Req) -> None:
        method = request.method
        length = request.content_length
        if length is not None and length > self.max_body:
            raise NgsiError(413, E.BAD_REQUEST_DATA, "Request Entity too large",
                            f"payload size: {length}, max size supported: {self.max_body}")
        if method in ("GET", "DELETE", "HEAD", "OPTIONS"):
            if (length or 0) > 0 or (length is None and request.body_exists):
                data = await request.content.read(1)
                if data:
                    raise bad_request("Unexpected payload body", f"a {method} request has no payload")
            return
        ctype = _mime(request.headers.get("Content-Type"))
        if method == "PATCH":
            if ctype not in (JSON, JSONLD, MERGE_PATCH):
                raise NgsiError(415, E.BAD_REQUEST_DATA, "unsupported format of payload",
                                "Content-Type must be application/json, application/ld+json or "
                                "application/merge-patch+json")
        elif method == "POST":
            if ctype not in (JSON, JSONLD):
                raise NgsiError(415, E.BAD_REQUEST_DATA, "unsupported format of payload",
                                "Content-Type must be application/json or application/ld+json")
        if ctype == MERGE_PATCH or ctype not in (JSON, JSONLD):
            ctype = JSON
        req.content_type = ctype
        link = request.headers.get("Link")
        if link is not None:
            if ctype == JSONLD:
                raise bad_request("invalid combination of HTTP headers Content-Type and Link",
                                  "Content-Type is 'application/ld+json' and a Link header is present")
            req.link_url = self._link_url(link)
        buf = bytearray()
        while True:
            chunk = await request.content.read(65536)
            if not chunk:
                break
            buf += chunk
            if len(buf) > self.max_body:
                raise NgsiError(413, E.BAD_REQUEST_DATA, "Request Entity too large",
                                f"payload size: >{self.max_body}, max size supported: {self.max_body}")
        if not buf.strip():
            raise bad_request("payload missing", "a payload body is needed")
        try:
            body = orjson.loads(bytes(buf))
        except orjson.JSONDecodeError as exc:
            raise invalid_request("JSON Parse Error", str(exc)) from None
        if not isinstance(body, (dict, list)):
            raise invalid_request("Invalid Payload Body", "the payload must be a JSON object or array")
        req.body = body

    def _check_body_kind(self, req: Req, handler: Callable) -> None:
        """Array where an object belongs (or the reverse) → InvalidRequest; {} / [] → BadRequestData."""
        body = req.body
        if body is None:
            return
        wants_array = handler in self._array_handlers
        if isinstance(body, list) != wants_array:
            kind = "array" if wants_array else "object"
            raise invalid_request("Invalid Payload Body", f"the payload must be a JSON {kind}")
        if body == {}:
            raise bad_request("Invalid Payload Body", "Empty Object")
        if body == []:
            raise bad_request("Invalid Payload Body", "Empty Array")

    @staticmethod
    def _link_url(link: str) -> str:
        link = link.strip()
        if not link.startswith("<") or ">" not in link:
            raise bad_request("Invalid Link HTTP header", link)
        return link[1:link.index(">")].strip()

    async def _ctx_for(self, req: Req, item: Any = None, *, per_item: bool = False) -> CompiledContext:
        """The request's context: body @context (ld+json), else Link header, else core."""
        body = item if per_item else req.body
        if isinstance(body, dict):
            if req.content_type == JSONLD:
                if "@context" not in body:
                    raise bad_request("@context missing in JSON payload",
                                      "Content-Type is application/ld+json")
                return await self.resolver.compile(body["@context"])
            if "@context" in body and req.content_type == JSON:
                raise bad_request("Mismatch between /Content-Type/ and contents of the request payload body",
                                  "Content-Type is application/json and the payload holds an @context")
        return await self._link_ctx(req)

    async def _link_ctx(self, req: Req) -> CompiledContext:
        if req.link_url is None:
            link = req.request.headers.get("Link")
            if link is not None:
                req.link_url = self._link_url(link)
        if req.link_url is None:
            return self.resolver.core_context
        return await self.resolver.compile(req.link_url)

    def _tenant(self, req: Req, *, create: bool = False) -> Tenant:
        return self.store.tenant(req.tenant_name, create=create)

    def _tenant_headers(self, req: Req) -> dict[str, str]:
        return {"NGSILD-Tenant": req.tenant_name} if req.tenant_name else {}

    # ------------------------------------------------------------------------------------------
    # responses

    @staticmethod
    def _context_value(ctx: CompiledContext) -> Any:
        """The @context of ld+json answers: the one the reader gave (the core URL when none)."""
        return CORE_CONTEXT_URL if ctx.value is None else ctx.value

    @staticmethod
    def _page_links(req: Req, limit: int, offset: int, total: int) -> list[str]:
        """Pagination Link values (rel="prev"/"next") as NGSI-LD §6.3.x describes."""
        if limit <= 0:
            return []
        links = []
        query = [(k, v) for k, v in req.request.query.items() if k not in ("limit", "offset")]

        def link(new_offset: int, rel: str) -> str:
            params = urlencode(query + [("limit", str(limit)), ("offset", str(new_offset))], safe=":,;/")
            return f'<{req.path}?{params}>; rel="{rel}"; type="application/ld+json"'
        if offset > 0:
            links.append(link(max(0, offset - limit), "prev"))
        if offset + limit < total:
            links.append(link(offset + limit, "next"))
        return links

    def _json(self, req: Req, status: int, payload: Any, ctx: CompiledContext | None,
              headers: dict[str, str] | None = None,
              pages: tuple[int, int, int] | None = None) -> web.Response:
        headers = dict(headers or {})
        links = self._page_links(req, *pages) if pages else []
        content_type = JSON
        if ctx is not None:
            if req.accept == JSONLD:
                content_type = JSONLD
                value = self._context_value(ctx)
                if isinstance(payload, list):
                    payload = [{"@context": value, **p} if isinstance(p, dict) else p for p in payload]
                elif isinstance(payload, dict):
                    payload = {"@context": value, **payload}
            else:
                if req.accept == GEOJSON:
                    content_type = GEOJSON
                links.insert(0, f"<{ctx.link_url}>; {LINK_REL}")
        if links:
            headers["Link"] = ", ".join(links)
        return web.Response(status=status, body=_dumps(payload), content_type=content_type,
                            headers=headers)

    @staticmethod
    def _empty(status: int, headers: dict[str, str] | None = None) -> web.Response:
        return web.Response(status=status, headers=headers or {})

    def _notify(self, tenant: Tenant, changes: list[Change], req: Req) -> None:
        if tenant.subscriptions and changes:
            self.notifier.process(list(tenant.subscriptions.values()), changes, req.headers)

    # ------------------------------------------------------------------------------------------
    # entities

    def _require_object(self, req: Req) -> dict:
        if not isinstance(req.body, dict):
            raise bad_request("Invalid Payload Body", "the payload must be a JSON object")
        return req.body

    def _require_array(self, req: Req) -> list:
        if not isinstance(req.body, list):
            raise bad_request("Invalid Payload Body", "the payload must be a JSON array")
        return req.body

    async def create_entity(self, req: Req) -> web.Response:
        body = self._require_object(req)
        ctx = await self._ctx_for(req)
        now = now_ms()
        entity_id, types, attrs, scope = parse_entity_body(body, ctx, now)
        tenant = self._tenant(req, create=True)
        if entity_id in tenant.entities:
            raise NgsiError(409, E.ALREADY_EXISTS, "Entity already exists", entity_id)
        entity = tenant.create(entity_id, types, attrs, scope, now)  # type: ignore[arg-type]
        self._notify(tenant, [Change(entity, None, "entityCreated")], req)
        headers = {"Location": f"{BASE}/entities/{entity_id}", **self._tenant_headers(req)}
        return self._empty(201, headers)

    def _entity(self, tenant: Tenant, entity_id: str, title: str = "Entity Not Found") -> Entity:
        entity = tenant.entities.get(entity_id)
        if entity is None:
            if ":" not in entity_id:
                raise bad_request("Invalid URI - no colon found", entity_id)
            raise not_found(title, entity_id)
        return entity

    def _format(self, req: Req) -> tuple[str, bool]:
        opts = req.options
        fmt = NORMALIZED
        if "keyValues" in opts or "simplified" in opts:
            fmt = SIMPLIFIED
        elif "concise" in opts:
            fmt = CONCISE
        explicit = req.params.get("format")
        if explicit is not None:
            mapping = {"keyValues": SIMPLIFIED, "simplified": SIMPLIFIED, "concise": CONCISE,
                       "normalized": NORMALIZED}
            if explicit not in mapping:
                raise invalid_request("Invalid value for URI param /format/", explicit)
            fmt = mapping[explicit]
        return fmt, "sysAttrs" in opts

    def _name_set(self, req: Req, param: str, ctx: CompiledContext) -> set[str] | None:
        raw = req.params.get(param)
        if raw is None:
            return None
        names = [n.strip() for n in raw.split(",") if n.strip()]
        if param == "attrs":
            for n in names:
                if n in ("id", "type", "@id", "@type") or n.startswith("@"):
                    raise bad_request("Invalid attribute name", f"{n} is not an attribute")
        return {n if n in ("id", "type") else ctx.expand(n) for n in names}

    _MEMBER_RE = re.compile(r"^[A-Za-z0-9_@:/.#\-]+$")

    def _check_projection(self, req: Req) -> None:
        """pick / omit hold plain comma-separated names (nested projections are not supported)."""
        p = req.params
        for param in ("pick", "omit"):
            if param in p:
                names = p[param].split(",")
                if not all(self._MEMBER_RE.match(n) for n in names):
                    raise bad_request(f"Invalid value for URI parameter /{param}/", p[param])
                if "attrs" in p:
                    raise bad_request("Incompatible URI parameters", f"{param} and attrs")
        if "pick" in p and "omit" in p and set(p["pick"].split(",")) & set(p["omit"].split(",")):
            raise bad_request("Incompatible URI parameters", "the same member in pick and omit")

    def _render(self, req: Req, entity: Entity, ctx: CompiledContext, attrs: set[str] | None) -> dict:
        fmt, sys_attrs = self._format(req)
        pick = self._name_set(req, "pick", ctx)
        omit = self._name_set(req, "omit", ctx)
        datasets = set(req.params["datasetId"].split(",")) if "datasetId" in req.params else None
        out = render_entity(entity, ctx, fmt=fmt, sys_attrs=sys_attrs, attrs=attrs,
                            lang=req.params.get("lang"), pick=pick, omit=omit, datasets=datasets)
        if req.accept == GEOJSON:
            return self._feature(entity, out, ctx, req)
        return out

    def _feature(self, entity: Entity, rendered: dict, ctx: CompiledContext, req: Req) -> dict:
        prop = ctx.expand(req.params.get("geometryProperty", "location"))
        instances = entity.attrs.get(prop)
        geometry = instances[0].get("value") if instances else None
        props = {k: v for k, v in rendered.items() if k != "id"}
        return {"id": entity.id, "type": "Feature", "geometry": geometry, "properties": props,
                "@context": self._context_value(ctx)}

    async def get_entity(self, req: Req) -> web.Response:
        ctx = await self._link_ctx(req)
        self._format(req)
        self._check_projection(req)
        tenant = self._tenant(req)
        entity = self._entity(tenant, req.path_args[0])
        if "type" in req.params:
            wanted = {ctx.expand(t) for t in req.params["type"].split(",")}
            if not wanted.intersection(entity.types):
                raise not_found("Entity Not Found", entity.id)
        attrs = self._name_set(req, "attrs", ctx)
        if attrs and not any(a in entity.attrs for a in attrs):
            raise not_found("Entity Not Found", f"{entity.id} has none of the attributes {req.params['attrs']}")
        rendered = self._render(req, entity, ctx, attrs)
        if not rendered:
            raise not_found("Entity Not Found", f"{entity.id}: pick/omit leave no member")
        return self._json(req, 200, rendered, ctx)

    async def delete_entity(self, req: Req) -> web.Response:
        tenant = self._tenant(req)
        entity = self._entity(tenant, req.path_args[0], "Entity not found")
        tenant.delete(entity)
        self._notify(tenant, [Change(entity, None, "entityDeleted", when=now_ms())], req)
        return self._empty(204)

    def _not_updated(self, names: list[str], status: int, title: str) -> dict:
        return {"attributes": names, "statusCode": status, "title": title}

    async def _fragment_for_entity(self, req: Req, *, check_id: bool = True):
        """``(body, context, tenant, entity, now)`` of a request whose body is a fragment of the
        existing entity ``/entities/{id}`` (404 if absent; 400 if the body names another id)."""
        body = self._require_object(req)
        ctx = await self._ctx_for(req)
        tenant = self._tenant(req)
        entity = self._entity(tenant, req.path_args[0], "Entity does not exist")
        if check_id:
            raw_id = body.get("id", body.get("@id"))
            if raw_id is not None and raw_id != entity.id:
                raise bad_request("Mismatching Entity ID", f"{raw_id} in the payload, {entity.id} in the URL")
        return body, ctx, tenant, entity, now_ms()

    async def append_attrs(self, req: Req) -> web.Response:
        body, ctx, tenant, entity, now = await self._fragment_for_entity(req)
        _, types, attrs, scope = parse_entity_body(body, ctx, now, need_id=False, need_type=False)
        no_overwrite = "noOverwrite" in req.options
        updated, not_updated, touched = [], [], set()
        tenant.add_types(entity, types)
        if scope is not None:  # scope: replaced, or with noOverwrite the values are added
            if no_overwrite and entity.scope is not None:
                merged = _scope_list(entity.scope)
                merged += [v for v in _scope_list(scope) if v not in merged]
                scope = merged[0] if len(merged) == 1 else merged
            entity.scope = scope
            updated.append("scope")
            entity.modified = now
        for iri, instances in attrs.items():
            name = ctx.compact(iri)
            if no_overwrite and iri in entity.attrs:
                # only instances with a datasetId the attribute does not have yet are added
                existing_ds = {i.get("datasetId") for i in entity.attrs[iri]}
                instances = [i for i in instances if i.get("datasetId") not in existing_ds]
                if not instances:
                    not_updated.append(self._not_updated([name], 409, "Attribute already exists"))
                    continue
            put_instances(entity, iri, instances, now)  # type: ignore[arg-type]
            updated.append(name)
            touched.add(iri)
        if touched or types:
            entity.modified = now
            self._notify(tenant, [Change(entity, touched, "entityUpdated")], req)
        if not_updated:
            return self._json(req, 207, {"updated": updated, "notUpdated": not_updated}, ctx)
        return self._empty(204)

    async def update_attrs(self, req: Req) -> web.Response:
        body, ctx, tenant, entity, now = await self._fragment_for_entity(req, check_id=False)
        _, types, attrs, scope = parse_entity_body(body, ctx, now, need_id=False, need_type=False,
                                                   allow_delete=True)
        tenant.add_types(entity, types)  # NGSI-LD 1.8: types in the fragment are added
        updated, missing, touched = [], [], set()
        if scope is not None:  # like attributes: replaced when present, never added
            if entity.scope is None:
                missing.append("scope")
            else:
                entity.scope = scope
                entity.modified = now
                updated.append("scope")
        deleted: dict[str, list[dict]] = {}
        for iri, instances in attrs.items():
            name = ctx.compact(iri)
            if iri not in entity.attrs:
                missing.append(name)
                continue
            if isinstance(instances, DeleteMarker):
                removed = delete_attribute(entity, iri, instances.dataset_id, False)
                if not removed:
                    missing.append(name)
                    continue
                deleted[iri] = removed
            else:
                existing_ds = {i.get("datasetId") for i in entity.attrs[iri]}
                if any(i.get("datasetId") not in existing_ds for i in instances):
                    missing.append(name)
                    continue
                put_instances(entity, iri, instances, now)
            updated.append(name)
            touched.add(iri)
        if touched:
            entity.modified = now
            self._notify(tenant, [Change(entity, touched, "entityUpdated", deleted, now)], req)
        if missing:
            return self._json(req, 207, {"updated": updated, "notUpdated": [
                self._not_updated([m], 404, "Attribute Not Found") for m in missing]}, ctx)
        return self._empty(204)

    _ATTR_PATH_RE = re.compile(r"^[^@<>\"{}|\\^`\s][^<>\"{}|\\^`\s]*$")

    def _check_attr_path(self, attr_name: str) -> None:
        """An attribute name in the URL path: a term or IRI, not a keyword or a core member."""
        if attr_name in ("id", "type", "scope", "createdAt", "modifiedAt", "deletedAt") \
                or not self._ATTR_PATH_RE.match(attr_name):
            raise bad_request("Invalid attribute name", f"{attr_name} is not an attribute name")

    async def _existing_attribute(self, req: Req):
        """The request's fragment for ``/entities/{id}/attrs/{attr}`` and the attribute it addresses
        (404 unless the entity and the attribute exist)."""
        body = self._require_object(req)
        ctx = await self._ctx_for(req)
        tenant = self._tenant(req)
        entity_id, attr_name = req.path_args
        self._check_attr_path(attr_name)
        entity = self._entity(tenant, entity_id, "Entity does not exist")
        iri = ctx.expand(attr_name)
        if iri not in entity.attrs:
            raise not_found("Attribute Not Found", attr_name)
        fragment = {k: v for k, v in body.items() if k != "@context"}
        return ctx, tenant, entity, attr_name, iri, now_ms(), fragment

    async def patch_attr(self, req: Req) -> web.Response:
        ctx, tenant, entity, attr_name, iri, now, fragment = await self._existing_attribute(req)
        if not fragment:
            raise bad_request("Invalid Payload Body", "Empty Object")
        existing_type = entity.attrs[iri][0].get("type")
        if "type" in fragment and fragment["type"] != existing_type:
            raise bad_request("Attribute type mismatch",
                              f"{attr_name} is a {existing_type}, the fragment says {fragment['type']}")
        parsed = parse_attribute(attr_name, fragment, ctx, now, allow_delete=True, partial=True)
        deleted: dict[str, list[dict]] = {}
        if isinstance(parsed, DeleteMarker):
            deleted[iri] = delete_attribute(entity, iri, parsed.dataset_id, False)
            if not deleted[iri]:
                raise not_found("Attribute Not Found", f"{attr_name} (datasetId {parsed.dataset_id})")
        else:
            for patch in parsed:
                ds = patch.get("datasetId")
                instances = entity.attrs[iri]
                for i, existing in enumerate(instances):
                    if existing.get("datasetId") == ds:
                        if "type" not in fragment:
                            patch.pop("type", None)
                        instances[i] = merge_instance(existing, patch, now)
                        break
                else:
                    raise not_found("Attribute Not Found", f"{attr_name} (datasetId {ds})")
        entity.modified = now
        self._notify(tenant, [Change(entity, {iri}, "entityUpdated", deleted, now)], req)
        return self._empty(204)

    async def put_attr(self, req: Req) -> web.Response:
        ctx, tenant, entity, attr_name, iri, now, fragment = await self._existing_attribute(req)
        parsed = parse_attribute(attr_name, fragment, ctx, now)
        put_instances(entity, iri, parsed, now)  # type: ignore[arg-type]
        entity.modified = now
        self._notify(tenant, [Change(entity, {iri}, "entityUpdated")], req)
        return self._empty(204)

    async def delete_attr(self, req: Req) -> web.Response:
        ctx = await self._link_ctx(req)
        tenant = self._tenant(req)
        entity_id, attr_name = req.path_args
        entity = self._entity(tenant, entity_id, "Entity not found")
        if attr_name == "scope":  # the entity's scope member (NGSI-LD §4.18)
            if entity.scope is None:
                raise not_found("Attribute not found", attr_name)
            entity.scope = None
            entity.modified = now_ms()
            return self._empty(204)
        iri = ctx.expand(attr_name)
        delete_all = req.params.get("deleteAll", "false")
        if delete_all not in ("true", "false"):
            raise bad_request("Invalid value for URI parameter /deleteAll/", delete_all)
        removed = delete_attribute(entity, iri, req.params.get("datasetId"), delete_all == "true")
        if not removed:
            raise not_found("Attribute not found", attr_name)
        entity.modified = now_ms()
        self._notify(tenant, [Change(entity, {iri}, "entityUpdated", {iri: removed}, entity.modified)], req)
        return self._empty(204)

    async def merge_entity(self, req: Req) -> web.Response:
        body, ctx, tenant, entity, now = await self._fragment_for_entity(req)
        _, types, attrs, scope = parse_entity_body(body, ctx, now, need_id=False, need_type=False,
                                                   allow_delete=True)
        tenant.add_types(entity, types)
        if scope is not None:
            entity.scope = scope
        deleted: dict[str, list[dict]] = {}
        touched = merge_attrs(entity, attrs, now, deleted)
        entity.modified = now
        self._notify(tenant, [Change(entity, touched, "entityUpdated", deleted, now)], req)
        return self._empty(204)

    async def replace_entity(self, req: Req) -> web.Response:
        body, ctx, tenant, entity, now = await self._fragment_for_entity(req)
        _, types, attrs, scope = parse_entity_body(body, ctx, now, need_id=False, need_type=False)
        touched = set(entity.attrs) | set(attrs)
        tenant.replace(entity, types or entity.types, attrs, scope, now)  # type: ignore[arg-type]
        self._notify(tenant, [Change(entity, touched, "entityUpdated")], req)
        return self._empty(204)

    # ------------------------------------------------------------------------------------------
    # batch operations

    async def _batch_items(self, req: Req) -> list[tuple[str | None, Any, CompiledContext | NgsiError]]:
        """(entity id or placeholder, item, context or the error for this item) per array item."""
        items = self._require_array(req)
        out = []
        for item in items:
            entity_id = None
            if isinstance(item, dict):
                raw_id = item.get("id", item.get("@id"))
                entity_id = raw_id if isinstance(raw_id, str) else None
            try:
                if not isinstance(item, dict):
                    raise bad_request("Invalid Entity", "an entity must be a JSON object")
                if not item:
                    raise bad_request("Invalid Payload Body", "Empty Object")
                ctx: CompiledContext | NgsiError = await self._ctx_for(req, item, per_item=True)
            except NgsiError as err:
                if err.status == 503:
                    raise
                ctx = err
            out.append((entity_id, item, ctx))
        return out

    @staticmethod
    def _placeholder(item: Any) -> str:
        if isinstance(item, dict) and ("id" in item or "@id" in item):
            return "Invalid Entity::id"
        return "No Entity::id"

    def _batch_answer(self, req: Req, success: list[str], errors: list[dict], created_only: list[str] | None,
                      all_new_or_none: bool = False) -> web.Response:
        headers = self._tenant_headers(req)
        if errors:
            return web.Response(status=207, body=_dumps({"success": success, "errors": errors}),
                                content_type=JSON, headers=headers)
        if created_only:
            return web.Response(status=201, body=_dumps(created_only), content_type=JSON, headers=headers)
        return self._empty(204, headers if created_only is not None else None)

    @staticmethod
    def _add_error(errors: list[dict], seen: set[str], entity_id: str, err: NgsiError) -> None:
        if entity_id in seen:
            return
        seen.add(entity_id)
        errors.append({"entityId": entity_id, "error": err.item()})

    async def batch_create(self, req: Req) -> web.Response:
        items = await self._batch_items(req)
        tenant = self._tenant(req, create=True)
        now = now_ms()
        success, errors, seen, changes = [], [], set(), []
        for entity_id, item, ctx in items:
            try:
                if isinstance(ctx, NgsiError):
                    raise ctx
                eid, types, attrs, scope = parse_entity_body(item, ctx, now)
                if eid in tenant.entities:
                    raise NgsiError(409, E.ALREADY_EXISTS, "Entity already exists",
                                    "Cannot create an existing entity")
                entity = tenant.create(eid, types, attrs, scope, now)  # type: ignore[arg-type]
                success.append(eid)
                changes.append(Change(entity, None, "entityCreated"))
            except NgsiError as err:
                self._add_error(errors, seen, entity_id or self._placeholder(item), err)
        self._notify(tenant, changes, req)
        if errors:
            return self._batch_answer(req, success, errors, None)
        return web.Response(status=201, body=_dumps(success), content_type=JSON,
                            headers=self._tenant_headers(req))

    async def batch_upsert(self, req: Req) -> web.Response:
        items = await self._batch_items(req)
        tenant = self._tenant(req, create=True)
        now = now_ms()
        update_mode = "update" in req.options
        success: list[str] = []
        created: list[str] = []
        errors: list[dict] = []
        seen: set[str] = set()
        changes: dict[str, Change] = {}
        for entity_id, item, ctx in items:
            try:
                if isinstance(ctx, NgsiError):
                    raise ctx
                eid, types, attrs, scope = parse_entity_body(item, ctx, now, need_type=False)
                assert eid is not None
                entity = tenant.entities.get(eid)
                if entity is None:
                    if types is None:
                        raise bad_request("Invalid Entity", "Mandatory field entity::type is missing")
                    entity = tenant.create(eid, types, attrs, scope, now)  # type: ignore[arg-type]
                    created.append(eid)
                    changes[eid] = Change(entity, None, "entityCreated")
                elif update_mode:
                    tenant.add_types(entity, types)
                    for iri, instances in attrs.items():
                        put_instances(entity, iri, instances, now)  # type: ignore[arg-type]
                    entity.modified = now
                    self._merge_change(changes, entity, set(attrs))
                else:
                    touched = set(entity.attrs) | set(attrs)
                    tenant.replace(entity, types or entity.types, attrs, scope, now)  # type: ignore[arg-type]
                    self._merge_change(changes, entity, touched)
                if eid not in success:
                    success.append(eid)
            except NgsiError as err:
                self._add_error(errors, seen, entity_id or self._placeholder(item), err)
        self._notify(tenant, list(changes.values()), req)
        headers = self._tenant_headers(req)
        if errors:
            return web.Response(status=207, body=_dumps({"success": success, "errors": errors}),
                                content_type=JSON, headers=headers)
        if created:
            return web.Response(status=201, body=_dumps(created), content_type=JSON, headers=headers)
        return self._empty(204)

    @staticmethod
    def _merge_change(changes: dict[str, Change], entity: Entity, attrs: set[str],
                      deleted: dict[str, list[dict]] | None = None, now: float | None = None) -> None:
        known = changes.get(entity.id)
        if known is None:
            changes[entity.id] = Change(entity, attrs, "entityUpdated", deleted, now)
            return
        if known.attrs is not None:
            known.attrs |= attrs
        if deleted:
            known.deleted = {**(known.deleted or {}), **deleted}
            known.when = now

    async def batch_update(self, req: Req) -> web.Response:
        items = await self._batch_items(req)
        tenant = self._tenant(req)
        now = now_ms()
        no_overwrite = "noOverwrite" in req.options
        success, errors, seen = [], [], set()
        changes: dict[str, Change] = {}
        for entity_id, item, ctx in items:
            try:
                if isinstance(ctx, NgsiError):
                    raise ctx
                eid, types, attrs, _ = parse_entity_body(item, ctx, now, need_type=False)
                assert eid is not None
                entity = tenant.entities.get(eid)
                if entity is None:
                    raise not_found("Entity not found", eid)
                tenant.add_types(entity, types)
                touched = set()
                kept = []
                for iri, instances in attrs.items():
                    if no_overwrite and iri in entity.attrs:
                        kept.append(ctx.compact(iri))
                        continue
                    put_instances(entity, iri, instances, now)  # type: ignore[arg-type]
                    touched.add(iri)
                if touched:
                    entity.modified = now
                    self._merge_change(changes, entity, touched)
                if kept:
                    # noOverwrite left attributes as they were: not a full success (as ETSI expects)
                    raise bad_request("attribute already exists: overwrite is not allowed", ", ".join(kept))
                if eid not in success:
                    success.append(eid)
            except NgsiError as err:
                self._add_error(errors, seen, entity_id or self._placeholder(item), err)
        self._notify(tenant, list(changes.values()), req)
        if errors:
            return web.Response(status=207, body=_dumps({"success": success, "errors": errors}),
                                content_type=JSON)
        return self._empty(204)

    async def batch_merge(self, req: Req) -> web.Response:
        items = await self._batch_items(req)
        tenant = self._tenant(req)
        now = now_ms()
        success, errors, seen = [], [], set()
        changes: dict[str, Change] = {}
        for entity_id, item, ctx in items:
            try:
                if isinstance(ctx, NgsiError):
                    raise ctx
                eid, types, attrs, scope = parse_entity_body(item, ctx, now, need_type=False,
                                                             allow_delete=True)
                assert eid is not None
                entity = tenant.entities.get(eid)
                if entity is None:
                    raise not_found("Entity not found", eid)
                tenant.add_types(entity, types)
                deleted: dict[str, list[dict]] = {}
                touched = merge_attrs(entity, attrs, now, deleted)
                entity.modified = now
                self._merge_change(changes, entity, touched, deleted, now)
                if eid not in success:
                    success.append(eid)
            except NgsiError as err:
                self._add_error(errors, seen, entity_id or self._placeholder(item), err)
        self._notify(tenant, list(changes.values()), req)
        if errors:
            return web.Response(status=207, body=_dumps({"success": success, "errors": errors}),
                                content_type=JSON)
        return self._empty(204)

    async def batch_delete(self, req: Req) -> web.Response:
        items = self._require_array(req)
        tenant = self._tenant(req)
        success, errors, seen, changes = [], [], set(), []
        for item in items:
            if not isinstance(item, str):
                self._add_error(errors, seen, "Invalid Entity::id",
                                bad_request("Invalid Entity::id", "the items must be entity id strings"))
                continue
            entity = tenant.entities.get(item)
            if entity is None:
                self._add_error(errors, seen, item, not_found("Entity not found", item))
                continue
            tenant.delete(entity)
            success.append(item)
            changes.append(Change(entity, None, "entityDeleted", when=now_ms()))
        self._notify(tenant, changes, req)
        if errors:
            return web.Response(status=207, body=_dumps({"success": success, "errors": errors}),
                                content_type=JSON)
        return self._empty(204)

    # ------------------------------------------------------------------------------------------
    # queries

    def _paging(self, req: Req) -> tuple[int, int, bool]:
        count = req.params.get("count", "false")
        if count not in ("true", "false"):
            raise bad_request("Invalid value for URI parameter /count/", count)
        want_count = count == "true" or "count" in req.options
        limit = self.page_size
        raw = req.params.get("limit")
        if raw is not None:
            try:
                limit = int(raw)
            except ValueError:
                raise bad_request("Bad value for URI parameter /limit/", raw) from None
            if limit < 0:
                raise bad_request("Bad value for URI parameter /limit/", raw)
            if limit > 1000:
                raise NgsiError(400, E.BAD_REQUEST_DATA, "Invalid value for URI parameter /limit/",
                                "must be an integer value <= 1000")
            if limit == 0 and not want_count:
                raise bad_request("Invalid value for URI parameter /limit/",
                                  "must be an integer value >= 1, if /count/ is not set")
        offset = 0
        raw = req.params.get("offset")
        if raw is not None:
            try:
                offset = int(raw)
            except ValueError:
                raise bad_request("Bad value for URI parameter /offset/", raw) from None
            if offset < 0:
                raise bad_request("Bad value for URI parameter /offset/", raw)
        return limit, offset, want_count

    @staticmethod
    def _type_matcher(expr: str, ctx: CompiledContext) -> tuple[set[str] | None, Callable[[list[str]], bool]]:
        """(plain type set usable with the index, predicate) for a type list or type expression."""
        if not any(c in expr for c in ";|()"):
            names = {ctx.expand(t.strip()) for t in expr.split(",") if t.strip()}
            return names, lambda types: any(t in names for t in types)
        pos = 0

        def parse_or() -> Callable[[list[str]], bool]:
            nonlocal pos
            parts = [parse_and()]
            while pos < len(expr) and expr[pos] in "|,":
                pos += 1
                parts.append(parse_and())
            return lambda ts: any(p(ts) for p in parts)

        def parse_and() -> Callable[[list[str]], bool]:
            nonlocal pos
            parts = [parse_atom()]
            while pos < len(expr) and expr[pos] == ";":
                pos += 1
                parts.append(parse_atom())
            return lambda ts: all(p(ts) for p in parts)

        def parse_atom() -> Callable[[list[str]], bool]:
            nonlocal pos
            if pos < len(expr) and expr[pos] == "(":
                pos += 1
                inner = parse_or()
                if pos >= len(expr) or expr[pos] != ")":
                    raise bad_request("Invalid type expression", expr)
                pos += 1
                return inner
            start = pos
            while pos < len(expr) and expr[pos] not in ";|,()":
                pos += 1
            name = expr[start:pos].strip()
            if not name:
                raise bad_request("Invalid type expression", expr)
            iri = ctx.expand(name)
            return lambda ts: iri in ts

        pred = parse_or()
        if pos != len(expr):
            raise bad_request("Invalid type expression", expr)
        return None, pred

    def _select(self, tenant: Tenant, *, ids: list[str] | None, type_sets: list | None,
                filters: list[Callable[[Entity], bool]]) -> list[Entity]:
        if ids is not None:
            candidates = [tenant.entities[i] for i in dict.fromkeys(ids) if i in tenant.entities]
            candidates.sort(key=lambda e: e.seq)
        elif type_sets is not None and all(s is not None for s in type_sets):
            names = set().union(*type_sets)
            buckets = [tenant.by_type[n] for n in names if n in tenant.by_type]
            if len(buckets) == 1:
                candidates = list(buckets[0].values())
            else:
                merged: dict[str, Entity] = {}
                for b in buckets:
                    merged.update(b)
                candidates = list(merged.values())
            candidates.sort(key=lambda e: e.seq)
        else:
            candidates = list(tenant.entities.values())
        if not filters:
            return candidates
        return [e for e in candidates if all(f(e) for f in filters)]

    async def query_entities(self, req: Req) -> web.Response:
        ctx = await self._link_ctx(req)
        p = req.params
        # NGSI-LD §5.7.2: type, attrs, q, a geo-query or local=true; ids alone are not enough (unlike
        # Orion-LD, which also takes id/idPattern; ETSI test 019_03_05)
        if not any(k in p for k in ("type", "attrs", "q", "georel", "geometry", "scopeQ")) \
                and p.get("local") != "true":
            raise bad_request("Too broad query",
                              "Need at least one of: entity-type, geo-location, attribute-list, Q-filter")
        limit, offset, want_count = self._paging(req)
        self._format(req)  # validate early
        self._check_projection(req)
        filters: list[Callable[[Entity], bool]] = []
        ids = [i for i in p["id"].split(",") if i] if "id" in p else None
        if ids is not None:
            for i in ids:
                if ":" not in i:
                    raise bad_request("Invalid URI", i)
        type_sets = None
        if "type" in p:
            names, type_pred = self._type_matcher(p["type"], ctx)
            type_sets = [names]
            if ids is not None or names is None:
                filters.append(lambda e: type_pred(e.types))
        if "idPattern" in p:
            try:
                pattern = re.compile(p["idPattern"])
            except re.error:
                raise bad_request("Invalid idPattern", p["idPattern"]) from None
            filters.append(lambda e: bool(pattern.search(e.id)))
        attrs = self._name_set(req, "attrs", ctx)
        if attrs:
            filters.append(lambda e: any(a in e.attrs for a in attrs))
        if "q" in p:
            filters.append(compile_q(p["q"], ctx))
        if "scopeQ" in p:
            filters.append(compile_scope_q(p["scopeQ"]))
        if any(k in p for k in ("georel", "geometry", "coordinates")):
            filters.append(compile_geo(p.get("geometry"), p.get("georel"), p.get("coordinates"),
                                       p.get("geoproperty"), ctx))
        tenant = self._tenant(req)
        matches = self._select(tenant, ids=ids, type_sets=type_sets, filters=filters)
        return self._page_answer(req, matches, limit, offset, want_count, ctx, attrs)

    def _page_answer(self, req: Req, matches: list[Entity], limit: int, offset: int, want_count: bool,
                     ctx: CompiledContext, attrs: set[str] | None) -> web.Response:
        if "orderBy" in req.params:
            matches = compile_order_by(req.params["orderBy"], ctx)(matches)
        if "pick" in req.params or "omit" in req.params:
            # entities with no member left are not part of the result (NGSI-LD §4.21)
            rendered = [r for r in (self._render(req, e, ctx, attrs) for e in matches) if r]
            total = len(rendered)
            payload: Any = rendered[offset:offset + limit]
        else:
            total = len(matches)
            payload = [self._render(req, e, ctx, attrs) for e in matches[offset:offset + limit]]
        if req.accept == GEOJSON:
            payload = {"type": "FeatureCollection", "features": payload}
        headers = {"NGSILD-Results-Count": str(total)} if want_count else {}
        return self._json(req, 200, payload, ctx, headers, pages=(limit, offset, total))

    async def post_query(self, req: Req) -> web.Response:
        body = self._require_object(req)
        ctx = await self._ctx_for(req)
        if body.get("type") not in (None, "Query"):
            raise bad_request("Invalid Query", "the type of a query must be 'Query'")
        limit, offset, want_count = self._paging(req)
        self._format(req)
        filters: list[Callable[[Entity], bool]] = []
        entities = body.get("entities")
        type_sets = None
        if entities is not None:
            if not isinstance(entities, list) or not entities:
                raise bad_request("Invalid Query", "entities must be a non-empty array")
            selectors = []
            type_sets = []
            for sel in entities:
                if not isinstance(sel, dict):
                    raise bad_request("Invalid Query", "entities[*] must be objects")
                names, type_pred = (None, None)
                if "type" in sel:
                    if not isinstance(sel["type"], str):
                        raise bad_request("Invalid Query", "entities[*]::type must be a string")
                    names, type_pred = self._type_matcher(sel["type"], ctx)
                type_sets.append(names)
                pattern = None
                if "idPattern" in sel:
                    try:
                        pattern = re.compile(sel["idPattern"])
                    except (re.error, TypeError):
                        raise bad_request("Invalid idPattern", str(sel["idPattern"])) from None
                selectors.append((sel.get("id"), pattern, type_pred))

            def match_selectors(e: Entity) -> bool:
                for sid, pat, tpred in selectors:
                    if sid is not None and sid != e.id:
                        continue
                    if pat is not None and not pat.search(e.id):
                        continue
                    if tpred is not None and not tpred(e.types):
                        continue
                    return True
                return False

            filters.append(match_selectors)
        attrs = None
        if "attrs" in body:
            if not isinstance(body["attrs"], list):
                raise bad_request("Invalid Query", "attrs must be an array")
            attrs = {ctx.expand(a) for a in body["attrs"] if isinstance(a, str)}
            filters.append(lambda e: any(a in e.attrs for a in attrs))
        if "q" in body:
            if not isinstance(body["q"], str):
                raise bad_request("Invalid Query", "q must be a string")
            filters.append(compile_q(unquote(body["q"]), ctx))
        if "scopeQ" in body:
            if not isinstance(body["scopeQ"], str):
                raise bad_request("Invalid Query", "scopeQ must be a string")
            filters.append(compile_scope_q(body["scopeQ"]))
        if "geoQ" in body:
            geo = body["geoQ"]
            if not isinstance(geo, dict):
                raise bad_request("Invalid Query", "geoQ must be an object")
            filters.append(compile_geo(geo.get("geometry"), geo.get("georel"), geo.get("coordinates"),
                                       geo.get("geoproperty"), ctx))
        if entities is None and attrs is None and "q" not in body and "geoQ" not in body \
                and "scopeQ" not in body:
            raise bad_request("Too broad query", "Need at least one of: entities, attrs, q, geoQ")
        if "lang" in body and isinstance(body["lang"], str):
            req.params.setdefault("lang", body["lang"])
        tenant = self._tenant(req)
        if type_sets is not None and any(s is None for s in type_sets):
            type_sets = None
        matches = self._select(tenant, ids=None, type_sets=type_sets, filters=filters)
        return self._page_answer(req, matches, limit, offset, want_count, ctx, attrs)

    async def list_types(self, req: Req) -> web.Response:
        ctx = await self._link_ctx(req)
        tenant = self._tenant(req)
        names = [ctx.compact(t) for t in tenant.by_type]
        payload = {"id": f"urn:ngsi-ld:EntityTypeList:{uuid.uuid4()}", "type": "EntityTypeList",
                   "typeList": names}
        return self._json(req, 200, payload, ctx)

    # ------------------------------------------------------------------------------------------
    # subscriptions

    async def create_subscription(self, req: Req) -> web.Response:
        body = self._require_object(req)
        ctx = await self._ctx_for(req)
        tenant = self._tenant(req, create=True)
        sub_id = body.get("id", body.get("@id"))
        if sub_id is not None:
            if not isinstance(sub_id, str) or ":" not in sub_id:
                raise bad_request("Invalid Subscription::id", "the subscription id must be a URI")
            check_entity_id(sub_id)
            if sub_id in tenant.subscriptions:
                raise NgsiError(409, E.ALREADY_EXISTS, "A subscription with that ID already exists", sub_id)
        else:
            sub_id = f"urn:ngsi-ld:subscription:{uuid.uuid4()}"
        sub = Subscription(sub_id, req.tenant_name, await self._notification_ctx(body, ctx), now_ms())
        sub.apply(body, ctx, creating=True)
        tenant.subscriptions[sub_id] = sub
        headers = {"Location": f"{BASE}/subscriptions/{sub_id}", **self._tenant_headers(req)}
        return self._empty(201, headers)

    async def _notification_ctx(self, body: dict, ctx: CompiledContext) -> CompiledContext:
        """Notifications are compacted with ``jsonldContext`` when given, else the request's context."""
        url = body.get("jsonldContext")
        if url is None:
            return ctx
        if not isinstance(url, str) or ":" not in url:
            raise bad_request("Invalid jsonldContext", "jsonldContext must be a URI")
        return await self.resolver.compile(url)

    def _subscription(self, tenant: Tenant, sub_id: str, title: str) -> Subscription:
        sub = tenant.subscriptions.get(sub_id)
        if sub is None:
            if ":" not in sub_id:
                raise bad_request("Invalid Subscription::id", sub_id)
            raise not_found(title, sub_id)
        return sub

    async def get_subscription(self, req: Req) -> web.Response:
        ctx = await self._link_ctx(req)
        tenant = self._tenant(req)
        sub = self._subscription(tenant, req.path_args[0], "subscription not found")
        return self._json(req, 200, sub.render(ctx, sys_attrs="sysAttrs" in req.options), ctx)

    async def list_subscriptions(self, req: Req) -> web.Response:
        ctx = await self._link_ctx(req)
        tenant = self._tenant(req)
        limit, offset, want_count = self._paging(req)
        subs = list(tenant.subscriptions.values())
        payload = [s.render(ctx, sys_attrs="sysAttrs" in req.options) for s in subs[offset:offset + limit]]
        headers = {"NGSILD-Results-Count": str(len(subs))} if want_count else {}
        return self._json(req, 200, payload, ctx, headers, pages=(limit, offset, len(subs)))

    async def patch_subscription(self, req: Req) -> web.Response:
        body = self._require_object(req)
        ctx = await self._ctx_for(req)
        tenant = self._tenant(req)
        sub = self._subscription(tenant, req.path_args[0], "subscription not found")
        if "id" in body or "@id" in body:
            raise bad_request("The Subscription ID cannot be modified", "id")
        fragment = {k: v for k, v in body.items() if k != "@context"}
        clone = copy.copy(sub)
        clone.fields = copy.deepcopy(sub.fields)
        clone.apply(fragment, ctx, creating=False)
        if "jsonldContext" in fragment:
            sub.ctx = await self._notification_ctx(fragment, ctx)
        sub.fields, sub.q, sub.geo, sub.entity_selectors = clone.fields, clone.q, clone.geo, clone.entity_selectors
        sub.modified = now_ms()
        return self._empty(204)

    async def delete_subscription(self, req: Req) -> web.Response:
        tenant = self._tenant(req)
        sub = self._subscription(tenant, req.path_args[0], "Subscription not found")
        del tenant.subscriptions[sub.id]
        return self._empty(204)

    # ------------------------------------------------------------------------------------------
    # Orion-LD extension routes used as health checks

    def _extension(self, request: web.Request, path: str) -> web.Response:
        if request.method != "GET":
            return web.Response(status=405, headers={"Allow": "GET"})
        if path == "/ngsi-ld/ex/v1/version":
            return web.Response(body=_dumps({"orionld version": "post-v1.7.0",
                                             "broker": "stadtlink local broker (in-memory stand-in)"}),
                                content_type=JSON)
        if path == "/ngsi-ld/ex/v1/ping":
            return web.Response(body=_dumps({"orionld": "pong"}), content_type=JSON)
        if path == "/ngsi-ld/ex/v1/tenants":
            names = [n for n in self.store.tenants if n]
            return web.Response(body=_dumps(names), content_type=JSON)
        raise NgsiError(404, E.RESOURCE_NOT_FOUND, "Service Not Found", path)


BROKER_KEY = web.AppKey("broker", BrokerApp)


def create_app(*, context_dir: str | Path | None = None, max_body: int = 1024 * 1024,
               page_size: int = 20, context_timeout: float = 5.0,
               context_attempts: int = 3) -> web.Application:
    """The local NGSI-LD broker as an aiohttp application (all state in memory).

    ``context_timeout`` (seconds per attempt) and ``context_attempts`` govern the download of
    @context URLs the broker does not hold.
    """
    if not 1 <= page_size <= 1000:
        raise ValueError("page_size must be within 1..1000")
    broker = BrokerApp(context_dir=context_dir, max_body=max_body, page_size=page_size,
                       context_timeout=context_timeout, context_attempts=context_attempts)
    # the body is read by the broker itself (with its own 413), so aiohttp's limit only needs to be
    # above it
    app = web.Application(client_max_size=max_body * 2 + 1024)
    app[BROKER_KEY] = broker
    app.router.add_route("*", "/{tail:.*}", broker.handle)

    async def start_periodic(_app: web.Application) -> None:
        broker.periodic_task = asyncio.get_running_loop().create_task(
            broker.notifier.run_periodic(lambda: list(broker.store.tenants.values())))

    async def close_notifier(_app: web.Application) -> None:
        if broker.periodic_task is not None:
            broker.periodic_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await broker.periodic_task
        await broker.notifier.close()
        await broker.resolver.close()

    app.on_startup.append(start_periodic)
    app.on_cleanup.append(close_notifier)
    return app

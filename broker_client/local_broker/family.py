"""What every route family shares: the broker's state and the helpers of requests and answers
(the request's @context, the tenant, JSON / JSON-LD / GeoJSON answers and paging, rendering with
the format options, notifications of changes)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

import orjson
from aiohttp import web

from . import errors as E
from .contexts import CORE_CONTEXT_URL, CompiledContext, ContextResolver
from .errors import NgsiError, bad_request, invalid_request
from .model import Entity
from .render import CONCISE, NORMALIZED, SIMPLIFIED, encodable_only, render_entity
from .request import GEOJSON, JSON, JSONLD, Req, dumps, link_url
from .store import Change, Store, Tenant
from .subscriptions import LINK_REL, Notifier


@dataclass
class BrokerState:
    """The broker's state, shared by every route family."""

    store: Store
    resolver: ContextResolver
    notifier: Notifier
    page_size: int


class RouteFamily:
    """Base of the route families (entities, batch operations, queries, subscriptions)."""

    def __init__(self, state: BrokerState) -> None:
        self.state = state
        self.store = state.store
        self.resolver = state.resolver
        self.notifier = state.notifier

    # ------------------------------------------------------------------------------------------
    # the request's context and tenant

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
                req.link_url = link_url(link)
        if req.link_url is None:
            return self.resolver.core_context
        return await self.resolver.compile(req.link_url)

    def _tenant(self, req: Req, *, create: bool = False) -> Tenant:
        return self.store.tenant(req.tenant_name, create=create)

    def _tenant_headers(self, req: Req) -> dict[str, str]:
        return {"NGSILD-Tenant": req.tenant_name} if req.tenant_name else {}

    # ------------------------------------------------------------------------------------------
    # ------------------------------------------------------------------------------------------
    # answers

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
        try:
            body = dumps(payload)
        except (orjson.JSONEncodeError, TypeError):
            # one entity the encoder cannot take must not fail the answer for the others
            if isinstance(payload, list):
                payload = encodable_only(payload)
            elif isinstance(payload, dict) and isinstance(payload.get("features"), list):
                payload = {**payload, "features": encodable_only(payload["features"])}
            else:
                raise NgsiError(500, E.INTERNAL_ERROR, "Internal Error",
                                "the entity cannot be encoded as JSON") from None
            body = dumps(payload)
        return web.Response(status=status, body=body, content_type=content_type, headers=headers)

    @staticmethod
    def _empty(status: int, headers: dict[str, str] | None = None) -> web.Response:
        return web.Response(status=status, headers=headers or {})

    def _notify(self, tenant: Tenant, changes: list[Change], req: Req) -> None:
        if tenant.subscriptions and changes:
            self.notifier.process(list(tenant.subscriptions.values()), changes, req.headers)

    # ------------------------------------------------------------------------------------------
    # entities

    # ------------------------------------------------------------------------------------------
    # payloads, rendering, paging

    def _require_object(self, req: Req) -> dict:
        if not isinstance(req.body, dict):
            raise bad_request("Invalid Payload Body", "the payload must be a JSON object")
        return req.body

    def _require_array(self, req: Req) -> list:
        if not isinstance(req.body, list):
            raise bad_request("Invalid Payload Body", "the payload must be a JSON array")
        return req.body

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
    def _paging(self, req: Req) -> tuple[int, int, bool]:
        count = req.params.get("count", "false")
        if count not in ("true", "false"):
            raise bad_request("Invalid value for URI parameter /count/", count)
        want_count = count == "true" or "count" in req.options
        limit = self.state.page_size
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

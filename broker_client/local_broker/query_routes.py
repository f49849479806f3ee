"""Queries: GET /entities, POST /entityOperations/query and GET /types."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any
from urllib.parse import unquote

from aiohttp import web

from .contexts import CompiledContext
from .errors import bad_request
from .expr import MAX_SELECTORS
from .family import RouteFamily
from .model import Entity
from .query import compile_geo, compile_order_by, compile_q, compile_scope_q, compile_type_expr
from .request import GEOJSON, Req
from .store import Tenant
from .userregex import compile_user_regex


class QueryRoutes(RouteFamily):
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
            names, type_pred = compile_type_expr(p["type"], ctx)
            type_sets = [names]
            if ids is not None or names is None:
                filters.append(lambda e: type_pred(e.types))
        if "idPattern" in p:
            pattern = compile_user_regex(p["idPattern"], title="Invalid idPattern")
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
            if len(entities) > MAX_SELECTORS:
                raise bad_request("Invalid Query", f"more than {MAX_SELECTORS} entity selectors")
            selectors = []
            type_sets = []
            for sel in entities:
                if not isinstance(sel, dict):
                    raise bad_request("Invalid Query", "entities[*] must be objects")
                names, type_pred = (None, None)
                if "type" in sel:
                    if not isinstance(sel["type"], str):
                        raise bad_request("Invalid Query", "entities[*]::type must be a string")
                    names, type_pred = compile_type_expr(sel["type"], ctx)
                type_sets.append(names)
                pattern = None
                if "idPattern" in sel:
                    pattern = compile_user_regex(sel["idPattern"], title="Invalid idPattern")
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


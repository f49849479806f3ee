"""Subscriptions: /subscriptions (GET list, POST) and /subscriptions/{id} (GET, PATCH, DELETE)."""

from __future__ import annotations

import copy
import uuid

from aiohttp import web

from . import errors as E
from .contexts import CompiledContext
from .errors import NgsiError, bad_request, not_found
from .family import RouteFamily
from .model import check_entity_id
from .request import BASE, Req
from .store import Tenant
from .subscriptions import Subscription
from .timeutil import now as now_ms


class SubscriptionRoutes(RouteFamily):
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

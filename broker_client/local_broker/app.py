"""The aiohttp application: dispatch of NGSI-LD requests to the route families.

Each request passes the common rules of :mod:`.request` (URI parameters, tenant, Accept, body),
then goes to its handler in one of the route families: :mod:`.entity_routes`, :mod:`.batch_routes`,
:mod:`.query_routes`, :mod:`.subscription_routes`. They share the broker's state and helpers
through :class:`.family.RouteFamily`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from pathlib import Path

from aiohttp import web

from . import errors as E
from .batch_routes import BatchRoutes
from .contexts import ContextResolver, HttpContextFetcher, load_context_dir
from .entity_routes import EntityRoutes
from .errors import NgsiError, bad_request, invalid_request
from .family import BrokerState
from .query_routes import QueryRoutes
from .request import (BASE, GEOJSON, JSON, QUERY_PARAMS, RETRIEVE_PARAMS, Req, Route, check_body_kind,
                      check_params, check_tenant, dumps, error_response, negotiate_accept, read_body)
from .store import Store
from .subscription_routes import SubscriptionRoutes
from .subscriptions import Notifier

log = logging.getLogger("stadtlink.broker_client.local_broker")

# NGSI-LD resources this stand-in does not serve: 501 rather than 404
_NOT_IMPLEMENTED = {"csourceRegistrations", "csourceSubscriptions", "jsonldContexts", "attributes",
                    "entityMap", "snapshots", "info"}


class BrokerApp:
    """The broker: its state, the route table and the entry point of every request."""

    def __init__(self, *, context_dir: str | Path | None = None, max_body: int = 1024 * 1024,
                 page_size: int = 20, notification_timeout: float = 5.0,
                 context_timeout: float = 5.0, context_attempts: int = 3,
                 context_allow_private: bool = False) -> None:
        documents = load_context_dir(Path(context_dir)) if context_dir else None
        self.resolver = ContextResolver(
            documents, fetcher=HttpContextFetcher(timeout=context_timeout, attempts=context_attempts,
                                                  allow_private=context_allow_private))
        self.store = Store()
        self.notifier = Notifier(timeout=notification_timeout)
        self.max_body = max_body
        self.page_size = page_size
        self.periodic_task: asyncio.Task | None = None
        state = BrokerState(self.store, self.resolver, self.notifier, page_size)
        self.entities = N = EntityRoutes(state)
        self.batch = B = BatchRoutes(state)
        self.queries = Q = QueryRoutes(state)
        self.subscriptions = S = SubscriptionRoutes(state)
        self.static_routes: dict[str, Route] = {
            "/entities": Route({"GET": (Q.query_entities, QUERY_PARAMS),
                                "POST": (N.create_entity, {"local"})}),
            "/entityOperations/create": Route({"POST": (B.batch_create, {"local"})}),
            "/entityOperations/upsert": Route({"POST": (B.batch_upsert, {"options", "local"})}),
            "/entityOperations/update": Route({"POST": (B.batch_update, {"options", "local"})}),
            "/entityOperations/delete": Route({"POST": (B.batch_delete, {"local"})}),
            "/entityOperations/merge": Route({"POST": (B.batch_merge, {"options", "local"})}),
            "/entityOperations/query": Route({"POST": (Q.post_query, {"limit", "offset", "count",
                                                                      "options", "format", "lang",
                                                                      "local", "pick", "omit",
                                                                      "orderBy"})}),
            "/subscriptions": Route({"GET": (S.list_subscriptions, {"limit", "offset", "count", "options"}),
                                     "POST": (S.create_subscription, set())}),
            "/types": Route({"GET": (Q.list_types, {"details", "type", "local"})}),
        }
        self.entity_route = Route({
            "GET": (N.get_entity, RETRIEVE_PARAMS),
            "DELETE": (N.delete_entity, {"type", "local"}),
            "PATCH": (N.merge_entity, {"options", "type", "format", "local"}),
            "PUT": (N.replace_entity, {"options", "type", "format", "local"}),
        })
        self.attrs_route = Route({
            "POST": (N.append_attrs, {"options", "type", "local"}),
            "PATCH": (N.update_attrs, {"options", "type", "local"}),
        })
        self.attr_route = Route({
            "PATCH": (N.patch_attr, {"options", "type", "local"}),
            "PUT": (N.put_attr, {"options", "type", "local"}),
            "DELETE": (N.delete_attr, {"datasetId", "deleteAll", "type", "lang", "local"}),
        })
        self.subscription_route = Route({
            "GET": (S.get_subscription, {"options"}),
            "PATCH": (S.patch_subscription, set()),
            "DELETE": (S.delete_subscription, set()),
        })
        self._array_handlers = {B.batch_create, B.batch_upsert, B.batch_update, B.batch_delete,
                                B.batch_merge}
        self._geojson_handlers = {Q.query_entities, N.get_entity, Q.post_query}

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
        check_params(request, req, supported)
        check_tenant(request, req)
        req.accept = negotiate_accept(request)
        if req.accept == GEOJSON and handler not in self._geojson_handlers:
            raise NgsiError(406, E.BAD_REQUEST_DATA, "Invalid Accept mime-type",
                            "application/geo+json is only served for entities")
        await read_body(request, req, self.max_body)
        check_body_kind(req, handler in self._array_handlers)
        req.path = path
        return await handler(req)

    # ------------------------------------------------------------------------------------------
    # common request rules

    # ------------------------------------------------------------------------------------------
    # Orion-LD extension routes used as health checks

    def _extension(self, request: web.Request, path: str) -> web.Response:
        if request.method != "GET":
            return web.Response(status=405, headers={"Allow": "GET"})
        if path == "/ngsi-ld/ex/v1/version":
            return web.Response(body=dumps({"orionld version": "post-v1.7.0",
                                             "broker": "stadtlink local broker (in-memory stand-in)"}),
                                content_type=JSON)
        if path == "/ngsi-ld/ex/v1/ping":
            return web.Response(body=dumps({"orionld": "pong"}), content_type=JSON)
        if path == "/ngsi-ld/ex/v1/tenants":
            names = [n for n in self.store.tenants if n]
            return web.Response(body=dumps(names), content_type=JSON)
        raise NgsiError(404, E.RESOURCE_NOT_FOUND, "Service Not Found", path)


BROKER_KEY = web.AppKey("broker", BrokerApp)


def create_app(*, context_dir: str | Path | None = None, max_body: int = 1024 * 1024,
               page_size: int = 20, context_timeout: float = 5.0,
               context_attempts: int = 3, context_allow_private: bool = False) -> web.Application:
    """The local NGSI-LD broker as an aiohttp application (all state in memory).

    ``context_timeout`` (seconds per attempt) and ``context_attempts`` govern the download of
    @context URLs the broker does not hold; ``context_allow_private`` lets it download them from
    loopback, link-local and private addresses too (refused by default: docs/security.md).
    """
    if not 1 <= page_size <= 1000:
        raise ValueError("page_size must be within 1..1000")
    broker = BrokerApp(context_dir=context_dir, max_body=max_body, page_size=page_size,
                       context_timeout=context_timeout, context_attempts=context_attempts,
                       context_allow_private=context_allow_private)
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

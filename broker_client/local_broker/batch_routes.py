"""Batch operations: /entityOperations/{create,upsert,update,merge,delete}.

Every operation runs through one loop (:meth:`BatchRoutes._run`): each array item is applied on
its own, a failing item becomes an entry of ``errors`` (the first error per entity id), the changes
of all items go to the subscriptions in one go, and the answer is 201 / 204 / 207 as Orion-LD gives.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from . import errors as E
from .contexts import CompiledContext
from .errors import NgsiError, bad_request, not_found
from .family import RouteFamily
from .model import Entity, parse_entity_body
from .request import JSON, Req, dumps
from .store import Change, Tenant, merge_attrs, put_instances
from .timeutil import now as now_ms


@dataclass
class BatchOutcome:
    """What a batch did: ids that succeeded (in order, once), errors, created ids, changes."""

    success: list[str] = field(default_factory=list)
    errors: list[dict] = field(default_factory=list)
    created: list[str] = field(default_factory=list)
    changes: dict[str, Change] = field(default_factory=dict)
    _failed: set[str] = field(default_factory=set)

    def fail(self, entity_id: str, err: NgsiError) -> None:
        if entity_id in self._failed:
            return
        self._failed.add(entity_id)
        self.errors.append({"entityId": entity_id, "error": err.item()})

    def changed(self, entity: Entity, attrs: set[str] | None, kind: str = "entityUpdated",
                deleted: dict[str, list[dict]] | None = None, now: float | None = None) -> None:
        """Record a change; several items touching one entity merge into one change."""
        known = self.changes.get(entity.id)
        if known is None:
            self.changes[entity.id] = Change(entity, attrs, kind, deleted, now)
            return
        if known.attrs is not None:
            known.attrs |= attrs
        if deleted:
            known.deleted = {**(known.deleted or {}), **deleted}
            known.when = now


# apply(tenant, item, context, now, outcome) -> the id of the entity the item succeeded for
Apply = Callable[[Tenant, Any, Any, float, BatchOutcome], str]


def _placeholder(item: Any) -> str:
    """The ``entityId`` of an error for an item without a usable id."""
    if isinstance(item, dict) and ("id" in item or "@id" in item):
        return "Invalid Entity::id"
    return "No Entity::id"


class BatchRoutes(RouteFamily):
    async def _entity_items(self, req: Req) -> list[tuple[str, Any, CompiledContext | NgsiError]]:
        """(entity id or placeholder, item, context or the error for this item) per array item."""
        out = []
        for item in self._require_array(req):
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
            out.append((entity_id or _placeholder(item), item, ctx))
        return out

    async def _run(self, req: Req, apply: Apply, *, create_tenant: bool = False,
                   entities: bool = True) -> BatchOutcome:
        """Apply each item of the request's array; ``entities=False``: the items are entity ids."""
        if entities:
            items = await self._entity_items(req)
        else:
            items = [(item if isinstance(item, str) else "Invalid Entity::id", item, None)
                     for item in self._require_array(req)]
        tenant = self._tenant(req, create=create_tenant)
        now = now_ms()
        outcome = BatchOutcome()
        for label, item, ctx in items:
            try:
                if isinstance(ctx, NgsiError):
                    raise ctx
                eid = apply(tenant, item, ctx, now, outcome)
                if eid not in outcome.success:
                    outcome.success.append(eid)
            except NgsiError as err:
                outcome.fail(label, err)
        self._notify(tenant, list(outcome.changes.values()), req)
        return outcome

    def _answer(self, req: Req, outcome: BatchOutcome, *, created: list[str] | None = None,
                tenant_header: bool = False) -> web.Response:
        headers = self._tenant_headers(req) if tenant_header else {}
        if outcome.errors:
            return web.Response(status=207, body=dumps({"success": outcome.success,
                                                        "errors": outcome.errors}),
                                content_type=JSON, headers=headers)
        if created:
            return web.Response(status=201, body=dumps(created), content_type=JSON, headers=headers)
        return self._empty(204)

    # ------------------------------------------------------------------------------------------
    # the operations

    async def batch_create(self, req: Req) -> web.Response:
        def create(tenant: Tenant, item: dict, ctx: CompiledContext, now: float, out: BatchOutcome) -> str:
            eid, types, attrs, scope = parse_entity_body(item, ctx, now)
            if eid in tenant.entities:
                raise NgsiError(409, E.ALREADY_EXISTS, "Entity already exists",
                                "Cannot create an existing entity")
            entity = tenant.create(eid, types, attrs, scope, now)  # type: ignore[arg-type]
            out.changed(entity, None, "entityCreated")
            return eid  # type: ignore[return-value]

        outcome = await self._run(req, create, create_tenant=True)
        return self._answer(req, outcome, created=outcome.success, tenant_header=True)

    async def batch_upsert(self, req: Req) -> web.Response:
        update_mode = "update" in req.options

        def upsert(tenant: Tenant, item: dict, ctx: CompiledContext, now: float, out: BatchOutcome) -> str:
            eid, types, attrs, scope = parse_entity_body(item, ctx, now, need_type=False)
            assert eid is not None
            entity = tenant.entities.get(eid)
            if entity is None:
                if types is None:
                    raise bad_request("Invalid Entity", "Mandatory field entity::type is missing")
                entity = tenant.create(eid, types, attrs, scope, now)  # type: ignore[arg-type]
                out.created.append(eid)
                out.changed(entity, None, "entityCreated")
            elif update_mode:
                tenant.add_types(entity, types)
                for iri, instances in attrs.items():
                    put_instances(entity, iri, instances, now)  # type: ignore[arg-type]
                entity.modified = now
                out.changed(entity, set(attrs))
            else:
                touched = set(entity.attrs) | set(attrs)
                tenant.replace(entity, types or entity.types, attrs, scope, now)  # type: ignore[arg-type]
                out.changed(entity, touched)
            return eid

        outcome = await self._run(req, upsert, create_tenant=True)
        return self._answer(req, outcome, created=outcome.created, tenant_header=True)

    async def batch_update(self, req: Req) -> web.Response:
        no_overwrite = "noOverwrite" in req.options

        def update(tenant: Tenant, item: dict, ctx: CompiledContext, now: float, out: BatchOutcome) -> str:
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
                out.changed(entity, touched)
            if kept:
                # noOverwrite left attributes as they were: not a full success (as ETSI expects)
                raise bad_request("attribute already exists: overwrite is not allowed", ", ".join(kept))
            return eid

        return self._answer(req, await self._run(req, update))

    async def batch_merge(self, req: Req) -> web.Response:
        def merge(tenant: Tenant, item: dict, ctx: CompiledContext, now: float, out: BatchOutcome) -> str:
            eid, types, attrs, _ = parse_entity_body(item, ctx, now, need_type=False, allow_delete=True)
            assert eid is not None
            entity = tenant.entities.get(eid)
            if entity is None:
                raise not_found("Entity not found", eid)
            tenant.add_types(entity, types)
            deleted: dict[str, list[dict]] = {}
            touched = merge_attrs(entity, attrs, now, deleted)
            entity.modified = now
            out.changed(entity, touched, deleted=deleted, now=now)
            return eid

        return self._answer(req, await self._run(req, merge))

    async def batch_delete(self, req: Req) -> web.Response:
        def delete(tenant: Tenant, item: Any, _ctx: None, _now: float, out: BatchOutcome) -> str:
            if not isinstance(item, str):
                raise bad_request("Invalid Entity::id", "the items must be entity id strings")
            entity = tenant.entities.get(item)
            if entity is None:
                raise not_found("Entity not found", item)
            tenant.delete(entity)
            out.changed(entity, None, "entityDeleted", now=now_ms())
            return item

        return self._answer(req, await self._run(req, delete, entities=False))

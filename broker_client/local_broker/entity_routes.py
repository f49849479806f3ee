"""Routes of single entities and their attributes: /entities (POST), /entities/{id} (GET, DELETE,
PATCH merge, PUT replace), /entities/{id}/attrs (POST append, PATCH update) and
/entities/{id}/attrs/{attr} (PATCH, PUT, DELETE)."""

from __future__ import annotations

import re
from typing import Any

from aiohttp import web

from . import errors as E
from .errors import NgsiError, bad_request, not_found
from .family import RouteFamily
from .model import DeleteMarker, Entity, parse_attribute, parse_entity_body
from .request import BASE, Req
from .store import Change, Tenant, delete_attribute, merge_attrs, merge_instance, put_instances
from .timeutil import now as now_ms


def _scope_list(scope: Any) -> list:
    return [scope] if isinstance(scope, str) else list(scope)


class EntityRoutes(RouteFamily):
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

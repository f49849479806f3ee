"""In-memory storage: tenants, their entities (creation ordered, indexed by type) and subscriptions."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from .errors import NON_EXISTING_TENANT, NgsiError, bad_request
from .model import DELETE, DeleteMarker, Entity

if TYPE_CHECKING:
    from .subscriptions import Subscription

_TENANT_RE = re.compile(r"^[A-Za-z0-9_-]{1,50}$")


def check_tenant_name(name: str) -> str:
    if not _TENANT_RE.match(name):
        raise bad_request("Invalid tenant name", name)
    return name.lower()


class Change:
    """One entity change of a request, for the notifier."""

    __slots__ = ("entity", "attrs", "kind", "deleted", "when")

    def __init__(self, entity: Entity, attrs: set[str] | None, kind: str,
                 deleted: dict[str, list[dict]] | None = None, when: float | None = None) -> None:
        self.entity = entity
        self.attrs = attrs  # expanded names touched; None = the whole entity
        self.kind = kind  # "entityCreated", "entityUpdated", "entityDeleted"
        self.deleted = deleted or None  # expanded name → attribute instances removed
        self.when = when  # of a deletion (deletedAt)


class Tenant:
    def __init__(self, name: str | None) -> None:
        self.name = name
        self.entities: dict[str, Entity] = {}
        self.by_type: dict[str, dict[str, Entity]] = {}
        self.subscriptions: dict[str, Subscription] = {}
        self._seq = 0

    # -- index ------------------------------------------------------------------------------
    def _index(self, entity: Entity) -> None:
        for t in entity.types:
            self.by_type.setdefault(t, {})[entity.id] = entity

    def _unindex(self, entity: Entity) -> None:
        for t in entity.types:
            bucket = self.by_type.get(t)
            if bucket is not None:
                bucket.pop(entity.id, None)
                if not bucket:
                    del self.by_type[t]

    def set_types(self, entity: Entity, types: list[str]) -> None:
        if types != entity.types:
            self._unindex(entity)
            entity.types = types
            self._index(entity)

    # -- entity operations --------------------------------------------------------------------
    def create(self, entity_id: str, types: list[str], attrs: dict[str, list[dict]], scope: Any,
               now: float) -> Entity:
        self._seq += 1
        entity = Entity(entity_id, types, self._seq, now)
        entity.attrs = dict(attrs)  # type: ignore[arg-type]
        entity.scope = scope
        self.entities[entity_id] = entity
        self._index(entity)
        return entity

    def delete(self, entity: Entity) -> None:
        self._unindex(entity)
        self.entities.pop(entity.id, None)

    def replace(self, entity: Entity, types: list[str], attrs: dict[str, list[dict]], scope: Any,
                now: float) -> None:
        """Replace all attributes (createdAt of the entity is kept)."""
        self.set_types(entity, types)
        entity.attrs = dict(attrs)  # type: ignore[arg-type]
        entity.scope = scope
        entity.modified = now

    def add_types(self, entity: Entity, types: list[str] | None) -> None:
        if types:
            merged = list(entity.types)
            for t in types:
                if t not in merged:
                    merged.append(t)
            self.set_types(entity, merged)


def put_instances(entity: Entity, iri: str, new: list[dict], now: float) -> None:
    """Add or overwrite attribute instances, matching multi-attribute instances by datasetId."""
    old = entity.attrs.get(iri)
    if not old:
        entity.attrs[iri] = new
        return
    merged = list(old)
    for inst in new:
        ds = inst.get("datasetId")
        for i, existing in enumerate(merged):
            if existing.get("datasetId") == ds:
                inst["createdAt"] = existing.get("createdAt", now)
                merged[i] = inst
                break
        else:
            merged.append(inst)
    entity.attrs[iri] = merged


def merge_instance(existing: dict, patch: dict, now: float) -> dict:
    """Merge an attribute fragment into an instance (merge-patch / partial attribute update)."""
    merged = dict(existing)
    for key, value in patch.items():
        if key in ("createdAt",):
            continue
        if key == "subs":
            subs = dict(existing.get("subs", {}))
            subs.update(value)
            merged["subs"] = subs
        else:
            merged[key] = value
    if patch.get("type") and patch["type"] != existing.get("type"):
        # the kind changed: drop the value member of the old kind
        for member in ("value", "object", "languageMap", "vocab", "json", "valueList", "objectList"):
            if member in existing and member not in patch:
                merged.pop(member, None)
    merged["createdAt"] = existing.get("createdAt", now)
    merged["modifiedAt"] = now
    return merged


def merge_attrs(entity: Entity, attrs: dict[str, list[dict] | DeleteMarker], now: float,
                deleted: dict[str, list[dict]] | None = None) -> set[str]:
    """Merge-patch semantics: NGSI-LD Null deletes, existing attributes merge, new ones are added.
    Removed instances are recorded in ``deleted`` when given."""
    touched: set[str] = set()
    for iri, new in attrs.items():
        if isinstance(new, DeleteMarker):
            removed = delete_attribute(entity, iri, new.dataset_id, False)
            if removed:
                touched.add(iri)
                if deleted is not None:
                    deleted.setdefault(iri, []).extend(removed)
            continue
        old = entity.attrs.get(iri)
        if not old:
            entity.attrs[iri] = new
        else:
            merged = list(old)
            for inst in new:
                ds = inst.get("datasetId")
                for i, existing in enumerate(merged):
                    if existing.get("datasetId") == ds:
                        merged[i] = merge_instance(existing, inst, now)
                        break
                else:
                    merged.append(inst)
            entity.attrs[iri] = merged
        touched.add(iri)
    return touched


def delete_attribute(entity: Entity, iri: str, dataset_id: str | None, delete_all: bool) -> list[dict]:
    """Remove the instance with ``dataset_id`` (or all of them); returns what was removed."""
    instances = entity.attrs.get(iri)
    if not instances:
        return []
    if delete_all:
        del entity.attrs[iri]
        return instances
    keep = [i for i in instances if i.get("datasetId") != dataset_id]
    if len(keep) == len(instances):
        return []
    if keep:
        entity.attrs[iri] = keep
    else:
        del entity.attrs[iri]
    return [i for i in instances if i.get("datasetId") == dataset_id]


class Store:
    """All tenants. The default tenant has the name None."""

    def __init__(self) -> None:
        self.tenants: dict[str | None, Tenant] = {None: Tenant(None)}

    def tenant(self, name: str | None, *, create: bool = False) -> Tenant:
        tenant = self.tenants.get(name)
        if tenant is None:
            if not create:
                raise NgsiError(404, NON_EXISTING_TENANT, "No such tenant", name)
            tenant = self.tenants[name] = Tenant(name)
        return tenant


__all__ = ["Store", "Tenant", "Change", "check_tenant_name", "put_instances", "merge_attrs",
           "merge_instance", "delete_attribute", "DELETE"]

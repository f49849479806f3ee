"""Declarative subscriptions: make the broker's subscriptions match a YAML file.

Each listed subscription gets a stable id derived from its ``name``
(``urn:ngsi-ld:Subscription:stadtlink:<name>``), so applying the same file twice changes nothing,
a changed one is patched, and ``prune`` removes subscriptions with the project's prefix that the
file no longer lists. Subscriptions made by others (other id prefixes) are never touched.
"""
from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from .client import NGSILDClient
from .errors import ResourceNotFound

ID_PREFIX = "urn:ngsi-ld:Subscription:stadtlink:"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")
#: What a broker adds on GET that the file does not say: ignored when comparing.
_SERVER_FIELDS = {"id", "type", "status", "createdAt", "modifiedAt", "timesSent", "timesFailed", "lastNotification",
                  "lastSuccess", "lastFailure", "jsonldContext", "@context", "subscriptionName", "name"}
_SERVER_NOTIFICATION_FIELDS = {"status", "timesSent", "timesFailed", "lastNotification", "lastSuccess",
                               "lastFailure"}
_BROKER_DEFAULTS = {"isActive": True, "notificationTrigger": ["attributeCreated", "attributeUpdated"]}  # NGSI-LD 1.8 defaults
_NOTIFICATION_DEFAULTS = {"format": "normalized"}
_ENDPOINT_DEFAULTS = {"accept": "application/json"}


class SubscriptionFileError(ValueError):
    pass


def subscription_id(name: str) -> str:
    if not _NAME.match(name):
        raise SubscriptionFileError(f"subscription name {name!r}: use letters, digits, '.', '_' and '-'")
    return ID_PREFIX + name


def load_file(path: str | Path) -> list[dict[str, Any]]:
    try:
        doc = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise SubscriptionFileError(f"{path}: {exc}") from None
    return desired_from_document(doc, where=str(path))


def desired_from_document(doc: Any, *, where: str = "subscriptions") -> list[dict[str, Any]]:
    if not isinstance(doc, dict) or not isinstance(doc.get("subscriptions"), list):
        raise SubscriptionFileError(f"{where}: expected a mapping with a 'subscriptions:' list")
    out, seen = [], set()
    for i, item in enumerate(doc["subscriptions"]):
        if not isinstance(item, dict) or not isinstance(item.get("name"), str):
            raise SubscriptionFileError(f"{where}: subscriptions[{i}] needs a 'name'")
        if "id" in item:
            raise SubscriptionFileError(f"{where}: subscriptions[{i}] ({item['name']}): the id is derived from the name; remove 'id'")
        if item["name"] in seen:
            raise SubscriptionFileError(f"{where}: subscription name {item['name']!r} appears twice")
        seen.add(item["name"])
        if "notification" not in item or not isinstance(item["notification"], dict):
            raise SubscriptionFileError(f"{where}: subscriptions[{i}] ({item['name']}): 'notification' is required")
        if not item.get("entities") and not item.get("watchedAttributes"):
            raise SubscriptionFileError(
                f"{where}: subscriptions[{i}] ({item['name']}): at least one of 'entities' and 'watchedAttributes'")
        body = dict(item)
        name = body.pop("name")
        body["id"] = subscription_id(name)
        body["type"] = "Subscription"
        body["subscriptionName"] = name
        out.append(body)
    return out


def _as_lists(sub: dict[str, Any], paths: tuple[str, ...]) -> dict[str, Any]:
    """Each dotted path in ``paths`` that holds a bare value becomes a one-element list: brokers
    that compact JSON-LD arrays (Scorpio, ``BrokerQuirks.subscription_scalar_lists``) answer
    ``"attributes": "status"`` for ``["status"]``."""
    for path in paths:
        *parents, last = path.split(".")
        node: Any = sub
        for part in parents:
            node = node.get(part) if isinstance(node, dict) else None
        if isinstance(node, dict) and last in node and node[last] is not None and not isinstance(node[last], list):
            node[last] = [node[last]]
    return sub


def _normalise(sub: Mapping[str, Any], scalar_lists: tuple[str, ...] = ()) -> dict[str, Any]:
    """The comparable part of a subscription: user fields with the broker's defaults filled in."""
    import copy

    sub = _as_lists(copy.deepcopy(dict(sub)), scalar_lists)
    out = {k: v for k, v in sub.items() if k not in _SERVER_FIELDS}
    for k, v in _BROKER_DEFAULTS.items():
        out.setdefault(k, v)
    if "expires" in out and "expiresAt" not in out:
        out["expiresAt"] = out.pop("expires")
    notification = {k: v for k, v in (out.get("notification") or {}).items() if k not in _SERVER_NOTIFICATION_FIELDS}
    for k, v in _NOTIFICATION_DEFAULTS.items():
        notification.setdefault(k, v)
    endpoint = dict(notification.get("endpoint") or {})
    for k, v in _ENDPOINT_DEFAULTS.items():
        endpoint.setdefault(k, v)
    notification["endpoint"] = endpoint
    out["notification"] = notification
    if isinstance(out.get("throttling"), (int, float)):
        out["throttling"] = float(out["throttling"])
    if isinstance(out.get("expiresAt"), str):
        out["expiresAt"] = _ms(out["expiresAt"])
    return out


def _ms(ts: str) -> str:
    """Brokers return expiresAt with milliseconds: compare in that form."""
    from stadtlink.timeutil import TimeFormatError, iso_ms, parse_time

    try:
        return iso_ms(parse_time(ts))
    except TimeFormatError:
        return ts


@dataclass
class ApplyReport:
    created: list[str] = field(default_factory=list)
    patched: list[str] = field(default_factory=list)
    recreated: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)

    @property
    def changed(self) -> bool:
        return bool(self.created or self.patched or self.recreated or self.deleted)

    def lines(self) -> list[str]:
        out = []
        for label in ("created", "patched", "recreated", "unchanged", "deleted"):
            for sid in getattr(self, label):
                out.append(f"{label:9} {sid}")
        return out


def _type_context(client: Any, body: Mapping[str, Any]) -> Any:
    """The @context a subscription's attribute names are expanded with: the model context of the
    one entity type it watches when the client writes each type with its own (``type_contexts``),
    so ``watchedAttributes``, ``q`` and ``notification.attributes`` name the IRIs the entities are
    stored under and notifications come back with that model's short names; None (the client's
    Link header) for several or unregistered types, or a body with its own ``@context``."""
    type_contexts = getattr(client, "type_contexts", None)
    if type_contexts is None or "@context" in body:
        return None
    types = {e.get("type") for e in body.get("entities") or () if isinstance(e, Mapping)}
    if len(types) != 1:
        return None
    (etype,) = types
    from stadtlink.schemas.registry import model_for

    if not isinstance(etype, str) or model_for(etype) is None:
        return None
    return type_contexts(etype)


async def apply(client: NGSILDClient, desired: list[dict[str, Any]], *, prune: bool = False) -> ApplyReport:
    """Make an NGSI-LD broker's stadtlink subscriptions match ``desired``. How a broker kind renders
    a subscription on GET is taken from its quirks row (``client.quirks``) when it has one."""
    report = ApplyReport()
    wanted_ids = set()
    scalar_lists = tuple(getattr(getattr(client, "quirks", None), "subscription_scalar_lists", ()) or ())
    for body in desired:
        sid = body["id"]
        wanted_ids.add(sid)
        context = _type_context(client, body)
        if isinstance(context, tuple):
            context = list(context)
        create = body if context is None else {**body, "@context": context}
        with_context = {} if context is None else {"context": context}
        # a GET names one context (Link): the model's own, the last of [<extensions>..., <model>]
        read_with = {} if context is None else {"context": context[-1] if isinstance(context, (list, tuple)) else context}
        try:
            current = await client.get_subscription(sid, **read_with)
        except ResourceNotFound:
            await client.create_subscription(create)
            report.created.append(sid)
            continue
        want, have = _normalise(body, scalar_lists), _normalise(current, scalar_lists)
        if want == have:
            report.unchanged.append(sid)
            continue
        removed = set(have) - set(want) - set(_BROKER_DEFAULTS)
        removed_notification = set(have["notification"]) - set(want["notification"]) - set(_NOTIFICATION_DEFAULTS)
        if removed or removed_notification:
            # PATCH cannot portably remove a member: delete and create again (counters restart).
            await client.delete_subscription(sid)
            await client.create_subscription(create)
            report.recreated.append(sid)
            continue
        patch = {k: v for k, v in body.items() if k not in ("id", "type") and _normalise({k: v}).get(k) != have.get(k)}
        patch.pop("subscriptionName", None)
        if "notification" in patch:
            patch["notification"] = body["notification"]
        await client.update_subscription(sid, patch, **with_context)
        report.patched.append(sid)
    if prune:
        async for sub in client.list_subscriptions():
            sid = sub.get("id", "")
            if sid.startswith(ID_PREFIX) and sid not in wanted_ids:
                await client.delete_subscription(sid)
                report.deleted.append(sid)
    return report


# --- NGSI-v2 (classic Orion) -----------------------------------------------------------------------
#
# The same file drives a v2 broker. Orion makes up subscription ids itself (24 hex digits), so the
# name travels in ``description`` (``stadtlink:<name>``) and is what apply/prune match on.

V2_DESCRIPTION_PREFIX = "stadtlink:"
_V2_COMPARED = ("description", "subject", "notification", "throttling", "expires", "status")
_V2_NOTIFICATION_COMPARED = ("http", "httpCustom", "attrs", "attrsFormat")


def to_ngsi_v2_subscription(body: Mapping[str, Any]) -> dict[str, Any]:
    """An NGSI-LD subscription (as ``desired_from_document`` builds it) → the NGSI-v2 request body.

    entities → ``subject.entities`` (``idPattern: ".*"`` when neither id nor idPattern is given);
    watchedAttributes → ``subject.condition.attrs``; ``q`` → ``condition.expression.q`` (the
    simple-query syntax is shared for comparisons and ``;``); notification attributes → ``attrs``;
    format keyValues/normalized → ``attrsFormat``; endpoint uri → ``http.url``, or
    ``httpCustom`` with ``headers`` when ``receiverInfo`` is given; throttling; expiresAt →
    ``expires``; isActive false → ``status: inactive``.
    """
    name = body.get("subscriptionName") or str(body.get("id", "")).removeprefix(ID_PREFIX)
    entities = []
    for ent in body.get("entities") or [{}]:
        item: dict[str, Any] = {}
        if ent.get("id"):
            item["id"] = ent["id"]
        else:
            item["idPattern"] = ent.get("idPattern") or ".*"
        if ent.get("type"):
            item["type"] = ent["type"]
        entities.append(item)
    subject: dict[str, Any] = {"entities": entities}
    condition: dict[str, Any] = {}
    if body.get("watchedAttributes"):
        condition["attrs"] = list(body["watchedAttributes"])
    if body.get("q"):
        condition["expression"] = {"q": body["q"]}
    if condition:
        subject["condition"] = condition
    notification_in = body.get("notification") or {}
    endpoint = notification_in.get("endpoint") or {}
    if not endpoint.get("uri"):
        raise SubscriptionFileError(f"{name}: notification.endpoint.uri is required")
    headers = {str(p["key"]): str(p["value"]) for p in endpoint.get("receiverInfo") or [] if "key" in p}
    notification: dict[str, Any] = {}
    if headers:
        notification["httpCustom"] = {"url": endpoint["uri"], "headers": headers}
    else:
        notification["http"] = {"url": endpoint["uri"]}
    if notification_in.get("attributes"):
        notification["attrs"] = list(notification_in["attributes"])
    fmt = notification_in.get("format", "normalized")
    if fmt not in ("normalized", "keyValues"):
        raise SubscriptionFileError(f"{name}: notification.format {fmt!r} has no NGSI-v2 equivalent")
    notification["attrsFormat"] = fmt
    out: dict[str, Any] = {"description": V2_DESCRIPTION_PREFIX + name, "subject": subject,
                           "notification": notification}
    if body.get("throttling") is not None:
        out["throttling"] = int(body["throttling"])
    expires = body.get("expiresAt", body.get("expires"))
    if expires:
        out["expires"] = _ms(expires)
    out["status"] = "active" if body.get("isActive", True) else "inactive"
    return out


def _v2_comparable(sub: Mapping[str, Any]) -> dict[str, Any]:
    out = {k: sub[k] for k in _V2_COMPARED if k in sub}
    notification = sub.get("notification") or {}
    out["notification"] = {k: notification[k] for k in _V2_NOTIFICATION_COMPARED if k in notification}
    out["notification"].setdefault("attrsFormat", "normalized")
    out.setdefault("status", "active")
    if out["status"] == "failed":   # active, but its last notification failed
        out["status"] = "active"
    if isinstance(out.get("expires"), str):
        out["expires"] = _ms(out["expires"])
    return out


async def apply_v2(backend: Any, desired: list[dict[str, Any]], *, prune: bool = False) -> ApplyReport:
    """Make an NGSI-v2 broker's stadtlink subscriptions match ``desired`` (``desired_from_document``
    output). ``backend``: :class:`stadtlink.broker_client.backends.NGSIv2Backend`. Report entries read
    ``<name> (<orion id>)``."""
    report = ApplyReport()
    existing: dict[str, dict[str, Any]] = {}
    async for sub in backend.list_subscriptions():
        desc = sub.get("description")
        if isinstance(desc, str) and desc.startswith(V2_DESCRIPTION_PREFIX):
            existing[desc] = sub
    wanted: set[str] = set()
    for body in desired:
        v2 = to_ngsi_v2_subscription(body)
        desc = v2["description"]
        wanted.add(desc)
        name = desc.removeprefix(V2_DESCRIPTION_PREFIX)
        current = existing.get(desc)
        if current is None:
            sid = await backend.create_subscription(v2)
            report.created.append(f"{name} ({sid})")
            continue
        sid = current["id"]
        want, have = _v2_comparable(v2), _v2_comparable(current)
        if want == have:
            report.unchanged.append(f"{name} ({sid})")
            continue
        if set(have) - set(want) or set(have["notification"]) - set(want["notification"]):
            await backend.delete_subscription(sid)
            sid = await backend.create_subscription(v2)
            report.recreated.append(f"{name} ({sid})")
            continue
        await backend.update_subscription(sid, {k: v for k, v in v2.items() if k != "description"})
        report.patched.append(f"{name} ({sid})")
    if prune:
        for desc, sub in existing.items():
            if desc not in wanted:
                await backend.delete_subscription(sub["id"])
                report.deleted.append(f"{desc.removeprefix(V2_DESCRIPTION_PREFIX)} ({sub['id']})")
    return report


__all__ = ["ID_PREFIX", "V2_DESCRIPTION_PREFIX", "ApplyReport", "SubscriptionFileError", "apply", "apply_v2",
           "desired_from_document", "load_file", "subscription_id", "to_ngsi_v2_subscription"]

"""Declarative subscriptions: make the broker's subscriptions match a YAML file.

Each listed subscription gets a stable id derived from its ``name``
(``urn:ngsi-ld:Subscription:stadtlink:<name>``), so applying the same file twice changes nothing,
a changed one is patched, and ``prune`` removes subscriptions with the project's prefix that the
file no longer lists. Subscriptions made by others (other id prefixes) are never touched.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

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
_BROKER_DEFAULTS = {"isActive": True}
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


def _normalise(sub: Mapping[str, Any]) -> dict[str, Any]:
    """The comparable part of a subscription: user fields with the broker's defaults filled in."""
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
    from adapters.core.timeutil import TimeFormatError, iso_ms, parse_time

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


async def apply(client: NGSILDClient, desired: list[dict[str, Any]], *, prune: bool = False) -> ApplyReport:
    report = ApplyReport()
    wanted_ids = set()
    for body in desired:
        sid = body["id"]
        wanted_ids.add(sid)
        try:
            current = await client.get_subscription(sid)
        except ResourceNotFound:
            await client.create_subscription(body)
            report.created.append(sid)
            continue
        want, have = _normalise(body), _normalise(current)
        if want == have:
            report.unchanged.append(sid)
            continue
        removed = set(have) - set(want) - set(_BROKER_DEFAULTS)
        removed_notification = set(have["notification"]) - set(want["notification"]) - set(_NOTIFICATION_DEFAULTS)
        if removed or removed_notification:
            # PATCH cannot portably remove a member: delete and create again (counters restart).
            await client.delete_subscription(sid)
            await client.create_subscription(body)
            report.recreated.append(sid)
            continue
        patch = {k: v for k, v in body.items() if k not in ("id", "type") and _normalise({k: v}).get(k) != have.get(k)}
        patch.pop("subscriptionName", None)
        if "notification" in patch:
            patch["notification"] = body["notification"]
        await client.update_subscription(sid, patch)
        report.patched.append(sid)
    if prune:
        async for sub in client.list_subscriptions():
            sid = sub.get("id", "")
            if sid.startswith(ID_PREFIX) and sid not in wanted_ids:
                await client.delete_subscription(sid)
                report.deleted.append(sid)
    return report


__all__ = ["ID_PREFIX", "ApplyReport", "SubscriptionFileError", "apply", "desired_from_document", "load_file",
           "subscription_id"]

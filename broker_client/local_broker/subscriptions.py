"""Subscriptions: validation, rendering, matching of entity changes, and HTTP notification delivery."""

from __future__ import annotations

import asyncio
import logging
import re
import uuid
from collections.abc import Callable
from typing import Any

from urllib.parse import unquote

import aiohttp
import orjson
from yarl import URL

from .contexts import CompiledContext
from .errors import bad_request
from .expr import MAX_SELECTORS
from .model import Entity, is_uri
from .query import compile_geo, compile_q, compile_scope_q
from .render import CONCISE, FORMAT_HEADER, NORMALIZED, SIMPLIFIED, encodable_only, render_entity
from .store import Change
from .timeutil import format_datetime, now as now_ms, parse_datetime
from .userregex import compile_user_regex

log = logging.getLogger(__name__)

_FORMATS = {"normalized": NORMALIZED, "keyValues": SIMPLIFIED, "simplified": SIMPLIFIED,
            "concise": CONCISE, "x-ngsiv2": NORMALIZED, "x-ngsiv2-normalized": NORMALIZED,
            "x-ngsiv2-keyValues": SIMPLIFIED, "x-ngsiv2-normalized-compacted": NORMALIZED,
            "x-ngsiv2-keyValues-compacted": SIMPLIFIED}
_ACCEPTS = {"application/json", "application/ld+json", "application/geo+json"}
_TRIGGERS = {"entityCreated", "entityUpdated", "entityDeleted", "attributeCreated",
             "attributeUpdated", "attributeDeleted"}
_DEFAULT_TRIGGERS = ["attributeCreated", "attributeUpdated"]  # NGSI-LD 1.8 §5.2.12 default
_MQTT_NOTIFIER_KEYS = {"MQTT-Version": {"mqtt5.0", "mqtt3.1.1"}, "MQTT-QoS": {"0", "1", "2"}}
MAX_PENDING = 1000  # per subscription
LINK_REL = 'rel="http://www.w3.org/ns/json-ld#context"; type="application/ld+json"'


def _string(body: dict, key: str) -> str:
    value = body[key]
    if not isinstance(value, str):
        raise bad_request("Not a JSON String", key)
    return value


def _non_empty_list(body: dict, key: str) -> list:
    value = body[key]
    if not isinstance(value, list):
        raise bad_request("Not a JSON Array", key)
    if not value:
        raise bad_request("Empty Array", key)
    return value


def _key_value_pairs(value: Any, where: str) -> list[dict]:
    if not isinstance(value, list) or not all(
            isinstance(p, dict) and isinstance(p.get("key"), str) and isinstance(p.get("value"), str)
            and p["key"] for p in value):
        raise bad_request("Invalid key-value array", f"{where} must be an array of {{key, value}} strings")
    return [{"key": p["key"], "value": p["value"]} for p in value]


class Subscription:
    def __init__(self, sub_id: str, tenant: str | None, ctx: CompiledContext, now: float) -> None:
        self.id = sub_id
        self.tenant = tenant
        self.ctx = ctx
        self.created = now
        self.modified = now
        self.fields: dict[str, Any] = {}  # validated members, names expanded where NGSI-LD says so
        self.q = None
        self.geo = None
        self.scope_q = None
        self.entity_selectors: list[tuple[str | None, re.Pattern | None, set[str]]] = []
        # notification status
        self.times_sent = 0
        self.times_failed = 0
        self.last_notification: float | None = None
        self.last_success: float | None = None
        self.last_failure: float | None = None
        self.last_fired: float | None = None
        self.last_error: str | None = None
        self.status: str | None = None  # of the last delivery attempt: "ok" / "failed"
        self.lock = asyncio.Lock()
        self.pending = 0  # notifications waiting for delivery

    # -- building ------------------------------------------------------------------------------
    def apply(self, body: dict, ctx: CompiledContext, *, creating: bool) -> None:
        """Validate and store the members of a subscription body (or of a PATCH fragment)."""
        f = self.fields
        if "type" in body and body["type"] != "Subscription":
            raise bad_request("Invalid subscription type", "the type of a subscription must be 'Subscription'")
        if creating and "type" not in body:
            raise bad_request("Mandatory field missing", "Subscription::type")
        for key in ("subscriptionName", "name"):
            if key in body:
                f["subscriptionName"] = _string(body, key)
        if "description" in body:
            f["description"] = _string(body, "description")
        if "entities" in body:
            selectors, rendered = [], []
            if len(_non_empty_list(body, "entities")) > MAX_SELECTORS:
                raise bad_request("Too many entity selectors", f"at most {MAX_SELECTORS}")
            for item in _non_empty_list(body, "entities"):
                if not isinstance(item, dict):
                    raise bad_request("Not a JSON Object", "entities[*]")
                etype = item.get("type")
                if not isinstance(etype, str) or not etype:
                    raise bad_request("Mandatory field missing", "entities[*]::type")
                eid, pattern = item.get("id"), item.get("idPattern")
                if eid is not None and not is_uri(eid):
                    raise bad_request("Invalid URI", "entities[*]::id")
                compiled = None
                if pattern is not None:
                    if not isinstance(pattern, str):
                        raise bad_request("Not a JSON String", "entities[*]::idPattern")
                    compiled = compile_user_regex(pattern, title="Invalid idPattern")
                types = {ctx.expand(t) for t in re.split(r"[,;|()]+", etype) if t}
                selectors.append((eid, compiled, types))
                entry: dict[str, Any] = {}
                if eid is not None:
                    entry["id"] = eid
                if pattern is not None:
                    entry["idPattern"] = pattern
                entry["type"] = ctx.expand(etype) if len(types) == 1 else etype
                rendered.append(entry)
            self.entity_selectors = selectors
            f["entities"] = rendered
        if "watchedAttributes" in body:
            names = _non_empty_list(body, "watchedAttributes")
            if not all(isinstance(n, str) and n for n in names):
                raise bad_request("Not a JSON String", "watchedAttributes[*]")
            f["watchedAttributes"] = [ctx.expand(n) for n in names]
        if "notificationTrigger" in body:
            triggers = _non_empty_list(body, "notificationTrigger")
            if not all(t in _TRIGGERS for t in triggers):
                raise bad_request("Invalid notificationTrigger", str(triggers))
            f["notificationTrigger"] = list(triggers)
        if "q" in body:
            q = _string(body, "q")
            # q has the syntax of the URL parameter, percent-encoding included
            self.q = compile_q(unquote(q), ctx)
            f["q"] = q
        if "geoQ" in body:
            geo = body["geoQ"]
            if not isinstance(geo, dict):
                raise bad_request("Not a JSON Object", "geoQ")
            self.geo = compile_geo(geo.get("geometry"), geo.get("georel"), geo.get("coordinates"),
                                   geo.get("geoproperty"), ctx)
            f["geoQ"] = dict(geo)
        for key in ("csf", "scopeQ", "lang"):
            if key in body:
                f[key] = _string(body, key)
        if "scopeQ" in body:
            self.scope_q = compile_scope_q(f["scopeQ"])
        if "datasetId" in body:  # only these attribute instances are notified (@none = default)
            ids = body["datasetId"]
            if isinstance(ids, str):
                ids = [ids]
            if not isinstance(ids, list) or not ids or not all(isinstance(i, str) and i for i in ids):
                raise bad_request("Not a JSON Array of Strings", "datasetId")
            f["datasetId"] = list(ids)
        if "isActive" in body:
            if not isinstance(body["isActive"], bool):
                raise bad_request("Not a JSON Boolean", "isActive")
            f["isActive"] = body["isActive"]
        for key in ("expiresAt", "expires"):
            if key in body:
                epoch = parse_datetime(body[key])
                if epoch is None:
                    raise bad_request("Invalid ISO8601 timestamp", key)
                if epoch <= now_ms():
                    raise bad_request("Invalid value for expiresAt", "expiresAt is in the past")
                f["expiresAt"] = epoch
        for key in ("throttling", "timeInterval"):
            if key in body:
                value = body[key]
                if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
                    raise bad_request(f"Invalid value for {key}", f"{key} must be a positive number")
                f[key] = value
        if "notification" in body:
            f["notification"] = self._notification(body["notification"], ctx)
        elif creating:
            raise bad_request("Mandatory field missing", "Subscription::notification")
        if "jsonldContext" in body and isinstance(body["jsonldContext"], str):
            f["jsonldContext"] = body["jsonldContext"]
        # consistency
        if "entities" not in f and "watchedAttributes" not in f and "timeInterval" not in f:
            raise bad_request("Invalid Subscription",
                              "At least one of 'entities' and 'watchedAttributes' must be present")
        if "timeInterval" in f and "watchedAttributes" in f:
            raise bad_request("Invalid Subscription", "timeInterval and watchedAttributes cannot both be present")
        if "timeInterval" in f and "throttling" in f:
            raise bad_request("Invalid Subscription", "timeInterval and throttling cannot both be present")

    def _notification(self, raw: Any, ctx: CompiledContext) -> dict:
        if not isinstance(raw, dict):
            raise bad_request("Not a JSON Object", "notification")
        out: dict[str, Any] = {}
        if "attributes" in raw:
            names = raw["attributes"]
            if not isinstance(names, list) or not all(isinstance(n, str) and n for n in names):
                raise bad_request("Not a JSON Array of Strings", "notification::attributes")
            if names:
                out["attributes"] = [ctx.expand(n) for n in names]
        for key in ("pick", "omit"):  # NGSI-LD 1.8 §4.21 projection of notified entities
            if key in raw:
                names = raw[key]
                if isinstance(names, str):
                    names = [n for n in names.split(",") if n]
                if not isinstance(names, list) or not names or not all(isinstance(n, str) and n for n in names):
                    raise bad_request("Not a JSON Array of Strings", f"notification::{key}")
                if "attributes" in raw:
                    raise bad_request("Invalid Subscription", f"notification::{key} and ::attributes together")
                out[key] = [n if n in ("id", "type") else ctx.expand(n) for n in names]
        if "pick" in out and "omit" in out and set(out["pick"]) & set(out["omit"]):
            raise bad_request("Invalid Subscription", "the same member in notification::pick and ::omit")
        fmt = raw.get("format", "normalized")
        if fmt not in _FORMATS:
            raise bad_request("Invalid value for notification::format", str(fmt))
        out["format"] = fmt
        for key in ("sysAttrs", "showChanges"):
            if key in raw:
                if not isinstance(raw[key], bool):
                    raise bad_request("Not a JSON Boolean", f"notification::{key}")
                out[key] = raw[key]
        endpoint = raw.get("endpoint")
        if not isinstance(endpoint, dict):
            raise bad_request("Mandatory field missing", "notification::endpoint")
        uri = endpoint.get("uri")
        if not isinstance(uri, str) or not is_uri(uri):
            raise bad_request("Invalid URI", "notification::endpoint::uri")
        scheme = uri.split(":", 1)[0].lower()
        if scheme not in ("http", "https", "mqtt", "mqtts"):
            raise bad_request("Invalid URI", f"unsupported scheme in notification endpoint: {scheme}")
        ep: dict[str, Any] = {"uri": uri}
        accept = endpoint.get("accept", "application/json")
        if accept not in _ACCEPTS:
            raise bad_request("Invalid value for notification::endpoint::accept", str(accept))
        ep["accept"] = accept
        if "receiverInfo" in endpoint:
            ep["receiverInfo"] = _key_value_pairs(endpoint["receiverInfo"], "receiverInfo")
        if "notifierInfo" in endpoint:
            pairs = _key_value_pairs(endpoint["notifierInfo"], "notifierInfo")
            if scheme.startswith("mqtt"):
                for p in pairs:
                    allowed = _MQTT_NOTIFIER_KEYS.get(p["key"])
                    if allowed is None or p["value"] not in allowed:
                        raise bad_request("Invalid value for notifierInfo", f"{p['key']}: {p['value']}")
            ep["notifierInfo"] = pairs
        out["endpoint"] = ep
        return out

    # -- state ---------------------------------------------------------------------------------
    def state(self, now: float) -> str:
        expires = self.fields.get("expiresAt")
        if expires is not None and expires <= now:
            return "expired"
        if not self.fields.get("isActive", True):
            return "paused"
        return "active"

    def render(self, ctx: CompiledContext, *, sys_attrs: bool = False) -> dict:
        f = self.fields
        now = now_ms()
        out: dict[str, Any] = {"id": self.id, "type": "Subscription"}
        for key in ("subscriptionName", "description"):
            if key in f:
                out[key] = f[key]
        if "entities" in f:
            out["entities"] = [{**e, "type": ctx.compact(e["type"])} for e in f["entities"]]
        if "watchedAttributes" in f:
            out["watchedAttributes"] = [ctx.compact(n) for n in f["watchedAttributes"]]
        out["notificationTrigger"] = list(f.get("notificationTrigger", _DEFAULT_TRIGGERS))
        for key in ("q", "geoQ", "csf", "scopeQ", "lang", "timeInterval", "datasetId"):
            if key in f:
                out[key] = f[key]
        if "isActive" in f:  # a client member (default true); the broker's view is "status"
            out["isActive"] = f["isActive"]
        out["status"] = self.state(now)
        if "throttling" in f:
            out["throttling"] = f["throttling"]
        if "expiresAt" in f:
            out["expiresAt"] = format_datetime(f["expiresAt"])
        notification = dict(f["notification"])
        for key in ("attributes", "pick", "omit"):
            if key in notification:
                notification[key] = [n if n in ("id", "type") else ctx.compact(n) for n in notification[key]]
        notification["endpoint"] = dict(notification["endpoint"])
        if self.status is not None:  # "ok"/"failed" describe the last attempt: none yet, none shown
            notification["status"] = self.status
        if self.times_sent or sys_attrs:
            notification["timesSent"] = self.times_sent
        if self.times_failed or sys_attrs:
            notification["timesFailed"] = self.times_failed
        for key, value in (("lastNotification", self.last_notification),
                           ("lastSuccess", self.last_success), ("lastFailure", self.last_failure)):
            if value is not None:
                notification[key] = format_datetime(value)
        out["notification"] = notification
        out["jsonldContext"] = f.get("jsonldContext", self.ctx.link_url)
        if sys_attrs:
            out["createdAt"] = format_datetime(self.created)
            out["modifiedAt"] = format_datetime(self.modified)
        return out

    # -- matching --------------------------------------------------------------------------------
    def matches(self, change: Change, now: float) -> bool:
        f = self.fields
        if self.state(now) != "active" or "timeInterval" in f:
            return False
        triggers = f.get("notificationTrigger", _DEFAULT_TRIGGERS)
        if change.kind == "entityDeleted":
            if "entityDeleted" not in triggers and "attributeDeleted" not in triggers:
                return False
        elif change.kind == "entityCreated":
            if "entityCreated" not in triggers and "attributeCreated" not in triggers:
                return False
        elif "entityUpdated" not in triggers:
            # attribute-level triggers: deletions only count for attributeDeleted, the rest for
            # attributeCreated / attributeUpdated
            deleted = change.deleted.keys() if change.deleted else ()
            other = change.attrs is None or any(a not in deleted for a in change.attrs)
            if not ((deleted and "attributeDeleted" in triggers)
                    or (other and ("attributeCreated" in triggers or "attributeUpdated" in triggers))):
                return False
        entity = change.entity
        if not self.selects(entity):
            return False
        watched = f.get("watchedAttributes")
        if watched:
            touched = change.attrs if change.attrs is not None else entity.attrs.keys()
            if not any(w in touched for w in watched):
                return False
        if self.scope_q is not None and not self.scope_q(entity):
            return False
        if change.kind != "entityDeleted":
            if self.q is not None and not self.q(entity):
                return False
            if self.geo is not None and not self.geo(entity):
                return False
        return True

    def selects(self, entity: Entity) -> bool:
        """Whether the entity is one of the subscription's ``entities`` (any entity when none)."""
        if not self.entity_selectors:
            return True
        for eid, pattern, types in self.entity_selectors:
            if not any(t in types for t in entity.types):
                continue
            if eid is not None and eid != entity.id:
                continue
            if pattern is not None and not pattern.search(entity.id):
                continue
            return True
        return False

    def periodic_matches(self, entity: Entity) -> bool:
        """Entity filter of a timeInterval subscription (no change involved)."""
        if not self.selects(entity):
            return False
        if self.q is not None and not self.q(entity):
            return False
        if self.scope_q is not None and not self.scope_q(entity):
            return False
        return self.geo is None or self.geo(entity)

    def render_change(self, change: Change) -> dict:
        """The notified form of one change: a deleted entity is ``{id, type, deletedAt}``; with the
        attributeDeleted trigger, deleted attributes appear as NGSI-LD Null (§4.5.x, 5.8.6)."""
        entity = change.entity
        when = format_datetime(change.when if change.when is not None else now_ms())
        triggers = self.fields.get("notificationTrigger", _DEFAULT_TRIGGERS)
        notification = self.fields["notification"]
        deleted = change.deleted
        if change.kind == "entityDeleted":
            types = [self.ctx.compact(t) for t in entity.types]
            out = {"id": entity.id, "type": types[0] if len(types) == 1 else types}
            if notification.get("sysAttrs"):
                out["createdAt"] = format_datetime(entity.created)
                out["modifiedAt"] = format_datetime(entity.modified)
            out["deletedAt"] = when
            if "entityDeleted" in triggers:
                return out
            # attributeDeleted only: the (watched) attributes went with the entity
            watched = self.fields.get("watchedAttributes")
            deleted = {iri: inst for iri, inst in entity.attrs.items() if not watched or iri in watched}
        else:
            out = self.render_data(entity)
            if not deleted or "attributeDeleted" not in triggers:
                return out
        wanted = notification.get("attributes") or notification.get("pick")
        omit = notification.get("omit") or ()
        simplified = _FORMATS[notification.get("format", "normalized")] == SIMPLIFIED
        for iri, removed in deleted.items():
            if (wanted and iri not in wanted) or iri in omit:
                continue
            name = self.ctx.compact(iri)
            present = out.get(name)
            if present is None and len(removed) > 1:
                # the whole attribute went (deleteAll, entity deletion): one null, no datasetId
                removed = [{k: v for k, v in removed[0].items() if k != "datasetId"}]
            nulls = [_null_instance(inst, simplified, notification.get("sysAttrs", False), when)
                     for inst in removed]
            if simplified and present is not None:
                if not (isinstance(present, dict) and "dataset" in present):
                    kept = entity.attrs.get(iri) or [{}]
                    present = {"dataset": {kept[0].get("datasetId", "@none"): present}}
                for inst in removed:
                    present["dataset"][inst.get("datasetId", "@none")] = NGSI_LD_NULL
                out[name] = present
            elif present is None:
                out[name] = nulls[0] if len(nulls) == 1 else nulls
            else:
                out[name] = (present if isinstance(present, list) else [present]) + nulls
        return out

    def render_data(self, entity: Entity) -> dict:
        notification = self.fields["notification"]
        attrs = notification.get("attributes")
        fmt = _FORMATS[notification.get("format", "normalized")]
        pick, omit = notification.get("pick"), notification.get("omit")
        return render_entity(entity, self.ctx, fmt=fmt, sys_attrs=notification.get("sysAttrs", False),
                             attrs=set(attrs) if attrs else None, lang=self.fields.get("lang"),
                             pick=set(pick) if pick else None, omit=set(omit) if omit else None,
                             datasets=set(self.fields["datasetId"]) if "datasetId" in self.fields else None)


NGSI_LD_NULL = "urn:ngsi-ld:null"
_NULL_MEMBERS = {"Relationship": ("object", NGSI_LD_NULL),
                 "LanguageProperty": ("languageMap", {"@none": NGSI_LD_NULL}),
                 "VocabProperty": ("vocab", NGSI_LD_NULL), "JsonProperty": ("json", NGSI_LD_NULL),
                 "ListProperty": ("valueList", [NGSI_LD_NULL]),
                 "ListRelationship": ("objectList", [{"object": NGSI_LD_NULL}])}


def _null_instance(inst: dict, simplified: bool, sys_attrs: bool, when: str) -> Any:
    """A deleted attribute instance as NGSI-LD Null, in the representation of its type."""
    if simplified:
        return NGSI_LD_NULL
    atype = inst.get("type", "Property")
    member, null = _NULL_MEMBERS.get(atype, ("value", NGSI_LD_NULL))
    out: dict[str, Any] = {"type": atype, member: null}
    if "datasetId" in inst:
        out["datasetId"] = inst["datasetId"]
    if sys_attrs:
        for key in ("createdAt", "modifiedAt"):
            if key in inst:
                out[key] = format_datetime(inst[key])
        out["deletedAt"] = when
    return out


class Notifier:
    """Sends notifications in background tasks so that writers never wait for receivers."""

    def __init__(self, timeout: float = 5.0) -> None:
        self.timeout = timeout
        self._session: aiohttp.ClientSession | None = None
        self._tasks: set[asyncio.Task] = set()

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._session is not None:
            await self._session.close()
            self._session = None

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=self.timeout),
                connector=aiohttp.TCPConnector(limit=100, force_close=True))
        return self._session

    async def run_periodic(self, tenants: Callable[[], list], tick: float = 0.5) -> None:
        """Send timeInterval subscriptions their matching entities every timeInterval seconds."""
        while True:
            await asyncio.sleep(tick)
            now = now_ms()
            for tenant in tenants():
                for sub in list(tenant.subscriptions.values()):
                    interval = sub.fields.get("timeInterval")
                    if not interval or sub.state(now) != "active":
                        continue
                    if sub.last_fired is not None and now - sub.last_fired < interval:
                        continue
                    if sub.last_fired is None and now - sub.created < interval:
                        continue
                    sub.last_fired = now
                    data = [sub.render_data(e) for e in tenant.entities.values() if sub.periodic_matches(e)]
                    if data:
                        self.schedule(sub, data, {}, now)

    def process(self, subscriptions: list[Subscription], changes: list[Change],
                request_headers: dict[str, str]) -> None:
        """Match a request's changes against subscriptions and schedule the notifications."""
        if not subscriptions or not changes:
            return
        now = now_ms()
        for sub in subscriptions:
            matched: dict[str, Change] = {}
            for change in changes:
                if sub.matches(change, now):
                    matched[change.entity.id] = change
            if not matched:
                continue
            throttling = sub.fields.get("throttling")
            if throttling and sub.last_fired is not None and now - sub.last_fired < throttling:
                continue
            sub.last_fired = now
            data = [sub.render_change(c) for c in matched.values()]
            self.schedule(sub, data, request_headers, now)

    def schedule(self, sub: Subscription, data: list[dict], request_headers: dict[str, str],
                 now: float) -> None:
        notification = sub.fields["notification"]
        endpoint = notification["endpoint"]
        body: dict[str, Any] = {
            "id": f"urn:ngsi-ld:Notification:{uuid.uuid4()}",
            "type": "Notification",
            "subscriptionId": sub.id,
            "notifiedAt": format_datetime(now),
            "data": data,
        }
        accept = endpoint.get("accept", "application/json")
        headers = {"Accept": "application/json", "User-Agent": "stadtlink-local-broker"}
        if accept == "application/ld+json":
            # Orion-LD puts @context on the notification, the specification on every entity
            body["@context"] = sub.ctx.link_url
            body["data"] = [{"@context": sub.ctx.link_url, **entity} for entity in data]
            headers["Content-Type"] = "application/ld+json"
        else:
            headers["Content-Type"] = accept
            headers["Link"] = f"<{sub.ctx.link_url}>; {LINK_REL}"
        fmt = _FORMATS[notification.get("format", "normalized")]
        headers["Ngsild-Attribute-Format"] = FORMAT_HEADER[fmt]
        if sub.tenant:
            headers["NGSILD-Tenant"] = sub.tenant
        for name in ("X-Auth-Token", "Authorization"):
            if name in request_headers:
                headers[name] = request_headers[name]
        for pair in endpoint.get("receiverInfo", []):
            if pair["value"] == "urn:ngsi-ld:request":
                if pair["key"] in request_headers:
                    headers[pair["key"]] = request_headers[pair["key"]]
            else:
                headers[pair["key"]] = pair["value"]
        try:
            encoded = orjson.dumps(body)
        except (orjson.JSONEncodeError, TypeError):
            # an entity the encoder cannot take is left out; the others are still notified
            body["data"] = encodable_only(body["data"])
            if not body["data"]:
                return
            encoded = orjson.dumps(body)
        sub.times_sent += 1
        sub.last_notification = now
        uri = endpoint["uri"]
        if sub.pending >= MAX_PENDING:
            # the receiver cannot keep up: drop instead of queueing without bound
            self._record(sub, uri, "too many notifications waiting for delivery")
            return
        if uri.lower().startswith("mqtt"):
            coro = self._deliver_mqtt(sub, uri, body, headers, endpoint.get("notifierInfo", []))
        else:
            target = uri + ("&" if "?" in uri else "?") + "subscriptionId=" + sub.id
            coro = self._deliver_http(sub, target, encoded, headers)
        sub.pending += 1
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)

        def done(t: asyncio.Task) -> None:
            sub.pending -= 1
            self._tasks.discard(t)
        task.add_done_callback(done)

    async def _deliver_http(self, sub: Subscription, target: str, payload: bytes, headers: dict) -> None:
        async with sub.lock:
            reason = None
            try:
                url = URL(target, encoded=True)
            except ValueError:
                url = URL(target)
            try:
                async with self._client().post(url, data=payload, headers=headers) as resp:
                    await resp.read()
                    if not 200 <= resp.status < 300:
                        reason = f"HTTP status {resp.status}"
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # any delivery problem marks the subscription failed
                reason = f"{type(exc).__name__}: {exc}"
            self._record(sub, target, reason)

    async def _deliver_mqtt(self, sub: Subscription, uri: str, body: dict, headers: dict,
                            notifier_info: list[dict]) -> None:
        """Publish ``{"metadata": {headers}, "body": notification}`` as Orion-LD does."""
        async with sub.lock:
            reason = None
            try:
                await publish_mqtt(uri, body, headers, notifier_info, self.timeout)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                reason = f"{type(exc).__name__}: {exc}"
            self._record(sub, uri, reason)

    @staticmethod
    def _record(sub: Subscription, target: str, reason: str | None) -> None:
        when = now_ms()
        if reason is None:
            sub.last_success = when
            sub.status = "ok"
        else:
            sub.times_failed += 1
            sub.last_failure = when
            sub.last_error = reason
            sub.status = "failed"
            log.debug("notification for %s to %s failed: %s", sub.id, target, reason)


async def publish_mqtt(uri: str, body: dict, headers: dict, notifier_info: list[dict], timeout: float) -> None:
    """One MQTT publication of a notification (connects, publishes, disconnects)."""
    import ssl

    import aiomqtt

    url = URL(uri)
    topic = url.path.lstrip("/")
    if not topic or not url.host:
        raise ValueError(f"MQTT endpoint without host or topic: {uri}")
    info = {p["key"]: p["value"] for p in notifier_info}
    version = aiomqtt.ProtocolVersion.V311 if info.get("MQTT-Version") == "mqtt3.1.1" else aiomqtt.ProtocolVersion.V5
    qos = int(info.get("MQTT-QoS", "0"))
    secure = url.scheme == "mqtts"
    metadata = {k: v for k, v in headers.items() if k not in ("Accept", "User-Agent")}
    if "Link" in metadata:
        metadata["Link"] = metadata["Link"][1:].split(">", 1)[0]
    payload = orjson.dumps({"metadata": metadata, "body": body})
    client = aiomqtt.Client(url.host, port=url.port or (8883 if secure else 1883), username=url.user,
                            password=url.password, protocol=version, timeout=timeout,
                            tls_context=ssl.create_default_context() if secure else None)
    async with asyncio.timeout(timeout):
        async with client:
            await client.publish(topic, payload=payload, qos=qos)

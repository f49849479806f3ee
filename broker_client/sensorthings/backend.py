"""The SensorThings sink: writes NGSI-LD entities to an OGC SensorThings API v1.1 server
(FROST-Server, django-ogc-sensorthings, …). Implements :class:`~stadtlink.broker_client.backend.Backend`.

Graph (Thing, Location, Datastreams, Sensor, ObservedProperty) — found or created once per entity
and cached:

* a Thing is looked up by ``$filter=name eq '<NGSI-LD id>'`` (a plain filter every server runs;
  property filters are not portable) and created by deep insert on first sight;
* Sensors (by ``name``) and ObservedProperties (by ``definition``) are shared between Things;
* after creating anything, the same filter is read again: when two replicas created the same thing
  at once, both keep the one with the smallest ``@iot.id`` and the other is deleted by its creator
  before any Observation points at it;
* a changed ``location`` is a new Location linked to the Thing, and a HistoricalLocation at the
  entity's time — created by us unless the server made one itself (FROST does, see
  docs/backends/sensorthings.md).

Observations go in ``CreateObservations`` batches when the root document lists the data-array
conformance class, else one ``POST /Observations`` each. A row the server refuses is found (an
all-``error`` answer is bisected, the last single row is posted alone for the server's reason) and
reported as the entity's failure; the other rows are written. Rows already written (same
Datastream, same phenomenonTime) are not written again, also after a restart of either side.
"""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Self
from urllib.parse import quote

import orjson

from stadtlink.timeutil import iso_ms, parse_time

from ..auth import Auth
from ..client import NGSILDClient, Response
from ..errors import (
    BrokerUnavailable,
    InvalidResponse,
    ProblemDetails,
    error_from_response,
)
from ..results import BatchResult, EntityFailure
from ..retry import DEFAULT_RETRY, RetryPolicy
from .mapping import (
    EntityNotMappable,
    Row,
    SensorSpec,
    StreamSpec,
    ThingPlan,
    plan_entity,
)

log = logging.getLogger("stadtlink.broker_client.sensorthings")

ERROR_TYPE = "urn:stadtlink:sensorthings:error:"
DATA_ARRAY_CLASS = "/req/data-array"
LOCATION_ENCODING = "application/geo+json"
RECENT_TIMES = 64  # phenomenonTimes remembered per Datastream (repeats are skipped)


class StaRejected(Exception):
    """The server refused a request for good (4xx): the entity goes to the dead letters."""

    def __init__(self, problem: ProblemDetails) -> None:
        super().__init__(f"{problem.title}: {problem.detail}")
        self.problem = problem


class StaTransient(Exception):
    """The server answered 5xx/429: the entity is sent again later."""

    def __init__(self, problem: ProblemDetails) -> None:
        super().__init__(f"{problem.title}: {problem.detail}")
        self.problem = problem


def odata_literal(value: Any) -> str:
    """An id or string as an OData literal: ``5`` or ``'it''s'``."""
    if isinstance(value, bool):
        raise TypeError("no boolean ids")
    if isinstance(value, (int, float)):
        return str(value)
    return "'" + str(value).replace("'", "''") + "'"


def entity_path(collection: str, iot_id: Any, suffix: str = "") -> str:
    """``/Things(5)`` or ``/Things('0193…')`` (percent-encoded for the path)."""
    return "/" + collection + "(" + quote(odata_literal(iot_id), safe="'") + ")" + suffix


def id_order(iot_id: Any) -> tuple[int, Any]:
    """Sort key of server ids: numbers numerically, strings (UUIDv7, …) as text."""
    return (0, iot_id) if isinstance(iot_id, (int, float)) and not isinstance(iot_id, bool) else (1, str(iot_id))


def problem_from(response: Response, what: str) -> ProblemDetails:
    """The server's reason from an error answer (FROST ``{"code","type","message"}``, django-ninja
    ``{"detail": …}``, anything else as text)."""
    detail: str
    try:
        body = orjson.loads(response.body) if response.body else None
    except orjson.JSONDecodeError:
        body = None
    if isinstance(body, dict) and isinstance(body.get("message"), str):
        detail = body["message"]
    elif isinstance(body, dict) and "detail" in body:
        raw = body["detail"]
        detail = raw if isinstance(raw, str) else orjson.dumps(raw).decode()
    else:
        detail = response.body[:500].decode("utf-8", "replace") if response.body else ""
    kind = "Transient" if response.status >= 500 or response.status == 429 else "Rejected"
    return ProblemDetails(type=ERROR_TYPE + kind, title=f"{what}: HTTP {response.status}",
                          detail=detail[:1000], status=response.status)


def _local(title: str, detail: str, status: int | None = 400) -> ProblemDetails:
    return ProblemDetails(type=ERROR_TYPE + "NotMappable", title=title, detail=detail, status=status)


def _second(when: datetime) -> datetime:
    """Times are compared to the second: django-ogc-sensorthings 1.2.0 stores no fractions."""
    return when.replace(microsecond=0)


def _result_key(result: Any) -> bytes:
    """A result as the server gives it back: numbers as floats (a float column returns 3.0 for 3)."""
    if isinstance(result, (int, float)) and not isinstance(result, bool):
        result = float(result)
    return orjson.dumps(result, option=orjson.OPT_SORT_KEYS)


@dataclass(slots=True)
class _Seen:
    """What a Datastream already holds: the newest phenomenonTime, and for recent seconds the
    results written (a different value at the same time is another Observation, not a repeat)."""

    latest: datetime | None = None
    recent: OrderedDict[datetime, set[bytes]] = field(default_factory=OrderedDict)

    def add(self, when: datetime, result: Any) -> None:
        when = _second(when)
        self.recent.setdefault(when, set()).add(_result_key(result))
        self.recent.move_to_end(when)
        while len(self.recent) > RECENT_TIMES:
            self.recent.popitem(last=False)
        if self.latest is None or when > self.latest:
            self.latest = when

    def holds(self, when: datetime, result: Any) -> bool:
        return _result_key(result) in self.recent.get(_second(when), ())

    def maybe_on_server(self, when: datetime) -> bool:
        """Not after the newest known one: the server may hold it (ask)."""
        return self.latest is not None and _second(when) <= self.latest


@dataclass(slots=True)
class _ThingState:
    iot_id: Any
    streams: dict[str, Any] = field(default_factory=dict)  # Datastream name → @iot.id
    location: dict[str, Any] | None = None
    properties: dict[str, Any] | None = None
    description: str | None = None
    feature: Any = None  # our FeatureOfInterest, for a Thing without a Location
    verify: bool = False  # created by this process: look for a twin once more on the next write


@dataclass(slots=True)
class _Pending:
    """One row on its way: which entity, which Datastream, what."""

    entity_id: str
    ds_id: Any
    row: Row
    when: datetime
    feature: Any = None


class _StaHttp(NGSILDClient):
    """HTTP layer: the NGSI-LD client's retries, auth (token / OAuth2 with the 401 retry) and
    errors, pointed at the SensorThings service root."""

    def __init__(self, url: str, **kwargs: Any) -> None:
        super().__init__(url, **kwargs)
        self.base_url = url.rstrip("/")
        self.api_url = self.base_url
        self._base_headers.pop("Link", None)


class SensorThingsBackend:
    """Writes NGSI-LD entities to a SensorThings API v1.1 service root such as
    ``http://frost:8080/FROST-Server/v1.1``.

    ``data_array``: ``None`` (default) reads the root document's conformance list; ``True``/``False``
    force CreateObservations or one POST per Observation. ``batch_size``: rows per
    CreateObservations request.
    """

    kind = "sensorthings"

    def __init__(
        self,
        url: str,
        *,
        auth: Auth | None = None,
        timeout: float = 10.0,
        retry: RetryPolicy = DEFAULT_RETRY,
        batch_size: int = 500,
        max_connections: int = 8,
        data_array: bool | None = None,
    ) -> None:
        if batch_size < 1:
            raise ValueError("batch_size must be >= 1")
        self.http = _StaHttp(url, auth=auth, timeout=timeout, retry=retry, max_connections=max_connections)
        self.base_url = self.http.base_url
        self.batch_size = batch_size
        self.data_array_forced = data_array
        self.conformance: list[str] | None = None
        self._limit = asyncio.Semaphore(max_connections)
        self._things: dict[str, _ThingState] = {}
        self._sensors: dict[str, Any] = {}
        self._properties: dict[str, Any] = {}
        self._features: dict[str, Any] = {}
        self._seen: dict[Any, _Seen] = {}
        self._locks: dict[tuple[str, str], asyncio.Lock] = {}
        self.stats = {"things_created": 0, "datastreams_created": 0, "duplicates_removed": 0, "duplicates_merged": 0,
                      "observations_written": 0, "observations_skipped": 0, "locations_moved": 0}

    def __repr__(self) -> str:
        return f"SensorThingsBackend(url={self.base_url!r}, auth={self.http.auth!r})"

    # --- lifecycle ------------------------------------------------------------------------------

    async def open(self) -> Self:
        await self.http.open()
        return self

    async def close(self) -> None:
        await self.http.close()

    async def __aenter__(self) -> Self:
        return await self.open()

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def probe(self) -> Response:
        """``GET`` the service root once (start-up checks); raises what the HTTP layer raises."""
        response = await self.http.request("GET", "", idempotent=True, attempts=1)
        if response.status == 404:  # django-ogc-sensorthings serves the root only with a slash
            response = await self.http.request("GET", "/", idempotent=True, attempts=1)
        return response

    async def health(self) -> bool:
        try:
            response = await self.probe()
        except BrokerUnavailable:
            return False
        return response.status < 400

    async def data_array(self) -> bool:
        """Whether CreateObservations is used (the root document's conformance list, read once)."""
        if self.data_array_forced is not None:
            return self.data_array_forced
        if self.conformance is None:
            response = await self.probe()
            if response.status in (401, 403):
                raise error_from_response(response.status, response.body)
            if response.status >= 400:  # not for one entity to pay for: the runtime keeps and retries
                raise StaTransient(problem_from(response, "service root"))
            try:
                root = response.json()
            except InvalidResponse:
                root = None
            settings = root.get("serverSettings") if isinstance(root, dict) else None
            listed = settings.get("conformance") if isinstance(settings, dict) else None
            self.conformance = [c for c in listed if isinstance(c, str)] if isinstance(listed, list) else []
        return any(DATA_ARRAY_CLASS in c for c in self.conformance)

    # --- Backend.write --------------------------------------------------------------------------

    async def write(self, entities: list[dict[str, Any]]) -> BatchResult:
        """Write entities; per-entity outcome. Raises :class:`BrokerUnavailable` when the server
        cannot be reached (the caller keeps the entities; rows already written are not written
        twice when they come again)."""
        result = BatchResult()
        if not entities:
            return result
        failures: dict[str, EntityFailure] = {}
        order: list[str] = []
        plans: list[ThingPlan] = []
        for entity in entities:
            eid = entity.get("id") if isinstance(entity, dict) else None
            eid = eid if isinstance(eid, str) and eid else "no entity::id"
            if eid not in order:
                order.append(eid)
            try:
                plan = plan_entity(entity)
            except (EntityNotMappable, ValueError, TypeError) as exc:
                failures.setdefault(eid, EntityFailure(eid, _local("Not a SensorThings entity", str(exc)), False))
                continue
            if plan.problems:
                failures.setdefault(eid, EntityFailure(
                    eid, _local("Observations refused before sending", "; ".join(plan.problems)), False))
            plans.append(plan)

        use_data_array = await self.data_array()

        async def resolve(plan: ThingPlan) -> tuple[ThingPlan, _ThingState | None]:
            for attempt in (1, 2):
                try:
                    return plan, await self._resolve(plan)
                except StaRejected as exc:
                    if attempt == 1:  # maybe a cached id went stale (deleted on the server): look again
                        self._forget(plan)
                        continue
                    failures.setdefault(plan.entity_id, EntityFailure(plan.entity_id, exc.problem, False))
                except StaTransient as exc:
                    failures.setdefault(plan.entity_id, EntityFailure(plan.entity_id, exc.problem, True))
                    break
            return plan, None

        resolved = await asyncio.gather(*(resolve(p) for p in plans))
        pending: list[_Pending] = []
        for plan, state in resolved:
            if state is None:
                continue
            for row in plan.rows:
                ds_id = state.streams.get(row.key)
                if ds_id is None:
                    continue
                pending.append(_Pending(plan.entity_id, ds_id, row, parse_time(row.time), state.feature))
        pending = await self._drop_written(pending)
        row_failures = await (self._write_data_array(pending) if use_data_array else self._write_one_by_one(pending))
        for eid, failure in row_failures:
            current = failures.get(eid)
            if current is None or (current.retryable and not failure.retryable):
                failures[eid] = failure
        for eid in order:
            if eid in failures:
                result.failed.append(failures[eid])
            else:
                result.succeeded.append(eid)
        return result

    # --- graph ----------------------------------------------------------------------------------

    def _forget(self, plan: ThingPlan) -> None:
        """Drop every cached id the plan's graph uses; the next resolve reads the server again."""
        self._things.pop(plan.entity_id, None)
        self._features.pop(plan.entity_id, None)
        for stream in plan.streams.values():
            self._sensors.pop(stream.sensor.name, None)
            self._properties.pop(stream.observed_property.definition, None)

    def _lock(self, kind: str, key: str) -> asyncio.Lock:
        lock = self._locks.get((kind, key))
        if lock is None:
            lock = self._locks[(kind, key)] = asyncio.Lock()
        return lock

    async def _call(self, method: str, path: str, *, what: str, params: Mapping[str, Any] | None = None,
                    json: Any = None, ok: Iterable[int] = (200, 201, 204)) -> Response:
        async with self._limit:
            response = await self.http.request(method, path, params=params, json=json,
                                               idempotent=method in ("GET", "DELETE", "PATCH"))
        if response.status in ok:
            return response
        if response.status in (401, 403):  # credentials, not the entity: the runtime keeps and retries
            raise error_from_response(response.status, response.body)
        problem = problem_from(response, what)
        if response.status >= 500 or response.status in (408, 429):
            raise StaTransient(problem)
        raise StaRejected(problem)

    async def _list(self, path: str, params: Mapping[str, Any], what: str) -> list[dict[str, Any]]:
        """All members of a collection answer (follows ``@iot.nextLink`` by ``$skip``)."""
        out: list[dict[str, Any]] = []
        params = dict(params)
        for _ in range(100):
            response = await self._call("GET", path, params=params, what=what)
            try:
                body = response.json()
            except InvalidResponse as exc:
                raise StaTransient(exc.problem) from None
            values = body.get("value") if isinstance(body, dict) else None
            if not isinstance(values, list):
                raise StaTransient(ProblemDetails(type=ERROR_TYPE + "Transient", title=f"{what}: no value list",
                                                  detail=repr(body)[:300], status=response.status))
            out.extend(v for v in values if isinstance(v, dict))
            if "$top" in params or not body.get("@iot.nextLink") or not values:
                return out
            params["$skip"] = int(params.get("$skip", 0)) + len(values)
        return out

    @staticmethod
    def _created_id(response: Response, collection: str) -> Any:
        """The new entity's id from the ``Location`` header (``…/Things(5)`` or ``…/Things('x')``)."""
        location = response.headers.get("Location", "")
        marker = collection + "("
        if marker in location and location.endswith(")"):
            raw = location.rsplit(marker, 1)[1][:-1]
            if raw.startswith("'") and raw.endswith("'"):
                return raw[1:-1].replace("''", "'")
            try:
                return int(raw)
            except ValueError:
                return raw
        try:
            body = response.json()
        except InvalidResponse:
            body = None
        if isinstance(body, dict) and "@iot.id" in body:
            return body["@iot.id"]
        raise StaTransient(ProblemDetails(type=ERROR_TYPE + "Transient", title=f"{collection}: created, but no id",
                                          detail=f"Location header {location!r}", status=response.status))

    async def _settle_duplicates(self, collection: str, list_path: str, flt: str, mine: Any, what: str) -> Any:
        """Read the filter again after creating; keep the smallest id, delete ours if it is not."""
        found = await self._list(list_path, {"$filter": flt, "$select": "id"}, what)
        ids = [f.get("@iot.id") for f in found if f.get("@iot.id") is not None]
        if mine not in ids:
            ids.append(mine)
        keep = min(ids, key=id_order)
        if keep != mine:
            log.info("%s: another writer created the same %s first; using %r, deleting ours (%r)",
                     flt, collection, keep, mine)
            self.stats["duplicates_removed"] += 1
            try:
                await self._call("DELETE", entity_path(collection, mine), what=f"delete duplicate {collection}",
                                 ok=(200, 204, 404))
            except (StaRejected, StaTransient) as exc:
                log.warning("could not delete duplicate %s %r: %s", collection, mine, exc)
        return keep

    async def _shared(self, collection: str, cache: dict[str, Any], key: str, flt: str, body: dict) -> Any:
        """Find or create a shared Sensor / ObservedProperty."""
        if key in cache:
            return cache[key]
        async with self._lock(collection, key):
            if key in cache:
                return cache[key]
            found = await self._list(f"/{collection}", {"$filter": flt, "$select": "id"}, collection)
            if found:
                iot_id = min((f["@iot.id"] for f in found if "@iot.id" in f), key=id_order)
            else:
                created = await self._call("POST", f"/{collection}", json=body, what=f"create {collection}")
                mine = self._created_id(created, collection)
                iot_id = await self._settle_duplicates(collection, f"/{collection}", flt, mine, collection)
            cache[key] = iot_id
            return iot_id

    async def _sensor(self, spec: SensorSpec) -> Any:
        return await self._shared("Sensors", self._sensors, spec.name, f"name eq {odata_literal(spec.name)}", spec.body())

    async def _observed_property(self, stream: StreamSpec) -> Any:
        op = stream.observed_property
        return await self._shared("ObservedProperties", self._properties, op.definition,
                                  f"definition eq {odata_literal(op.definition)}", op.body())

    async def _stream_body(self, plan: ThingPlan, stream: StreamSpec) -> dict[str, Any]:
        body = stream.body(plan.entity_id)
        body["Sensor"] = {"@iot.id": await self._sensor(stream.sensor)}
        body["ObservedProperty"] = {"@iot.id": await self._observed_property(stream)}
        return body

    def _location_body(self, plan: ThingPlan) -> dict[str, Any]:
        return {"name": f"{plan.entity_id} at {plan.location_time}", "description": f"location of {plan.entity_id}",
                "encodingType": LOCATION_ENCODING, "location": plan.location}

    async def _resolve(self, plan: ThingPlan) -> _ThingState:
        async with self._lock("Things", plan.entity_id):
            state = self._things.get(plan.entity_id)
            if state is not None and state.verify:
                state.verify = False
                twins = await self._list("/Things", {"$filter": f"name eq {odata_literal(plan.entity_id)}",
                                                     "$select": "id"}, "Things")
                if len(twins) > 1:  # a copy committed after our check: merge into the smallest id
                    state = await self._load_thing(plan)
            if state is None:
                state = await self._load_thing(plan) or await self._create_thing(plan)
                self._things[plan.entity_id] = state
            missing = [s for key, s in plan.streams.items() if key not in state.streams]
            for stream in missing:
                state.streams[stream.key] = await self._create_stream(plan, state, stream)
            if state.properties != plan.properties or state.description != plan.description:
                await self._call("PATCH", entity_path("Things", state.iot_id), what="update Thing",
                                 json={"description": plan.description, "properties": plan.properties})
                state.properties, state.description = plan.properties, plan.description
            if plan.location is not None and plan.location != state.location:
                await self._move(plan, state)
            if state.location is None and state.feature is None and plan.rows:
                state.feature = await self._feature(plan)
            return state

    async def _feature(self, plan: ThingPlan) -> Any:
        """Servers derive an Observation's FeatureOfInterest from its Thing's Location; a Thing
        without one gets a FeatureOfInterest of its own (an empty geometry), named by the entity id."""
        body = {"name": plan.entity_id, "description": f"{plan.entity_type} {plan.entity_id} (no location)",
                "encodingType": LOCATION_ENCODING, "feature": {"type": "GeometryCollection", "geometries": []}}
        return await self._shared("FeaturesOfInterest", self._features, plan.entity_id,
                                  f"name eq {odata_literal(plan.entity_id)}", body)

    async def _load_thing(self, plan: ThingPlan) -> _ThingState | None:
        flt = f"name eq {odata_literal(plan.entity_id)}"
        found = await self._list("/Things", {"$filter": flt, "$expand": "Datastreams($select=id,name)"}, "Things")
        if not found:
            return None
        found.sort(key=lambda t: id_order(t.get("@iot.id")))
        thing = found[0]
        state = _ThingState(thing["@iot.id"], properties=thing.get("properties"), description=thing.get("description"))
        for ds in sorted(thing.get("Datastreams") or [], key=lambda d: id_order(d.get("@iot.id")), reverse=True):
            if isinstance(ds.get("name"), str):
                state.streams[ds["name"]] = ds["@iot.id"]  # the smallest id wins (sorted last)
        for twin in found[1:]:
            await self._merge(twin["@iot.id"], state)
        state.location = await self._current_location(state.iot_id)
        return state

    async def _merge(self, twin_id: Any, into: _ThingState) -> None:
        """Fold a duplicate Thing (two writers created the same entity) into the kept one: its
        Datastreams move over, or their Observations do where the kept Thing has the Datastream
        (an Observation the kept one already holds is deleted instead); then the twin is deleted."""
        log.warning("Thing %r duplicates %r (same NGSI-LD id): merging it", twin_id, into.iot_id)
        streams = await self._list(entity_path("Things", twin_id, "/Datastreams"), {"$select": "id,name"}, "Datastreams")
        for ds in streams:
            name, ds_id = ds.get("name"), ds["@iot.id"]
            target = into.streams.get(name) if isinstance(name, str) else None
            if target is None:
                await self._call("PATCH", entity_path("Datastreams", ds_id), what="move Datastream",
                                 json={"Thing": {"@iot.id": into.iot_id}})
                if isinstance(name, str):
                    into.streams[name] = ds_id
                continue
            observations = await self._list(entity_path("Datastreams", ds_id, "/Observations"),
                                            {"$select": "id,phenomenonTime,resultTime,result"}, "Observations")
            for obs in observations:
                text = obs.get("resultTime") or obs.get("phenomenonTime")
                when = parse_time(str(text).split("/")[-1])
                probe = _Pending("", target, Row(name, iso_ms(when), obs.get("result")), when)
                if await self._exists(probe):
                    await self._call("DELETE", entity_path("Observations", obs["@iot.id"]), what="delete duplicate",
                                     ok=(200, 204, 404))
                else:
                    await self._call("PATCH", entity_path("Observations", obs["@iot.id"]), what="move Observation",
                                     json={"Datastream": {"@iot.id": target}})
            self._seen.pop(target, None)
        await self._call("DELETE", entity_path("Things", twin_id), what="delete merged Thing", ok=(200, 204, 404))
        self.stats["duplicates_merged"] += 1

    async def _current_location(self, thing_id: Any) -> dict[str, Any] | None:
        """The geometry of the newest HistoricalLocation, else of the Thing's Location."""
        hls = await self._list(entity_path("Things", thing_id, "/HistoricalLocations"),
                               {"$orderby": "time desc", "$top": 1, "$expand": "Locations($select=id,location)"},
                               "HistoricalLocations")
        for hl in hls[:1]:
            for loc in hl.get("Locations") or []:
                if isinstance(loc.get("location"), dict):
                    return loc["location"]
        locations = await self._list(entity_path("Things", thing_id, "/Locations"), {"$select": "id,location"}, "Locations")
        return locations[0].get("location") if len(locations) == 1 else None

    async def _create_thing(self, plan: ThingPlan) -> _ThingState:
        body = plan.thing_body()
        if plan.location is not None:
            body["Locations"] = [self._location_body(plan)]
        body["Datastreams"] = [await self._stream_body(plan, s) for s in plan.streams.values()]
        created = await self._call("POST", "/Things", json=body, what="create Thing (deep insert)")
        mine = self._created_id(created, "Things")
        self.stats["things_created"] += 1
        keep = await self._settle_duplicates("Things", "/Things", f"name eq {odata_literal(plan.entity_id)}", mine, "Things")
        if keep != mine:
            state = await self._load_thing(plan)
            if state is not None:
                return state
        state = _ThingState(keep, properties=plan.properties, description=plan.description, verify=True)
        for ds in await self._list(entity_path("Things", keep, "/Datastreams"), {"$select": "id,name"}, "Datastreams"):
            if isinstance(ds.get("name"), str) and ds["name"] not in state.streams:
                state.streams[ds["name"]] = ds["@iot.id"]
                self._seen.setdefault(ds["@iot.id"], _Seen())  # new: nothing written yet
        if plan.location is not None:
            state.location = plan.location
            await self._record_history(plan, keep)
        return state

    async def _create_stream(self, plan: ThingPlan, state: _ThingState, stream: StreamSpec) -> Any:
        body = await self._stream_body(plan, stream)
        body["Thing"] = {"@iot.id": state.iot_id}
        created = await self._call("POST", "/Datastreams", json=body, what="create Datastream")
        mine = self._created_id(created, "Datastreams")
        self.stats["datastreams_created"] += 1
        keep = await self._settle_duplicates("Datastreams", entity_path("Things", state.iot_id, "/Datastreams"),
                                             f"name eq {odata_literal(stream.key)}", mine, "Datastreams")
        if keep == mine:
            self._seen.setdefault(keep, _Seen())
        return keep

    async def _move(self, plan: ThingPlan, state: _ThingState) -> None:
        """A new Location linked to the Thing, and its HistoricalLocation."""
        body = self._location_body(plan)
        body["Things"] = [{"@iot.id": state.iot_id}]
        created = await self._call("POST", "/Locations", json=body, what="create Location")
        location_id = self._created_id(created, "Locations")
        await self._record_history(plan, state.iot_id, location_id)
        state.location = plan.location
        self.stats["locations_moved"] += 1

    async def _record_history(self, plan: ThingPlan, thing_id: Any, location_id: Any = None) -> None:
        """Create the HistoricalLocation unless the server made one itself (FROST does when a
        Location is linked to a Thing; django-ogc-sensorthings 1.2.0 does not)."""
        if location_id is None:
            locations = await self._list(entity_path("Things", thing_id, "/Locations"), {"$select": "id"}, "Locations")
            if not locations:
                return
            location_id = locations[0]["@iot.id"]
        existing = await self._list(entity_path("Locations", location_id, "/HistoricalLocations"),
                                    {"$select": "id", "$top": 1}, "HistoricalLocations")
        if existing:
            return
        await self._call("POST", "/HistoricalLocations", what="create HistoricalLocation",
                         json={"time": plan.location_time, "Thing": {"@iot.id": thing_id},
                               "Locations": [{"@iot.id": location_id}]})

    # --- observations ---------------------------------------------------------------------------

    async def _seen_for(self, ds_id: Any) -> _Seen:
        seen = self._seen.get(ds_id)
        if seen is None:
            newest = await self._list(entity_path("Datastreams", ds_id, "/Observations"),
                                      {"$orderby": "resultTime desc", "$top": 1,
                                       "$select": "id,resultTime,phenomenonTime,result"}, "Observations")
            seen = _Seen()
            for obs in newest[:1]:
                text = obs.get("resultTime") or obs.get("phenomenonTime")
                if isinstance(text, str):
                    try:
                        seen.add(parse_time(text.split("/")[-1]), obs.get("result"))
                    except ValueError:
                        pass
            self._seen[ds_id] = seen
        return seen

    async def _drop_written(self, pending: list[_Pending]) -> list[_Pending]:
        """Leave out rows the Datastream already holds (same phenomenonTime, same result)."""
        unknown = {p.ds_id for p in pending if p.ds_id not in self._seen}

        async def load(ds_id: Any) -> None:
            try:
                await self._seen_for(ds_id)
            except StaTransient:
                pass

        await asyncio.gather(*(load(ds_id) for ds_id in unknown))  # once per Datastream per process
        out: list[_Pending] = []
        batch_keys: set[tuple[Any, datetime, bytes]] = set()
        for p in pending:
            key = (p.ds_id, _second(p.when), _result_key(p.row.result))
            if key in batch_keys:
                self.stats["observations_skipped"] += 1
                continue
            try:
                seen = await self._seen_for(p.ds_id)
            except StaTransient:
                seen = _Seen()  # cannot tell: write it (at-least-once)
            if seen.holds(p.when, p.row.result):
                self.stats["observations_skipped"] += 1
                continue
            if seen.maybe_on_server(p.when) and await self._exists(p):
                seen.add(p.when, p.row.result)
                self.stats["observations_skipped"] += 1
                continue
            batch_keys.add(key)
            out.append(p)
        return out

    async def _exists(self, p: _Pending) -> bool:
        start = _second(p.when)
        window = f"resultTime ge {iso_ms(start)} and resultTime lt {iso_ms(start + timedelta(seconds=1))}"
        try:
            found = await self._list(entity_path("Datastreams", p.ds_id, "/Observations"),
                                     {"$filter": window, "$top": 100, "$select": "id,result"}, "Observations")
        except (StaTransient, StaRejected):
            return False
        wanted = _result_key(p.row.result)
        return any(_result_key(o.get("result")) == wanted for o in found)

    def _observation(self, p: _Pending) -> dict[str, Any]:
        body = {"phenomenonTime": p.row.time, "resultTime": p.row.time, "result": p.row.result,
                "Datastream": {"@iot.id": p.ds_id}}
        if p.feature is not None:
            body["FeatureOfInterest"] = {"@iot.id": p.feature}
        return body

    def _written(self, p: _Pending) -> None:
        self._seen.setdefault(p.ds_id, _Seen()).add(p.when, p.row.result)
        self.stats["observations_written"] += 1

    async def _write_one_by_one(self, pending: Sequence[_Pending]) -> list[tuple[str, EntityFailure]]:
        failures: list[tuple[str, EntityFailure]] = []

        async def one(p: _Pending) -> None:
            try:
                await self._call("POST", "/Observations", json=self._observation(p), what="create Observation")
            except StaRejected as exc:
                failures.append((p.entity_id, await self._row_failure(p, exc.problem)))
                return
            except StaTransient as exc:
                self._seen.pop(p.ds_id, None)  # may or may not be written: ask the server next time
                failures.append((p.entity_id, EntityFailure(p.entity_id, exc.problem, True)))
                return
            except BrokerUnavailable:
                self._seen.pop(p.ds_id, None)
                raise
            self._written(p)

        await asyncio.gather(*(one(p) for p in pending))
        return failures

    async def _row_failure(self, p: _Pending, problem: ProblemDetails) -> EntityFailure:
        """A refused row: permanent, unless its Datastream or FeatureOfInterest is gone (deleted,
        server reset) — then the cached graph is forgotten and the entity is sent again."""
        checks = [("Datastreams", p.ds_id)] + ([("FeaturesOfInterest", p.feature)] if p.feature is not None else [])
        for collection, iot_id in checks:
            try:
                await self._call("GET", entity_path(collection, iot_id), params={"$select": "id"}, what=collection)
            except StaRejected:
                log.warning("%s %r of %s is gone from the server; finding the graph again", collection, iot_id,
                            p.entity_id)
                self._things.pop(p.entity_id, None)
                self._features.pop(p.entity_id, None)
                self._seen.pop(p.ds_id, None)
                return EntityFailure(p.entity_id, problem, True)
            except StaTransient:
                return EntityFailure(p.entity_id, problem, True)
        detail = f"{p.row.key} at {p.row.time} = {p.row.result!r:.80}: {problem.detail or problem.title}"
        return EntityFailure(p.entity_id, ProblemDetails(type=problem.type, title=problem.title, detail=detail,
                                                         status=problem.status), False)

    async def _write_data_array(self, pending: Sequence[_Pending]) -> list[tuple[str, EntityFailure]]:
        failures: list[tuple[str, EntityFailure]] = []
        for start in range(0, len(pending), self.batch_size):
            await self._create_observations(list(pending[start:start + self.batch_size]), failures)
        return failures

    @staticmethod
    def _data_array_body(rows: Sequence[_Pending]) -> tuple[list[dict[str, Any]], list[_Pending]]:
        """CreateObservations body, grouped by Datastream; the rows in the order of the answer."""
        groups: dict[Any, list[_Pending]] = {}
        for p in rows:
            groups.setdefault(p.ds_id, []).append(p)
        body, ordered = [], []
        for ds_id, members in groups.items():
            components = ["phenomenonTime", "resultTime", "result"]
            with_feature = members[0].feature is not None
            if with_feature:
                components.append("FeatureOfInterest/id")
            body.append({
                "Datastream": {"@iot.id": ds_id},
                "components": components,
                "dataArray@iot.count": len(members),
                "dataArray": [[p.row.time, p.row.time, p.row.result, *([p.feature] if with_feature else [])]
                              for p in members],
            })
            ordered.extend(members)
        return body, ordered

    async def _create_observations(self, rows: list[_Pending], failures: list[tuple[str, EntityFailure]]) -> None:
        if not rows:
            return
        body, ordered = self._data_array_body(rows)
        try:
            response = await self._call("POST", "/CreateObservations", json=body, what="CreateObservations",
                                        ok=(200, 201))
        except StaTransient as exc:
            for p in ordered:
                self._seen.pop(p.ds_id, None)
                failures.append((p.entity_id, EntityFailure(p.entity_id, exc.problem, True)))
            return
        except StaRejected as exc:
            # the whole request refused (FROST: 400 for a body it cannot read): find the row
            await self._bisect(ordered, exc.problem, failures)
            return
        except BrokerUnavailable:
            for p in ordered:
                self._seen.pop(p.ds_id, None)
            raise
        try:
            answer = response.json()
        except InvalidResponse:
            answer = None
        if not isinstance(answer, list) or len(answer) != len(ordered):
            problem = ProblemDetails(type=ERROR_TYPE + "Transient", title="CreateObservations: unexpected answer",
                                     detail=repr(answer)[:300], status=response.status)
            for p in ordered:
                self._seen.pop(p.ds_id, None)
                failures.append((p.entity_id, EntityFailure(p.entity_id, problem, True)))
            return
        errors = [isinstance(a, str) and a.lower().startswith("error") for a in answer]
        if all(errors) and len(ordered) > 1:
            # django-ogc-sensorthings: one bad row fails every row and stores nothing
            await self._bisect(ordered, None, failures)
            return
        for p, failed, text in zip(ordered, errors, answer):
            if not failed:
                self._written(p)
                continue
            # FROST: "error <reason>" for this row only, the others are stored
            reason = text[len("error"):].strip(" :") if isinstance(text, str) else ""
            if not reason:  # no reason given: posting the row alone makes the server say it
                await self._write_one(p, failures)
                continue
            problem = ProblemDetails(type=ERROR_TYPE + "Rejected", title="CreateObservations: row refused",
                                     detail=reason, status=response.status)
            failures.append((p.entity_id, await self._row_failure(p, problem)))

    async def _bisect(self, rows: list[_Pending], problem: ProblemDetails | None,
                      failures: list[tuple[str, EntityFailure]]) -> None:
        if len(rows) == 1:
            await self._write_one(rows[0], failures)
            return
        middle = len(rows) // 2
        await self._create_observations(rows[:middle], failures)
        await self._create_observations(rows[middle:], failures)

    async def _write_one(self, p: _Pending, failures: list[tuple[str, EntityFailure]]) -> None:
        failures.extend(await self._write_one_by_one([p]))


__all__ = ["SensorThingsBackend", "StaRejected", "StaTransient", "entity_path", "odata_literal", "problem_from"]

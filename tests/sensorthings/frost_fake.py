"""An in-memory SensorThings service that answers as FROST-Server does, where FROST differs from
django-ogc-sensorthings. Each behaviour names the FROST-Server file that records it
(FraunhoferIOSB/FROST-Server at commit 99b36f68ad224d71c85154b9c3a239fa039d4b08; summary in
docs/backends/sensorthings.md):

* ids are integers, paths ``Things(7)`` (default ``persistence.idGenerationMode``);
* errors: ``{"type": "error", "code": N, "message": "…"}`` — Service.java ``jsonResponse``;
* root document ``serverSettings.conformance`` lists
  ``…/req/data-array/data-array`` — PluginResultFormatDataArray.java ``REQUIREMENT_DATA_ARRAY``;
* ``CreateObservations``: 201 with one entry per row, the self link or ``"error <message>"`` for
  that row only; the other rows are stored — ServiceDataArray.java ``handleDataArrayItems``,
  DataArrayTests.java ``test03PostDataArray``;
* a missing linked entity: ``No such entity '<Type>' with id <pk>`` — EntityFactories.java;
* an Observation without FeatureOfInterest whose Thing has no Location:
  ``No FeatureOfInterest provided, and none can be generated.`` — TableImpObservations.java;
* results of any JSON type are stored (RESULT_NUMBER / RESULT_STRING / RESULT_JSON columns) —
  TableImpObservations.java;
* a Thing inserted with Locations, and a Location inserted with Things, get a HistoricalLocation
  at server time, and the Thing's older Locations are unlinked — HookPrePostInsertUpdateThing.java,
  HookPrePostInsertUpdateLocation.java; a HistoricalLocation newer than all others relinks the
  Thing's Locations — HookPostInsertHistLoc.java, AdditionalTests.java ``test03HistoricalLocationThing``.

Only what the stadtlink writer uses is implemented (plain ``eq`` filters, a time window on
``resultTime``, ``$orderby`` on one time field, ``$top``/``$skip``, ``$expand`` one level).
"""

from __future__ import annotations

import itertools
import re
from collections import Counter
from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from stadtlink.adapters.core.timeutil import parse_time

BASE = "/FROST-Server/v1.1"
CORE = "http://www.opengis.net/spec/iot_sensing/1.1/req/"
DATA_ARRAY = CORE + "data-array/data-array"
COLLECTIONS = ("Things", "Locations", "HistoricalLocations", "Datastreams", "Sensors", "ObservedProperties",
               "Observations", "FeaturesOfInterest")
SINGULAR = {"Things": "Thing", "Locations": "Location", "HistoricalLocations": "HistoricalLocation",
            "Datastreams": "Datastream", "Sensors": "Sensor", "ObservedProperties": "ObservedProperty",
            "Observations": "Observation", "FeaturesOfInterest": "FeatureOfInterest"}
NUMBERED = re.compile(r"\(\d+\)")
PATH = re.compile(r"^/(?P<coll>\w+)(?:\((?P<id>\d+)\))?(?:/(?P<nav>\w+))?/?$")


class FrostError(Exception):
    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def no_such(collection: str, iot_id: Any) -> FrostError:
    return FrostError(400, f"No such entity '{SINGULAR[collection]}' with id [{iot_id}]")


class FakeFrost:
    def __init__(self, *, data_array: bool = True, authorization: str | None = None) -> None:
        self.data_array = data_array
        # the Authorization header FROST's auth provider (Basic, Keycloak) or a proxy in front expects
        # (FROST: docs/settings/auth.md); 401 otherwise
        self.authorization = authorization
        self.ids = itertools.count(1)
        self.store: dict[str, dict[int, dict[str, Any]]] = {c: {} for c in COLLECTIONS}
        self.thing_locations: set[tuple[int, int]] = set()
        self.requests: Counter[str] = Counter()
        self.url = ""

    # --- model ----------------------------------------------------------------------------------

    def _new(self, collection: str, fields: dict[str, Any]) -> int:
        iot_id = next(self.ids)
        self.store[collection][iot_id] = {"@iot.id": iot_id, **fields}
        return iot_id

    def _ref(self, collection: str, value: Any) -> int:
        """A linked entity: ``{"@iot.id": n}`` (must exist) or an inline one (created)."""
        if not isinstance(value, dict):
            raise FrostError(400, f"Invalid {SINGULAR[collection]}")
        if "@iot.id" in value:
            iot_id = value["@iot.id"]
            if iot_id not in self.store[collection]:
                raise no_such(collection, iot_id)
            return iot_id
        return self.create(collection, value)

    def _history(self, thing: int, locations: list[int], time: str) -> int:
        return self._new("HistoricalLocations", {"time": time, "_thing": thing, "_locations": list(locations)})

    @staticmethod
    def _now() -> str:
        return datetime.now(UTC).isoformat().replace("+00:00", "Z")

    def create(self, collection: str, body: dict[str, Any]) -> int:
        plain = {k: v for k, v in body.items() if k[:1].islower()}
        if collection == "Things":
            iot_id = self._new("Things", plain)
            locations = [self._ref("Locations", loc) for loc in body.get("Locations", [])]
            for loc in locations:
                self.thing_locations.add((iot_id, loc))
            if locations:  # HookPrePostInsertUpdateThing.postInsertIntoDatabase
                self._history(iot_id, locations, self._now())
            for ds in body.get("Datastreams", []):
                self.create("Datastreams", {**ds, "Thing": {"@iot.id": iot_id}})
            return iot_id
        if collection == "Datastreams":
            links = {"_thing": self._ref("Things", body.get("Thing")),
                     "_sensor": self._ref("Sensors", body.get("Sensor")),
                     "_op": self._ref("ObservedProperties", body.get("ObservedProperty"))}
            return self._new("Datastreams", {**plain, **links})
        if collection == "Locations":
            things = [self._ref("Things", t) for t in body.get("Things", [])]
            iot_id = self._new("Locations", plain)
            for thing in things:  # HookPrePostInsertUpdateLocation: unlink the old ones, record history
                self.thing_locations = {(t, loc) for t, loc in self.thing_locations if t != thing}
                self.thing_locations.add((thing, iot_id))
                self._history(thing, [iot_id], self._now())
            return iot_id
        if collection == "HistoricalLocations":
            thing = self._ref("Things", body.get("Thing"))
            locations = [self._ref("Locations", loc) for loc in body.get("Locations", [])]
            newer = [h for h in self.store["HistoricalLocations"].values()
                     if h["_thing"] == thing and parse_time(h["time"]) > parse_time(body["time"])]
            iot_id = self._history(thing, locations, body["time"])
            if not newer:  # HookPostInsertHistLoc: the newest one sets the Thing's Locations
                self.thing_locations = {(t, loc) for t, loc in self.thing_locations if t != thing}
                self.thing_locations |= {(thing, loc) for loc in locations}
            return iot_id
        if collection == "Observations":
            ds = self._ref("Datastreams", body.get("Datastream"))
            if "FeatureOfInterest" in body:
                foi = self._ref("FeaturesOfInterest", body["FeatureOfInterest"])
            else:
                thing = self.store["Datastreams"][ds]["_thing"]
                locations = [loc for t, loc in self.thing_locations if t == thing]
                if not locations:
                    raise FrostError(400, "No FeatureOfInterest provided, and none can be generated.")
                foi = self._new("FeaturesOfInterest", {"name": "generated", "feature":
                                                       self.store["Locations"][locations[0]]["location"]})
            return self._new("Observations", {**plain, "_ds": ds, "_foi": foi})
        return self._new(collection, plain)

    def delete(self, collection: str, iot_id: int) -> None:
        if self.store[collection].pop(iot_id, None) is None:
            raise FrostError(404, "Nothing found.")
        if collection == "Things":
            for ds in [d for d, v in self.store["Datastreams"].items() if v["_thing"] == iot_id]:
                self.delete("Datastreams", ds)
            for hl in [h for h, v in self.store["HistoricalLocations"].items() if v["_thing"] == iot_id]:
                del self.store["HistoricalLocations"][hl]
            self.thing_locations = {(t, loc) for t, loc in self.thing_locations if t != iot_id}
        if collection == "Datastreams":
            for obs in [o for o, v in self.store["Observations"].items() if v["_ds"] == iot_id]:
                del self.store["Observations"][obs]

    def related(self, collection: str, iot_id: int, nav: str) -> list[dict[str, Any]]:
        s = self.store
        if collection == "Things" and nav == "Datastreams":
            return [v for v in s["Datastreams"].values() if v["_thing"] == iot_id]
        if collection == "Things" and nav == "Locations":
            return [s["Locations"][loc] for t, loc in sorted(self.thing_locations) if t == iot_id]
        if collection == "Things" and nav == "HistoricalLocations":
            return [v for v in s["HistoricalLocations"].values() if v["_thing"] == iot_id]
        if collection == "Locations" and nav == "HistoricalLocations":
            return [v for v in s["HistoricalLocations"].values() if iot_id in v["_locations"]]
        if collection == "HistoricalLocations" and nav == "Locations":
            return [s["Locations"][loc] for loc in s["HistoricalLocations"][iot_id]["_locations"]]
        if collection == "Datastreams" and nav == "Observations":
            return [v for v in s["Observations"].values() if v["_ds"] == iot_id]
        raise FrostError(400, f"Unsupported path {collection}/{nav}")

    def observations(self, thing_name: str, stream: str) -> list[dict[str, Any]]:
        thing = next(t for t in self.store["Things"].values() if t["name"] == thing_name)
        ds = next(d for d in self.related("Things", thing["@iot.id"], "Datastreams") if d["name"] == stream)
        return self.related("Datastreams", ds["@iot.id"], "Observations")

    # --- HTTP -----------------------------------------------------------------------------------

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_route("*", BASE + "{tail:.*}", self.handle)
        return app

    def _link(self, collection: str, iot_id: int) -> str:
        return f"{self.url}/{collection}({iot_id})"

    def _render(self, collection: str, entity: dict[str, Any], expand: dict[str, str | None]) -> dict[str, Any]:
        out = {k: v for k, v in entity.items() if not k.startswith("_")}
        out["@iot.selfLink"] = self._link(collection, entity["@iot.id"])
        for nav in expand:
            target = "Locations" if nav == "Locations" else nav
            out[nav] = [{k: v for k, v in e.items() if not k.startswith("_")}
                        for e in self.related(collection, entity["@iot.id"], nav)]
            assert target in COLLECTIONS
        return out

    @staticmethod
    def _expand(text: str | None) -> dict[str, str | None]:
        if not text:
            return {}
        name = text.split("(", 1)[0]
        return {name: text[len(name):] or None}

    @staticmethod
    def _matches(entity: dict[str, Any], flt: str | None) -> bool:
        if not flt:
            return True
        eq = re.fullmatch(r"(\w+) eq '((?:[^']|'')*)'", flt)
        if eq:
            return entity.get(eq.group(1)) == eq.group(2).replace("''", "'")
        window = re.fullmatch(r"resultTime ge (\S+) and resultTime lt (\S+)", flt)
        if window:
            when = parse_time(entity["resultTime"])
            return parse_time(window.group(1)) <= when < parse_time(window.group(2))
        raise FrostError(400, f"Unsupported filter {flt}")

    async def handle(self, request: web.Request) -> web.Response:
        tail = request.match_info["tail"]
        shape = NUMBERED.sub("(n)", tail) or "/"
        self.requests[f"{request.method} {shape}"] += 1
        try:
            if self.authorization is not None and request.headers.get("Authorization") != self.authorization:
                raise FrostError(401, "Unauthorized")
            if tail in ("", "/"):
                conformance = [CORE + c for c in ("datamodel", "resource-path/resource-path-to-entities",
                                                  "request-data", "create-update-delete")]
                if self.data_array:
                    conformance.append(DATA_ARRAY)
                return web.json_response({"value": [{"name": c, "url": f"{self.url}/{c}"} for c in COLLECTIONS],
                                          "serverSettings": {"conformance": conformance}})
            if tail == "/CreateObservations" and request.method == "POST":
                if not self.data_array:
                    raise FrostError(404, "Nothing found.")
                return await self._create_observations(request)
            m = PATH.match(tail)
            if not m or m.group("coll") not in COLLECTIONS:
                raise FrostError(404, "Nothing found.")
            collection, raw_id, nav = m.group("coll"), m.group("id"), m.group("nav")
            iot_id = int(raw_id) if raw_id else None
            if request.method == "POST" and iot_id is None:
                created = self.create(collection, await request.json())
                return web.json_response(self._render(collection, self.store[collection][created], {}), status=201,
                                         headers={"Location": self._link(collection, created)})
            if request.method == "DELETE" and iot_id is not None:
                self.delete(collection, iot_id)
                return web.Response(status=200)
            if request.method == "PATCH" and iot_id is not None and not nav:
                if iot_id not in self.store[collection]:
                    raise FrostError(404, "Nothing found.")
                body = await request.json()
                self.store[collection][iot_id].update({k: v for k, v in body.items() if k[:1].islower()})
                return web.json_response(self._render(collection, self.store[collection][iot_id], {}))
            if request.method == "GET":
                return self._get(request, collection, iot_id, nav)
            raise FrostError(405, "Method not allowed")
        except FrostError as exc:
            return web.json_response({"type": "error", "code": exc.code, "message": exc.message}, status=exc.code)

    def _get(self, request: web.Request, collection: str, iot_id: int | None, nav: str | None) -> web.Response:
        q = request.query
        expand = self._expand(q.get("$expand"))
        if iot_id is not None and iot_id not in self.store[collection]:
            raise FrostError(404, "Nothing found.")
        if iot_id is not None and not nav:
            return web.json_response(self._render(collection, self.store[collection][iot_id], expand))
        if nav:
            items, target = self.related(collection, iot_id, nav), nav
        else:
            items, target = list(self.store[collection].values()), collection
        items = [e for e in items if self._matches(e, q.get("$filter"))]
        order = q.get("$orderby")
        if order:
            field, _, direction = order.partition(" ")
            items.sort(key=lambda e: parse_time(e[field]), reverse=direction == "desc")
        else:
            items.sort(key=lambda e: e["@iot.id"])
        skip, top = int(q.get("$skip", 0)), int(q.get("$top", 100))
        page = items[skip:skip + top]
        body: dict[str, Any] = {"value": [self._render(target, e, expand) for e in page]}
        if skip + top < len(items):
            body["@iot.nextLink"] = f"{self.url}/{target}?$skip={skip + top}"
        return web.json_response(body)

    async def _create_observations(self, request: web.Request) -> web.Response:
        try:
            groups = await request.json()
        except ValueError:
            raise FrostError(400, "Failed to parse request body") from None
        links: list[str] = []
        for group in groups:
            components = group["components"]
            for row in group["dataArray"]:
                fields = dict(zip(components, row))
                body: dict[str, Any] = {"Datastream": group["Datastream"]}
                for name in ("phenomenonTime", "resultTime", "result"):
                    if name in fields:
                        body[name] = fields[name]
                if "FeatureOfInterest/id" in fields:
                    body["FeatureOfInterest"] = {"@iot.id": fields["FeatureOfInterest/id"]}
                try:
                    links.append(self._link("Observations", self.create("Observations", body)))
                except FrostError as exc:  # ServiceDataArray: "error " + message, this row only
                    links.append("error " + exc.message)
        return web.json_response(links, status=201)


async def start_fake_frost(**kwargs: Any) -> tuple[FakeFrost, web.AppRunner]:
    fake = FakeFrost(**kwargs)
    runner = web.AppRunner(fake.app())
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    fake.url = f"http://127.0.0.1:{port}{BASE}"
    return fake, runner

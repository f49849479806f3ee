"""The parking family's simulators for ``stadtlink demo`` (registered as ``ADAPTER.demo``).

* spot sensors: Bosch TPS110 and Nwave NPS405 occupancy frames — cars arrive and leave;
* car-park feeds: a DATEX II v2.3 ParkingStatusPublication with its ParkingTablePublication
  (static data), and a ParkAPI v3 document, served where the example config polls them.
"""
from __future__ import annotations

import math
import random
import time
from datetime import datetime, timezone
from xml.sax.saxutils import escape

from aiohttp import web

from stadtlink.adapters.core.adapter import DemoSimulators

NS = "http://datex2.eu/schema/2/2_0"
XSI = "http://www.w3.org/2001/XMLSchema-instance"

#: Demo garages (the ids are DATEX parkingRecord ids; the example config prefixes them with "aachen-").
DATEX_SITES = [
    {"id": "P1", "name": "P01-Eurogress", "capacity": 560, "lat": 50.780552, "lon": 6.0927987, "layout": "multiStorey"},
    {"id": "P2", "name": "P02-Dom/Hof", "capacity": 240, "lat": 50.774800, "lon": 6.0838000, "layout": "underground"},
    {"id": "P3", "name": "P03-Theater", "capacity": 410, "lat": 50.772300, "lon": 6.0890000, "layout": "multiStorey"},
]
PARKAPI_LOTS = [
    {"uid": "N1", "name": "Parkhaus N1", "lat": 49.4893, "lon": 8.4649, "capacity": 480, "type": "CAR_PARK"},
    {"uid": "Q6", "name": "Q6 Q7 Tiefgarage", "lat": 49.4853, "lon": 8.4710, "capacity": 2400, "type": "UNDERGROUND"},
]


def _occupied(capacity: int, elapsed: float, phase: float, rnd: random.Random) -> int:
    share = 0.55 + 0.35 * math.sin(2 * math.pi * (elapsed / 300.0 + phase)) + rnd.uniform(-0.03, 0.03)
    return max(0, min(capacity, round(capacity * share)))


def _stamp(ts: float) -> str:
    return datetime.fromtimestamp(ts, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def _publication(name: str, body: str, ts: float) -> str:
    return (f'<ns2:d2LogicalModel xmlns:ns2="{NS}" modelBaseVersion="2"><ns2:exchange><ns2:supplierIdentification>'
            f'<ns2:country>de</ns2:country><ns2:nationalIdentifier>DE-STADTLINK-DEMO</ns2:nationalIdentifier>'
            f'</ns2:supplierIdentification></ns2:exchange><ns2:payloadPublication xmlns:xsi="{XSI}" lang="de" '
            f'xsi:type="ns2:GenericPublication"><ns2:publicationTime>{_stamp(ts)}</ns2:publicationTime>'
            f'<ns2:publicationCreator><ns2:country>de</ns2:country><ns2:nationalIdentifier>DE-STADTLINK-DEMO'
            f'</ns2:nationalIdentifier></ns2:publicationCreator><ns2:genericPublicationName>{name}'
            f'</ns2:genericPublicationName><ns2:genericPublicationExtension>{body}</ns2:genericPublicationExtension>'
            f'</ns2:payloadPublication></ns2:d2LogicalModel>')


class ParkingFeeds:
    def __init__(self, seed: int = 7, clock=time.time):
        self._rnd = random.Random(seed)
        self._clock = clock
        self.t0 = clock()

    def datex_static(self) -> str:
        records = "".join(
            f'<ns2:parkingRecord id="{s["id"]}" version="1" xsi:type="ns2:UrbanParkingSite"><ns2:parkingName>'
            f'<ns2:values><ns2:value lang="de">{escape(s["name"])}</ns2:value></ns2:values></ns2:parkingName>'
            f'<ns2:parkingNumberOfSpaces>{s["capacity"]}</ns2:parkingNumberOfSpaces>'
            f'<ns2:parkingLocation xsi:type="ns2:Point"><ns2:pointByCoordinates><ns2:pointCoordinates>'
            f'<ns2:latitude>{s["lat"]}</ns2:latitude><ns2:longitude>{s["lon"]}</ns2:longitude></ns2:pointCoordinates>'
            f'</ns2:pointByCoordinates></ns2:parkingLocation><ns2:parkingLayout>{s["layout"]}</ns2:parkingLayout>'
            f'<ns2:urbanParkingSiteType>offStreetParking</ns2:urbanParkingSiteType></ns2:parkingRecord>'
            for s in DATEX_SITES)
        body = (f'<ns2:parkingTablePublication><ns2:headerInformation><ns2:confidentiality>noRestriction'
                f'</ns2:confidentiality><ns2:informationStatus>real</ns2:informationStatus></ns2:headerInformation>'
                f'<ns2:parkingTable id="demo" version="1">{records}</ns2:parkingTable></ns2:parkingTablePublication>')
        return _publication("ParkingTablePublication", body, self.t0)

    def datex_status(self) -> str:
        now = self._clock()
        elapsed = now - self.t0
        records = []
        for i, s in enumerate(DATEX_SITES):
            occ = _occupied(s["capacity"], elapsed, i / 3, self._rnd)
            vacant = s["capacity"] - occ
            status = "full" if vacant == 0 else ("almostFull" if vacant < s["capacity"] * 0.05 else "spacesAvailable")
            records.append(
                f'<ns2:parkingRecordStatus xsi:type="ns2:ParkingSiteStatus"><ns2:parkingRecordReference id="{s["id"]}" '
                f'targetClass="ParkingRecord" version="1"/><ns2:parkingStatusOriginTime>{_stamp(now - 5)}'
                f'</ns2:parkingStatusOriginTime><ns2:parkingOccupancy><ns2:parkingNumberOfVacantSpaces>{vacant}'
                f'</ns2:parkingNumberOfVacantSpaces><ns2:parkingNumberOfOccupiedSpaces>{occ}'
                f'</ns2:parkingNumberOfOccupiedSpaces><ns2:parkingOccupancy>{round(100 * occ / s["capacity"], 2)}'
                f'</ns2:parkingOccupancy></ns2:parkingOccupancy><ns2:parkingSiteStatus>{status}</ns2:parkingSiteStatus>'
                f'<ns2:parkingSiteOpeningStatus>open</ns2:parkingSiteOpeningStatus></ns2:parkingRecordStatus>')
        body = (f'<ns2:parkingStatusPublication><ns2:headerInformation><ns2:confidentiality>noRestriction'
                f'</ns2:confidentiality><ns2:informationStatus>real</ns2:informationStatus></ns2:headerInformation>'
                f'{"".join(records)}</ns2:parkingStatusPublication>')
        return _publication("ParkingStatusPublication", body, now)

    def parkapi(self) -> dict:
        now = self._clock()
        elapsed = now - self.t0
        stamp = datetime.fromtimestamp(now - 10, timezone.utc).astimezone().isoformat(timespec="seconds")
        items = []
        for i, lot in enumerate(PARKAPI_LOTS):
            occ = _occupied(lot["capacity"], elapsed, 0.5 + i / 4, self._rnd)
            items.append({"uid": lot["uid"], "name": lot["name"], "lat": str(lot["lat"]), "lon": str(lot["lon"]),
                          "type": lot["type"], "has_realtime_data": True, "capacity": lot["capacity"],
                          "realtime_capacity": lot["capacity"], "realtime_free_capacity": lot["capacity"] - occ,
                          "realtime_opening_status": "OPEN", "realtime_data_updated_at": stamp})
        return {"items": items}

    def add_routes(self, app: web.Application) -> None:
        async def static(_):
            return web.Response(text=self.datex_static(), content_type="application/xml")

        async def status(_):
            return web.Response(text=self.datex_status(), content_type="application/xml")

        async def parkapi(_):
            return web.json_response(self.parkapi())

        app.router.add_get("/datex/static.xml", static)
        app.router.add_get("/datex/status.xml", status)
        app.router.add_get("/parkapi/mannheim.json", parkapi)


# ------------------------------------------------------------------------------------ spot sensors

def encode_bosch(state: dict, rnd: random.Random, now: float) -> tuple[bytes, int]:
    """Bosch TPS110 occupancy frame (fPort 1); the spot changes state now and then."""
    if rnd.random() < 0.35:
        state["occupied"] = not state.get("occupied", False)
    return bytes([1 if state.get("occupied") else 0]), 1


def encode_nwave(state: dict, rnd: random.Random, now: float) -> tuple[bytes, int]:
    """Nwave NPS405 occupancy frame (fPort 1: bit 0 occupied, the rest a counter)."""
    if rnd.random() < 0.35:
        state["occupied"] = not state.get("occupied", False)
    return bytes([(1 if state.get("occupied") else 0) | (min(89, rnd.randint(1, 60)) << 1)]), 1


#: where the example config polls the feeds (rewritten by the demo to the simulator's address)
FEEDS_NETLOC = "127.0.0.1:8601"


async def start_demo_feeds(demo) -> None:
    app = web.Application()
    ParkingFeeds().add_routes(app)
    await demo.serve_http(app, replaces=FEEDS_NETLOC)


DEMO = DemoSimulators(
    devices={"bosch-tps110": lambda rec, fleet: (encode_bosch, 4.0),
             "nwave-nps405": lambda rec, fleet: (encode_nwave, 4.0)},
    services=start_demo_feeds,
)

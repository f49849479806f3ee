"""Entities as the adapters build them, and reading a SensorThings server back."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp

from stadtlink.adapters.core.entity import (
    datetime_prop,
    entity_id,
    geo_point,
    new_entity,
    prop,
    rel,
)

T0 = datetime(2026, 11, 29, 8, 0, 0, 123000, tzinfo=UTC)


def weather(ns: str, station: str = "ws-1", *, at: datetime = T0, lon: float = 10.78, lat: float = 52.42,
            temperature: float = 3.5) -> dict[str, Any]:
    """A WeatherObserved the climate adapter would write (three measured attributes)."""
    return new_entity(
        entity_id("WeatherObserved", ns, station), "WeatherObserved",
        name=prop(f"Station {station}"),
        location=geo_point(lon, lat),
        dateObserved=datetime_prop(at),
        temperature=prop(temperature, unit="CEL", observed_at=at),
        relativeHumidity=prop(0.81, unit="C62", observed_at=at),
        atmosphericPressure=prop(1013.2, unit="A97", observed_at=at),
        refDevice=rel(entity_id("Device", ns, station)),
    )


def parking_spot(ns: str, spot: str = "spot-1", *, at: datetime = T0, status: str = "occupied") -> dict[str, Any]:
    return new_entity(
        entity_id("ParkingSpot", ns, spot), "ParkingSpot",
        name=prop(f"Spot {spot}"), location=geo_point(10.781, 52.421), category=prop(["onStreet"]),
        status=prop(status, observed_at=at),
    )


def three_phase(ns: str, inverter: str = "inv-1", *, at: datetime = T0) -> dict[str, Any]:
    return new_entity(
        entity_id("ThreePhaseAcMeasurement", ns, inverter), "ThreePhaseAcMeasurement",
        name=prop(f"Inverter {inverter}"), location=geo_point(10.79, 52.43), dateObserved=datetime_prop(at),
        totalActivePower=prop(4200.0, unit="WTT", observed_at=at),
        phaseVoltage=prop({"L1": 231.2, "L2": 230.4, "L3": 229.9}, unit="VLT", observed_at=at),
    )


def later(minutes: int) -> datetime:
    return T0 + timedelta(minutes=minutes)


class Sta:
    """Reads a SensorThings service back (plain GETs, no stadtlink code)."""

    def __init__(self, url: str) -> None:
        self.url = url

    async def get(self, path: str, **params: Any) -> Any:
        query = {k: str(v) for k, v in params.items()}
        async with aiohttp.ClientSession() as session, session.get(self.url + path, params=query) as answer:
            assert answer.status == 200, (path, answer.status, await answer.text())
            return await answer.json()

    async def values(self, path: str, **params: Any) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        skip = 0
        while True:
            body = await self.get(path, **params, **({"$skip": skip} if skip else {}))
            out.extend(body["value"])
            if not body.get("@iot.nextLink") or not body["value"]:
                return out
            skip += len(body["value"])

    async def things(self, name: str) -> list[dict[str, Any]]:
        return await self.values("/Things", **{"$filter": f"name eq '{name}'"})

    async def thing(self, name: str) -> dict[str, Any]:
        found = await self.things(name)
        assert len(found) == 1, f"{len(found)} Things named {name}"
        return found[0]

    async def datastreams(self, thing_id: str) -> dict[str, dict[str, Any]]:
        streams = await self.values(f"/Things('{thing_id}')/Datastreams",
                                    **{"$expand": "ObservedProperty,Sensor"})
        return {d["name"]: d for d in streams}

    async def observations(self, datastream_id: str) -> list[dict[str, Any]]:
        return await self.values(f"/Datastreams('{datastream_id}')/Observations")

    async def count(self, collection: str) -> int:
        return len(await self.values("/" + collection, **{"$select": "id"}))

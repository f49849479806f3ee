"""``stadtlink demo --also-to``: the same city written to the local broker and to a second sink."""

from __future__ import annotations

import asyncio
import time

import pytest

from stadtlink.adapters.core.demo import build_parser
from stadtlink.adapters.core.demo.city import DemoCity, parse_also_to
from stadtlink.adapters.core.testing import free_port

from .servers import OrionV2Server


def test_also_to_spec():
    assert parse_also_to("http://o:1026") == {"name": "also", "kind": None, "url": "http://o:1026"}  # asked later
    assert parse_also_to("ngsi-v2+http://o:1026")["kind"] == "ngsi-v2"
    with pytest.raises(ValueError, match="unknown broker kind 'orion3'"):
        parse_also_to("orion3+http://o:1026")
    with pytest.raises(ValueError, match="not an http"):
        parse_also_to("scorpio+ftp://o")
    assert build_parser().parse_args(["--also-to", "ngsi-v2+http://o:1"]).also_to == "ngsi-v2+http://o:1"


async def test_parking_city_also_written_to_an_ngsi_v2_orion():
    """Given as a bare URL: the demo tells the classic Orion from its answers."""
    async with OrionV2Server() as orion:
        city = DemoCity(broker_port=free_port(), twin_port=free_port(), families=("parking",),
                        also_to=orion.url)
        await city.start()
        try:
            assert not city.failed, city.failed
            end = time.monotonic() + 20
            while time.monotonic() < end:
                types = {e["type"] for e in orion.store().values()}
                if {"ParkingSpot", "OffStreetParking"} <= types:
                    break
                await asyncio.sleep(0.2)
            for runner in city.runners.values():
                await runner.wait_idle(10)
            report = await city.report()
        finally:
            await city.stop()
    stored = orion.store()
    assert {"ParkingSpot", "OffStreetParking"} <= {e["type"] for e in stored.values()}
    # the same ids as in the NGSI-LD broker, in the v2 form
    spot = next(e for e in stored.values() if e["type"] == "ParkingSpot")
    assert spot["id"].startswith("urn:ngsi-ld:ParkingSpot:")
    assert spot["location"]["type"] == "geo:json"
    assert report["also_to"]["kind"] == "ngsi-v2"
    parking = report["adapters"]["parking"]
    assert parking["upserted"] > 0 and parking["also_written"] > 0
    assert report["entities"]["ParkingSpot"] > 0

"""Throughput of the local in-memory broker: batch upserts of 200 entities and queries.

Prints figures only (no pass/fail). Run: python benchmarks/local_broker.py [--entities 20000]
"""

from __future__ import annotations

import argparse
import asyncio
import time

import aiohttp

from stadtlink.broker_client.local_broker import running_broker

CTX = "https://raw.githubusercontent.com/smart-data-models/dataModel.Parking/master/context.jsonld"
LINK = {"Link": f'<{CTX}>; rel="http://www.w3.org/ns/json-ld#context"; type="application/ld+json"'}


def spot(i: int, status: str) -> dict:
    return {
        "id": f"urn:ngsi-ld:ParkingSpot:bench:{i}", "type": "ParkingSpot",
        "status": {"type": "Property", "value": status, "observedAt": "2024-05-01T10:00:00.000Z"},
        "name": {"type": "Property", "value": f"P-{i}"},
        "location": {"type": "GeoProperty", "value": {"type": "Point", "coordinates": [8.6 + i * 1e-5, 50.1]}},
        "refParkingSite": {"type": "Relationship", "object": "urn:ngsi-ld:ParkingSite:bench:1"},
    }


async def main(entities: int, batch: int) -> None:
    async with running_broker() as url, aiohttp.ClientSession() as http:
        base = url + "/ngsi-ld/v1"
        for round_, status in enumerate(("free", "occupied")):
            started = time.perf_counter()
            for start in range(0, entities, batch):
                body = [spot(i, status) for i in range(start, min(entities, start + batch))]
                async with http.post(f"{base}/entityOperations/upsert", json=body, headers=LINK,
                                     params={"options": "update"}) as r:
                    assert r.status in (201, 204), await r.text()
            elapsed = time.perf_counter() - started
            print(f"upsert round {round_ + 1}: {entities} entities in batches of {batch}: "
                  f"{elapsed:.2f} s, {entities / elapsed:.0f} entities/s")
        for label, params in (
                ("type, limit 100", {"type": "ParkingSpot", "limit": "100"}),
                ("type + q, count", {"type": "ParkingSpot", "q": 'status=="occupied"', "count": "true", "limit": "100"}),
                ("geo near 200 m", {"type": "ParkingSpot", "georel": "near;maxDistance==200", "geometry": "Point",
                                    "coordinates": "[8.6,50.1]", "limit": "100"}),
                ("type + id", {"type": "ParkingSpot", "id": f"urn:ngsi-ld:ParkingSpot:bench:{entities // 2}"}),
                ("type + idPattern", {"type": "ParkingSpot", "idPattern": "bench:[0-9]*7$", "limit": "100"}),
                ("type + q ~=", {"type": "ParkingSpot", "q": "name~=P-[0-9]*7$", "limit": "100"})):
            started = time.perf_counter()
            n = 20
            for _ in range(n):
                async with http.get(f"{base}/entities", params=params, headers=LINK) as r:
                    assert r.status == 200
                    await r.read()
            print(f"query {label}: {(time.perf_counter() - started) / n * 1000:.1f} ms per request")
    regex_costs(entities)


def regex_costs(entities: int) -> None:
    """Clients' regular expressions run on RE2 (linear time): its cost per match against Python's
    backtracking ``re`` for a benign pattern, and both on a catastrophic one."""
    import re

    from stadtlink.broker_client.local_broker.userregex import compile_user_regex

    ids = [f"urn:ngsi-ld:ParkingSpot:bench:{i}" for i in range(entities)]
    for name, rx in (("re", re.compile("bench:[0-9]*7$")), ("re2", compile_user_regex("bench:[0-9]*7$"))):
        started = time.perf_counter()
        hits = sum(1 for i in ids if rx.search(i))
        per = (time.perf_counter() - started) / len(ids) * 1e6
        print(f"regex {name}: {per:.2f} us per id ({hits} of {len(ids)} match)")
    subject = "urn:ngsi-ld:T:" + "a" * 22 + "!"
    for name, rx in (("re", re.compile("^(a+)+$")), ("re2", compile_user_regex("^(a+)+$"))):
        started = time.perf_counter()
        rx.search(subject[14:])
        print(f"regex {name} on ^(a+)+$ against 22 a and '!': {(time.perf_counter() - started) * 1000:.2f} ms "
              f"(each further 'a' doubles re's time)")


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--entities", type=int, default=20000)
    parser.add_argument("--batch", type=int, default=200)
    args = parser.parse_args()
    asyncio.run(main(args.entities, args.batch))

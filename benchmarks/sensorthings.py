"""SensorThings sink throughput against a real SensorThings server (django-ogc-sensorthings on
SQLite, started here on a free port, as in tests/sensorthings).

N weather stations (default 50) × R readings (default 10), three measured attributes each, written
in batches of B entities (default 50): prints first-sight seconds (graph creation), then
entities/s and observations/s for the following readings, with CreateObservations and one by one.

Run: python benchmarks/sensorthings.py [--stations 50] [--readings 10] [--batch 50]
Not a test: figures depend on the machine, its load and the server (SQLite serialises writes;
FROST on PostgreSQL behaves differently).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from sensorthings.conftest import SensorThingsServer
from sensorthings.helpers import later, weather

from stadtlink.broker_client.sensorthings import SensorThingsBackend


async def run(url: str, stations: int, readings: int, batch: int, data_array: bool) -> None:
    ns = "b" + uuid.uuid4().hex[:8]
    label = "CreateObservations" if data_array else "one by one"
    async with SensorThingsBackend(url, data_array=data_array, batch_size=500) as backend:
        first = [weather(ns, f"s{i}", temperature=float(i)) for i in range(stations)]
        started = time.perf_counter()
        for start in range(0, len(first), batch):
            result = await backend.write(first[start:start + batch])
            assert result.ok, result.failed[:1]
        first_s = time.perf_counter() - started
        rest = [weather(ns, f"s{i}", at=later(r), temperature=float(r)) for r in range(1, readings) for i in range(stations)]
        started = time.perf_counter()
        for start in range(0, len(rest), batch):
            result = await backend.write(rest[start:start + batch])
            assert result.ok, result.failed[:1]
        took = time.perf_counter() - started
    print(f"{label:>18}: first sight of {stations} stations {first_s:6.2f} s "
          f"({backend.stats['things_created']} Things); then {len(rest)} entities in {took:6.2f} s = "
          f"{len(rest) / took:7.1f} entities/s, {3 * len(rest) / took:7.1f} observations/s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stations", type=int, default=50)
    parser.add_argument("--readings", type=int, default=10)
    parser.add_argument("--batch", type=int, default=50)
    args = parser.parse_args()
    server = SensorThingsServer()
    server.start()
    try:
        for data_array in (True, False):
            asyncio.run(run(server.url, args.stations, args.readings, args.batch, data_array))
    finally:
        server.cleanup()


if __name__ == "__main__":
    main()

"""Upsert throughput of broker_client.NGSILDClient for batch sizes 1, 50 and 200.

Starts the local NGSI-LD broker (stadtlink.broker_client.local_broker) in-process on a free 127.0.0.1 port
(or uses --url to measure against a real broker), upserts realistic WeatherObserved entities
(normalized, observedAt + unitCode) with each batch size, and prints entities/s per size and the
ratio batch-200 / single as JSON. Client and in-process broker share one event loop and CPU, so
the figures are a lower bound for the client; the ratio is what matters.

A second series runs the same client against a bare HTTP sink (reads the body, answers 204) to
show the client's own cost: per request vs per entity, without any broker work.

    python benchmarks/client_upsert.py [--entities 2000] [--single 500] [--url http://host:1026]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import platform
import sys
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from aiohttp import web

from stadtlink.broker_client import NGSILDClient, RetryPolicy

CONTEXT = "https://raw.githubusercontent.com/smart-data-models/dataModel.Weather/master/context.jsonld"


def weather_entity(run: str, i: int) -> dict:
    observed = "2024-05-01T12:00:00.000Z"
    return {
        "id": f"urn:ngsi-ld:WeatherObserved:bench-{run}:{i:06d}",
        "type": "WeatherObserved",
        "temperature": {"type": "Property", "value": 12.5 + i % 10, "unitCode": "CEL", "observedAt": observed},
        "relativeHumidity": {"type": "Property", "value": 0.61, "unitCode": "P1", "observedAt": observed},
        "atmosphericPressure": {"type": "Property", "value": 1013.2, "unitCode": "A97", "observedAt": observed},
        "windSpeed": {"type": "Property", "value": 3.4, "unitCode": "MTS", "observedAt": observed},
        "dateObserved": {"type": "Property", "value": observed},
        "location": {"type": "GeoProperty", "value": {"type": "Point", "coordinates": [8.68 + i * 1e-5, 49.41]}},
        "refDevice": {"type": "Relationship", "object": f"urn:ngsi-ld:Device:bench-{run}:{i:06d}"},
    }


async def start_local_broker() -> tuple[web.AppRunner, str]:
    from stadtlink.broker_client.local_broker import create_app

    runner = web.AppRunner(create_app())
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    return runner, f"http://127.0.0.1:{port}"


async def start_sink() -> tuple[web.AppRunner, str]:
    """Bare HTTP endpoint: reads the whole body and answers 204 (what Orion-LD says when every
    entity existed). Measures the client, not a broker."""

    async def sink(request: web.Request) -> web.Response:
        await request.read()
        return web.Response(status=204)

    app = web.Application(client_max_size=2 * 1024 * 1024)
    app.router.add_post("/ngsi-ld/v1/entityOperations/upsert", sink)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    return runner, f"http://127.0.0.1:{port}"


async def series(url: str, single: int, entities: int) -> dict:
    runs = [await measure(url, 1, single), await measure(url, 50, entities), await measure(url, 200, entities)]
    return {"runs": runs, "ratio_batch200_vs_single": round(runs[2]["entities_per_s"] / runs[0]["entities_per_s"], 1)}


async def measure(url: str, batch_size: int, count: int) -> dict:
    run = uuid.uuid4().hex[:8]
    entities = [weather_entity(run, i) for i in range(count)]
    async with NGSILDClient(url, context=CONTEXT, batch_size=batch_size, retry=RetryPolicy(attempts=1)) as client:
        # warm-up: connection pool, broker code paths (not timed, other ids)
        await client.upsert([weather_entity(run + "w", i) for i in range(min(batch_size, 50))])
        started = time.perf_counter()
        result = await client.upsert(entities)
        elapsed = time.perf_counter() - started
    if result.failed:
        raise SystemExit(f"batch {batch_size}: {len(result.failed)} failed, first: {result.failed[0]}")
    return {
        "batch_size": batch_size,
        "entities": count,
        "requests": -(-count // batch_size),
        "seconds": round(elapsed, 3),
        "entities_per_s": round(count / elapsed, 1),
    }


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--entities", type=int, default=4000, help="entities per run for batch sizes 50 and 200")
    parser.add_argument("--single", type=int, default=600, help="entities for the batch-size-1 run")
    parser.add_argument("--url", help="measure against this broker instead of the in-process local broker")
    args = parser.parse_args()

    out: dict = {"python": platform.python_version()}
    if args.url:
        out["broker"] = {"url": args.url, **await series(args.url, args.single, args.entities)}
    else:
        runner, url = await start_local_broker()
        try:
            out["local_broker_in_process"] = await series(url, args.single, args.entities)
        finally:
            await runner.cleanup()
    runner, url = await start_sink()
    try:
        out["client_only_http_sink"] = await series(url, args.single, args.entities)
    finally:
        await runner.cleanup()
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    asyncio.run(main())

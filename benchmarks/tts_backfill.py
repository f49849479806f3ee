"""What the TTS Storage Integration backfill costs (issue 22): the live path's extra work per uplink
and how fast a catch-up hands stored uplinks to the pipeline.

All in one process on 127.0.0.1: the Storage API stand-in of the tests (tests/sources/tts_standins.py,
real aiohttp HTTP), a Pipeline with a memory outbox and the tests' time-series toy adapter
(decode 2 bytes, one WeatherObserved per uplink, Smart Data Models check on).

* **live**: N TTS uplinks through ``Pipeline.process`` as the MQTT source hands them over, without
  and with :meth:`TtsBackfill.note` after each (what ``network: tts`` adds per live uplink),
  alternating for ``--rounds`` rounds, in CPU seconds of this process (wall time on the shared
  machine varied ±50 % between rounds): the median of the per-round ratios.
* **catch-up**: N uplinks stored in the stand-in, one catch-up (``max_rate_per_s: 0``, pages of
  ``--page-size``) into the same pipeline: uplinks/s (wall), CPU µs per uplink including the
  stand-in's serving, and the ratio of the catch-up's wall rate to the live CPU rate; a second
  catch-up over the same records (all skipped as admitted already): records/s.
* peak RSS growth of the process over the whole run.

Run: ``python benchmarks/tts_backfill.py [--uplinks 5000] [--page-size 100] [--rounds 5]``. Prints one JSON
document. Not a test: compare the ratios of one run.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import resource
import statistics
import sys
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import orjson

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests" / "sources"))

from tts_standins import TOY_TS_ADAPTER, StorageStandIn, stored_uplink  # noqa: E402

from stadtlink.adapters.core.deadletter import MemoryDeadLetters  # noqa: E402
from stadtlink.adapters.core.metrics import Metrics  # noqa: E402
from stadtlink.adapters.core.outbox import MemoryOutbox  # noqa: E402
from stadtlink.adapters.core.pipeline import Pipeline  # noqa: E402
from stadtlink.adapters.core.reading import RawMessage  # noqa: E402
from stadtlink.adapters.core.registry import DeviceRegistry  # noqa: E402
from stadtlink.adapters.core.sources.tts import TtsConfig  # noqa: E402
from stadtlink.adapters.core.sources.tts_storage import TtsBackfill  # noqa: E402

UTC = timezone.utc
KEY = "NNSXS.BENCH"
DEVICES = 100


def _pipeline(n: int) -> Pipeline:
    registry = DeviceRegistry.load(inline=[{"id": f"dev-{i}", "lat": 52.4, "lon": 10.7} for i in range(DEVICES)])
    return Pipeline(TOY_TS_ADAPTER, namespace="bench", registry=registry, metrics=Metrics("bench"),
                    outbox=MemoryOutbox(max_length=4 * n + 10), deadletters=MemoryDeadLetters(), check="strict")


def _uplinks(app: str, n: int, start: int, base: datetime) -> list[tuple[str, dict]]:
    return [stored_uplink(app, f"dev-{i % DEVICES}", i + 1, base + timedelta(milliseconds=i),
                          (2000 + i % 1000).to_bytes(2, "big")) for i in range(start, start + n)]


async def _live(n: int, note: bool) -> float:
    app = "bench-live"
    base = datetime.now(UTC) - timedelta(hours=1)
    msgs = [(topic, orjson.dumps(doc)) for topic, doc in _uplinks(app, n, 0, base)]
    pipe = _pipeline(n)
    bf = TtsBackfill(TtsConfig(application_id=app, api_key=KEY), api_url="http://127.0.0.1:9", source_kind="mqtt",
                     name="bench", api_key=KEY)
    now = datetime.now(UTC)
    t0 = time.process_time()     # CPU of this process: other workers' load on the machine does not count
    for topic, payload in msgs:
        await pipe.process(RawMessage(source="mqtt", payload=payload, topic=topic, received_at=now), "toy-lora")
        if note:
            bf.note(payload)
    elapsed = time.process_time() - t0
    assert pipe.metrics.counts["mapped"] == n, pipe.metrics.snapshot()
    return n / elapsed


async def _catch_up(n: int, page_size: int) -> dict:
    app = "bench-bf"
    storage = await StorageStandIn(api_key=KEY).start()
    base = datetime.now(UTC) - timedelta(minutes=30)
    for _, doc in _uplinks(app, n, 0, base):
        storage.store(app, doc)
    pipe = _pipeline(n)
    cfg = TtsConfig(application_id=app, api_key=KEY, api_url=storage.url,
                    backfill={"period_s": 0, "max_rate_per_s": 0, "page_size": page_size, "max_seen": max(100, 2 * n)})
    bf = TtsBackfill(cfg, api_url=storage.url, source_kind="mqtt", name="bench", api_key=KEY)

    async def emit(message: RawMessage) -> None:
        await pipe.process(message, "toy-lora")

    task = asyncio.create_task(bf.run(emit))
    try:
        t0, c0 = time.perf_counter(), time.process_time()
        while bf.stats()["tts_backfill_runs"] < 1 or bf.stats()["tts_backfill_running"]:
            await asyncio.sleep(0.005)
        first, first_cpu = time.perf_counter() - t0, time.process_time() - c0
        assert bf.stats()["tts_backfill_uplinks"] == n, bf.stats()
        bf._watermark = None        # read everything again: every record is admitted already
        t1 = time.perf_counter()
        bf.kick("bench")
        while bf.stats()["tts_backfill_runs"] < 2 or bf.stats()["tts_backfill_running"]:
            await asyncio.sleep(0.005)
        second = time.perf_counter() - t1
        stats = bf.stats()
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await storage.stop()
    return {"uplinks_per_s": round(n / first), "cpu_us_per_uplink_with_standin": round(first_cpu / n * 1e6, 1),
            "pages": int(stats["tts_backfill_pages"]),
            "skipped": int(stats["tts_backfill_skipped"]), "all_admitted_records_per_s": round(n / second),
            "written_by_pipeline": pipe.metrics.counts["mapped"]}


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--uplinks", type=int, default=5000)
    parser.add_argument("--page-size", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=5, help="alternating live runs without/with note()")
    args = parser.parse_args()
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    await _live(min(500, args.uplinks), False)          # warm-up (schemas, caches)
    plains, noteds, ratios = [], [], []
    for _ in range(args.rounds):                        # alternating: the machine's noise hits both
        plain_rate = await _live(args.uplinks, False)
        noted_rate = await _live(args.uplinks, True)
        plains.append(plain_rate)
        noteds.append(noted_rate)
        ratios.append(noted_rate / plain_rate)
    plain, noted = statistics.median(plains), statistics.median(noteds)
    catch = await _catch_up(args.uplinks, args.page_size)
    rss1 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({
        "uplinks": args.uplinks, "page_size": args.page_size,
        "live_cpu_us_per_uplink": round(1e6 / plain, 1), "live_with_note_cpu_us_per_uplink": round(1e6 / noted, 1),
        "live_note_rate_ratio_median": round(statistics.median(ratios), 3),
        "live_note_rate_ratios": [round(r, 3) for r in ratios],
        "catch_up": catch, "catch_up_to_live_rate_ratio": round(catch["uplinks_per_s"] / plain, 3),
        "peak_rss_growth_mib": round((rss1 - rss0) / 1024, 1),
    }, indent=2))


if __name__ == "__main__":
    asyncio.run(main())

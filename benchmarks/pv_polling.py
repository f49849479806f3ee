"""PV polling under partial failure: 100 simulated SunSpec inverters polled every 10 s through the real
runtime while 10 of them never answer.

* Simulated inverters (``stadtlink.adapters.pv.simulator.serve_sunspec_inverter``, real pymodbus Modbus TCP
  servers, several unit ids per port) run in a child process; each records when a poll of it starts
  (the read of the ``SunS`` marker), so cadence is measured where the polls arrive.
* Dead inverters: half are TCP ports that accept the connection and never reply; half are blackholed:
  a listening socket with a backlog of 0 that is never accepted from, so once its queue holds one
  connection every further SYN is dropped and connecting hangs until the timeout.
* The adapter (``Runner`` with the Modbus source, profile ``sunspec``, the pipeline with the SDM check,
  outbox and batcher) runs in this process against the local NGSI-LD broker in another child process,
  so this process's memory is the adapter's.

Prints the achieved cadence per healthy inverter (mean / max interval between polls, polls per
inverter), the worst inverters, the source counters, entities written, and the adapter's memory (RSS).
Figures, never a pass/fail.

    python benchmarks/pv_polling.py [--duration 60] [--interval 10] [--inverters 100] [--dead 10]
                                    [--concurrency 16] [--timeout 3] [--units-per-port 5]
"""
from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import multiprocessing as mp
import os
import resource
import statistics
import sys
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))



# --------------------------------------------------------------------------------------------------
# child process: the simulated inverters


def _simulators(conn, healthy: int, units_per_port: int, silent: int, blackholed: int) -> None:
    asyncio.run(_simulators_main(conn, healthy, units_per_port, silent, blackholed))


async def _simulators_main(conn, healthy: int, units_per_port: int, silent: int, blackholed: int) -> None:
    import socket

    from stadtlink.adapters.pv.simulator import serve_sunspec_inverter, sunrise_values_fn

    poll_starts: dict[tuple[int, int], list[float]] = {}
    servers, targets = [], []
    remaining, n = healthy, 0
    while remaining > 0:
        units = tuple(range(1, min(units_per_port, remaining) + 1))
        fn = sunrise_values_fn(peak_w=8000 + 100 * n, day_s=120.0, night_share=0.0, serial=f"BENCH-{n:03d}",
                               start_phase=0.1)
        srv = await serve_sunspec_inverter("127.0.0.1", 0, values_fn=fn, unit_ids=units)
        srv.on_poll = lambda unit, _port=srv.port: poll_starts.setdefault((_port, unit), []).append(time.time())
        servers.append(srv)
        for unit in units:
            targets.append({"host": "127.0.0.1", "port": srv.port, "unit_id": unit, "device": f"inv-{n:03d}-u{unit}"})
        remaining -= len(units)
        n += 1

    silent_conns = []

    async def never_answer(reader, writer):
        silent_conns.append(writer)
        await reader.read()

    silent_servers = []
    for i in range(silent):
        s = await asyncio.start_server(never_answer, "127.0.0.1", 0)
        silent_servers.append(s)
        targets.append({"host": "127.0.0.1", "port": s.sockets[0].getsockname()[1], "unit_id": 1,
                        "device": f"dead-silent-{i}"})

    holes = []
    for i in range(blackholed):
        hole = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        hole.bind(("127.0.0.1", 0))
        hole.listen(0)                 # never accept(): the queue fills, later SYNs are dropped
        holes.append(hole)
        targets.append({"host": "127.0.0.1", "port": hole.getsockname()[1], "unit_id": 1,
                        "device": f"dead-blackholed-{i}"})

    conn.send(targets)
    loop = asyncio.get_running_loop()
    await loop.run_in_executor(None, conn.recv)          # "stop"
    conn.send({f"127.0.0.1:{port}/unit{unit}": stamps for (port, unit), stamps in poll_starts.items()})
    for srv in servers:
        await srv.stop()
    for s in silent_servers:
        s.close()
    for hole in holes:
        hole.close()


# --------------------------------------------------------------------------------------------------
# child process: the local NGSI-LD broker


def _broker(port: int) -> None:
    from stadtlink.broker_client.local_broker import main

    sys.exit(main(["--port", str(port), "--log-level", "WARNING"]))


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _rss_mb() -> float:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


async def _wait_port(port: int, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            _, w = await asyncio.open_connection("127.0.0.1", port)
            w.close()
            return
        except OSError:
            await asyncio.sleep(0.1)
    raise RuntimeError(f"port {port} did not open")


async def run(args) -> dict:
    from stadtlink.adapters.core.runner import Runner
    from stadtlink.adapters.pv import ADAPTER

    ctx = mp.get_context("spawn")
    parent, child = ctx.Pipe()
    healthy = args.inverters - args.dead
    silent = args.dead - args.dead // 2
    blackholed = args.dead // 2
    sim = ctx.Process(target=_simulators, args=(child, healthy, args.units_per_port, silent, blackholed),
                      daemon=True)
    sim.start()
    broker_port = _free_port()
    broker = ctx.Process(target=_broker, args=(broker_port,), daemon=True)
    broker.start()
    loop = asyncio.get_running_loop()
    targets = await loop.run_in_executor(None, parent.recv)
    await _wait_port(broker_port)

    ns = f"bench-{uuid.uuid4().hex[:8]}"
    config = {
        "adapter": "pv", "namespace": ns, "log_level": "ERROR",
        "broker": {"url": f"http://127.0.0.1:{broker_port}", "batch_size": 200, "flush_ms": 500},
        "outbox": {"kind": "memory"}, "check": "strict", "http": {"enabled": False},
        "sources": [{"kind": "modbus", "name": "inverters", "profile": "sunspec", "interval_s": args.interval,
                     "timeout_s": args.timeout, "concurrency": args.concurrency, "targets": targets}],
    }
    import logging

    logging.getLogger("stadtlink").setLevel(logging.ERROR)
    logging.getLogger("pymodbus").setLevel(logging.CRITICAL)
    runner = Runner.from_config(config, adapter=ADAPTER)
    rss_before = _rss_mb()
    started = time.time()
    await runner.start()
    rss_samples = []
    while time.time() - started < args.duration:
        await asyncio.sleep(min(5.0, max(0.1, args.duration - (time.time() - started))))
        rss_samples.append(_rss_mb())
    source_stats = runner.sources[0].stats()
    await runner.wait_idle(timeout=10)
    counters = runner.counters()
    await runner.stop()
    parent.send("stop")
    stamps = await loop.run_in_executor(None, parent.recv)
    sim.join(10)
    broker.terminate()
    broker.join(10)

    # cadence per healthy inverter: intervals between consecutive poll starts after the first poll
    per_inverter = []
    for key, ts in stamps.items():
        ts = sorted(ts)
        gaps = [b - a for a, b in itertools.pairwise(ts)]
        per_inverter.append({"inverter": key, "polls": len(ts), "mean_interval_s": statistics.mean(gaps) if gaps else None,
                             "max_interval_s": max(gaps) if gaps else None})
    with_gaps = [p for p in per_inverter if p["mean_interval_s"] is not None]
    means = [p["mean_interval_s"] for p in with_gaps]
    maxes = [p["max_interval_s"] for p in with_gaps]
    expected_polls = args.duration / args.interval
    result = {
        "setup": {"inverters": args.inverters, "healthy": healthy, "dead_silent": silent,
                  "dead_blackholed": blackholed, "interval_s": args.interval, "timeout_s": args.timeout,
                  "concurrency": args.concurrency, "duration_s": args.duration,
                  "units_per_port": args.units_per_port, "cpus": os.cpu_count()},
        "cadence": {
            "healthy_inverters_polled": len(per_inverter),
            "polls_per_inverter_min": min((p["polls"] for p in per_inverter), default=0),
            "polls_per_inverter_max": max((p["polls"] for p in per_inverter), default=0),
            "polls_expected_about": round(expected_polls, 1),
            "mean_interval_s_median": round(statistics.median(means), 3) if means else None,
            "mean_interval_s_worst": round(max(means), 3) if means else None,
            "max_interval_s_p95": round(sorted(maxes)[int(0.95 * (len(maxes) - 1))], 3) if maxes else None,
            "max_interval_s_worst": round(max(maxes), 3) if maxes else None,
        },
        "worst_inverters": sorted(with_gaps, key=lambda p: -p["max_interval_s"])[:5],
        "source": source_stats,
        "adapter": {"upserted": counters.get("upserted"), "received": counters.get("received"),
                    "dead_lettered": counters.get("dead_lettered", 0),
                    "rss_mb_before_start": round(rss_before, 1), "rss_mb_end": round(rss_samples[-1], 1) if rss_samples else None,
                    "rss_mb_peak": round(max(rss_samples), 1) if rss_samples else None},
    }
    return result


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=60.0, help="seconds to poll (default 60)")
    parser.add_argument("--interval", type=float, default=10.0, help="poll interval per inverter (default 10 s)")
    parser.add_argument("--inverters", type=int, default=100, help="simulated inverters in total (default 100)")
    parser.add_argument("--dead", type=int, default=10, help="of which never answer (default 10)")
    parser.add_argument("--concurrency", type=int, default=16, help="Modbus source concurrency (default 16)")
    parser.add_argument("--timeout", type=float, default=3.0, help="per-inverter poll timeout (default 3 s)")
    parser.add_argument("--units-per-port", type=int, default=5, help="unit ids per simulated server (default 5)")
    args = parser.parse_args(argv)
    result = asyncio.run(run(args))
    print(json.dumps(result, indent=2, default=str))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

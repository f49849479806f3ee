"""``stadtlink demo``: the whole city on one machine (see city.py)."""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import sys
import time
import webbrowser

from .city import DemoCity, demo_families


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="stadtlink demo",
                                description="Run the whole city on one machine: broker, devices, adapters, twin view.")
    p.add_argument("--duration", type=float, help="stop after S seconds (default: run until Ctrl-C)")
    p.add_argument("--report", help="write a JSON report of counts to FILE at the end")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--broker-port", type=int, default=1026, help="local broker port (a free one if taken or 0)")
    p.add_argument("--twin-port", type=int, default=8080, help="twin view port (a free one if taken or 0)")
    p.add_argument("--only", action="append", choices=demo_families(),
                   help="run only these families (repeatable; every installed adapter with demo simulators)")
    p.add_argument("--no-open", action="store_true", help="don't open a browser (the default without a display)")
    p.add_argument("--quiet", action="store_true", help="no live counters")
    p.add_argument("--also-to", metavar="[KIND+]URL",
                   help="write the same city to a second sink too: a URL (Orion-LD, NGSI-v2 Orion or a "
                        "SensorThings service, told from its answers) or KIND+URL: scorpio+URL, stellio+URL, "
                        "ngsi-v2+URL, sensorthings+URL (docs/backends/)")
    return p


def _table(counters: dict[str, dict[str, int]]) -> str:
    rows = [f"  {'adapter':<12}{'received':>10}{'written':>10}{'dead-lettered':>15}{'errors':>8}"]
    for name, c in counters.items():
        rows.append(f"  {name:<12}{c['received']:>10}{c['upserted']:>10}{c['dead_lettered']:>15}{c['errors']:>8}")
    return "\n".join(rows)


async def _run(args) -> int:
    try:
        city = DemoCity(host=args.host, broker_port=args.broker_port, twin_port=args.twin_port,
                        families=tuple(args.only) if args.only else None, also_to=args.also_to)
        await city.resolve_also_to()
    except ValueError as exc:
        print(f"stadtlink demo: {exc}", file=sys.stderr)
        return 2
    await city.start()
    print(f"stadtlink demo running\n  NGSI-LD broker  {city.broker_url}/ngsi-ld/v1/entities?type=ParkingSpot\n"
          f"  twin view       {city.twin.url}\n  MQTT (embedded) 127.0.0.1:{city.mqtt_port}\n"
          f"  adapters        {', '.join(city.runners) or 'none'}"
          + (f"\n  also writing to {city.also_to['kind']} {city.also_to['url']}" if city.also_to else "")
          + (f"\n  FAILED          {city.failed}" if city.failed else "")
          + "\nCtrl-C stops everything.", flush=True)
    if not args.no_open and (os.environ.get("DISPLAY") or sys.platform == "darwin"):
        webbrowser.open(city.twin.url)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    deadline = time.monotonic() + args.duration if args.duration else None
    tty = sys.stdout.isatty()
    last_print = 0.0
    try:
        while not stop.is_set():
            if deadline and time.monotonic() >= deadline:
                break
            try:
                await asyncio.wait_for(stop.wait(), 1.0)
            except asyncio.TimeoutError:
                pass
            if not args.quiet and time.monotonic() - last_print >= (2.0 if tty else 10.0):
                last_print = time.monotonic()
                table = _table(city.counters())
                if tty:
                    print("\x1b[J" + table + f"\x1b[{table.count(chr(10)) + 1}A", end="", flush=True)
                else:
                    print(table, flush=True)
        # Let the outboxes drain before counting.
        for runner in city.runners.values():
            await runner.wait_idle(timeout=10.0)
        report = await city.report()
    finally:
        if tty and not args.quiet:
            print("\x1b[J", end="")
        await city.stop()
    print(_table({k: v for k, v in report["adapters"].items() if "received" in v}))
    print("entities in the broker: " + ", ".join(f"{t} {n}" for t, n in report["entities"].items()))
    if args.report:
        with open(args.report, "w", encoding="utf-8") as fh:
            json.dump(report, fh, indent=2)
    ok = city.ok(report)
    if not ok:
        print("an adapter failed (nothing written, errors, or it did not start)", file=sys.stderr)
    return 0 if ok else 1


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    import logging

    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    return asyncio.run(_run(args))

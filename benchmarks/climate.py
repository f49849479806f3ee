"""Climate adapter throughput and memory: N stations (default 500) × R reports (default 6, one hour at
10 minutes), half DL-ATM41 over TTS v3, half MeteoHelix over ChirpStack v4, simulated bytes.

Stage "pipeline" (always): envelope parse → profile decode → mapper → SDM check of every entity, in
process. Prints readings/s, entities/s and the process RSS.
Stage "e2e" (--e2e): the real adapter process (`stadtlink run climate`: MQTT source on the shared
Mosquitto, memory outbox, batcher, NGSI-LD client) into the local broker (in this process). Prints
readings/s until every entity is confirmed and the adapter process's own RSS (idle, after, peak).

Run: python benchmarks/climate.py [--stations 500] [--reports 6] [--e2e] [--mqtt-port 1883]
Not a test: figures depend on the machine and its load. A town's 500 stations every 10 minutes
are 0.83 readings/s; the figures show the headroom.
"""
from __future__ import annotations

import argparse
import asyncio
import gc
import sys
import time
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import orjson

from stadtlink.adapters.climate import ADAPTER
from stadtlink.adapters.climate.settings import ClimateSettings
from stadtlink.adapters.climate.simulator import SimulatedStation
from stadtlink.adapters.core.adapter import MapContext, StateStore
from stadtlink.adapters.core.lorawan import chirpstack_uplink, parse_uplink, tts_uplink
from stadtlink.adapters.core.registry import DeviceRegistry
from stadtlink.schemas import check_entity


def rss_mb() -> float:
    """Resident set size of this process in MiB (Linux /proc)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    import resource
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def stations(n: int, cs_app: str) -> tuple[list[dict], list[SimulatedStation]]:
    records, sims = [], []
    for i in range(n):
        profile = "decentlab-dl-atm41" if i % 2 == 0 else "barani-meteohelix"
        lat, lon = 49.41 + (i % 25) * 0.007, 8.41 + (i // 25) * 0.009
        records.append({"id": f"mhm-{i:03d}", "dev_eui": f"0004a30b{i:08x}", "name": f"Messpunkt {i:03d}",
                        "lat": round(lat, 5), "lon": round(lon, 5), "profile": profile})
        sims.append(SimulatedStation(f"mhm-{i:03d}", profile=profile, lat=lat, lon=lon, seed=i, device_serial=i))
    return records, sims


def messages(records, sims, reports: int, tts_app: str, cs_app: str) -> list[tuple[str, dict]]:
    """(topic, envelope) per station and report; DL-ATM41 via TTS v3, MeteoHelix via ChirpStack v4."""
    start = datetime.now(timezone.utc).replace(microsecond=0) - timedelta(minutes=10 * reports)
    out = []
    for r in range(reports):
        for i, (rec, sim) in enumerate(zip(records, sims)):
            when = start + timedelta(minutes=10 * r, seconds=i % 600)
            port, f_cnt, payload = sim.uplink(when)
            stamp = when.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
            if sim.profile == "decentlab-dl-atm41":
                out.append(tts_uplink(rec["id"], payload, f_port=port, f_cnt=f_cnt, received_at=stamp,
                                      application_id=tts_app, dev_eui=rec["dev_eui"]))
            else:
                out.append(chirpstack_uplink(rec["dev_eui"], payload, f_port=port, f_cnt=f_cnt, time=stamp,
                                             application_id=cs_app))
    return out


def bench_pipeline(records, msgs) -> None:
    registry = DeviceRegistry.load(inline=records)
    ctx = MapContext(namespace="bench", registry=registry, settings=ClimateSettings(), state=StateStore())
    bodies = [(topic, orjson.dumps(doc)) for topic, doc in msgs]
    gc.collect()
    rss0 = rss_mb()
    readings = entities = invalid = 0
    t_check = 0.0
    clock = time.perf_counter
    t0 = clock()
    for topic, body in bodies:
        uplink = parse_uplink(body, topic)
        rec = registry.lookup(uplink.device_id, uplink.dev_eui)
        for reading in ADAPTER.profiles[rec.profile].decode_uplink(uplink):
            readings += 1
            produced = ADAPTER.mapper(reading, ctx)
            tc = clock()
            for ent in produced:
                entities += 1
                invalid += bool(check_entity(ent))
            t_check += clock() - tc
    dt = clock() - t0
    print(f"pipeline: {readings} readings, {entities} entities ({invalid} invalid) in {dt:.2f} s "
          f"→ {readings / dt:,.0f} readings/s, {entities / dt:,.0f} entities/s (decode+map+check)")
    print(f"pipeline: of which SDM check {t_check:.2f} s; decode+map alone "
          f"{readings / max(dt - t_check, 1e-9):,.0f} readings/s")
    print(f"pipeline: RSS {rss_mb():.1f} MiB (before the run {rss0:.1f} MiB); "
          f"mapper state {len(ctx.state)} keys")


WINDOW = 250


def proc_status(pid: int) -> dict[str, float]:
    """VmRSS / VmHWM (peak) of a process in MiB."""
    out = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, rest = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            out[key] = int(rest.split()[0]) / 1024.0
    return out


def _metric(text: str, name: str) -> float:
    for line in text.splitlines():
        if line.startswith((name + "{", name + " ")):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


async def bench_e2e(records, msgs, n_readings: int, mqtt_port: int) -> None:
    """The adapter as its own process (`stadtlink run climate`), so its RSS is measured alone."""
    import csv
    import io
    import os
    import socket
    import tempfile

    import aiohttp
    import yaml

    from stadtlink.adapters.core.testing import publish_uplinks
    from stadtlink.broker_client.local_broker import running_broker

    run = uuid.uuid4().hex[:8]
    tts_app, cs_app = msgs[0][0].split("/")[1].split("@")[0], msgs[1][0].split("/")[1]
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        http_port = sock.getsockname()[1]
    async with running_broker() as broker_url:
        with tempfile.TemporaryDirectory() as tmp:
            buf = io.StringIO()
            writer = csv.DictWriter(buf, fieldnames=list(records[0]))
            writer.writeheader()
            writer.writerows(records)
            (Path(tmp) / "stations.csv").write_text(buf.getvalue(), encoding="utf-8")
            config = {
                "adapter": "climate", "namespace": f"bench-{run}", "log_level": "WARNING",
                "broker": {"url": broker_url, "batch_size": 200, "flush_ms": 200},
                "outbox": {"kind": "memory"}, "http": {"host": "127.0.0.1", "port": http_port},
                "sources": [{"kind": "mqtt", "host": "127.0.0.1", "port": mqtt_port, "session_expiry_s": 0,
                             "client_id": f"climate-bench-{run}",
                             "topics": [f"v3/{tts_app}@ttn/devices/+/up", f"application/{cs_app}/device/+/event/up"]}],
                "registry_files": ["stations.csv"],
            }
            (Path(tmp) / "climate.yaml").write_text(yaml.safe_dump(config))
            exe = Path(sys.executable).with_name("stadtlink")
            cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "stadtlink.adapters.core.cli"]
            proc = await asyncio.create_subprocess_exec(*cmd, "run", "climate", "--config", str(Path(tmp) / "climate.yaml"),
                                                        env=os.environ.copy(), stdout=asyncio.subprocess.DEVNULL)
            try:
                async with aiohttp.ClientSession() as session:
                    async def get(path: str) -> tuple[int, str]:
                        try:
                            async with session.get(f"http://127.0.0.1:{http_port}{path}") as resp:
                                return resp.status, await resp.text()
                        except aiohttp.ClientError:
                            return 0, ""

                    while (await get("/readyz"))[0] != 200:
                        if proc.returncode is not None:
                            raise SystemExit("the adapter process exited")
                        await asyncio.sleep(0.1)
                    idle = proc_status(proc.pid)
                    peak_rss = 0.0
                    t0 = time.perf_counter()
                    # Publish in windows: Mosquitto queues at most max_queued_messages (default 1000) for a
                    # subscriber and drops the rest of a faster burst, so keep ≤ WINDOW messages in flight.
                    for i in range(0, len(msgs), WINDOW):
                        while True:
                            _, text = await get("/metrics")
                            if _metric(text, "stadtlink_received_total") >= i - WINDOW:
                                break
                            await asyncio.sleep(0.02)
                        await publish_uplinks("127.0.0.1", mqtt_port, msgs[i:i + WINDOW])
                        peak_rss = max(peak_rss, proc_status(proc.pid)["VmRSS"])
                    t_pub = time.perf_counter() - t0
                    deadline = time.monotonic() + float(os.environ.get("CLIMATE_BENCH_TIMEOUT_S", "300"))
                    while time.monotonic() < deadline:
                        _, text = await get("/metrics")
                        peak_rss = max(peak_rss, proc_status(proc.pid)["VmRSS"])
                        if (_metric(text, "stadtlink_decoded_total") >= n_readings
                                and _metric(text, "stadtlink_outbox_depth") == 0):
                            break
                        await asyncio.sleep(0.1)
                    else:
                        print("e2e: timed out waiting for the adapter to finish (figures below are partial)")
                    dt = time.perf_counter() - t0
                    decoded = _metric(text, "stadtlink_decoded_total")
                    upserted = _metric(text, "stadtlink_upserted_total")
                    after = proc_status(proc.pid)
                    print(f"e2e: {decoded:.0f} readings → {upserted:.0f} entities confirmed by the broker in "
                          f"{dt:.2f} s → {decoded / dt:,.0f} readings/s (publishing in windows of {WINDOW} took {t_pub:.2f} s); dead letters "
                          f"{_metric(text, 'stadtlink_dead_lettered_total'):.0f}, invalid {_metric(text, 'stadtlink_invalid_total'):.0f}")
                    print(f"e2e: adapter process RSS idle {idle['VmRSS']:.1f} MiB, after the run {after['VmRSS']:.1f} MiB, "
                          f"peak {max(peak_rss, after['VmHWM']):.1f} MiB ({len(records)} stations)")
            finally:
                proc.terminate()
                await proc.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--stations", type=int, default=500)
    parser.add_argument("--reports", type=int, default=6, help="reports per station (10 minutes apart)")
    parser.add_argument("--e2e", action="store_true", help="also run end to end through Mosquitto into the local broker")
    parser.add_argument("--mqtt-port", type=int, default=1883)
    args = parser.parse_args()

    run = uuid.uuid4().hex[:8]
    tts_app, cs_app = f"climate-bench-{run}", str(uuid.uuid4())
    print(f"climate benchmark: {args.stations} stations × {args.reports} reports "
          f"(= {args.stations / 600:.2f} readings/s at a 10-minute cadence); RSS at start {rss_mb():.1f} MiB")
    records, sims = stations(args.stations, cs_app)
    msgs = messages(records, sims, args.reports, tts_app, cs_app)
    bench_pipeline(records, msgs)
    if args.e2e:
        asyncio.run(bench_e2e(records, msgs, len(msgs), args.mqtt_port))


if __name__ == "__main__":
    main()

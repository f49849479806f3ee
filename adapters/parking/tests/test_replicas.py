"""Two `stadtlink run parking` processes on one MQTT shared subscription (the shared Mosquitto, unique
topics), ``site_state: shared`` with the Redis outbox (the shared Redis, a unique key prefix), writing
into the local NGSI-LD broker: every site aggregate at the broker equals the truth of what was
published — also when the replica holding the aggregate lease is SIGKILLed mid-stream and
restarted (as Kubernetes restarts a pod under the same name).

Without the shared site state, each replica would count only its own share of a site's spots
(free + occupied = about half of the spots: benchmarks/README.md, defect 3)."""
from __future__ import annotations

import asyncio
import json
import os
import random
import signal
import subprocess
import sys
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import aiohttp
import pytest

from stadtlink.adapters.core.lorawan import tts_uplink
from stadtlink.adapters.core.testing import (SHARED_MQTT, SHARED_REDIS_URL, entities_by_id, free_port,
                                             publish_uplinks, wait_until)

pytestmark = pytest.mark.timeout(180)

ROOT = Path(__file__).resolve().parents[3]
MQTT_HOST, MQTT_PORT = SHARED_MQTT
SITES, PER_SITE = 20, 10




@pytest.fixture
def run_id(redis_prefix):
    """The run's name: its Redis keys (under the kit's ``redis_prefix``, deleted afterwards), topics, namespace."""
    return redis_prefix


def _devices() -> list[dict]:
    devices = []
    for s in range(SITES):
        devices.append({"id": f"site-{s:02d}", "name": f"Site {s}", "lat": 52.0 + s / 100, "lon": 10.0,
                        "total_spots": PER_SITE})
        for k in range(PER_SITE):
            devices.append({"id": f"tps-{s:02d}-{k}", "lat": 52.0 + s / 100, "lon": 10.0 + k / 10_000,
                            "site": f"site-{s:02d}", "level": k % 2})
    return devices


def _config(tmp: Path, rid: str, broker_url: str, replica: int) -> Path:
    cfg = {
        "adapter": "parking", "namespace": f"rep{rid}", "log_level": "INFO",
        "broker": {"url": broker_url, "batch_size": 100, "flush_ms": 50, "retry_base_s": 0.1, "retry_max_s": 0.5,
                   "health_interval_s": 0.5},
        "outbox": {"kind": "redis", "url": SHARED_REDIS_URL, "key_prefix": rid, "consumer": f"replica-{replica}",
                   "claim_min_idle_ms": 1000},
        "http": {"host": "127.0.0.1", "port": free_port()},
        "shutdown_grace_s": 10,
        "sources": [{"kind": "mqtt", "name": "spots", "host": MQTT_HOST, "port": MQTT_PORT,
                     "topics": [f"v3/rep-{rid}@ttn/devices/+/up"], "profile": "bosch-tps110",
                     "shared_group": f"rep-{rid}", "client_id": f"rep-{rid}-{replica}", "session_expiry_s": 120,
                     "reconnect_max_s": 1.0}],
        "devices": _devices(),
        # resync far away: the result must come from the dirty-site rounds (and the takeover pass)
        "settings": {"site_state": "shared", "aggregate_interval_ms": 200, "aggregate_lease_ms": 3000,
                     "aggregate_resync_s": 3600, "heartbeat_timeout_s": 86400},
    }
    path = tmp / f"replica-{replica}.json"
    path.write_text(json.dumps(cfg))
    return path


def _start(config: Path) -> subprocess.Popen:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    for key in [k for k in env if k.startswith("STADTLINK_")]:
        del env[key]
    log = open(config.with_suffix(".log"), "ab")
    return subprocess.Popen([sys.executable, "-m", "stadtlink.adapters.core.cli", "run", "parking", "--config", str(config)],
                            env=env, stdout=log, stderr=log)


async def _metrics(config: Path) -> dict[str, float]:
    port = json.loads(config.read_text())["http"]["port"]
    try:
        async with aiohttp.ClientSession() as s:
            async with s.get(f"http://127.0.0.1:{port}/metrics", timeout=aiohttp.ClientTimeout(total=2)) as r:
                text = await r.text()
    except (aiohttp.ClientError, asyncio.TimeoutError):
        return {}
    out = {}
    for line in text.splitlines():
        if line.startswith("stadtlink_") and "{" in line:
            name = line.split("{", 1)[0]
            if name in ("stadtlink_derive_leader", "stadtlink_received_total"):
                out[name] = float(line.rsplit(" ", 1)[1])
    return out


async def _readyz(config: Path) -> dict:
    port = json.loads(config.read_text())["http"]["port"]
    try:
        async with aiohttp.ClientSession() as s:
            async with s.get(f"http://127.0.0.1:{port}/readyz", timeout=aiohttp.ClientTimeout(total=2)) as r:
                return await r.json(content_type=None)
    except (aiohttp.ClientError, asyncio.TimeoutError):
        return {}


async def _subscribed(config: Path) -> bool:
    doc = await _readyz(config)
    return bool(doc.get("checks", {}).get("source:spots", {}).get("ok"))


def _uplinks(rid: str, rounds: range, base: datetime, truth: dict[str, bool], rng: random.Random):
    """One uplink per spot per round, in a shuffled order; ``truth`` gets the last state of each spot."""
    out = []
    for rnd in rounds:
        order = [(s, k) for s in range(SITES) for k in range(PER_SITE)]
        rng.shuffle(order)
        for i, (s, k) in enumerate(order):
            occupied = rng.random() < 0.5
            device = f"tps-{s:02d}-{k}"
            truth[device] = occupied
            at = base + timedelta(seconds=60 * rnd, milliseconds=i)
            topic, doc = tts_uplink(device, bytes([1 if occupied else 0]), f_port=1, f_cnt=rnd + 1,
                                    received_at=at.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z",
                                    application_id=f"rep-{rid}")
            out.append((topic, doc))
    return out


async def _site_mismatches(broker_url: str, rid: str, truth: dict[str, bool]) -> list[str]:
    found = await entities_by_id(broker_url, "OffStreetParking", namespace=f"rep{rid}")
    bad = []
    for s in range(SITES):
        states = [truth[f"tps-{s:02d}-{k}"] for k in range(PER_SITE) if f"tps-{s:02d}-{k}" in truth]
        want = (states.count(False), states.count(True))
        e = found.get(f"urn:ngsi-ld:OffStreetParking:rep{rid}:site-{s:02d}")
        got = (e["availableSpotNumber"]["value"], e["occupiedSpotNumber"]["value"]) if e else None
        if got != want:
            bad.append(f"site-{s:02d}: broker {got}, truth (free, occupied) {want}")
    return bad


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


@pytest.mark.needs_mqtt
@pytest.mark.needs_redis
async def test_two_replicas_compute_every_site_aggregate_from_all_its_spots(tmp_path, run_id):
    from stadtlink.broker_client.local_broker import running_broker

    rng = random.Random(11)
    truth: dict[str, bool] = {}
    base = datetime.now(timezone.utc).replace(microsecond=0) - timedelta(minutes=30)
    async with running_broker() as broker_url:
        configs = [_config(tmp_path, run_id, broker_url, i) for i in range(2)]
        procs = [_start(c) for c in configs]
        try:
            for c in configs:
                await wait_until(lambda c=c: _subscribed(c), 30, f"{c.name} subscribed")
            n = await publish_uplinks(MQTT_HOST, MQTT_PORT, _uplinks(run_id, range(2), base, truth, rng))
            assert n == 2 * SITES * PER_SITE
            await _converged(broker_url, run_id, truth, 60)
            received = [(await _metrics(c)).get("stadtlink_received_total", 0) for c in configs]
            assert sum(received) == n and min(received) > 0, f"the subscription was not shared: {received}"
            leaders = [(await _metrics(c)).get("stadtlink_derive_leader") for c in configs]
            assert sorted(leaders) == [0.0, 1.0], f"exactly one replica computes the aggregates: {leaders}"
        finally:
            # in a thread: this loop serves the local broker, which the replicas flush into while stopping
            await asyncio.gather(*(asyncio.to_thread(_stop, p) for p in procs))


async def _converged(broker_url: str, rid: str, truth: dict[str, bool], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while bad := await _site_mismatches(broker_url, rid, truth):
        assert time.monotonic() < deadline, f"site aggregates differ from the truth: {bad[:5]} ({len(bad)} sites)"
        await asyncio.sleep(0.3)


@pytest.mark.needs_mqtt
@pytest.mark.needs_redis
async def test_the_lease_holder_killed_mid_stream_the_survivor_takes_over_and_the_aggregates_end_right(
        tmp_path, run_id):
    from stadtlink.broker_client.local_broker import running_broker

    rng = random.Random(12)
    truth: dict[str, bool] = {}
    base = datetime.now(timezone.utc).replace(microsecond=0) - timedelta(minutes=30)
    async with running_broker() as broker_url:
        configs = [_config(tmp_path, run_id, broker_url, i) for i in range(2)]
        procs = [_start(c) for c in configs]
        try:
            for c in configs:
                await wait_until(lambda c=c: _subscribed(c), 30, f"{c.name} subscribed")

            async def leader_index():
                flags = [(await _metrics(c)).get("stadtlink_derive_leader") for c in configs]
                return flags.index(1.0) + 1 if flags.count(1.0) == 1 else None

            holder = await wait_until(leader_index, 20, "one lease holder") - 1
            survivor = 1 - holder
            first = _uplinks(run_id, range(0, 2), base, truth, rng)
            second = _uplinks(run_id, range(2, 4), base, truth, rng)
            publishing = asyncio.create_task(publish_uplinks(MQTT_HOST, MQTT_PORT, first))
            await wait_until(lambda: _received_some(configs[holder]), 20, "the holder receives uplinks")
            procs[holder].kill()                                   # SIGKILL mid-stream: no flush, no release
            procs[holder].wait(10)
            await publishing
            await publish_uplinks(MQTT_HOST, MQTT_PORT, second)
            await wait_until(lambda: _is_leader(configs[survivor]), 20, "the survivor takes the lease after its TTL")
            # the killed replica comes back under its name (its MQTT session holds its share of the uplinks)
            procs[holder] = _start(configs[holder])
            await _converged(broker_url, run_id, truth, 90)
        finally:
            # in a thread: this loop serves the local broker, which the replicas flush into while stopping
            await asyncio.gather(*(asyncio.to_thread(_stop, p) for p in procs))


async def _received_some(config: Path) -> bool:
    return (await _metrics(config)).get("stadtlink_received_total", 0) > 20


async def _is_leader(config: Path) -> bool:
    return (await _metrics(config)).get("stadtlink_derive_leader") == 1.0

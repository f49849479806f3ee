"""Shared pieces of benchmarks/pipeline.py and benchmarks/faults.py (and tests/faults/).

* :func:`write_fleet` — a registry CSV of N Bosch TPS110 spots in sites of M spots.
* :func:`write_config` — a parking adapter config (YAML) for that fleet, MQTT, outbox and broker URL.
* :class:`AdapterProcess` — ``stadtlink run parking --config FILE`` as a child process: readiness,
  metrics, CPU seconds and peak RSS (from /proc), SIGTERM / SIGKILL.
* :class:`SinkProcess` — ``benchmarks/sink.py`` as a child process, with its control API.
* :func:`reading` — the TTS v3 uplink of reading number ``seq`` (spot ``seq % spots``, fCnt
  ``seq // spots + 1``): every reading is unique and can be recomputed from its number.
* ``python benchmarks/harness.py publish …`` — a paho-mqtt publisher (own process, QoS 1, many
  publishes in flight, optional fixed rate) that prints which readings Mosquitto acknowledged.
* ``python benchmarks/harness.py bare …`` — the bare aiomqtt receive loop (subscribe, count).
* :func:`count_readings` — lost / written / superseded / duplicated, from what the sink recorded.

Loopback only; every wait is bounded.
"""
from __future__ import annotations

import argparse
import asyncio
import base64
import csv
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterable

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import orjson  # noqa: E402

APP = "bench-parking"
TOPIC_FILTER = f"v3/{APP}@ttn/devices/+/up"
NAMESPACE = "bench"
_SCRIPT = Path(sys.executable).parent / "stadtlink"
#: how to run the CLI: the console script next to this interpreter, else ``python -m stadtlink.adapters.core.cli``
STADTLINK: list[str] = [str(_SCRIPT)] if _SCRIPT.exists() else [sys.executable, "-m", "stadtlink.adapters.core.cli"]
CHILD_ENV = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p)}


# ------------------------------------------------------------------------------------------- fleet

def spot_device(index: int) -> str:
    return f"tps-{index:05d}"


def spot_local_id(index: int) -> str:
    return f"spot-{index:05d}"


def spot_entity_id(index: int, namespace: str = NAMESPACE) -> str:
    return f"urn:ngsi-ld:ParkingSpot:{namespace}:{spot_local_id(index)}"


def write_fleet(directory: Path, spots: int = 10_000, per_site: int = 100) -> Path:
    """A registry of ``spots`` TPS110 sensors in sites of ``per_site`` (plus one record per site)."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "fleet.csv"
    with path.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["id", "name", "lat", "lon", "profile", "dev_eui", "site", "spot", "category", "total_spots"])
        sites = (spots + per_site - 1) // per_site
        for s in range(sites):
            w.writerow([f"site-{s:03d}", f"Bench site {s}", f"{52.40 + s * 0.001:.5f}", f"{10.70 + s * 0.001:.5f}",
                        "", "", "", "", "parkingLot;public", per_site])
        for i in range(spots):
            s = i // per_site
            w.writerow([spot_device(i), f"Spot {i}", f"{52.40 + s * 0.001 + (i % per_site) * 1e-5:.6f}",
                        f"{10.70 + s * 0.001:.6f}", "bosch-tps110", f"70b3d57ed1{i:06x}", f"site-{s:03d}",
                        spot_local_id(i), "offStreet", ""])
    return path


def write_config(directory: Path, *, broker_url: str, mqtt_port: int, http_port: int, client_id: str,
                 outbox: str = "memory", redis_url: str | None = None, key_prefix: str | None = None,
                 shared_group: str | None = None, batch_size: int = 200, flush_ms: int = 500,
                 max_length: int = 100_000, backpressure_wait_s: float = 5.0, timeout_s: float = 10.0,
                 retry_max_s: float = 5.0, consumer: str | None = None, name: str = "adapter.yaml",
                 fleet: str = "fleet.csv", log_level: str = "WARNING", extra_broker: dict | None = None,
                 site_state: str = "local", aggregate_interval_ms: int = 500) -> Path:
    """``site_state: shared`` (several replicas; needs ``outbox="redis"``): spot states in Redis, the site
    aggregates computed by one replica every ``aggregate_interval_ms`` (adapters/parking/README.md)."""
    cfg: dict[str, Any] = {
        "adapter": "parking", "namespace": NAMESPACE, "log_level": log_level,
        "broker": {"url": broker_url, "batch_size": batch_size, "flush_ms": flush_ms, "timeout_s": timeout_s,
                   "retry_base_s": 0.2, "retry_max_s": retry_max_s, "health_interval_s": 1.0,
                   **(extra_broker or {})},
        "outbox": {"kind": outbox, "max_length": max_length, "backpressure_wait_s": backpressure_wait_s,
                   "key_prefix": key_prefix or f"bench-{uuid.uuid4().hex[:8]}"},
        "check": "strict",
        "http": {"host": "127.0.0.1", "port": http_port},
        "dedup_window_s": 600,
        "shutdown_grace_s": 30,
        "sources": [{"kind": "mqtt", "name": "spots", "host": "127.0.0.1", "port": mqtt_port,
                     "topics": [TOPIC_FILTER], "profile": "bosch-tps110", "client_id": client_id,
                     "shared_group": shared_group, "qos": 1, "reconnect_max_s": 2.0}],
        "registry_files": [fleet],
        "settings": {"heartbeat_timeout_s": 93600, "aggregate_sites": True, "level_groups": False, "devices": True,
                     "site_state": site_state},
    }
    if site_state == "shared":
        cfg["settings"]["aggregate_interval_ms"] = aggregate_interval_ms
        cfg["settings"]["aggregate_lease_ms"] = max(5000, 3 * aggregate_interval_ms)
    if outbox == "redis":
        cfg["outbox"]["url"] = redis_url
        cfg["outbox"]["consumer"] = consumer or client_id
        cfg["outbox"]["claim_min_idle_ms"] = 5000
    path = directory / name
    path.write_text(json.dumps(cfg, indent=1))   # JSON is YAML
    return path


# ------------------------------------------------------------------------------------------- readings

def iso_ms(ts: float) -> str:
    return datetime.fromtimestamp(ts, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def reading(seq: int, spots: int, observed_ts: float) -> tuple[str, bytes]:
    """Topic and TTS v3 envelope (bytes) of reading ``seq``: fPort 1 occupancy, occupied on odd rounds."""
    index = seq % spots
    rnd = seq // spots
    device = spot_device(index)
    obs = iso_ms(observed_ts)
    doc = {"end_device_ids": {"device_id": device, "application_ids": {"application_id": APP},
                              "dev_eui": f"70B3D57ED1{index:06X}"},
           "received_at": obs,
           "uplink_message": {"f_port": 1, "f_cnt": rnd + 1,
                              "frm_payload": base64.b64encode(bytes([rnd % 2])).decode(),
                              "rx_metadata": [{"gateway_ids": {"gateway_id": "bench-gw"}, "rssi": -80, "snr": 7.5}],
                              "settings": {"frequency": "868100000"}, "received_at": obs}}
    return f"v3/{APP}@ttn/devices/{device}/up", orjson.dumps(doc)


def seq_observed(base_ts: float, seq: int) -> float:
    """Observation time of reading ``seq`` in ``--time seq`` mode: base + seq milliseconds."""
    return base_ts + seq / 1000.0


@dataclass
class Tally:
    sent: int
    written: int
    superseded: int
    lost: int
    duplicated: int
    lost_examples: list

    def as_dict(self) -> dict:
        return {"sent": self.sent, "written": self.written, "superseded": self.superseded, "lost": self.lost,
                "duplicated": self.duplicated, "lost_examples": self.lost_examples[:5]}


def count_readings(acked: Iterable[int], written: dict[str, list[str]], *, spots: int, base_ts: float,
                   namespace: str = NAMESPACE) -> Tally:
    """Per acknowledged reading: ``written`` (its observedAt reached the sink), ``superseded`` (a newer
    state of the same spot did: latest-state coalescing), else ``lost``. ``duplicated`` counts extra
    arrivals of a reading."""
    sets: dict[str, dict[str, int]] = {}
    newest: dict[str, str] = {}
    for eid, values in written.items():
        counts: dict[str, int] = {}
        for v in values:
            counts[v] = counts.get(v, 0) + 1
        sets[eid] = counts
        newest[eid] = max(values)
    sent = written_n = superseded = lost = dup = 0
    examples = []
    for seq in acked:
        sent += 1
        eid = spot_entity_id(seq % spots, namespace)
        obs = iso_ms(seq_observed(base_ts, seq))
        c = sets.get(eid, {}).get(obs, 0)
        if c:
            written_n += 1
            dup += c - 1
        elif eid in newest and newest[eid] > obs:
            superseded += 1
        else:
            lost += 1
            examples.append(seq)
    return Tally(sent, written_n, superseded, lost, dup, examples)


# ------------------------------------------------------------------------------------------- processes

def proc_stats(pid: int) -> dict[str, float]:
    """CPU seconds (user+system) and current / peak RSS in MB of a process, from /proc."""
    out: dict[str, float] = {}
    try:
        with open(f"/proc/{pid}/stat") as fh:
            fields = fh.read().rsplit(")", 1)[1].split()
        tick = os.sysconf("SC_CLK_TCK")
        out["cpu_s"] = (int(fields[11]) + int(fields[12])) / tick
        with open(f"/proc/{pid}/status") as fh:
            for line in fh:
                if line.startswith("VmRSS:"):
                    out["rss_mb"] = int(line.split()[1]) / 1024
                elif line.startswith("VmHWM:"):
                    out["peak_rss_mb"] = int(line.split()[1]) / 1024
    except (OSError, IndexError, ValueError):
        pass
    return out


def parse_prometheus(text: str) -> dict[str, float]:
    """``name{labels}`` → value; label sets kept in the key as printed."""
    out: dict[str, float] = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        key, _, value = line.rpartition(" ")
        try:
            out[key] = float(value)
        except ValueError:
            continue
    return out


def metric_sum(metrics: dict[str, float], name: str) -> float:
    """Sum of ``stadtlink_<name>`` (or ``…_total``) over its label sets."""
    wanted = (f"stadtlink_{name}", f"stadtlink_{name}_total")
    return sum(v for k, v in metrics.items() if k.split("{", 1)[0] in wanted)


async def http_get(url: str, timeout: float = 2.0) -> tuple[int, bytes]:
    import aiohttp

    async with aiohttp.ClientSession() as s:
        async with s.get(url, timeout=aiohttp.ClientTimeout(total=timeout)) as r:
            return r.status, await r.read()


async def http_post(url: str, doc: dict, timeout: float = 5.0) -> tuple[int, bytes]:
    import aiohttp

    async with aiohttp.ClientSession() as s:
        async with s.post(url, data=orjson.dumps(doc), timeout=aiohttp.ClientTimeout(total=timeout)) as r:
            return r.status, await r.read()


class AdapterProcess:
    """``stadtlink run parking --config FILE`` in its own process group."""

    def __init__(self, config: Path, http_port: int, log_path: Path | None = None):
        self.config = config
        self.http_port = http_port
        self.log_path = log_path or config.with_suffix(".log")
        self.proc: subprocess.Popen | None = None
        self.last_stats: dict[str, float] = {}

    def start(self) -> "AdapterProcess":
        log = open(self.log_path, "ab")
        try:
            self.proc = subprocess.Popen([*STADTLINK, "run", "parking", "--config", str(self.config)], stdout=log,
                                         stderr=subprocess.STDOUT, cwd=str(self.config.parent), env=CHILD_ENV,
                                         start_new_session=True)
        finally:
            log.close()
        return self

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stats(self) -> dict[str, float]:
        if self.running:
            s = proc_stats(self.pid)
            if s:
                self.last_stats = s
        return dict(self.last_stats)

    async def metrics(self) -> dict[str, float]:
        status, body = await http_get(f"http://127.0.0.1:{self.http_port}/metrics")
        return parse_prometheus(body.decode()) if status == 200 else {}

    async def counter(self, name: str) -> float:
        m = await self.metrics()
        return metric_sum(m, name)

    async def readyz(self) -> tuple[int, dict]:
        status, body = await http_get(f"http://127.0.0.1:{self.http_port}/readyz")
        return status, orjson.loads(body)

    async def wait_http(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.running:
                raise RuntimeError(f"adapter exited ({self.proc.returncode}): {self.log_tail()}")
            try:
                status, _ = await http_get(f"http://127.0.0.1:{self.http_port}/healthz", timeout=1.0)
                if status in (200, 503):
                    return
            except Exception:  # noqa: BLE001 - not listening yet
                pass
            await asyncio.sleep(0.1)
        raise TimeoutError(f"adapter HTTP not up after {timeout}s: {self.log_tail()}")

    async def wait_ready(self, timeout: float = 60.0) -> None:
        await self.wait_http(timeout)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                status, _ = await self.readyz()
                if status == 200:
                    return
            except Exception:  # noqa: BLE001
                pass
            await asyncio.sleep(0.1)
        raise TimeoutError(f"adapter not ready after {timeout}s: {self.log_tail()}")

    def terminate(self, timeout: float = 60.0) -> int | None:
        """SIGTERM (graceful: the runtime flushes its outbox) and wait."""
        if self.proc is None:
            return None
        self.stats()
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode

    def kill(self) -> None:
        """SIGKILL: no flush, no goodbye."""
        if self.proc is not None and self.proc.poll() is None:
            self.stats()
            self.proc.kill()
            self.proc.wait()

    def log_tail(self, n: int = 3000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-n:]
        except OSError:
            return ""


class SinkProcess:
    """``benchmarks/sink.py`` in its own process (so that its CPU is not the adapter's)."""

    def __init__(self, record: bool = False, port: int = 0, mode: str = "ok"):
        self.record = record
        self.start_mode = mode
        self.port = port
        self.control_port = 0
        self.proc: subprocess.Popen | None = None

    def start(self, timeout: float = 20.0) -> "SinkProcess":
        cmd = [sys.executable, str(ROOT / "benchmarks" / "sink.py"), "--port", str(self.port), "--max-seconds", "7200"]
        if self.record:
            cmd.append("--record")
        if self.start_mode != "ok":
            cmd += ["--mode", self.start_mode]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, start_new_session=True)
        line = _readline(self.proc.stdout, timeout)
        doc = orjson.loads(line)
        self.port, self.control_port = doc["port"], doc["control_port"]
        return self

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def stats(self) -> dict:
        _, body = await http_get(f"http://127.0.0.1:{self.control_port}/stats", timeout=10)
        return orjson.loads(body)

    async def written(self) -> dict[str, list[str]]:
        _, body = await http_get(f"http://127.0.0.1:{self.control_port}/written", timeout=60)
        return orjson.loads(body)

    async def last(self) -> dict[str, dict]:
        _, body = await http_get(f"http://127.0.0.1:{self.control_port}/last", timeout=30)
        return orjson.loads(body)

    async def mode(self, mode: str, delay_s: float | None = None) -> None:
        doc: dict[str, Any] = {"mode": mode}
        if delay_s is not None:
            doc["delay_s"] = delay_s
        status, body = await http_post(f"http://127.0.0.1:{self.control_port}/mode", doc)
        if status != 200:
            raise RuntimeError(body.decode())

    async def reset(self) -> None:
        await http_post(f"http://127.0.0.1:{self.control_port}/reset", {})

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def _readline(stream, timeout: float) -> bytes:
    import select

    deadline = time.monotonic() + timeout
    buf = b""
    while time.monotonic() < deadline:
        ready, _, _ = select.select([stream], [], [], 0.2)
        if ready:
            chunk = os.read(stream.fileno(), 4096)
            if not chunk:
                break
            buf += chunk
            if b"\n" in buf:
                return buf.split(b"\n", 1)[0]
    raise TimeoutError(f"no line from the child process within {timeout}s (got {buf[:200]!r})")


class Publisher:
    """``harness.py publish`` as a child process; :meth:`result` is its final JSON."""

    def __init__(self, *, port: int, count: int, spots: int, rate: float | None = None, time_mode: str = "seq",
                 base_ts: float | None = None, start_seq: int = 0, client_id: str | None = None,
                 timeout: float = 300.0, max_inflight: int = 1000):
        self.args = [sys.executable, str(ROOT / "benchmarks" / "harness.py"), "publish", "--port", str(port),
                     "--count", str(count), "--spots", str(spots), "--time", time_mode,
                     "--start-seq", str(start_seq), "--client-id", client_id or f"bench-pub-{uuid.uuid4().hex[:8]}",
                     "--timeout", str(timeout), "--max-inflight", str(max_inflight)]
        if rate:
            self.args += ["--rate", str(rate)]
        if base_ts is not None:
            self.args += ["--base-ts", repr(base_ts)]
        self.proc: subprocess.Popen | None = None

    def start(self) -> "Publisher":
        self.proc = subprocess.Popen(self.args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
        return self

    async def result(self, timeout: float = 600.0) -> dict:
        deadline = time.monotonic() + timeout
        while self.proc.poll() is None:
            if time.monotonic() > deadline:
                self.proc.kill()
                raise TimeoutError("publisher did not finish")
            await asyncio.sleep(0.1)
        out = self.proc.stdout.read().decode().strip().splitlines()
        if not out:
            raise RuntimeError(f"publisher failed: {self.proc.stderr.read().decode()[-2000:]}")
        return orjson.loads(out[-1])

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


def prime_session(port: int, client_id: str, topic: str, timeout: float = 10.0) -> None:
    """Create a persistent MQTT 5 session (``client_id``, QoS 1 subscription to ``topic``) and leave:
    Mosquitto then queues what is published until that client connects (the preloaded backlog)."""
    import paho.mqtt.client as paho
    from paho.mqtt.packettypes import PacketTypes
    from paho.mqtt.properties import Properties

    c = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id=client_id, protocol=paho.MQTTv5)
    done = {"sub": False}
    c.on_subscribe = lambda *a, **k: done.__setitem__("sub", True)
    props = Properties(PacketTypes.CONNECT)
    props.SessionExpiryInterval = 3600
    c.connect("127.0.0.1", port, keepalive=30, clean_start=False, properties=props)
    c.loop_start()
    try:
        deadline = time.monotonic() + timeout
        while not c.is_connected():
            if time.monotonic() > deadline:
                raise TimeoutError("prime_session: no CONNACK")
            time.sleep(0.01)
        c.subscribe(topic, qos=1)
        while not done["sub"]:
            if time.monotonic() > deadline:
                raise TimeoutError("prime_session: no SUBACK")
            time.sleep(0.01)
        c.disconnect()
    finally:
        c.loop_stop()


# ------------------------------------------------------------------------------------------- child mains

def _publish_main(a) -> None:
    """QoS 1 publisher: ``count`` readings from ``start_seq``; at ``rate``/s or as fast as the window allows.
    Persistent 3.1.1 session so that unacknowledged publishes are sent again after a broker restart."""
    import threading

    import paho.mqtt.client as paho

    base_ts = a.base_ts if a.base_ts is not None else time.time() - (a.start_seq + a.count) / 1000.0 - 1.0
    c = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id=a.client_id, protocol=paho.MQTTv311,
                    clean_session=False)
    c.max_inflight_messages_set(a.max_inflight)
    c.max_queued_messages_set(0)
    c.reconnect_delay_set(0.2, 1.0)
    lock = threading.Lock()
    mid_seq: dict[int, int] = {}
    early: set[int] = set()
    acked: list[int] = []
    refused: list[int] = []
    connected = threading.Event()

    def on_publish(client, userdata, mid, reason_code=None, properties=None):
        with lock:
            seq = mid_seq.pop(mid, None)
            if seq is None:
                early.add(mid)
            else:
                acked.append(seq)

    c.on_publish = on_publish
    c.on_connect = lambda *args, **kw: connected.set()
    c.connect_async("127.0.0.1", a.port, keepalive=30)
    c.loop_start()
    if not connected.wait(10):
        print(json.dumps({"error": "no connection"}), flush=True)
        sys.exit(1)
    t0 = time.time()
    deadline = time.monotonic() + a.timeout
    for i in range(a.count):
        seq = a.start_seq + i
        if a.rate:
            target = t0 + i / a.rate
            delay = target - time.time()
            if delay > 0:
                time.sleep(delay)
        obs = time.time() if a.time == "wall" else seq_observed(base_ts, seq)
        topic, payload = reading(seq, a.spots, obs)
        info = c.publish(topic, payload, qos=1)
        with lock:
            if info.rc == paho.MQTT_ERR_QUEUE_SIZE:
                refused.append(seq)   # not queued by paho (mid collision): never sent, not counted
            elif info.mid in early:
                early.discard(info.mid)
                acked.append(seq)
            else:
                mid_seq[info.mid] = seq
        if time.monotonic() > deadline:
            break
    t_published = time.time()
    while time.monotonic() < deadline:
        with lock:
            if not mid_seq:
                break
        time.sleep(0.02)
    t_acked = time.time()
    c.disconnect()
    c.loop_stop()
    with lock:
        unacked = sorted(mid_seq.values())
        acked_sorted = sorted(acked)
    print(json.dumps({"published": a.count, "acked": len(acked_sorted), "unacked": unacked[:1000],
                      "not_queued": len(refused),
                      "acked_seqs": _ranges(acked_sorted), "base_ts": base_ts, "t0": t0,
                      "publish_s": t_published - t0, "ack_s": t_acked - t0}), flush=True)


def _ranges(seqs: list[int]) -> list[list[int]]:
    """Sorted ints as [first, last] runs (compact JSON)."""
    out: list[list[int]] = []
    for s in seqs:
        if out and s == out[-1][1] + 1:
            out[-1][1] = s
        elif not (out and s == out[-1][1]):
            out.append([s, s])
    return out


def expand_ranges(runs: list[list[int]]) -> list[int]:
    return [s for a, b in runs for s in range(a, b + 1)]


async def _bare_async(a) -> dict:
    """The bare aiomqtt receive loop: subscribe (QoS 1, auto-ack), count, no work."""
    import aiomqtt
    from paho.mqtt.packettypes import PacketTypes
    from paho.mqtt.properties import Properties

    props = Properties(PacketTypes.CONNECT)
    props.SessionExpiryInterval = 3600
    props.ReceiveMaximum = a.receive_maximum
    n = 0
    first = last = None
    async with aiomqtt.Client("127.0.0.1", a.port, identifier=a.client_id, protocol=aiomqtt.ProtocolVersion.V5,
                              clean_start=False, properties=props) as client:
        await client.subscribe(a.topic, qos=1)
        async def loop():
            nonlocal n, first, last
            async for _msg in client.messages:
                n += 1
                if first is None:
                    first = time.time()
                last = time.time()
                if n >= a.count:
                    return
        try:
            await asyncio.wait_for(loop(), a.timeout)
        except asyncio.TimeoutError:
            pass
    return {"count": n, "first": first, "last": last,
            "rate": (n - 1) / (last - first) if first and last and last > first else None}


def main() -> None:
    p = argparse.ArgumentParser(description="benchmark helpers (child processes)")
    sub = p.add_subparsers(dest="cmd", required=True)
    pub = sub.add_parser("publish")
    pub.add_argument("--port", type=int, required=True)
    pub.add_argument("--count", type=int, required=True)
    pub.add_argument("--spots", type=int, default=10_000)
    pub.add_argument("--rate", type=float, default=None)
    pub.add_argument("--time", choices=("seq", "wall"), default="seq")
    pub.add_argument("--base-ts", type=float, default=None)
    pub.add_argument("--start-seq", type=int, default=0)
    pub.add_argument("--client-id", default=f"bench-pub-{uuid.uuid4().hex[:8]}")
    pub.add_argument("--timeout", type=float, default=300.0)
    pub.add_argument("--max-inflight", type=int, default=1000)
    bare = sub.add_parser("bare")
    bare.add_argument("--port", type=int, required=True)
    bare.add_argument("--client-id", required=True)
    bare.add_argument("--topic", default=TOPIC_FILTER)
    bare.add_argument("--count", type=int, required=True)
    bare.add_argument("--receive-maximum", type=int, default=100)
    bare.add_argument("--timeout", type=float, default=300.0)
    a = p.parse_args()
    if a.cmd == "publish":
        _publish_main(a)
    else:
        print(json.dumps(asyncio.run(_bare_async(a))), flush=True)


if __name__ == "__main__":
    main()

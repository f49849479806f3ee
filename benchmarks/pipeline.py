"""End-to-end throughput, latency and memory of the parking adapter (issue 11).

What runs (all on 127.0.0.1, all started and stopped by this script):

* an own Mosquitto on a free port (large session queue), an own Redis (no persistence), and
  either the counting sink (``benchmarks/sink.py``, own process: answers 201/204, isolates the
  adapter's cost) or the local NGSI-LD broker (``stadtlink broker``, own process);
* the parking adapter as a real process: ``stadtlink run parking --config <generated>`` with a
  generated registry of 10,000 Bosch TPS110 spots (100 sites of 100 spots; each uplink yields a
  ParkingSpot, a Device and the site's OffStreetParking);
* a paho-mqtt publisher process sending TTS v3 uplinks with TPS110 payloads.

Measurements, each a ratio or a figure from this one run:

* **full speed**: N uplinks are preloaded into the adapter's persistent MQTT session while it is
  down, then the adapter starts and drains them. Rate = N / (first message → last entity at the
  sink). The **bare aiomqtt receive loop** (subscribe QoS 1, count, nothing else) drains the same
  kind of backlog from the same Mosquitto: measured before and after the adapter runs, averaged.
* **fixed rate**: 1,000 msg/s for ``--rate-seconds`` against the running adapter; the sink takes
  device→broker latency per ParkingSpot as arrival time − ``status.observedAt`` (= publish time).
* adapter CPU seconds and peak RSS (``VmHWM``), HTTP requests per message, memory and Redis outbox.
* **loaded sink**: the full-speed runs again against a second counting sink that answers like a
  loaded Orion-LD (``sink.py --mode loaded``: 5 ms per request + 20 µs per entity): requests per
  message when the broker's own latency paces the batches (``--skip-loaded`` leaves it out).
* **scaling**: one vs two adapter processes on one shared subscription (``$share/…``), full speed,
  with ``site_state: shared`` and the Redis outbox (the site aggregates of several replicas), and
  whether every site aggregate at the sink then equals the last published spot states.

Run: ``python benchmarks/pipeline.py`` (default: 20,000 messages per full-speed run, 10 s at
1,000 msg/s; about three minutes). ``--messages``, ``--rate``, ``--rate-seconds``, ``--skip-local``,
``--skip-scaling``, ``--skip-loaded``, ``--only-scaling`` [``--scaling-local-state``], ``--aggregate-interval-ms``,
``--batch-size``, ``--flush-ms``, ``--profile DIR`` (py-spy flame graph of the
adapter during the memory/sink full-speed run). Prints one JSON document.

Not a test: the machine is shared and noisy; compare the ratios of one run, not absolute figures.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from stadtlink.adapters.core.testing import MosquittoProcess, RedisProcess, free_port  # noqa: E402
from benchmarks.harness import (CHILD_ENV, STADTLINK, TOPIC_FILTER, AdapterProcess, Publisher, SinkProcess,  # noqa: E402
                                http_get, iso_ms, metric_sum, prime_session, proc_stats, seq_observed, write_config,
                                write_fleet)

TARGETS = {   # issue 21
    "memory_vs_bare": ">= 0.65",
    "redis_vs_memory": ">= 0.80",
    "p99_latency_ms_at_1000": "<= 25 (both outboxes, counting sink)",
    "peak_rss_mb": "<= 80",
    "requests_per_message_loaded_sink": "<= 0.02 (full speed, sink answering in 5 ms + 20 us per entity)",
    "two_vs_one_replica": ">= 1.7 (issue 11)",
}


class LocalBrokerProcess:
    """``stadtlink broker --port P`` (the in-memory NGSI-LD broker) in its own process."""

    def __init__(self, workdir: Path):
        self.port = free_port()
        self.workdir = workdir
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self, timeout: float = 30.0) -> "LocalBrokerProcess":
        log = open(self.workdir / "local-broker.log", "ab")
        self.proc = subprocess.Popen([*STADTLINK, "broker", "--host", "127.0.0.1", "--port", str(self.port)],
                                     stdout=log, stderr=subprocess.STDOUT, start_new_session=True, env=CHILD_ENV)
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                status, _ = await http_get(f"{self.url}/ngsi-ld/v1/types", timeout=1)
                if status < 500:
                    return self
            except Exception:  # noqa: BLE001
                pass
            await asyncio.sleep(0.1)
        raise TimeoutError("local broker did not start")

    async def has_reading(self, seq: int, spots: int, observed: str) -> bool:
        """Whether the ParkingSpot of reading ``seq`` carries that reading (observedAt ``observed``) or a later one."""
        from benchmarks.harness import spot_entity_id

        try:
            status, body = await http_get(f"{self.url}/ngsi-ld/v1/entities/{spot_entity_id(seq % spots)}", timeout=2)
        except Exception:  # noqa: BLE001
            return False
        if status != 200:
            return False
        attr = json.loads(body).get("status")
        return isinstance(attr, dict) and str(attr.get("observedAt", "")) >= observed

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


async def bare_loop(mqtt_port: int, count: int, spots: int) -> dict:
    client_id = f"bench-bare-{uuid.uuid4().hex[:8]}"
    prime_session(mqtt_port, client_id, TOPIC_FILTER)
    pub = await Publisher(port=mqtt_port, count=count, spots=spots).start().result()
    proc = await asyncio.create_subprocess_exec(
        sys.executable, str(ROOT / "benchmarks" / "harness.py"), "bare", "--port", str(mqtt_port),
        "--client-id", client_id, "--count", str(pub["acked"]), "--timeout", "300",
        stdout=asyncio.subprocess.PIPE)
    out, _ = await proc.communicate()
    return json.loads(out.decode().strip().splitlines()[-1])


async def wait_drained(adapters: list[AdapterProcess], expected_received: int, timeout: float) -> bool:
    """Until the adapters together received ``expected_received`` messages and their outboxes are empty.
    Polls /metrics once a second only: a scrape renders one series per device (10,000 here) and
    costs the adapter tens of milliseconds, so it is kept out of the measured phases."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        received = depth = 0.0
        try:
            for a in adapters:
                m = await a.metrics()
                received += metric_sum(m, "received")
                depth += metric_sum(m, "outbox_depth")
        except Exception:  # noqa: BLE001
            await asyncio.sleep(1.0)
            continue
        if received >= expected_received and depth == 0:
            return True
        await asyncio.sleep(1.0)
    return False


async def wait_connected(adapters: list[AdapterProcess], timeout: float = 90.0) -> float:
    """Poll /readyz (cheap) until every adapter's MQTT source is connected; returns that moment
    (midpoint of the last two polls): the preloaded backlog starts flowing then."""
    deadline = time.monotonic() + timeout
    before = time.time()
    while time.monotonic() < deadline:
        ok = True
        for a in adapters:
            try:
                _status, body = await a.readyz()
                ok = ok and bool(body.get("checks", {}).get("source:spots", {}).get("ok"))
            except Exception:  # noqa: BLE001
                ok = False
        if ok:
            return (before + time.time()) / 2
        before = time.time()
        await asyncio.sleep(0.01)
    raise TimeoutError("adapter did not connect to MQTT")


async def wait_written(sink: SinkProcess | None, broker: "LocalBrokerProcess | None", n_spots: int,
                       last_seq: int, spots: int, observed: str, timeout: float,
                       watch: list[AdapterProcess] | None = None, seen: dict | None = None) -> float | None:
    """When the last reading reached the broker: sink — ``n_spots`` ParkingSpot entities arrived (its
    last request time); local broker — the spot of ``last_seq`` carries that reading (poll time).
    Neither polls the adapter."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if sink is not None:
            st = await sink.stats()
            if st["by_type"].get("ParkingSpot", 0) >= n_spots:
                return st["last_request"]
        else:
            if await broker.has_reading(last_seq, spots, observed):
                return time.time()
        if watch and seen is not None:   # /readyz is cheap: it carries the outbox depth
            for ad in watch:
                try:
                    _status, body = await ad.readyz()
                    depth = body.get("checks", {}).get("outbox", {}).get("depth", 0)
                    seen["max_outbox_depth"] = max(seen.get("max_outbox_depth", 0), depth)
                except Exception:  # noqa: BLE001
                    pass
        await asyncio.sleep(0.05)
    return None


class Bench:
    def __init__(self, args):
        self.args = args
        self.work = Path(tempfile.mkdtemp(prefix="stadtlink-bench-"))
        self.fleet = write_fleet(self.work, spots=args.spots, per_site=args.per_site)
        self.mosquitto = MosquittoProcess(max_queued_messages=10_000_000, data_dir=self.work / "mosquitto")
        self.redis = RedisProcess(data_dir=self.work / "redis")
        self.sink = SinkProcess()
        self.loaded_sink = SinkProcess(mode="loaded")
        self.local: LocalBrokerProcess | None = None

    async def start(self) -> None:
        self.mosquitto.start()
        self.redis.start()
        self.sink.start()
        if not self.args.skip_loaded:
            self.loaded_sink.start()

    def stop(self) -> None:
        self.sink.stop()
        if self.loaded_sink.proc is not None:
            self.loaded_sink.stop()
        if self.local is not None:
            self.local.stop()
        self.redis.cleanup()
        self.mosquitto.cleanup()
        shutil.rmtree(self.work, ignore_errors=True)

    def _adapter(self, name: str, broker_url: str, outbox: str, shared_group: str | None = None,
                 client_id: str | None = None, key_prefix: str | None = None,
                 site_state: str = "local") -> AdapterProcess:
        port = free_port()
        cfg = write_config(self.work, broker_url=broker_url, mqtt_port=self.mosquitto.port, http_port=port,
                           client_id=client_id or f"bench-{name}-{uuid.uuid4().hex[:6]}", outbox=outbox,
                           redis_url=self.redis.url, key_prefix=key_prefix, shared_group=shared_group,
                           batch_size=self.args.batch_size, flush_ms=self.args.flush_ms, name=f"{name}.yaml",
                           site_state=site_state, aggregate_interval_ms=self.args.aggregate_interval_ms,
                           extra_broker={"flush": self.args.flush} if self.args.flush else None)
        return AdapterProcess(cfg, port)

    async def full_speed(self, name: str, broker_url: str, outbox: str, *, replicas: int = 1,
                         shared: bool = False, then_rate: bool = True, profile: bool = False,
                         site_state: str = "local") -> dict:
        """Preload N uplinks into the session(s), start the adapter(s), time the drain; then (one
        replica) the fixed-rate latency run against the same running adapter."""
        a = self.args
        group = f"g{uuid.uuid4().hex[:6]}" if shared else None
        prefix = f"bench-{uuid.uuid4().hex[:8]}"
        adapters = [self._adapter(f"{name}-{i}", broker_url, outbox, shared_group=group,
                                  key_prefix=prefix, client_id=f"bench-{name}-{i}-{uuid.uuid4().hex[:6]}",
                                  site_state=site_state)
                    for i in range(replicas)]
        topic = f"$share/{group}/{TOPIC_FILTER}" if group else TOPIC_FILTER
        for ad in adapters:
            prime_session(self.mosquitto.port, _client_id(ad), topic)
        pub = await Publisher(port=self.mosquitto.port, count=a.messages, spots=a.spots).start().result()
        n = pub["acked"]
        if self.sink is not None:
            await self.sink.reset()
        # Mosquitto is frozen while the adapters start: the runtime connects its sources before its
        # HTTP server answers, so the backlog would otherwise drain before the measurement starts
        os.kill(self.mosquitto.proc.pid, signal.SIGSTOP)
        frozen = True
        for ad in adapters:
            ad.start()
        spy = None
        try:
            for ad in adapters:
                await ad.wait_http(90)
            cpu0 = [ad.stats().get("cpu_s", 0.0) for ad in adapters]
            servers0 = self._server_cpu()
            if profile and a.profile:
                spy_out = Path(a.profile) / f"{name}.txt"
                spy = _start_py_spy(adapters[0].pid, spy_out, self.work)
            idle = [ad.stats().get("rss_mb", 0.0) for ad in adapters]
            seen: dict = {}
            os.kill(self.mosquitto.proc.pid, signal.SIGCONT)
            frozen = False
            t0 = await wait_connected(adapters)
            on_sink = broker_url == self.sink.url
            last_obs = iso_ms(seq_observed(pub["base_ts"], a.messages - 1))
            t_last = await wait_written(self.sink if on_sink else None, None if on_sink else self.local, n,
                                        a.messages - 1, a.spots, last_obs, timeout=max(120.0, n / 100),
                                        watch=adapters, seen=seen)
            if spy is not None:
                spy.send_signal(2)
                spy.wait(30)
                spy = None
                out_profile = summarize_profile(spy_out)
            cpu1 = [ad.stats().get("cpu_s", 0.0) for ad in adapters]
            servers1 = self._server_cpu()
            drained = await wait_drained(adapters, n, timeout=60)
            out: dict = {"messages": n, "written": t_last is not None, "drained": drained, "replicas": replicas,
                         "rss_at_start_mb": [round(x, 1) for x in idle], **seen}
            if profile and a.profile:
                out["profile"] = out_profile
            if t_last is None:
                raise RuntimeError(f"{name}: not every reading reached the broker in time: {adapters[0].log_tail()}")
            if on_sink:
                # shared site state: the last aggregates follow the last spots within a few rounds
                out["site_aggregates"] = await self.site_aggregate_check(
                    n, wait_s=30.0 if site_state == "shared" else 10.0)
                st = await self.sink.stats()
                out["requests"] = st["requests"]
                out["entities_written"] = st["entities"]
                out["requests_per_message"] = round(st["requests"] / n, 4) if n else None
                out["entities_per_request"] = round(st["entities"] / max(1, st["requests"]), 1)
            elapsed = max(1e-6, t_last - t0)
            out["seconds"] = round(elapsed, 3)
            out["msg_per_s"] = round(n / elapsed, 1)
            out["cpu_s"] = round(sum(c1 - c0 for c0, c1 in zip(cpu0, cpu1)), 2)
            out["cpu_per_1000_msgs_s"] = round(1000 * out["cpu_s"] / n, 3) if n else None
            # the servers share the machine's cores with the adapters: their CPU explains a flat scaling
            out["server_cpu_s"] = {k: round(servers1[k] - servers0[k], 2) for k in servers0 if k in servers1}
            if then_rate and replicas == 1:
                out["rate"] = await self.rate_run(adapters[0], broker_url)
            out["peak_rss_mb"] = [round(ad.stats().get("peak_rss_mb", 0.0), 1) for ad in adapters]
            return out
        finally:
            if frozen:
                os.kill(self.mosquitto.proc.pid, signal.SIGCONT)
            if spy is not None:
                spy.kill()
            for ad in adapters:
                ad.terminate(30)
                ad.stats()

    async def on_loaded_sink(self, name: str, outbox: str) -> dict:
        """Full speed (no rate run) into the sink that answers like a loaded Orion-LD."""
        counting, self.sink = self.sink, self.loaded_sink
        try:
            return await self.full_speed(name, self.sink.url, outbox, then_rate=False)
        finally:
            self.sink = counting

    def _server_cpu(self) -> dict[str, float]:
        out = {}
        for name, server in (("redis", self.redis), ("mosquitto", self.mosquitto), ("sink", self.sink)):
            proc = getattr(server, "proc", None)
            if proc is not None and proc.poll() is None:
                out[name] = proc_stats(proc.pid).get("cpu_s", 0.0)
        return out

    async def site_aggregate_check(self, n: int, wait_s: float = 0.0) -> dict:
        """Do the last OffStreetParking written per site count every spot that reported, with the state it
        reported last? (free + occupied must equal the number of distinct spots of the site among the
        ``n`` readings, and free the number of those whose last reading was free.) With ``wait_s`` it
        polls until that holds (the shared site state computes aggregates every interval)."""
        a = self.args
        reported: dict[str, int] = {}
        free: dict[str, int] = {}
        last_seq: dict[int, int] = {}
        for seq in range(n):
            last_seq[seq % a.spots] = seq
        for index, seq in last_seq.items():
            site = f"urn:ngsi-ld:OffStreetParking:bench:site-{index // a.per_site:03d}"
            reported[site] = reported.get(site, 0) + 1
            free[site] = free.get(site, 0) + (1 if (seq // a.spots) % 2 == 0 else 0)   # odd rounds: occupied
        t0 = time.monotonic()
        while True:
            last = await self.sink.last()
            good = bad = 0
            examples = []
            for site, want in reported.items():
                ent = last.get(site) or {}
                avail = int((ent.get("availableSpotNumber") or {}).get("value", 0))
                got = avail + int((ent.get("occupiedSpotNumber") or {}).get("value", 0))
                if got == want and avail == free[site]:
                    good += 1
                else:
                    bad += 1
                    if len(examples) < 3:
                        examples.append({"site": site, "spots_reported": want, "free_plus_occupied": got,
                                         "free_published": free[site], "free_at_broker": avail})
            if not bad or time.monotonic() - t0 >= wait_s:
                break
            await asyncio.sleep(0.25)
        return {"sites_consistent": good, "sites_inconsistent": bad, "examples": examples,
                "seconds_after_last_spot": round(time.monotonic() - t0, 2)}

    async def rate_run(self, adapter: AdapterProcess, broker_url: str) -> dict:
        a = self.args
        count = int(a.rate * a.rate_seconds)
        if broker_url == self.sink.url:
            await self.sink.reset()
        before = await adapter.counter("received")
        cpu0 = adapter.stats().get("cpu_s", 0.0)
        t0 = time.time()
        # start_seq far beyond the preload: new fCnt (no dedup), newer observedAt (no staleness)
        pub = await Publisher(port=self.mosquitto.port, count=count, spots=a.spots, rate=a.rate, time_mode="wall",
                              start_seq=10 * a.spots * (1 + a.messages // a.spots)).start().result()
        if broker_url == self.sink.url:
            drained = await wait_written(self.sink, None, pub["acked"], 0, a.spots, "", timeout=60) is not None
        else:
            drained = await wait_drained([adapter], int(before + pub["acked"]), timeout=60)
        elapsed = time.time() - t0
        cpu1 = adapter.stats().get("cpu_s", 0.0)
        out = {"msg_per_s_target": a.rate, "published": pub["acked"], "publish_s": round(pub["publish_s"], 2),
               "drained": drained, "cpu_percent": round(100 * (cpu1 - cpu0) / max(1e-6, elapsed), 1)}
        if broker_url == self.sink.url:
            st = await self.sink.stats()
            out["latency_ms"] = st["latency_ms"]
            out["latency_n"] = st["latency_n"]
            out["requests_per_message"] = round(st["requests"] / max(1, pub["acked"]), 4)
        else:
            m = await adapter.metrics()
            out["adapter_latency_histogram"] = {k.split("le=")[1].split(",")[0].strip('"}'): v for k, v in m.items()
                                                if k.startswith("stadtlink_end_to_end_latency_seconds_bucket")}
        return out


def _client_id(ad: AdapterProcess) -> str:
    cfg = json.loads(ad.config.read_text())
    return cfg["sources"][0]["client_id"]


def _start_py_spy(pid: int, out: Path, work: Path):
    exe = Path(sys.executable).parent / "py-spy"
    if not exe.exists():
        return None
    out.parent.mkdir(parents=True, exist_ok=True)
    return subprocess.Popen([str(exe), "record", "-p", str(pid), "-o", str(out), "-r", "100", "--nonblocking",
                             "-f", "raw"], stdout=subprocess.DEVNULL, stderr=open(work / "py-spy.log", "ab"))


def summarize_profile(path: Path, top: int = 25) -> dict:
    """Inclusive share of the samples per function (collapsed stacks from ``py-spy -f raw``)."""
    inclusive: dict[str, int] = {}
    own: dict[str, int] = {}
    total = 0
    try:
        lines = path.read_text().splitlines()
    except OSError:
        return {}
    for line in lines:
        stack, _, count = line.rpartition(" ")
        try:
            n = int(count)
        except ValueError:
            continue
        total += n
        frames = [f.split(" (")[0] + " (" + f.split(" (")[1].split(":")[0].rsplit("/", 1)[-1] + ")"
                  if " (" in f else f for f in stack.split(";")]
        for f in set(frames):
            inclusive[f] = inclusive.get(f, 0) + n
        if frames:
            own[frames[-1]] = own.get(frames[-1], 0) + n
    if not total:
        return {}
    pick = lambda d: {k: round(100 * v / total, 1) for k, v in sorted(d.items(), key=lambda kv: -kv[1])[:top]}
    return {"samples": total, "inclusive_percent": pick(inclusive), "self_percent": pick(own)}


def ratio(a, b):
    return round(a / b, 3) if a and b else None


async def run(args) -> dict:
    bench = Bench(args)
    result: dict = {"machine": {"note": "2 shared cores; other agents run concurrently: compare ratios of this run"},
                    "config": {"messages": args.messages, "spots": args.spots, "per_site": args.per_site,
                               "batch_size": args.batch_size, "flush_ms": args.flush_ms, "flush": args.flush or "default", "rate": args.rate,
                               "rate_seconds": args.rate_seconds},
                    "targets": TARGETS}
    await bench.start()
    try:
        bare1 = await bare_loop(bench.mosquitto.port, args.messages, args.spots)
        if not args.only_scaling:
            result["memory_sink"] = await bench.full_speed("mem-sink", bench.sink.url, "memory", profile=True)
            result["redis_sink"] = await bench.full_speed("redis-sink", bench.sink.url, "redis", profile=True)
            if not args.skip_loaded:
                result["memory_loaded_sink"] = await bench.on_loaded_sink("mem-loaded", "memory")
                result["redis_loaded_sink"] = await bench.on_loaded_sink("redis-loaded", "redis")
        if args.only_scaling and args.scaling_local_state:
            # the defect for comparison: two replicas, each with its own (local) site state
            result["scaling_2_local_state"] = await bench.full_speed(
                "local2", bench.sink.url, "memory", replicas=2, shared=True, then_rate=False)
        if not args.skip_scaling:
            # several replicas need the shared site state (adapters/parking/README.md "Scaling"), which
            # needs the Redis outbox: both runs use it, so the ratio compares like with like
            result["scaling_1"] = await bench.full_speed("shared1", bench.sink.url, "redis", replicas=1,
                                                         shared=True, then_rate=False, site_state="shared")
            result["scaling_2"] = await bench.full_speed("shared2", bench.sink.url, "redis", replicas=2,
                                                         shared=True, then_rate=False, site_state="shared")
        if not args.skip_local and not args.only_scaling:
            bench.local = await LocalBrokerProcess(bench.work).start()
            result["memory_local_broker"] = await bench.full_speed("mem-local", bench.local.url, "memory")
            result["redis_local_broker"] = await bench.full_speed("redis-local", bench.local.url, "redis")
        bare2 = await bare_loop(bench.mosquitto.port, args.messages, args.spots)
    finally:
        bench.stop()
    bare_rate = (bare1["rate"] + bare2["rate"]) / 2
    result["bare_loop"] = {"msg_per_s_before": round(bare1["rate"], 1), "msg_per_s_after": round(bare2["rate"], 1),
                           "msg_per_s": round(bare_rate, 1)}
    if args.only_scaling:
        result["summary"] = {"two_vs_one_replica": ratio(result["scaling_2"]["msg_per_s"],
                                                         result["scaling_1"]["msg_per_s"]),
                             "scaling_1_vs_bare": ratio(result["scaling_1"]["msg_per_s"], bare_rate),
                             "scaling_2_vs_bare": ratio(result["scaling_2"]["msg_per_s"], bare_rate)}
        return result
    summary = {
        "memory_vs_bare": ratio(result["memory_sink"]["msg_per_s"], bare_rate),
        "redis_vs_bare": ratio(result["redis_sink"]["msg_per_s"], bare_rate),
        "redis_vs_memory": ratio(result["redis_sink"]["msg_per_s"], result["memory_sink"]["msg_per_s"]),
        "p99_latency_ms_at_1000": {"memory": result["memory_sink"]["rate"].get("latency_ms", {}).get("p99"),
                                   "redis": result["redis_sink"]["rate"].get("latency_ms", {}).get("p99")},
        "p50_latency_ms_at_1000": {"memory": result["memory_sink"]["rate"].get("latency_ms", {}).get("p50"),
                                   "redis": result["redis_sink"]["rate"].get("latency_ms", {}).get("p50")},
        "peak_rss_mb": {"memory": max(result["memory_sink"]["peak_rss_mb"]),
                        "redis": max(result["redis_sink"]["peak_rss_mb"])},
        "requests_per_message_full_speed": {"memory": result["memory_sink"].get("requests_per_message"),
                                            "redis": result["redis_sink"].get("requests_per_message")},
    }
    if "memory_loaded_sink" in result:
        summary["requests_per_message_loaded_sink"] = {
            "memory": result["memory_loaded_sink"].get("requests_per_message"),
            "redis": result["redis_loaded_sink"].get("requests_per_message")}
        summary["loaded_sink_vs_bare"] = {"memory": ratio(result["memory_loaded_sink"]["msg_per_s"], bare_rate),
                                          "redis": ratio(result["redis_loaded_sink"]["msg_per_s"], bare_rate)}
    if "scaling_2" in result:
        summary["two_vs_one_replica"] = ratio(result["scaling_2"]["msg_per_s"], result["scaling_1"]["msg_per_s"])
    if "memory_local_broker" in result:
        summary["memory_local_broker_vs_bare"] = ratio(result["memory_local_broker"]["msg_per_s"], bare_rate)
        summary["redis_local_broker_vs_bare"] = ratio(result["redis_local_broker"]["msg_per_s"], bare_rate)
    result["summary"] = summary
    return result


def main() -> None:
    p = argparse.ArgumentParser(description="end-to-end benchmark of the parking adapter")
    p.add_argument("--messages", type=int, default=20_000, help="uplinks per full-speed run")
    p.add_argument("--spots", type=int, default=10_000)
    p.add_argument("--per-site", type=int, default=100)
    p.add_argument("--rate", type=float, default=1000.0, help="msg/s of the latency run")
    p.add_argument("--rate-seconds", type=float, default=10.0)
    p.add_argument("--batch-size", type=int, default=200)
    p.add_argument("--flush-ms", type=int, default=500, help="broker.flush_ms: the longest a batch waits to fill")
    p.add_argument("--flush", choices=["adaptive", "fixed"], default=None,
                   help="broker.flush (default: the runtime's, adaptive)")
    p.add_argument("--skip-local", action="store_true", help="skip the runs into the local broker")
    p.add_argument("--skip-scaling", action="store_true")
    p.add_argument("--skip-loaded", action="store_true", help="skip the full-speed runs into the loaded-Orion-LD sink")
    p.add_argument("--only-scaling", action="store_true",
                   help="only the bare loop and the 1-vs-2-replica runs (shared site state, Redis outbox)")
    p.add_argument("--scaling-local-state", action="store_true",
                   help="with --only-scaling: also two replicas with site_state local (the defect, for comparison)")
    p.add_argument("--aggregate-interval-ms", type=int, default=500,
                   help="site_state: shared (scaling runs): how often the lease holder computes the site aggregates")
    p.add_argument("--profile", default=None, help="directory for py-spy samples (collapsed stacks) of the memory/sink "
                                                     "and Redis/sink runs; "
                                                     "the summary goes into the JSON")
    args = p.parse_args()
    result = asyncio.run(run(args))
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()

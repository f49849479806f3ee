"""stadtlink's parking adapter and the FIWARE IoT Agent for JSON, side by side in one run (issue 21 item 6).

What runs (all on 127.0.0.1, all started and stopped by this script, one after the other on the same
servers so that both see the same machine):

* an own Mosquitto, an own Redis (no persistence) and the counting sink (``benchmarks/sink.py``,
  own process, ``--record``) on free ports;
* **stadtlink**: ``stadtlink run parking`` in its production configuration: Redis outbox,
  ``check: strict``, MQTT source (QoS 1, persistent session), a registry of ``--devices`` Bosch TPS110
  spots; it reads TTS v3 uplinks (``v3/<app>@ttn/devices/<id>/up``, base64 TPS110 occupancy payload).
  Site aggregates and Device entities are switched off so that, like the agent, it writes exactly one
  entity (the ParkingSpot) per uplink;
* **the IoT Agent**: ``telefonicaid/iotagent-json`` at the pinned commit below with
  ``iotagent-node-lib`` 4.14.0 from npm, NGSI-LD mode, memory device registry, provisioned (one
  service group, one device per spot) for the same spots and the same entity ids; it reads JSON
  measures ``/<apikey>/<device>/attrs`` ``{"status": …, "TimeInstant": …}`` and sends one
  ``POST /ngsi-ld/v1/entityOperations/upsert/?options=update`` per measure;
* a paho-mqtt publisher process per step (QoS 1 to Mosquitto, round robin over the spots, the
  observation time = the publish time, so the sink's arrival − ``status.observedAt`` is the
  device → broker latency).

Phases (per system, the systems interleaved step by step):

1. warm-up (2 s at 200 msg/s, not counted);
2. **sink outage**: ``--outage-rate`` msg/s; after a few seconds the sink refuses connections for
   10 s, then answers again; afterwards: how many published readings never reached the sink (a
   reading that a newer reading of the same spot replaced before the write counts as superseded,
   not lost: latest-state semantics, as in ``faults.py``);
3. **rate steps**: ``--rates`` for ``--step-seconds`` each. A step **passes** when every published
   reading reached the sink and p99 ≤ 100 ms. A system **keeps up** when every reading arrived and
   p99 ≤ 1 s (a latency above 100 ms but bounded is not overload: stadtlink's batching waits longer at
   low rates than at high ones); a system that does not keep up is restarted, warmed up and the step
   repeated once (a noisy machine); a second miss ends its steps. Sustained rate = highest passed step.

Reported per system: sustained rate, CPU per message (ms, the process itself; stadtlink also with its
Redis), peak RSS (VmHWM), HTTP requests per message at the sustained step, and the outage losses.
The last line printed is one JSON object with ``stadtlink_sustained_msg_per_s``,
``iotagent_sustained_msg_per_s``, their ratio and the outage losses.

The agent is never committed here: ``--iotagent-src`` names a git checkout or mirror of
https://github.com/telefonicaid/iotagent-json that contains the pinned commit; the script exports
that commit (``git archive``) into ``--cache-dir`` and runs ``npm install`` there once.

Run: ``python benchmarks/peer.py`` (about 10–15 min) or ``--quick`` (a few minutes). Needs node ≥ 18
and npm, mosquitto, redis-server. Not a test: compare the ratio of one run.
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
import urllib.error
import urllib.request
import uuid
from datetime import datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

IOTAGENT_REPO = "https://github.com/telefonicaid/iotagent-json.git"
IOTAGENT_COMMIT = "73d1e0f3fd4c93d364696cdc32a68666ff1dcdfa"
NODE_LIB_VERSION = "4.14.0"
#: where a checkout or mirror of iotagent-json is looked for when --iotagent-src is not given
SRC_CANDIDATES = ("/work/.mirror/telefonicaid+iotagent-json/repo", "/work/peer/iotagent-json-git",
                  "~/src/iotagent-json", "./iotagent-json")
APIKEY = "parkingkey"
FIWARE_SERVICE = "stadtlink"
RESOURCE = "/iot/json"
P99_LIMIT_MS = 100.0
KEEP_UP_P99_MS = 1000.0
SYSTEMS = ("stadtlink", "iotagent")


# ------------------------------------------------------------------------------------ the agent's code

def find_source(given: str | None) -> Path | None:
    if given:
        return Path(given).expanduser()
    for cand in [os.environ.get("STADTLINK_IOTAGENT_SRC", ""), *SRC_CANDIDATES]:
        if cand and Path(cand).expanduser().exists():
            p = Path(cand).expanduser()
            if _git(p, "cat-file", "-t", IOTAGENT_COMMIT, check=False).strip() == "commit":
                return p
    return None


def how_to_get_it() -> str:
    return (f"iotagent-json not found. Get it (only the pinned commit is used) and pass --iotagent-src:\n"
            f"    git clone {IOTAGENT_REPO} ~/src/iotagent-json\n"
            f"    git -C ~/src/iotagent-json checkout {IOTAGENT_COMMIT}\n"
            f"    python benchmarks/peer.py --iotagent-src ~/src/iotagent-json")


def _git(src: Path, *args: str, check: bool = True) -> str:
    git_dir = ["--git-dir", str(src)] if (src / "objects").is_dir() and not (src / ".git").exists() else ["-C", str(src)]
    res = subprocess.run(["git", *git_dir, *args], capture_output=True, text=True)
    if check and res.returncode != 0:
        raise RuntimeError(f"git {' '.join(args)} in {src}: {res.stderr.strip()}")
    return res.stdout


def install_agent(src: Path, cache_dir: Path, log) -> Path:
    """Export the pinned commit from ``src`` (a checkout or bare mirror), pin iotagent-node-lib to the npm
    release and install the production dependencies, once; returns the agent's directory."""
    kind = _git(src, "cat-file", "-t", IOTAGENT_COMMIT, check=False).strip()
    if kind != "commit":
        raise SystemExit(f"{src} is not a git repository holding iotagent-json commit {IOTAGENT_COMMIT}.\n"
                         + how_to_get_it())
    target = cache_dir / f"iotagent-json-{IOTAGENT_COMMIT[:12]}-nodelib-{NODE_LIB_VERSION}"
    stamp = target / ".stadtlink-peer-installed"
    if stamp.exists() and stamp.read_text().strip() == IOTAGENT_COMMIT:
        return target
    log(f"installing iotagent-json {IOTAGENT_COMMIT[:12]} + iotagent-node-lib {NODE_LIB_VERSION} into {target} …")
    shutil.rmtree(target, ignore_errors=True)
    target.mkdir(parents=True)
    archive = subprocess.run(["git", *(["--git-dir", str(src)] if (src / "objects").is_dir()
                                       and not (src / ".git").exists() else ["-C", str(src)]),
                              "archive", IOTAGENT_COMMIT], capture_output=True, check=True).stdout
    subprocess.run(["tar", "-x", "-C", str(target)], input=archive, check=True)
    # package.json names iotagent-node-lib as a git dependency on a moving branch (#master): take the
    # npm release instead (its lib/ equals that branch's lib/ at the time of the pinned commit)
    subprocess.run(["npm", "pkg", "set", f"dependencies.iotagent-node-lib={NODE_LIB_VERSION}"], cwd=target, check=True)
    res = subprocess.run(["npm", "install", "--omit=dev", "--no-audit", "--no-fund", "--ignore-scripts"],
                         cwd=target, capture_output=True, text=True, timeout=900)
    if res.returncode != 0:
        raise SystemExit(f"npm install failed in {target}:\n{res.stderr[-3000:]}")
    got = json.loads((target / "node_modules" / "iotagent-node-lib" / "package.json").read_text())["version"]
    if got != NODE_LIB_VERSION:
        raise SystemExit(f"iotagent-node-lib {got} installed, expected {NODE_LIB_VERSION}")
    stamp.write_text(IOTAGENT_COMMIT + "\n")
    return target


def agent_env(*, sink_port: int, north_port: int, http_port: int, mqtt_port: int) -> dict[str, str]:
    """The agent's configuration (environment overrides its config.js)."""
    return {
        "IOTA_CB_NGSI_VERSION": "ld",                     # NGSI-LD entity handler
        "IOTA_CB_HOST": "127.0.0.1", "IOTA_CB_PORT": str(sink_port),
        # no default: without it the agent sends ld+json without @context (Orion-LD: 207 → measure lost)
        "IOTA_JSON_LD_CONTEXT": "https://uri.etsi.org/ngsi-ld/v1/ngsi-ld-core-context.jsonld",
        "IOTA_REGISTRY_TYPE": "memory",                   # config.js default is mongodb
        "IOTA_NORTH_HOST": "127.0.0.1", "IOTA_NORTH_PORT": str(north_port),
        "IOTA_PROVIDER_URL": f"http://127.0.0.1:{north_port}",
        "IOTA_MQTT_HOST": "127.0.0.1", "IOTA_MQTT_PORT": str(mqtt_port), "IOTA_MQTT_KEEPALIVE": "60",
        "IOTA_AMQP_DISABLED": "true",                     # else it connects to localhost:5672
        "IOTA_HTTP_HOST": "127.0.0.1", "IOTA_HTTP_PORT": str(http_port),   # southbound HTTP always starts
        "IOTA_DEFAULT_RESOURCE": RESOURCE,                # the MQTT lookup uses it: must equal the group's
        "IOTA_LOG_LEVEL": "ERROR",                        # config.js default is DEBUG
        "IOTA_TIMESTAMP": "true",
    }


def provisioning(devices: int) -> tuple[dict, dict]:
    from benchmarks.harness import spot_device, spot_entity_id

    attrs = [{"object_id": "status", "name": "status", "type": "Text"},
             # with "timestamp": true the measure's TimeInstant becomes observedAt of every attribute
             {"object_id": "TimeInstant", "name": "TimeInstant", "type": "DateTime"}]
    common = {"apikey": APIKEY, "entity_type": "ParkingSpot", "transport": "MQTT", "timestamp": True,
              "explicitAttrs": True, "attributes": attrs}
    group = {"services": [{**common, "resource": RESOURCE, "autoprovision": False}]}
    devs = {"devices": [{**common, "device_id": spot_device(i), "entity_name": spot_entity_id(i)}
                        for i in range(devices)]}
    return group, devs


def _fiware(method: str, url: str, body: dict | None = None, timeout: float = 30.0) -> tuple[int, bytes]:
    req = urllib.request.Request(url, method=method, data=json.dumps(body).encode() if body is not None else None,
                                 headers={"Content-Type": "application/json", "fiware-service": FIWARE_SERVICE,
                                          "fiware-servicepath": "/"})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


class AgentProcess:
    """``node bin/iotagent-json`` with :func:`agent_env`, provisioned for ``devices`` spots."""

    def __init__(self, agent_dir: Path, work: Path, *, sink_port: int, mqtt_port: int, devices: int):
        from stadtlink.adapters.core.testing import free_port

        self.dir, self.devices = agent_dir, devices
        self.north_port, self.http_port = free_port(), free_port()
        self.env = {**os.environ, **agent_env(sink_port=sink_port, north_port=self.north_port,
                                              http_port=self.http_port, mqtt_port=mqtt_port)}
        self.log_path = work / f"iotagent-{uuid.uuid4().hex[:6]}.log"
        self.proc: subprocess.Popen | None = None
        self.last: dict[str, float] = {}

    def start(self, timeout: float = 60.0) -> "AgentProcess":
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(["node", "bin/iotagent-json"], cwd=self.dir, env=self.env, stdout=log,
                                         stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"iotagent exited: {self.log_tail()}")
            try:
                status, _ = _fiware("GET", f"http://127.0.0.1:{self.north_port}/iot/about", timeout=2)
                if status == 200:
                    break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise TimeoutError(f"iotagent not up after {timeout}s: {self.log_tail()}")
            time.sleep(0.2)
        group, devs = provisioning(self.devices)
        north = f"http://127.0.0.1:{self.north_port}"
        bodies = [("/iot/services", group)] + [   # its body limit: 500 devices per request
            ("/iot/devices", {"devices": devs["devices"][i:i + 500]}) for i in range(0, self.devices, 500)]
        for path, body in bodies:
            status, answer = _fiware("POST", north + path, body, timeout=120)
            if status != 201:
                raise RuntimeError(f"provisioning {path}: {status} {answer[:300]!r}")
        status, answer = _fiware("GET", north + f"/iot/devices?limit={self.devices + 10}")
        count = json.loads(answer).get("count")
        if count != self.devices:
            raise RuntimeError(f"provisioned {count} devices, expected {self.devices}")
        time.sleep(1.0)   # its MQTT client connects and subscribes after the north API is up
        return self

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def stats(self) -> dict[str, float]:
        from benchmarks.harness import proc_stats

        if self.proc is not None and self.proc.poll() is None:
            s = proc_stats(self.pid)
            if s:
                self.last = s
        return dict(self.last)

    def stop(self) -> None:
        if self.proc is None:
            return
        self.stats()
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def log_tail(self, n: int = 2000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-n:]
        except OSError:
            return ""

    def log_count(self, needle: str) -> int:
        try:
            return self.log_path.read_text(errors="replace").count(needle)
        except OSError:
            return 0


# ------------------------------------------------------------------------------------ publisher (child)

def _publish_main(argv: list[str]) -> None:
    """``peer.py _publish``: QoS 1 publisher of one system's payloads at a fixed rate; prints the
    observation time (ms) of every reading, in order (reading k is spot (start_seq + k) % devices)."""
    import paho.mqtt.client as paho

    from benchmarks.harness import iso_ms, reading, spot_device

    p = argparse.ArgumentParser(prog="peer.py _publish")
    p.add_argument("--system", choices=SYSTEMS, required=True)
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--rate", type=float, required=True)
    p.add_argument("--count", type=int, required=True)
    p.add_argument("--devices", type=int, required=True)
    p.add_argument("--start-seq", type=int, default=0)
    p.add_argument("--last-ms", help="JSON file {spot index: last observation ms} of earlier runs")
    a = p.parse_args(argv)
    c = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id=f"peer-pub-{uuid.uuid4().hex[:8]}",
                    protocol=paho.MQTTv311)
    c.max_inflight_messages_set(1000)
    c.max_queued_messages_set(0)
    c.connect("127.0.0.1", a.port, keepalive=30)
    c.loop_start()
    deadline = time.monotonic() + 10
    while not c.is_connected():
        if time.monotonic() > deadline:
            print(json.dumps({"error": "no MQTT connection"}), flush=True)
            sys.exit(1)
        time.sleep(0.01)
    last_ms = {int(k): v for k, v in json.loads(Path(a.last_ms).read_text()).items()} if a.last_ms else {}
    obs: list[int] = []
    infos = []
    t0 = time.time()
    for k in range(a.count):
        due = t0 + k / a.rate
        now = time.time()
        if due > now:
            time.sleep(due - now)
            now = time.time()
        seq = a.start_seq + k
        index = seq % a.devices
        ms = int(now * 1000)
        if ms <= last_ms.get(index, 0):
            ms = last_ms[index] + 1     # (spot, observedAt) unique, and newer than the spot's last
        last_ms[index] = ms
        obs.append(ms)
        if a.system == "stadtlink":
            topic, payload = reading(seq, a.devices, ms / 1000.0)
        else:
            rnd = seq // a.devices
            topic = f"/{APIKEY}/{spot_device(index)}/attrs"
            payload = json.dumps({"status": "occupied" if rnd % 2 else "free", "TimeInstant": iso_ms(ms / 1000.0)},
                                 separators=(",", ":")).encode()
        infos.append(c.publish(topic, payload, qos=1))
    t_end = time.time()
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not all(i.is_published() for i in infos):
        time.sleep(0.05)
    unacked = sum(1 for i in infos if not i.is_published())
    c.disconnect()
    c.loop_stop()
    print(json.dumps({"published": a.count, "unacked": unacked, "t0": t0, "t_end": t_end,
                      "rate_achieved": round(a.count / max(1e-6, t_end - t0), 1), "obs_ms": obs}), flush=True)


# ------------------------------------------------------------------------------------ the run

def _obs_ms(text: str) -> int | None:
    try:
        return round(datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp() * 1000)
    except (TypeError, ValueError, AttributeError):
        return None


def tally(pub: dict, start_seq: int, devices: int, written: dict[str, list[str]]) -> dict:
    """Per published reading: written (its observedAt reached the sink), superseded (not written, but a
    newer reading of the same spot was), else lost. ``not_written`` = superseded + lost: the strict count
    (the agent never coalesces, so for it every reading not written is one it dropped)."""
    from benchmarks.harness import spot_entity_id

    sets: dict[str, set[int]] = {}
    for eid, values in written.items():
        sets[eid] = {m for m in map(_obs_ms, values) if m is not None}
    newest = {eid: max(s) for eid, s in sets.items() if s}
    n_written = superseded = lost = 0
    for k, ms in enumerate(pub["obs_ms"]):
        eid = spot_entity_id((start_seq + k) % devices)
        if ms in sets.get(eid, ()):
            n_written += 1
        elif newest.get(eid, 0) > ms:
            superseded += 1
        else:
            lost += 1
    return {"published": len(pub["obs_ms"]), "written": n_written, "not_written": len(pub["obs_ms"]) - n_written,
            "superseded": superseded, "lost": lost}


class Run:
    def __init__(self, args, log):
        from benchmarks.harness import SinkProcess
        from stadtlink.adapters.core.testing import MosquittoProcess, RedisProcess

        self.a, self.log = args, log
        self.work = Path(tempfile.mkdtemp(prefix="stadtlink-peer-"))
        self.mosquitto = MosquittoProcess(max_queued_messages=10_000_000, data_dir=self.work / "mosquitto")
        self.redis = RedisProcess(data_dir=self.work / "redis")
        self.sink = SinkProcess(record=True)
        self.agent: AgentProcess | None = None
        self.adapter = None
        self.next_seq = {s: 0 for s in SYSTEMS}
        self.last_ms: dict[str, dict[int, int]] = {s: {} for s in SYSTEMS}
        self.restarts = {s: 0 for s in SYSTEMS}

    # -- servers and systems -------------------------------------------------------------------------
    def start_servers(self) -> None:
        self.mosquitto.start()
        self.redis.start()
        self.sink.start()

    def start_system(self, system: str) -> None:
        if system == "iotagent":
            self.agent = AgentProcess(self.a.agent_dir, self.work, sink_port=self.sink.port,
                                      mqtt_port=self.mosquitto.port, devices=self.a.devices)
            self.agent.start()
        else:
            asyncio.run(self._start_adapter())

    async def _start_adapter(self) -> None:
        from benchmarks.harness import AdapterProcess, write_config, write_fleet
        from stadtlink.adapters.core.testing import free_port

        write_fleet(self.work, spots=self.a.devices, per_site=100)
        port = free_port()
        cfg = write_config(self.work, broker_url=self.sink.url, mqtt_port=self.mosquitto.port, http_port=port,
                           client_id=f"peer-stadtlink-{uuid.uuid4().hex[:6]}", outbox="redis",
                           redis_url=self.redis.url, key_prefix=f"peer-{uuid.uuid4().hex[:8]}",
                           name=f"stadtlink-{uuid.uuid4().hex[:6]}.yaml")
        doc = json.loads(cfg.read_text())
        # one entity per uplink, like the agent: no site aggregate, no Device entity
        doc["settings"].update({"aggregate_sites": False, "devices": False, "level_groups": False})
        for key in ("retry_base_s", "retry_max_s", "health_interval_s"):   # the product's defaults
            doc["broker"].pop(key, None)
        cfg.write_text(json.dumps(doc, indent=1))
        self.adapter = AdapterProcess(cfg, port)
        self.adapter.start()    # assigned first: stop() ends it also when it never gets ready
        await self.adapter.wait_ready(90)

    def stop_system(self, system: str) -> None:
        if system == "iotagent" and self.agent is not None:
            self.agent.stop()
        elif system == "stadtlink" and self.adapter is not None:
            self.adapter.terminate(30)

    def restart_system(self, system: str) -> None:
        self.stop_system(system)
        self.restarts[system] += 1
        self.start_system(system)
        asyncio.run(self.phase(system, 200, 2.0, counted=False))      # warm-up (JIT, connections)

    def stats(self, system: str) -> dict[str, float]:
        return (self.agent.stats() if system == "iotagent" else self.adapter.stats())

    def redis_cpu(self) -> float:
        from benchmarks.harness import proc_stats

        return proc_stats(self.redis.proc.pid).get("cpu_s", 0.0) if self.redis.proc else 0.0

    def stop(self) -> None:
        for system in SYSTEMS:
            try:
                self.stop_system(system)
            except Exception as exc:  # noqa: BLE001 - clean up the rest in any case
                self.log(f"stopping {system}: {exc}")
        self.sink.stop()
        self.redis.cleanup()
        self.mosquitto.cleanup()
        if not self.a.keep_work:
            shutil.rmtree(self.work, ignore_errors=True)

    # -- one measured phase --------------------------------------------------------------------------
    async def phase(self, system: str, rate: float, seconds: float, outage: tuple[float, float] | None = None,
                    counted: bool = True) -> dict:
        a = self.a
        count = int(rate * seconds)
        start_seq = self.next_seq[system]
        self.next_seq[system] += count
        await self.sink.mode("ok")
        await self.sink.reset()
        s0, r0 = self.stats(system), self.redis_cpu()
        t_wall0 = time.time()
        last_path = self.work / f"last-ms-{system}.json"     # a file: one argument is limited to 128 KiB
        last_path.write_text(json.dumps(self.last_ms[system]))
        cmd = [sys.executable, str(Path(__file__).resolve()), "_publish", "--system", system,
               "--port", str(self.mosquitto.port), "--rate", str(rate), "--count", str(count),
               "--devices", str(a.devices), "--start-seq", str(start_seq),
               "--last-ms", str(last_path)]
        # its output (every observation time) is larger than a pipe's buffer: a file, read after it exited
        out_path = self.work / f"publish-{system}-{start_seq}.out"
        with open(out_path, "wb") as out_fh:
            pub_proc = subprocess.Popen(cmd, stdout=out_fh, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            if outage:
                await asyncio.sleep(outage[0])
                await self.sink.mode("refuse")
                t_down = time.time()
                await asyncio.sleep(outage[1])
                await self.sink.mode("ok")
                t_up = time.time()
            deadline = time.monotonic() + seconds + 120
            while pub_proc.poll() is None:
                if time.monotonic() > deadline:
                    raise TimeoutError("publisher did not finish")
                await asyncio.sleep(0.1)
            text = out_path.read_text(errors="replace")
            lines = text.strip().splitlines()
            try:
                pub = json.loads(lines[-1])
            except (IndexError, ValueError):
                raise RuntimeError(f"publisher failed: {text[-2000:]}") from None
            if "error" in pub:
                raise RuntimeError(pub["error"])
            out_path.unlink()
        finally:
            if pub_proc.poll() is None:
                pub_proc.kill()
                pub_proc.wait()
        for k, ms in enumerate(pub["obs_ms"]):
            self.last_ms[system][(start_seq + k) % a.devices] = ms
        # drain: until nothing is missing, or the sink saw no new entity for `stall_s`, bounded
        t_drain0 = time.monotonic()
        last_n, last_change = -1, time.monotonic()
        result = None
        while True:
            st = await self.sink.stats()
            n = st["entities"]
            now = time.monotonic()
            if n != last_n:
                last_n, last_change = n, now
            quiet = now - last_change
            if n >= count or quiet >= 1.0:
                result = tally(pub, start_seq, a.devices, await self.sink.written())
                if result["lost"] == 0 or quiet >= a.stall_s or now - t_drain0 > a.drain_max_s:
                    break
            elif now - t_drain0 > a.drain_max_s:
                result = tally(pub, start_seq, a.devices, await self.sink.written())
                break
            await asyncio.sleep(0.5 if n < count else 0.1)
        st = await self.sink.stats()
        s1, r1 = self.stats(system), self.redis_cpu()
        wall = time.time() - t_wall0
        cpu = s1.get("cpu_s", 0.0) - s0.get("cpu_s", 0.0)
        row = {"system": system, "rate": rate, "seconds": seconds, **result,
               "rate_achieved": pub["rate_achieved"], "unacked_by_mosquitto": pub["unacked"],
               "p50_ms": st["latency_ms"]["p50"], "p99_ms": st["latency_ms"]["p99"], "max_ms": st["latency_ms"]["max"],
               "requests": st["requests"], "requests_per_msg": round(st["requests"] / count, 4) if count else None,
               "entities_per_request": round(st["entities"] / max(1, st["requests"]), 1),
               "cpu_ms_per_msg": round(1000 * cpu / count, 3) if count else None,
               "peak_rss_mb": round(s1.get("peak_rss_mb", 0.0), 1), "rss_mb": round(s1.get("rss_mb", 0.0), 1),
               "drain_s": round(time.monotonic() - t_drain0, 1), "wall_s": round(wall, 1),
               "loadavg_1m": round(os.getloadavg()[0], 2)}
        if system == "stadtlink":
            row["redis_cpu_ms_per_msg"] = round(1000 * (r1 - r0) / count, 3) if count else None
        if outage:
            row["outage_s"] = round(t_up - t_down, 1)
            obs = pub["obs_ms"]
            row["published_while_down"] = sum(1 for ms in obs if t_down * 1000 <= ms < t_up * 1000)
        if counted:
            p99 = row["p99_ms"] if row["p99_ms"] is not None else float("inf")
            row["publisher_limited"] = pub["rate_achieved"] < 0.95 * rate
            row["passed"] = row["not_written"] == 0 and p99 <= P99_LIMIT_MS and not row["publisher_limited"]
            # keeping up: everything written, latency bounded (a backlog shows as p99 in seconds)
            row["kept_up"] = row["not_written"] == 0 and p99 <= KEEP_UP_P99_MS
        return row


def _fmt(row: dict) -> str:
    return (f"{row['system']:9s} {row['rate']:7.0f}/s  written {row['written']:6d} superseded {row['superseded']:5d} "
            f"not written {row['not_written']:6d}  p50 {row['p50_ms']} p99 {row['p99_ms']} ms  req/msg {row['requests_per_msg']}  "
            f"cpu {row['cpu_ms_per_msg']} ms/msg  rss {row['peak_rss_mb']} MB  load {row['loadavg_1m']}"
            + (f"  {'PASS' if row['passed'] else 'fail'}" if "passed" in row else ""))


def measure(args, log) -> dict:
    quick = args.quick
    rates = [float(x) for x in (args.rates or ("100,250,500,1000,2000,4000" if quick else
                                               "100,200,400,600,800,1000,1500,2000,2500,3000,4000,5000")).split(",")]
    step_s = args.step_seconds or (4.0 if quick else 8.0)
    pre = 3.0 if quick else 5.0
    budget = args.max_minutes * 60 if args.max_minutes else (6 * 60 if quick else 15 * 60)
    t_start = time.monotonic()
    out: dict = {"started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "quick": quick,
                 "loadavg_start": [round(x, 2) for x in os.getloadavg()], "cpus": os.cpu_count(),
                 "devices": args.devices, "iotagent_commit": IOTAGENT_COMMIT, "iotagent_node_lib": NODE_LIB_VERSION,
                 "node": subprocess.run(["node", "-v"], capture_output=True, text=True).stdout.strip(),
                 "stadtlink_commit": subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"],
                                                    capture_output=True, text=True).stdout.strip(),
                 "step_seconds": step_s, "outage": {}, "steps": []}
    run = Run(args, log)
    try:
        run.start_servers()
        for system in SYSTEMS:
            run.start_system(system)
            asyncio.run(run.phase(system, 200, 2.0, counted=False))      # warm-up
        log(f"servers and both systems up ({time.monotonic() - t_start:.0f} s); load {os.getloadavg()[0]:.2f}")
        for system in SYSTEMS:   # the outage first: before any overload step can spoil a system
            row = asyncio.run(run.phase(system, args.outage_rate, pre + 10.0 + pre, outage=(pre, 10.0), counted=False))
            out["outage"][system] = row
            log("outage    " + _fmt(row) + f"  published while down {row['published_while_down']}")
        alive = {s: True for s in SYSTEMS}
        retried = {s: False for s in SYSTEMS}
        failed_out = {s: False for s in SYSTEMS}
        best: dict[str, dict | None] = {s: None for s in SYSTEMS}
        out["stopped_by"] = "all rates done"
        for rate in rates:
            for system in SYSTEMS:
                while alive[system]:
                    if time.monotonic() - t_start + step_s + 40 > budget:
                        out["stopped_by"] = "time budget"
                        alive = {s: False for s in SYSTEMS}
                        break
                    row = asyncio.run(run.phase(system, rate, step_s))
                    out["steps"].append(row)
                    log("step      " + _fmt(row))
                    if row["passed"]:
                        best[system] = row
                    if row["publisher_limited"]:
                        out["stopped_by"] = f"publisher below 95 % of {rate:.0f}/s"
                        alive = {s: False for s in SYSTEMS}
                        break
                    if row["kept_up"]:      # passed, or only its latency above 100 ms: next rate
                        retried[system] = False
                        break
                    if retried[system]:
                        alive[system] = False
                        failed_out[system] = True
                        break
                    retried[system] = True
                    log(f"{system}: {rate:.0f}/s failed, restarting it and repeating the step once")
                    run.restart_system(system)
            if not any(alive.values()):
                break
        # False: the system passed every step it ran, its sustained rate is only a lower bound
        out["limit_reached"] = failed_out
        for s in SYSTEMS:
            b = best[s]
            out[f"{s}_sustained_msg_per_s"] = b["rate"] if b else 0
            for key in ("cpu_ms_per_msg", "p99_ms", "requests_per_msg"):
                out[f"{s}_{key}_at_sustained"] = b[key] if b else None
            if s == "stadtlink" and b:
                out["stadtlink_redis_cpu_ms_per_msg_at_sustained"] = b["redis_cpu_ms_per_msg"]
            out[f"{s}_peak_rss_mb"] = max((r["peak_rss_mb"] for r in out["steps"] if r["system"] == s and r.get("passed")),
                                          default=None)
            out[f"{s}_peak_rss_mb_any_step"] = max((r["peak_rss_mb"] for r in out["steps"] if r["system"] == s),
                                                   default=None)
            o = out["outage"].get(s, {})
            out[f"{s}_outage_lost"] = o.get("not_written")
            out[f"{s}_outage_lost_latest_state"] = o.get("lost")
            out[f"{s}_outage_published_while_down"] = o.get("published_while_down")
        ia = out["iotagent_sustained_msg_per_s"]
        out["ratio_stadtlink_vs_iotagent"] = round(out["stadtlink_sustained_msg_per_s"] / ia, 2) if ia else None
        out["restarts"] = run.restarts
        if args.keep_work:
            out["work_dir"] = str(run.work)
    finally:
        run.stop()
        out["loadavg_end"] = [round(x, 2) for x in os.getloadavg()]
        out["minutes"] = round((time.monotonic() - t_start) / 60, 1)
    return out


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "_publish":
        _publish_main(sys.argv[2:])
        return
    p = argparse.ArgumentParser(description="stadtlink's parking adapter (Redis outbox, check: strict) vs the FIWARE "
                                            "IoT Agent for JSON: sustained rate, CPU, RSS, requests per message, "
                                            "losses during a 10 s sink outage. Last line: one JSON object.")
    p.add_argument("--quick", action="store_true", help="a few minutes: 4 s steps, fewer rates")
    p.add_argument("--iotagent-src", help="git checkout or mirror of iotagent-json holding commit "
                                          f"{IOTAGENT_COMMIT[:12]} (default: look in {', '.join(SRC_CANDIDATES)})")
    p.add_argument("--cache-dir", default=os.environ.get("STADTLINK_BENCH_CACHE", "~/.cache/stadtlink-bench"),
                   help="where the agent is exported and its npm dependencies installed (outside the repository)")
    p.add_argument("--devices", type=int, default=1000, help="parking spots (provisioned in both systems)")
    p.add_argument("--rates", help="comma-separated msg/s steps (default: 100 … 5000; quick: 100 … 4000)")
    p.add_argument("--step-seconds", type=float, help="publish time per step (default 8; quick 4)")
    p.add_argument("--outage-rate", type=float, default=200.0, help="msg/s during the sink-outage phase")
    p.add_argument("--stall-s", type=float, default=10.0, help="a step ends when the sink saw nothing new this long")
    p.add_argument("--drain-max-s", type=float, default=45.0, help="upper bound of a step's drain")
    p.add_argument("--max-minutes", type=float, help="time budget (default 15; quick 6)")
    p.add_argument("--keep-work", action="store_true", help="keep the temp dir (configs, logs)")
    args = p.parse_args()
    for tool in ("node", "npm", "mosquitto", "redis-server", "git"):
        if shutil.which(tool) is None:
            raise SystemExit(f"{tool} not found on PATH")

    def log(msg: str) -> None:
        print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)

    src = find_source(args.iotagent_src)
    if src is None:
        raise SystemExit(how_to_get_it())
    args.agent_dir = install_agent(src, Path(args.cache_dir).expanduser(), log)
    log(f"agent: {args.agent_dir} (from {src})")
    old = signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
    try:
        out = measure(args, log)
    finally:
        signal.signal(signal.SIGTERM, old)
    print(json.dumps({k: v for k, v in out.items() if k not in ("steps", "outage")}, indent=1))
    print("steps:")
    for row in out["steps"]:
        print("  " + _fmt(row))
    for s, row in out["outage"].items():
        print(f"  outage {s}: published {row['published']} (while down {row['published_while_down']}), "
              f"written {row['written']}, not written {row['not_written']} (of these superseded by a newer "
              f"state of the spot {row['superseded']})")
    print(json.dumps(out, separators=(",", ":")))


if __name__ == "__main__":
    main()

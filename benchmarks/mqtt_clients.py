"""MQTT client libraries compared in one run: receive + acknowledge-after-commit throughput.

Each candidate drains the same kind of backlog — N QoS 1 uplinks (the parking benchmark's TTS
envelopes) preloaded into a persistent MQTT 5 session on an own Mosquitto — and acknowledges every
message only after a simulated commit of the messages it has in hand (one ``await`` per group, as
the pipeline's group commit does), through the library's *public* API where it has one:

* ``paho-public`` — stadtlink's client (adapters/core/sources/mqtt_client.py): paho-mqtt 2.x's
  external-loop API driven by asyncio, ``manual_ack=True`` + ``Client.ack(mid, qos)``.
* ``gmqtt`` — gmqtt with ``optimistic_acknowledgement=False``: an ``async`` ``on_message`` per
  message whose return value gmqtt turns into the PUBACK (a Task per message).
* ``paho-private`` — the previous stadtlink client (git ``5bcad08``), which switched the class of
  aiomqtt's paho client and overrode its private receive methods (for reference only).
* ``aiomqtt-auto`` — the bare aiomqtt loop of pipeline.py (paho acknowledges on receipt; aiomqtt
  2.x has no manual acknowledgement in its API, so it cannot acknowledge after a commit).

Each candidate runs in its own process, ``--rounds`` times, interleaved. Printed: msg/s (first to
last message) and CPU µs per message of the receiving process; the last line is one JSON object.

    python benchmarks/mqtt_clients.py [--messages 20000] [--rounds 2]
"""
from __future__ import annotations

import argparse
import asyncio
import importlib.util
import json
import subprocess
import sys
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks.harness import CHILD_ENV, TOPIC_FILTER, Publisher, prime_session  # noqa: E402

CANDIDATES = ("paho-public", "gmqtt", "paho-private", "aiomqtt-auto")
RECEIVE_MAXIMUM = 100


# ------------------------------------------------------------------------------------------- children

class _Clock:
    def __init__(self, count: int):
        self.count = count
        self.n = 0
        self.first = self.last = None
        self.cpu0 = time.process_time()
        self.done = asyncio.get_running_loop().create_future()

    def got(self, k: int = 1) -> None:
        now = time.perf_counter()
        if self.first is None:
            self.first = now
            self.cpu0 = time.process_time()
        self.n += k
        self.last = now
        if self.n >= self.count and not self.done.done():
            self.done.set_result(None)

    def result(self) -> dict:
        cpu = time.process_time() - self.cpu0
        secs = (self.last - self.first) if self.first and self.last else None
        return {"count": self.n, "seconds": secs,
                "msg_per_s": round((self.n - 1) / secs, 1) if secs else None,
                "cpu_us_per_msg": round(cpu / max(1, self.n) * 1e6, 1)}


async def _paho_public(port: int, client_id: str, count: int) -> dict:
    from stadtlink.adapters.core.sources.mqtt_client import MqttSettings, connect

    clock = _Clock(count)
    settings = MqttSettings(host="127.0.0.1", port=port, client_id=client_id, receive_maximum=RECEIVE_MAXIMUM)
    async with connect(settings) as conn:
        async def drain():
            async for group in conn.groups():
                await asyncio.sleep(0)          # the group's commit
                for m in group:
                    conn.ack(m)
                clock.got(len(group))
                if clock.n >= count:
                    return
        await asyncio.wait_for(drain(), 600)
    return clock.result()


async def _paho_private(port: int, client_id: str, count: int) -> dict:
    """The previous client, loaded from git (it needs aiomqtt's client internals)."""
    source = subprocess.run(["git", "-C", str(ROOT), "show", "5bcad08:adapters/core/sources/mqtt_client.py"],
                            capture_output=True, check=True).stdout
    path = Path(f"/tmp/stadtlink_mqtt_private_{uuid.uuid4().hex[:8]}.py")
    path.write_bytes(source)
    spec = importlib.util.spec_from_file_location("mqtt_private", path)
    mod = importlib.util.module_from_spec(spec)
    sys.modules["mqtt_private"] = mod      # its dataclasses look their module up
    spec.loader.exec_module(mod)
    path.unlink()
    clock = _Clock(count)
    settings = mod.MqttSettings(host="127.0.0.1", port=port, client_id=client_id, receive_maximum=RECEIVE_MAXIMUM)
    async with mod.connect(settings) as conn:
        async def drain():
            async for m in conn.messages():
                await asyncio.sleep(0)          # the message's commit (one at a time in that client)
                conn.ack(m)
                clock.got()
                if clock.n >= count:
                    return
        await asyncio.wait_for(drain(), 600)
    return clock.result()


async def _gmqtt(port: int, client_id: str, count: int) -> dict:
    import gmqtt
    from gmqtt.mqtt.constants import MQTTv50

    clock = _Clock(count)
    loop = asyncio.get_running_loop()
    group: dict = {"future": None}

    def commit(fut: asyncio.Future) -> None:
        group["future"] = None
        fut.set_result(None)

    async def on_message(client, topic, payload, qos, properties):
        fut = group["future"]
        if fut is None:      # the first message of a group: its commit runs once the loop got them all
            fut = group["future"] = loop.create_future()
            loop.call_soon(commit, fut)
        await fut
        clock.got()
        return 0             # PUBACK reason code "success"

    client = gmqtt.Client(client_id, clean_session=False, optimistic_acknowledgement=False,
                          session_expiry_interval=3600, receive_maximum=RECEIVE_MAXIMUM)
    client.on_message = on_message
    await client.connect("127.0.0.1", port, version=MQTTv50)
    try:
        await asyncio.wait_for(clock.done, 600)
    finally:
        await client.disconnect()
    return clock.result()


async def _aiomqtt_auto(port: int, client_id: str, count: int) -> dict:
    import aiomqtt
    from paho.mqtt.packettypes import PacketTypes
    from paho.mqtt.properties import Properties

    clock = _Clock(count)
    props = Properties(PacketTypes.CONNECT)
    props.SessionExpiryInterval = 3600
    props.ReceiveMaximum = RECEIVE_MAXIMUM
    async with aiomqtt.Client("127.0.0.1", port, identifier=client_id, protocol=aiomqtt.ProtocolVersion.V5,
                              clean_start=False, properties=props) as client:
        async def drain():
            async for _m in client.messages:
                clock.got()
                if clock.n >= count:
                    return
        await asyncio.wait_for(drain(), 600)
    return clock.result()


_CHILD = {"paho-public": _paho_public, "gmqtt": _gmqtt, "paho-private": _paho_private,
          "aiomqtt-auto": _aiomqtt_auto}


# ------------------------------------------------------------------------------------------- parent

def _version(dist: str) -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(dist)
    except PackageNotFoundError:
        return None


async def _one(port: int, candidate: str, messages: int) -> dict:
    client_id = f"bench-{candidate}-{uuid.uuid4().hex[:8]}"
    prime_session(port, client_id, TOPIC_FILTER)
    pub = await Publisher(port=port, count=messages, spots=10_000).start().result()
    proc = await asyncio.create_subprocess_exec(
        sys.executable, __file__, "child", candidate, "--port", str(port), "--client-id", client_id,
        "--count", str(pub["acked"]), stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        env=CHILD_ENV)
    out, err = await asyncio.wait_for(proc.communicate(), 900)
    lines = out.decode().strip().splitlines()
    if proc.returncode != 0 or not lines:
        return {"error": err.decode()[-500:]}
    return json.loads(lines[-1])


async def run(args) -> dict:
    from stadtlink.adapters.core.testing import MosquittoProcess

    candidates = [c for c in args.candidates if c != "gmqtt" or _version("gmqtt")]
    skipped = sorted(set(args.candidates) - set(candidates))
    mosquitto = MosquittoProcess(max_queued_messages=10_000_000)
    mosquitto.start()
    rounds: dict[str, list[dict]] = {c: [] for c in candidates}
    try:
        for r in range(args.rounds):
            for c in candidates:
                res = await _one(mosquitto.port, c, args.messages)
                rounds[c].append(res)
                print(f"round {r + 1} {c:13s} {json.dumps(res)}", file=sys.stderr, flush=True)
    finally:
        mosquitto.cleanup()
    summary = {}
    for c, results in rounds.items():
        ok = [x for x in results if x.get("msg_per_s")]
        if not ok:
            summary[c] = {"error": results[-1].get("error") if results else "no result"}
            continue
        summary[c] = {"msg_per_s": round(sum(x["msg_per_s"] for x in ok) / len(ok), 1),
                      "cpu_us_per_msg": round(sum(x["cpu_us_per_msg"] for x in ok) / len(ok), 1),
                      "runs": [x["msg_per_s"] for x in ok]}
    base = summary.get("paho-public", {}).get("msg_per_s")
    for c, s in summary.items():
        if base and s.get("msg_per_s"):
            s["vs_paho_public"] = round(s["msg_per_s"] / base, 3)
    return {"messages": args.messages, "rounds": args.rounds, "receive_maximum": RECEIVE_MAXIMUM,
            "versions": {d: _version(d) for d in ("paho-mqtt", "gmqtt", "aiomqtt")},
            "skipped_not_installed": skipped, "candidates": summary}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="cmd")
    child = sub.add_parser("child")
    child.add_argument("candidate", choices=CANDIDATES)
    child.add_argument("--port", type=int, required=True)
    child.add_argument("--client-id", required=True)
    child.add_argument("--count", type=int, required=True)
    p.add_argument("--messages", type=int, default=20_000)
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--candidates", nargs="+", default=list(CANDIDATES), choices=CANDIDATES)
    a = p.parse_args()
    if a.cmd == "child":
        print(json.dumps(asyncio.run(_CHILD[a.candidate](a.port, a.client_id, a.count))), flush=True)
        return
    print(json.dumps(asyncio.run(run(a))), flush=True)


if __name__ == "__main__":
    main()

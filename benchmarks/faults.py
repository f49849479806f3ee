"""Fault matrix: a sustained stream of uniquely numbered readings, one fault injected, then count.

Every scenario starts its own Mosquitto (persistent, so that a restart keeps sessions and queued
messages), its own Redis when the Redis outbox is used (append-only file, fsync always), the counting
sink (``benchmarks/sink.py --record``) as the NGSI-LD broker, and the parking adapter as a real process
(``stadtlink run parking``, stable MQTT client id and Redis consumer name, so that a restarted process
finds its session and its pending outbox entries). A publisher process sends TTS v3 uplinks at a
fixed rate; reading number ``seq`` is spot ``seq % spots`` observed at ``base + seq`` ms, so every
reading can be recognized at the sink.

Counted per reading that Mosquitto acknowledged to the publisher ("sent"):

* ``written``     its ``status.observedAt`` reached the sink;
* ``superseded``  a newer reading of the same spot reached the sink instead (latest-state coalescing
                  in the outbox: allowed, nothing is lost for a latest-state entity);
* ``lost``        neither (must be 0);
* ``duplicated``  extra arrivals of a reading (at-least-once: allowed, reported);
* ``recover_s``   from the end of the fault until the adapter is ready again with an outbox below one
                  batch (polled every 0.25 s).

Faults: broker stopped (connection refused) for 30 s (and 120 s with ``--long``), broker answering 500
for 10 s, broker answering after 3 s, broker silently dropping the connection (timeouts), Mosquitto
restarted, Redis restarted, adapter SIGKILLed and restarted (Redis outbox), adapter SIGTERMed
(graceful: outbox flushed before exit) and restarted, outbox at its length limit (alarm, readiness
false, back-pressure on the MQTT session).

Run: ``python benchmarks/faults.py [--only NAME ...] [--long] [--rate 200]`` — prints the table and
the JSON. Short variants of the same scenarios run as tests in tests/faults/.
"""
from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shutil
import signal
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Awaitable, Callable

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from stadtlink.adapters.core.testing import MosquittoProcess, RedisProcess, free_port  # noqa: E402
from benchmarks.harness import (AdapterProcess, Publisher, SinkProcess, count_readings,  # noqa: E402
                                expand_ranges, metric_sum, write_config, write_fleet)


@dataclass
class FaultEnv:
    """What a fault function may act on."""
    work: Path
    mosquitto: MosquittoProcess
    sink: SinkProcess
    adapter: AdapterProcess
    redis: RedisProcess | None
    fault_s: float
    observations: dict = field(default_factory=dict)


@dataclass
class Scenario:
    name: str
    description: str
    outbox: str                                     # memory | redis
    fault: Callable[[FaultEnv], Awaitable[None]]
    fault_s: float
    adapter_options: dict = field(default_factory=dict)


# ------------------------------------------------------------------------------------------- faults

async def _sink_mode_for(env: FaultEnv, mode: str, delay_s: float | None = None) -> None:
    await env.sink.mode(mode, delay_s)
    await _watch(env, env.fault_s)
    await env.sink.mode("ok")


async def _watch(env: FaultEnv, seconds: float) -> None:
    """Sleep ``seconds`` while recording what the adapter reports (readiness, outbox alarm, refusals)."""
    obs = env.observations
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            status, body = await env.adapter.readyz()
            if status != 200:
                obs["not_ready_seen"] = True
                for name in body.get("failing", []):
                    obs.setdefault("failing_checks", set()).add(name)
            m = await env.adapter.metrics()
            obs["outbox_full_seen"] = obs.get("outbox_full_seen", False) or metric_sum(m, "outbox_full") > 0
            obs["max_outbox_depth"] = max(obs.get("max_outbox_depth", 0), metric_sum(m, "outbox_depth"))
            obs["emit_refused"] = max(obs.get("emit_refused", 0), metric_sum(m, "source_emit_refused"))
        except Exception:  # noqa: BLE001 - the adapter may be down (kill/term scenarios)
            pass
        await asyncio.sleep(min(0.25, max(0.0, deadline - time.monotonic())))


async def broker_refused(env: FaultEnv) -> None:
    await _sink_mode_for(env, "refuse")


async def broker_500(env: FaultEnv) -> None:
    await _sink_mode_for(env, "error500")


async def broker_slow(env: FaultEnv) -> None:
    await _sink_mode_for(env, "delay", 3.0)


async def broker_blackhole(env: FaultEnv) -> None:
    await _sink_mode_for(env, "blackhole")


async def mosquitto_restart(env: FaultEnv) -> None:
    env.mosquitto.stop()         # SIGTERM: persistence writes sessions and queued messages
    await asyncio.sleep(env.fault_s)
    env.mosquitto.start()


async def redis_restart(env: FaultEnv) -> None:
    assert env.redis is not None
    env.redis.stop()
    await _watch(env, env.fault_s)
    env.redis.start()


async def adapter_sigkill(env: FaultEnv) -> None:
    env.adapter.kill()
    await asyncio.sleep(env.fault_s)
    env.adapter.start()
    await env.adapter.wait_http(90)


async def adapter_sigkill_mid_commit(env: FaultEnv) -> None:
    """Redis frozen (SIGSTOP): the adapter's next group commit (one outbox script call for the
    messages read together) waits for Redis' answer while uplinks keep coming; the adapter is
    SIGKILLed right there, Redis resumes (it may still run the script it had received, or not),
    the adapter restarts. Nothing of that group was acknowledged, so Mosquitto redelivers it."""
    assert env.redis is not None and env.redis.proc is not None
    os.kill(env.redis.proc.pid, signal.SIGSTOP)
    try:
        await asyncio.sleep(0.3)     # what Redis answered before it froze is acknowledged by now
        before = after = None
        with contextlib.suppress(Exception):
            before = await env.adapter.metrics()
        await asyncio.sleep(0.6)
        with contextlib.suppress(Exception):
            after = await env.adapter.metrics()
        if after:
            env.observations["unacked_at_kill"] = (metric_sum(after, "source_messages")
                                                   - metric_sum(after, "source_acked"))
            if before:
                env.observations["acked_while_redis_frozen"] = (metric_sum(after, "source_acked")
                                                                - metric_sum(before, "source_acked"))
        env.adapter.kill()
    finally:
        os.kill(env.redis.proc.pid, signal.SIGCONT)
    await asyncio.sleep(env.fault_s)
    env.adapter.start()
    await env.adapter.wait_http(90)


async def adapter_sigterm(env: FaultEnv) -> None:
    t = time.monotonic()
    code = await asyncio.to_thread(env.adapter.terminate, 60)
    env.observations["exit_code"] = code
    env.observations["shutdown_s"] = round(time.monotonic() - t, 2)
    log = env.adapter.log_tail(20000)
    env.observations["left_in_outbox_logged"] = "still in the memory outbox" in log
    await asyncio.sleep(env.fault_s)
    env.adapter.start()
    await env.adapter.wait_http(90)


async def outbox_limit(env: FaultEnv) -> None:
    """Broker refused long enough for the small outbox to fill; watch the alarm, readiness, back-pressure."""
    await env.sink.mode("refuse")
    await _watch(env, env.fault_s)
    env.observations["alarm_logged"] = "is full" in env.adapter.log_tail(200000)
    await env.sink.mode("ok")


def scenarios(long: bool = False) -> list[Scenario]:
    out = [
        Scenario("broker-stopped-30s", "broker down (connection refused) for 30 s", "memory", broker_refused, 30),
        Scenario("broker-stopped-30s-redis", "broker down (connection refused) for 30 s, Redis outbox", "redis",
                 broker_refused, 30),
    ]
    if long:
        out.append(Scenario("broker-stopped-120s", "broker down (connection refused) for 120 s", "redis",
                            broker_refused, 120))
    out += [
        Scenario("broker-500-10s", "broker answers 500 for 10 s", "memory", broker_500, 10),
        Scenario("broker-slow-3s", "broker answers after 3 s, for 10 s", "memory", broker_slow, 10),
        Scenario("broker-blackhole-20s", "connections silently dropped for 20 s (client timeout 5 s)", "memory",
                 broker_blackhole, 20, {"timeout_s": 5.0}),
        Scenario("mosquitto-restart", "Mosquitto stopped (SIGTERM, persistence on) and started again after 3 s", "memory",
                 mosquitto_restart, 3),
        Scenario("redis-restart", "Redis stopped and started again after 3 s (AOF, fsync always)", "redis",
                 redis_restart, 3),
        Scenario("adapter-sigkill", "adapter SIGKILLed, restarted after 2 s (Redis outbox)", "redis",
                 adapter_sigkill, 2),
        Scenario("adapter-sigkill-mid-commit", "adapter SIGKILLed while a group commit waits for Redis "
                 "(frozen with SIGSTOP), restarted after 2 s", "redis", adapter_sigkill_mid_commit, 2),
        Scenario("adapter-sigterm", "adapter SIGTERMed (graceful), restarted after 2 s (memory outbox)", "memory",
                 adapter_sigterm, 2),
        Scenario("outbox-limit", "broker down until the outbox (limit 1,000 entities) is full, for 15 s", "memory",
                 outbox_limit, 15, {"max_length": 1000, "backpressure_wait_s": 1.0}),
    ]
    return out


# ------------------------------------------------------------------------------------------- runner

async def run_scenario(sc: Scenario, *, rate: float = 200.0, pre_s: float = 5.0, post_s: float = 5.0,
                       spots: int = 10_000, drain_timeout_s: float = 180.0, fault_s: float | None = None,
                       work_root: Path | None = None) -> dict:
    """Run one scenario end to end; returns its row (sent, written, superseded, lost, duplicated, recover_s …)."""
    fault_s = sc.fault_s if fault_s is None else fault_s
    work = Path(tempfile.mkdtemp(prefix=f"stadtlink-fault-{sc.name}-", dir=work_root))
    mosquitto = MosquittoProcess(persistence=True, max_queued_messages=1_000_000, data_dir=work / "mosquitto")
    redis = RedisProcess(persistence=True, data_dir=work / "redis") if sc.outbox == "redis" else None
    sink = SinkProcess(record=True)
    publisher = None
    adapter = None
    try:
        mosquitto.start()
        if redis is not None:
            redis.start()
        sink.start()
        fleet = write_fleet(work, spots=spots, per_site=100)
        http_port = free_port()
        opts = {"batch_size": 200, "flush_ms": 200, "timeout_s": 10.0, "retry_max_s": 2.0, **sc.adapter_options}
        cfg = write_config(work, broker_url=sink.url, mqtt_port=mosquitto.port, http_port=http_port,
                           client_id=f"fault-{sc.name}-{uuid.uuid4().hex[:6]}", outbox=sc.outbox,
                           redis_url=redis.url if redis else None, fleet=fleet.name, log_level="INFO", **opts)
        adapter = AdapterProcess(cfg, http_port).start()
        await adapter.wait_ready(90)
        env = FaultEnv(work, mosquitto, sink, adapter, redis, fault_s)
        count = int(rate * (pre_s + fault_s + post_s))
        base_ts = time.time() - 7200.0
        publisher = Publisher(port=mosquitto.port, count=count, spots=spots, rate=rate, base_ts=base_ts,
                              timeout=pre_s + fault_s + post_s + drain_timeout_s).start()
        await _watch(env, pre_s)
        t_fault = time.monotonic()
        await sc.fault(env)
        t_fault_end = time.monotonic()
        recover_s = await _wait_recovered(env, t_fault_end, timeout=post_s + drain_timeout_s)
        pub = await publisher.result(timeout=drain_timeout_s + post_s + 60)
        acked = expand_ranges(pub["acked_seqs"])
        tally, drained = await _final_tally(env, acked, spots=spots, base_ts=base_ts, timeout=drain_timeout_s)
        st = await sink.stats()
        row = {"fault": sc.name, "description": sc.description, "outbox": sc.outbox, "rate": rate,
               "fault_s": fault_s, "fault_took_s": round(t_fault_end - t_fault, 1), **tally.as_dict(),
               "recover_s": recover_s, "drained": drained, "publisher_unacked": len(pub["unacked"]),
               "requests": st["requests"], "requests_failed": st["requests_failed"]}
        obs = dict(env.observations)
        if "failing_checks" in obs:
            obs["failing_checks"] = sorted(obs["failing_checks"])
        row["observed"] = obs
        return row
    finally:
        if publisher is not None:
            publisher.kill()
        if adapter is not None:
            adapter.terminate(30)
        sink.stop()
        if redis is not None:
            redis.cleanup()
        mosquitto.cleanup()
        if work_root is None:
            shutil.rmtree(work, ignore_errors=True)


async def _wait_recovered(env: FaultEnv, since: float, timeout: float) -> float | None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            status, body = await env.adapter.readyz()
            depth = body.get("checks", {}).get("outbox", {}).get("depth", 0)
            if status == 200 and depth < 200:
                return round(time.monotonic() - since, 2)
        except Exception:  # noqa: BLE001
            pass
        await asyncio.sleep(0.25)
    return None


async def _final_tally(env: FaultEnv, acked: list[int], *, spots: int, base_ts: float, timeout: float):
    """Poll the sink until no acknowledged reading is missing (or the timeout); the last tally counts."""
    deadline = time.monotonic() + timeout
    while True:
        tally = count_readings(acked, await env.sink.written(), spots=spots, base_ts=base_ts)
        if tally.lost == 0:
            return tally, True
        if time.monotonic() > deadline:
            return tally, False
        await asyncio.sleep(1.0)


def print_table(rows: list[dict]) -> None:
    cols = ("fault", "outbox", "sent", "written", "superseded", "lost", "duplicated", "recover_s")
    print("| " + " | ".join(cols) + " |")
    print("|" + "|".join("---" for _ in cols) + "|")
    for r in rows:
        print("| " + " | ".join(str(r.get(c)) for c in cols) + " |")


async def main_async(args) -> list[dict]:
    rows = []
    chosen = [s for s in scenarios(args.long) if not args.only or s.name in args.only]
    for sc in chosen:
        t = time.monotonic()
        row = await run_scenario(sc, rate=args.rate, pre_s=args.pre, post_s=args.post, spots=args.spots)
        row["scenario_s"] = round(time.monotonic() - t, 1)
        print(json.dumps(row), file=sys.stderr, flush=True)
        rows.append(row)
    return rows


def main() -> None:
    p = argparse.ArgumentParser(description="fault matrix of the parking adapter (lost must be 0)")
    p.add_argument("--only", nargs="*", help="scenario names (default: all)")
    p.add_argument("--long", action="store_true", help="add the 120 s broker outage")
    p.add_argument("--rate", type=float, default=200.0, help="readings per second during the run")
    p.add_argument("--pre", type=float, default=5.0, help="seconds of steady stream before the fault")
    p.add_argument("--post", type=float, default=5.0, help="seconds of stream after the fault")
    p.add_argument("--spots", type=int, default=10_000)
    p.add_argument("--list", action="store_true")
    args = p.parse_args()
    if args.list:
        for s in scenarios(True):
            print(f"{s.name:28s} {s.outbox:7s} {s.description}")
        return
    rows = asyncio.run(main_async(args))
    print_table(rows)
    print(json.dumps({"rows": rows, "lost_total": sum(r["lost"] for r in rows)}, indent=1))


if __name__ == "__main__":
    main()

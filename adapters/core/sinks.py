"""Several sinks at once: each configured broker gets its own outbox and its own batcher.

The pipeline puts every entity into one :class:`FanoutOutbox`, which hands a copy to the outbox of
every sink. Each sink drains its own outbox at its own pace (its own position in the stream), so
a sink that is down keeps its backlog and catches up in order when it returns, while the others
go on writing -- nothing waits for the slowest sink, and nothing is lost for any of them.

Outboxes: with ``outbox.kind: redis`` the first sink keeps the adapter's stream
(``<prefix>:<adapter>:outbox``, so a single-sink deployment reads what it always did) and every
further sink has ``<prefix>:<adapter>:outbox:<sink name>``; with ``memory`` each sink has a deque.

When a sink's outbox is at its ``max_length``:

* ``when_full: backpressure`` (the default for the first sink): the sources are held, as with one
  broker (alarm, readiness false, ``OutboxFull`` after ``backpressure_wait_s``).
* ``when_full: deadletter`` (the default for every further sink): the other sinks go on; the
  entities that do not fit into *this* sink's outbox are dead-lettered with reason
  ``sink-outbox-full`` and the sink's name (alarm, readiness false for that sink) -- never dropped
  silently, and ``stadtlink deadletter replay`` sends them again.
"""
from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Mapping

from .batcher import Batcher
from .deadletter import message_record
from .metrics import Metrics
from .outbox import MemoryOutbox, OutboxFull, RedisOutbox, build_outbox

if TYPE_CHECKING:
    from stadtlink.broker_client.backend import Backend

    from .config import BrokerConfig
    from .outbox import Outbox

log = logging.getLogger("stadtlink.sinks")


class _SinkDeadLetters:
    """The shared dead-letter store, each record marked with the sink that refused it."""

    def __init__(self, inner, sink: str) -> None:
        self._inner = inner
        self.sink = sink

    async def add(self, record: dict) -> Any:
        record = dict(record)
        record.setdefault("sink", self.sink)
        return await self._inner.add(record)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


@dataclass
class Sink:
    name: str
    key: str                       # config path: "broker" or "brokers[1]"
    config: BrokerConfig | Mapping[str, Any]          # a mapping in tests
    backend: Backend
    outbox: Outbox
    metrics: Metrics
    when_full: str = "backpressure"
    batcher: Batcher | None = None
    task: asyncio.Task | None = None
    spilled: int = 0
    stats: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return bool(self.batcher is not None and self.batcher.broker_ok is True)


class FanoutOutbox:
    """What the pipeline writes to when there are several sinks: ``put`` copies to each."""

    kind = "fanout"

    def __init__(self, sinks: list[Sink], deadletters) -> None:
        self.sinks = sinks
        self.deadletters = deadletters
        self.name = "fanout"

    @property
    def primary(self):
        return self.sinks[0].outbox

    @property
    def max_length(self) -> int:
        return self.primary.max_length

    @property
    def depth(self) -> int:
        return max(s.outbox.depth for s in self.sinks)

    @property
    def oldest_age(self) -> float:
        return max(s.outbox.oldest_age for s in self.sinks)

    @property
    def full(self) -> bool:
        """Full where it holds the sources back (a ``deadletter`` sink's outbox never does)."""
        return any(s.outbox.full for s in self.sinks if s.when_full == "backpressure")

    @property
    def healthy(self) -> bool:
        return all(s.outbox.healthy for s in self.sinks)

    async def start(self) -> None:
        for s in self.sinks:
            await s.outbox.start()

    async def close(self) -> None:
        for s in self.sinks:
            await s.outbox.close()

    async def refresh(self) -> None:
        for s in self.sinks:
            await s.outbox.refresh()

    def recover(self) -> None:
        for s in self.sinks:
            recover = getattr(s.outbox, "recover", None)
            if recover is not None:
                recover()

    async def put(self, entities: list[dict], *, extra=None) -> None:
        """Back-pressure sinks first (their refusal must leave the others untouched, so the source
        retries without duplicates there), then the others. ``extra`` (the mapper state written in
        the same Redis transaction) goes with the first outbox that takes the entities."""
        ordered = sorted(self.sinks, key=lambda s: s.when_full != "backpressure")
        for s in ordered:
            if s.when_full == "deadletter" and s.outbox.depth and s.outbox.depth + len(entities) > s.outbox.max_length:
                await self._spill(s, entities)
                continue
            if extra is not None:
                await s.outbox.put(entities, extra=extra)
                extra = None
            else:
                await s.outbox.put(entities)

    async def _spill(self, sink: Sink, entities: list[dict]) -> None:
        sink.spilled += len(entities)
        sink.metrics.dead("sink-outbox-full", len(entities))
        log.error("outbox of sink %s is full (%d): %d entities dead-lettered for it", sink.name, sink.outbox.depth,
                  len(entities), extra={"sink": sink.name})
        for ent in entities:
            await self.deadletters.add(message_record(
                None, reason="sink-outbox-full", stage="write",
                error=f"outbox of sink {sink.name} full ({sink.outbox.max_length} entities)",
                device_id=None, entity=ent, sink=sink.name))

    # the batchers use the per-sink outboxes; these are here for code that expects one outbox
    async def take(self, max_items: int, timeout: float):
        return await self.primary.take(max_items, timeout)

    async def ack(self, items) -> None:
        await self.primary.ack(items)


def _setting(config: Any, name: str, default: Any) -> Any:
    value = config.get(name) if isinstance(config, dict) else getattr(config, name, None)
    return default if value is None else value


def sink_outbox(outbox_cfg, adapter_name: str, index: int, sink_name: str, *, redis_client=None):
    """The outbox of sink ``index``: the adapter's own for the first, a named one for the others."""
    if index == 0:
        return build_outbox(outbox_cfg, adapter_name, redis_client=redis_client)
    if outbox_cfg.kind == "memory":
        return MemoryOutbox(max_length=outbox_cfg.max_length, backpressure_wait_s=outbox_cfg.backpressure_wait_s,
                            name=f"memory:{sink_name}")
    return RedisOutbox(url=outbox_cfg.url, stream=f"{outbox_cfg.key_prefix}:{adapter_name}:outbox:{sink_name}",
                       group=outbox_cfg.group, consumer=outbox_cfg.consumer, max_length=outbox_cfg.max_length,
                       backpressure_wait_s=outbox_cfg.backpressure_wait_s,
                       claim_min_idle_ms=outbox_cfg.claim_min_idle_ms, client=redis_client)


class SinkSet:
    """The sinks of one adapter process, their batchers and the outbox the pipeline sees."""

    def __init__(self, sinks: list[Sink], deadletters, *, semantics: str = "latest-state") -> None:
        if not sinks:
            raise ValueError("at least one sink")
        self.sinks = sinks
        self.deadletters = deadletters
        self.semantics = semantics
        self.outbox = sinks[0].outbox if len(sinks) == 1 else FanoutOutbox(sinks, deadletters)
        for s in sinks:
            dl = deadletters if len(sinks) == 1 else _SinkDeadLetters(deadletters, s.name)
            tuning = {name: _setting(s.config, name, default) for name, default in (
                ("batch_size", 200), ("flush_ms", 500), ("retry_base_s", 0.5), ("retry_max_s", 30.0),
                ("health_interval_s", 10.0), ("flush", "adaptive"))}
            stall_s = _setting(s.config, "stall_s", None)   # a newer Batcher option, when configured
            if stall_s is not None:
                tuning["stall_s"] = stall_s
            s.batcher = Batcher(s.outbox, s.backend, dl, s.metrics, semantics=semantics, **tuning)

    @property
    def primary(self) -> Sink:
        return self.sinks[0]

    def __iter__(self):
        return iter(self.sinks)

    def __len__(self) -> int:
        return len(self.sinks)

    async def run_batcher(self, sink: Sink) -> None:
        """One sink's batcher, restarted after a bug (what it had taken is handed out again)."""
        assert sink.batcher is not None
        await sink.batcher.probe()
        delay = 1.0
        while True:
            try:
                await sink.batcher.run()
                return
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                sink.metrics.counts["errors"] += 1
                log.exception("batcher of sink %s failed (%s); restarting in %.0f s", sink.name,
                              type(exc).__name__, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 30.0)
                sink.batcher._carry.clear()
                recover = getattr(sink.outbox, "recover", None)
                if recover is not None:
                    recover()

    def start(self) -> list[asyncio.Task]:
        for s in self.sinks:
            s.task = asyncio.create_task(self.run_batcher(s), name=f"batcher:{s.name}")
        return [s.task for s in self.sinks if s.task is not None]

    async def stop(self, grace: float) -> None:
        """Drain each sink's outbox within ``grace`` seconds (together), then stop its batcher."""
        for s in self.sinks:
            if s.batcher is not None:
                s.batcher.close()
        tasks = [s.task for s in self.sinks if s.task is not None]
        if tasks:
            _, pending = await asyncio.wait(tasks, timeout=grace)
            for t in pending:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        for s in self.sinks:
            close = getattr(s.backend, "close", None)
            if close is not None:
                try:
                    await close()
                except Exception as exc:  # noqa: BLE001 - closing must not stop the others
                    log.debug("closing the backend of sink %s: %s", s.name, exc)

    async def wait_idle(self, timeout: float = 10.0) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            idle = True
            for s in self.sinks:
                await s.outbox.refresh()
                if s.outbox.depth or (s.batcher is not None and s.batcher._carry):
                    idle = False
            if idle:
                return True
            await asyncio.sleep(0.05)
        return False

    def readiness(self) -> dict[str, dict]:
        """One check per sink: ``broker`` for a single sink (as before), ``broker:<name>`` otherwise."""
        checks: dict[str, dict] = {}
        for s in self.sinks:
            name = "broker" if len(self.sinks) == 1 else f"broker:{s.name}"
            b = s.batcher
            ok = b is not None and b.broker_ok is True
            check: dict[str, Any] = {"ok": ok}
            if not ok:
                check["detail"] = (b.broker_error if b is not None else None) or "not contacted yet"
            if len(self.sinks) > 1:
                full = s.outbox.full
                check["depth"] = s.outbox.depth
                if full:
                    check["ok"] = False
                    check["detail"] = f"outbox full ({s.outbox.depth}/{s.outbox.max_length})"
            checks[name] = check
        return checks

    def counters(self) -> dict[str, dict[str, Any]]:
        return {s.name: {"outbox_depth": s.outbox.depth, "broker_ok": s.ok, "spilled": s.spilled,
                         **{k: s.metrics.counts.get(k, 0) for k in ("upserted", "failed", "retried", "errors")}}
                for s in self.sinks}


__all__ = ["FanoutOutbox", "OutboxFull", "Sink", "SinkSet", "sink_outbox"]

"""The batching sink: outbox → broker, at most ``batch_size`` entities or every ``flush_ms``.

* ``flush="adaptive"`` (the runtime's default, ``broker.flush``): writing is paced by the broker,
  not by a timer. When no write is in flight, what is queued is written at once (a lone reading
  waits for nothing). While writes are in flight (at most ``max_inflight``, default 2), the next
  batch fills: it is written as soon as a write finished, or when it holds ``batch_size``
  entities and a write slot is free, or ``flush_ms`` after its first entity (only an upper bound).
  So batches grow with the load and with the broker's own latency. An entity that is part of a
  write in flight waits for that write's answer before it is sent again (never two instances of
  one entity on the way at once: the broker could apply them out of order).
  ``flush="fixed"`` always waits up to ``flush_ms`` for a batch to fill, one write at a time.

* At most one instance of an entity per batch.
* ``latest-state``: a newer queued instance of an entity replaces the older one; attributes are
  merged, the newer (by ``observedAt``, else by arrival) winning per attribute.
* ``time-series``: every instance reaches the broker, in order: a second instance of an entity
  waits for the next batch.
* Only the entities that failed are sent again (exponential backoff with jitter, capped).
  Permanent per-entity failures (4xx) are dead-lettered with the broker's ProblemDetails. When
  the broker cannot be reached (:class:`BrokerUnavailable`, 5xx after the client's retries, 401/403)
  everything stays in the outbox and :attr:`broker_ok` is false (readiness).
* Outbox entries are acknowledged only after the broker confirmed them (or they were dead-lettered).
"""
from __future__ import annotations

import asyncio
import logging
import random
import time
from dataclasses import dataclass, field
from datetime import datetime

from .deadletter import message_record
from .logging import RateLimitedLog
from .metrics import Metrics
from .outbox import OutboxItem
from .pipeline import newest_observed_at

log = logging.getLogger("stadtlink.batcher")

#: flush="adaptive": while writes are in flight, how often the outbox is looked at for the next batch
_POLL_S = 0.005


@dataclass(slots=True)
class _Entry:
    entity: dict
    items: list[OutboxItem] = field(default_factory=list)


def merge_entity(older: dict, newer: dict) -> dict:
    """``newer`` over ``older``, attribute by attribute; an attribute observed earlier never wins."""
    merged = dict(older)
    for name, value in newer.items():
        prev = merged.get(name)
        if type(prev) is dict and type(value) is dict:
            a, b = prev.get("observedAt"), value.get("observedAt")
            if a is not None and b is not None and b < a:
                continue
        merged[name] = value
    return merged


class Batcher:
    def __init__(self, outbox, backend, deadletters, metrics: Metrics, *, semantics: str = "latest-state",
                 batch_size: int = 200, flush_ms: int = 500, retry_base_s: float = 0.5, retry_max_s: float = 30.0,
                 health_interval_s: float = 10.0, stall_s: float = 10.0, flush: str = "fixed",
                 max_inflight: int = 2):
        self.outbox = outbox
        self.backend = backend
        self.deadletters = deadletters
        self.metrics = metrics
        self.coalesce = semantics == "latest-state"
        self.batch_size = batch_size
        self.flush_s = flush_ms / 1000.0
        if flush not in ("adaptive", "fixed"):
            raise ValueError(f"flush must be adaptive or fixed, not {flush!r}")
        self.adaptive = flush == "adaptive"
        self.max_inflight = max(1, max_inflight) if self.adaptive else 1
        self._writes: set[asyncio.Task] = set()
        self._inflight_ids: set[str] = set()
        self._write_error: BaseException | None = None
        self._held_ids: set[str] = set()
        self._writing: dict[int, float] = {}   # write attempt → when it was sent (stall detection)
        self.retry_base_s = retry_base_s
        self.retry_max_s = retry_max_s
        self.health_interval_s = health_interval_s
        self.stall_s = stall_s
        self._broker_ok: bool | None = None
        self._broker_error: str | None = None
        self._carry: list[OutboxItem] = []
        self._closing = False
        self._last_io = 0.0
        self._log = RateLimitedLog(log, interval=60.0)
        self.batches = 0

    @property
    def broker_ok(self) -> bool | None:
        """The broker answered the last request — and no write has been waiting for an answer for
        longer than ``stall_s`` (a silently dropped connection answers nothing until the client's
        timeouts and retries run out; readiness must not stay true meanwhile)."""
        if self._broker_ok and self._stalled_for() is not None:
            return False
        return self._broker_ok

    @broker_ok.setter
    def broker_ok(self, value: bool | None) -> None:
        self._broker_ok = value

    @property
    def broker_error(self) -> str | None:
        stalled = self._stalled_for()
        if self._broker_ok and stalled is not None:
            return f"a broker write has been waiting for an answer for {stalled:.0f} s"
        return self._broker_error

    @broker_error.setter
    def broker_error(self, value: str | None) -> None:
        self._broker_error = value

    def _stalled_for(self) -> float | None:
        if not self._writing:
            return None
        since = min(self._writing.values())
        waited = time.monotonic() - since
        return waited if waited > self.stall_s else None

    # -- control -------------------------------------------------------------------------------------
    def close(self) -> None:
        """Finish: drain what the outbox holds, then return from :meth:`run`."""
        self._closing = True

    async def probe(self) -> bool:
        try:
            ok = bool(await self.backend.health())
        except Exception as exc:  # noqa: BLE001
            ok = False
            self.broker_error = f"{type(exc).__name__}: {exc}"
        self._set_broker(ok, None if ok else (self.broker_error or "health check failed"))
        self._last_io = time.monotonic()
        return ok

    def _set_broker(self, ok: bool, error: str | None) -> None:
        if ok and self.broker_ok is False:
            log.warning("broker reachable again")
        self.broker_ok = ok
        self.broker_error = error

    async def run(self) -> None:
        if self.adaptive:
            await self._run_paced()
            return
        while True:
            entries = await self._collect()
            if entries:
                await self._write(entries)
            elif self._closing and not self._carry:
                return
            elif time.monotonic() - self._last_io > self.health_interval_s:
                await self.probe()

    async def _run_paced(self) -> None:
        writes = self._writes
        self._write_error = None
        try:
            while True:
                if self._write_error is not None:
                    error, self._write_error = self._write_error, None
                    raise error
                if len(writes) >= self.max_inflight:
                    await asyncio.wait(writes, return_when=asyncio.FIRST_COMPLETED)
                    continue
                entries = await self._collect_paced()
                if entries:
                    self._start_write(entries)
                elif writes:
                    await asyncio.wait(writes, return_when=asyncio.FIRST_COMPLETED)
                elif self._closing and not self._carry:
                    return
                elif time.monotonic() - self._last_io > self.health_interval_s:
                    await self.probe()
        finally:
            for task in list(writes):
                task.cancel()
            if writes:
                await asyncio.gather(*writes, return_exceptions=True)

    def _start_write(self, entries: list[_Entry]) -> None:
        ids = [e.entity.get("id") for e in entries]
        self._inflight_ids.update(i for i in ids if isinstance(i, str))
        task = asyncio.create_task(self._write(entries), name="batcher-write")
        self._writes.add(task)

        def done(t: asyncio.Task) -> None:
            self._writes.discard(t)
            self._inflight_ids.difference_update(i for i in ids if isinstance(i, str))
            if not t.cancelled() and t.exception() is not None and self._write_error is None:
                self._write_error = t.exception()   # raised by run(): the runner restarts the batcher

        task.add_done_callback(done)

    # -- collecting ------------------------------------------------------------------------------------
    async def _collect(self) -> list[_Entry]:
        entries: dict[str, _Entry] = {}
        carry, self._carry = self._carry, []
        deadline = None
        while True:
            if carry:
                items, carry = carry, []
            else:
                room = self.batch_size - len(entries)
                if self._closing:
                    timeout = 0.0 if entries else 0.05
                elif deadline is None:
                    timeout = 1.0
                else:
                    # short waits so that close() is noticed while a long flush_ms runs
                    timeout = min(deadline - time.monotonic(), 0.25)
                    if timeout <= 0:
                        break
                items = await self.outbox.take(room, timeout)
                if not items:
                    if entries and (self._closing or deadline is None
                                    or time.monotonic() >= deadline):
                        break
                    if not entries:
                        return []
                    continue
            if deadline is None:
                deadline = time.monotonic() + self.flush_s
            # one write at a time in this mode: nothing is in flight, so _add never holds an item
            if self._add(entries, items, []):
                break
        return list(entries.values())

    async def _collect_paced(self) -> list[_Entry]:
        """The next batch, paced by the writes in flight (module docstring)."""
        entries: dict[str, _Entry] = {}
        held: list[OutboxItem] = []
        self._held_ids = set()
        carry, self._carry = self._carry, []
        full = bool(carry) and self._add(entries, carry, held)
        first_at = time.monotonic() if entries else None
        outbox = self.outbox
        while not full:
            room = self.batch_size - len(entries)
            if not self._writes:
                if entries or held:
                    # nothing in flight: what is queued now goes at once
                    items = await outbox.take(room, 0)
                    if items:
                        full = self._add(entries, items, held)
                    break
                items = await outbox.take(room, 0.05 if self._closing else 1.0)
                if not items:
                    break
                full = self._add(entries, items, held)
                first_at = time.monotonic()
                continue
            now = time.monotonic()
            if first_at is not None and now - first_at >= self.flush_s:
                break            # flush_ms is the upper bound even while the broker is slow
            items = await outbox.take(room, 0)
            if items:
                full = self._add(entries, items, held)
                if first_at is None and entries:
                    first_at = now
                continue
            if self._writes:    # (the take above may have let them finish)
                wait = _POLL_S if first_at is None else min(_POLL_S, first_at + self.flush_s - now)
                await asyncio.wait(self._writes, timeout=max(0.0, wait), return_when=asyncio.FIRST_COMPLETED)
        if held:
            self._carry[:0] = held
        return list(entries.values())

    def _add(self, entries: dict[str, _Entry], items: list[OutboxItem], held: list[OutboxItem]) -> bool:
        """Put ``items`` into the batch; True when it is closed (full, or a time-series entity comes
        a second time: the rest waits in the carry). Instances of entities in a write in flight go
        to ``held`` (sent after that write answered)."""
        inflight = self._inflight_ids
        held_ids = self._held_ids
        for i, item in enumerate(items):
            ent = item.entity
            eid = ent.get("id")
            if not isinstance(eid, str):
                eid = f"<no id #{item.key}>"
            if eid in inflight or eid in held_ids:
                # later instances of a held entity wait behind it, even once its write answered
                held.append(item)
                held_ids.add(eid)
                continue
            entry = entries.get(eid)
            if entry is None:
                if len(entries) >= self.batch_size:
                    self._carry.extend(items[i:])
                    return True
                entries[eid] = _Entry(ent, [item])
            elif self.coalesce:
                entry.entity = merge_entity(entry.entity, ent)
                entry.items.append(item)
            else:
                # time-series: this instance (and everything after it, to keep order) waits
                self._carry.extend(items[i:])
                return True
        return len(entries) >= self.batch_size

    # -- writing ---------------------------------------------------------------------------------------
    def _backoff(self, attempt: int) -> float:
        cap = min(self.retry_max_s, self.retry_base_s * (2 ** max(0, attempt - 1)))
        return cap * (0.5 + random.random() / 2)

    async def _write(self, entries: list[_Entry]) -> None:
        m = self.metrics
        m.batch_size_child.observe(len(entries))
        self.batches += 1
        attempt = 0
        pending = entries
        while pending:
            if attempt:
                m.counts["retried"] += len(pending)
                await asyncio.sleep(self._backoff(attempt))
            attempt += 1
            by_id = {e.entity.get("id"): e for e in pending}
            self._last_io = time.monotonic()
            key = id(pending)
            self._writing[key] = self._last_io
            try:
                result = await self.backend.write([e.entity for e in pending])
            except asyncio.CancelledError:
                self._writing.pop(key, None)
                raise
            except Exception as exc:  # noqa: BLE001 - BrokerUnavailable, 401/403, anything: keep and retry
                self._writing.pop(key, None)
                partial = getattr(exc, "partial", None)
                self._set_broker(False, f"{type(exc).__name__}: {exc}")
                m.counts["errors"] += 1
                self._log(logging.ERROR, ("write", type(exc).__name__),
                          "broker write failed, %d entities kept in the outbox: %s: %s",
                          len(pending), type(exc).__name__, exc)
                if partial is not None and (partial.succeeded or partial.failed):
                    pending = await self._settle(partial, by_id, keep_unreported=True)
                continue
            self._writing.pop(key, None)
            self._set_broker(True, None)
            pending = await self._settle(result, by_id, keep_unreported=True)

    async def _settle(self, result, by_id: dict[str, _Entry], *, keep_unreported: bool) -> list[_Entry]:
        """Ack what succeeded, dead-letter permanent failures; return the entries to send again."""
        m = self.metrics
        done_items: list[OutboxItem] = []
        now = time.time()
        lat = m.latency_child
        for eid in result.succeeded:
            entry = by_id.pop(eid, None)
            if entry is None:
                continue
            done_items.extend(entry.items)
            m.counts["upserted"] += 1
            obs = newest_observed_at(entry.entity)
            if obs is not None:
                try:
                    lat.observe(max(0.0, now - datetime.fromisoformat(obs).timestamp()))
                except ValueError:
                    pass
        retry: list[_Entry] = []
        for failure in result.failed:
            entry = by_id.pop(failure.entity_id, None)
            if entry is None:
                continue
            m.counts["failed"] += 1
            if failure.retryable:
                retry.append(entry)
                continue
            problem = failure.problem.to_dict() if hasattr(failure.problem, "to_dict") else dict(failure.problem)
            reason = "broker-rejected"
            text = " — ".join(str(x) for x in (problem.get("title"), problem.get("detail")) if x) or "rejected"
            m.dead(reason)
            await self.deadletters.add(message_record(None, reason=reason, stage="write", error=text,
                                                      device_id=None, entity=entry.entity, problem=problem))
            self._log(logging.WARNING, ("rejected", entry.entity.get("type"), problem.get("type")),
                      "broker rejected %s: %s", failure.entity_id, text, entity_id=failure.entity_id)
            done_items.extend(entry.items)
        if keep_unreported:
            retry.extend(by_id.values())
        if done_items:
            await self.outbox.ack(done_items)
        return retry

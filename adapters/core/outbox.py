"""The outbox: entities wait here between the pipeline and the broker.

Two kinds with one interface:

* :class:`MemoryOutbox` (default): a bounded deque. Fast; a crash loses what it holds.
* :class:`RedisOutbox`: one Redis Stream per adapter (``<prefix>:<adapter>:outbox``), one entry
  per entity (orjson). A consumer group hands entries to the batcher (XREADGROUP); an entry is
  acknowledged and deleted (XACK + XDEL) only after the broker confirmed it, so the stream length
  is the backlog. Entries left pending by a crashed consumer are taken over with XAUTOCLAIM once
  idle for ``claim_min_idle_ms``; a restarted consumer with the same name (default: the host name,
  which is the pod name in Kubernetes) re-reads its own pending entries at once.
  Durability across a *Redis* restart needs Redis persistence (``appendonly yes``): without it a
  Redis restart empties the stream.

Both enforce ``max_length``: at the limit :attr:`full` turns true (alarm metric, log, readiness
false) and ``put`` waits up to ``backpressure_wait_s`` for room, then raises :class:`OutboxFull`
so the source does not acknowledge its input. Nothing is ever dropped silently.
"""
from __future__ import annotations

import asyncio
import functools
import logging
import socket
import time
from collections import deque
from dataclasses import dataclass
from typing import Any, Protocol

import orjson

from .shared import PUT_NEWER_COMMAND, PUT_NEWER_FN, PUT_NEWER_LUA

log = logging.getLogger("stadtlink.outbox")


class OutboxFull(Exception):
    """The outbox stayed at its limit for the whole back-pressure wait: the input must not be acked."""


class OutboxUnavailable(Exception):
    """The outbox store (Redis) cannot be reached."""


@dataclass(slots=True)
class OutboxItem:
    key: Any               # memory: a sequence number; redis: the stream entry id
    entity: dict
    enqueued_at: float     # unix time


class Outbox(Protocol):
    kind: str
    max_length: int

    async def start(self) -> None: ...
    async def close(self) -> None: ...
    async def put(self, entities: list[dict], *, extra=None) -> None: ...
    async def take(self, max_items: int, timeout: float) -> list[OutboxItem]: ...
    async def ack(self, items: list[OutboxItem]) -> None: ...
    async def refresh(self) -> None: ...

    @property
    def depth(self) -> int: ...
    @property
    def oldest_age(self) -> float: ...
    @property
    def full(self) -> bool: ...
    @property
    def healthy(self) -> bool: ...


class _Limit:
    """Shared limit / alarm handling."""

    max_length: int
    backpressure_wait_s: float
    name: str

    def _init_limit(self) -> None:
        self._alarmed = False
        self._needed = 1          # entities of the last put that found no room
        self.full_events = 0

    @property
    def full(self) -> bool:
        """At the limit: ``max_length`` reached, or a put is refused/waiting for room. A message
        carries several entities, so the outbox may stop a few entries short of ``max_length``
        and still refuse input; the alarm gauge and readiness must say so."""
        return self.depth >= self.max_length or self._alarmed

    def _alarm(self, needed: int = 1) -> None:
        self._needed = max(1, needed)
        if not self._alarmed:
            self._alarmed = True
            self.full_events += 1
            log.error("outbox %s is full (%d entries, limit %d): back-pressure on the sources; is the broker down?",
                      self.name, self.depth, self.max_length, extra={"outbox": self.name})

    def _maybe_clear_alarm(self) -> None:
        """Clear once the put that found no room would fit."""
        if self._alarmed and (self.depth == 0 or self.depth + self._needed <= self.max_length):
            self._alarmed = False
            log.warning("outbox %s has room again (%d entries)", self.name, self.depth, extra={"outbox": self.name})


class MemoryOutbox(_Limit):
    """A bounded deque.

    ``pace_at``: while the batcher is taking (it took within the last second), a put waits for the
    queue to fall below this many entities — the sources then run no further ahead of the broker
    than a few batches, which bounds the process's memory and the latency under full load. While
    the broker is away (nothing taken) nothing waits: the outbox buffers up to ``max_length``."""

    kind = "memory"

    def __init__(self, *, max_length: int = 100_000, backpressure_wait_s: float = 5.0, name: str = "memory",
                 pace_at: int = 2_000):
        self.pace_at = pace_at
        self._taken_at = 0.0
        self._took = asyncio.Event()
        self.max_length = max_length
        self.backpressure_wait_s = backpressure_wait_s
        self.name = name
        self._queue: deque[OutboxItem] = deque()
        self._inflight: dict[int, OutboxItem] = {}
        self._seq = 0
        self._changed = asyncio.Event()
        self._init_limit()

    async def start(self) -> None:
        return None

    async def close(self) -> None:
        return None

    @property
    def depth(self) -> int:
        return len(self._queue) + len(self._inflight)

    @property
    def healthy(self) -> bool:
        return True

    @property
    def oldest_age(self) -> float:
        oldest = None
        if self._inflight:
            oldest = next(iter(self._inflight.values())).enqueued_at
        if self._queue:
            q = self._queue[0].enqueued_at
            oldest = q if oldest is None else min(oldest, q)
        return 0.0 if oldest is None else max(0.0, time.time() - oldest)

    async def refresh(self) -> None:
        self._maybe_clear_alarm()

    async def put(self, entities: list[dict], *, extra=None) -> None:
        if not entities:
            return
        if self.pace_at and len(self._queue) >= self.pace_at:
            await self._pace()
        if self.depth and self.depth + len(entities) > self.max_length:
            self._alarm(len(entities))
            deadline = time.monotonic() + self.backpressure_wait_s
            while self.depth and self.depth + len(entities) > self.max_length:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise OutboxFull(f"outbox full ({self.depth}/{self.max_length} entities)")
                self._changed.clear()
                try:
                    await asyncio.wait_for(self._changed.wait(), min(remaining, 0.5))
                except asyncio.TimeoutError:
                    pass
        now = time.time()
        for ent in entities:
            self._seq += 1
            self._queue.append(OutboxItem(self._seq, ent, now))
        self._changed.set()

    async def _pace(self) -> None:
        took = self._took
        while len(self._queue) >= self.pace_at and time.monotonic() - self._taken_at < 1.0:
            took.clear()
            try:
                await asyncio.wait_for(took.wait(), 0.25)
            except asyncio.TimeoutError:
                pass

    async def take(self, max_items: int, timeout: float) -> list[OutboxItem]:
        if not self._queue and timeout > 0:
            self._changed.clear()
            try:
                await asyncio.wait_for(self._changed.wait(), timeout)
            except asyncio.TimeoutError:
                pass
        out: list[OutboxItem] = []
        while self._queue and len(out) < max_items:
            item = self._queue.popleft()
            self._inflight[item.key] = item
            out.append(item)
        if out:
            self._taken_at = time.monotonic()
            self._took.set()
        return out

    async def ack(self, items: list[OutboxItem]) -> None:
        for item in items:
            self._inflight.pop(item.key, None)
        self._maybe_clear_alarm()
        self._changed.set()

    def pending(self) -> int:
        return len(self._queue)

    def recover(self) -> None:
        """Hand entries taken but never acknowledged out again (after a batcher restart), oldest first."""
        if self._inflight:
            self._queue.extendleft(reversed(list(self._inflight.values())))
            self._inflight.clear()
            self._changed.set()


#: One put = one Redis command: the entities' XADDs and the commands ``extra`` adds (mapper state)
#: run by this script, atomically as MULTI/EXEC would (and, like it, without rollback should a
#: command fail), but with one reply instead of one per command (each read under its own timeout):
#: less CPU per put (figures in benchmarks/README.md). ARGV: the
#: number of commands, then per command its argument count and its arguments. Returns the first
#: command's reply (the first entry id).
_PUT_SCRIPT = PUT_NEWER_FN + """
local pos, first = 2, nil
for c = 1, tonumber(ARGV[1]) do
  local argc = tonumber(ARGV[pos])
  local reply
  if ARGV[pos + 1] == '""" + PUT_NEWER_COMMAND + """' then
    reply = sl_put_newer(unpack(ARGV, pos + 2, pos + argc))   -- a shared-state write (shared.py)
  else
    reply = redis.call(unpack(ARGV, pos + 1, pos + argc))
  end
  if c == 1 then first = reply end
  pos = pos + argc + 1
end
return first
"""
#: Lua's unpack() takes at most a few thousand values; longer puts use MULTI/EXEC
_SCRIPT_MAX_ARGS = 4000


class _Recorder:
    """Stands in for a redis-py pipeline for ``put(extra=…)``: records the commands (redis-py's own
    command methods build them, so ``hset(key, mapping=…)`` etc. work as on a pipeline)."""

    understands_put_newer = True   # shared-state writes come as PUT_NEWER_COMMAND (shared.py)

    def __init__(self) -> None:
        self.commands: list[tuple] = []

    def execute_command(self, *args, **options):
        self.commands.append(args)
        return self


@functools.cache
def _recorder_class() -> type:
    from redis.commands.core import CoreCommands

    return type("Recorder", (_Recorder, CoreCommands), {})


def _redis_errors() -> tuple[type[BaseException], ...]:
    import redis.exceptions as rex

    return (rex.ConnectionError, rex.TimeoutError, OSError)


class RedisOutbox(_Limit):
    kind = "redis"

    def __init__(self, *, url: str, stream: str, group: str = "stadtlink", consumer: str | None = None,
                 max_length: int = 100_000, backpressure_wait_s: float = 5.0, claim_min_idle_ms: int = 30_000,
                 client=None):
        self.url = url
        self.stream = stream
        self.name = stream
        self.group = group
        self.consumer = consumer or socket.gethostname()
        self.max_length = max_length
        self.backpressure_wait_s = backpressure_wait_s
        self.claim_min_idle_ms = claim_min_idle_ms
        self._client = client
        self._owns_client = client is None
        self._depth = 0
        self._oldest_ms: int | None = None
        self._healthy = False
        self._own_pending_cursor: str | None = "0"   # re-read our own pending entries first
        self._claim_cursor = "0-0"
        self._next_claim = 0.0
        self._inflight: set[bytes] = set()
        self._group_ready = False
        self._script = None
        self._init_limit()

    # -- lifecycle ---------------------------------------------------------------------------
    @property
    def redis(self):
        if self._client is None:
            import redis.asyncio as aioredis

            self._client = aioredis.from_url(self.url, socket_connect_timeout=2, socket_timeout=5,
                                             health_check_interval=10)
        return self._client

    @property
    def _put_script(self):
        script = self._script
        if script is None or script.registered_client is not self.redis:
            script = self._script = self.redis.register_script(_PUT_SCRIPT)
        return script

    async def start(self) -> None:
        try:
            await self._ensure_group()
            await self.refresh()
        except _redis_errors() as exc:
            self._healthy = False
            log.error("outbox redis unreachable at start: %s", exc, extra={"outbox": self.name})

    async def close(self) -> None:
        if self._owns_client and self._client is not None:
            await self._client.aclose()
            self._client = None

    async def _ensure_group(self) -> None:
        import redis.exceptions as rex

        try:
            await self.redis.xgroup_create(self.stream, self.group, id="0", mkstream=True)
        except rex.ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise
        self._group_ready = True
        self._healthy = True

    def _ok(self) -> None:
        self._healthy = True

    def _failed(self, exc: BaseException) -> None:
        if self._healthy:
            log.error("outbox redis error: %s", exc, extra={"outbox": self.name})
        self._healthy = False
        # A read whose answer was lost leaves entries pending for us that we never saw: re-read our
        # own pending entries after reconnecting (the ones we hold are skipped).
        self._own_pending_cursor = "0"

    # -- state ---------------------------------------------------------------------------------
    @property
    def healthy(self) -> bool:
        return self._healthy

    @property
    def depth(self) -> int:
        return self._depth

    @property
    def oldest_age(self) -> float:
        if self._oldest_ms is None:
            return 0.0
        return max(0.0, time.time() - self._oldest_ms / 1000.0)

    async def refresh(self) -> None:
        """Re-read the stream length and the oldest entry (called every second by the runner)."""
        try:
            if not self._group_ready:
                await self._ensure_group()
            pipe = self.redis.pipeline(transaction=False)
            pipe.xlen(self.stream)
            pipe.xrange(self.stream, "-", "+", count=1)
            length, first = await pipe.execute()
        except _redis_errors() as exc:
            self._failed(exc)
            return
        self._ok()
        self._depth = int(length)
        self._oldest_ms = int(first[0][0].split(b"-")[0]) if first else None
        self._maybe_clear_alarm()

    # -- operations ------------------------------------------------------------------------------
    async def put(self, entities: list[dict], *, extra=None) -> None:
        """Add entities (one stream entry each). ``extra(pipe)`` may add commands (the mapper state)
        to the same MULTI/EXEC, so entities and state are stored together or not at all."""
        if not entities:
            return
        n = len(entities)
        if self._depth and self._depth + n > self.max_length:
            self._alarm(n)
            deadline = time.monotonic() + self.backpressure_wait_s
            while True:
                await self.refresh()
                if not (self._depth and self._depth + n > self.max_length):
                    break
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise OutboxFull(f"outbox full ({self._depth}/{self.max_length} entities)")
                await asyncio.sleep(min(remaining, 0.2))
        dumps = orjson.dumps
        try:
            commands = [("XADD", self.stream, "*", "e", dumps(ent)) for ent in entities]
            if extra is not None:
                recorder = _recorder_class()()
                extra(recorder)
                commands.extend(recorder.commands)
            args: list = [len(commands)]
            for command in commands:
                args.append(len(command))
                args.extend(command)
            if len(args) <= _SCRIPT_MAX_ARGS and not any(c[0] in ("EVAL", "EVALSHA") for c in commands):
                res = [await self._put_script(keys=[self.stream], args=args)]
            else:   # a script cannot call EVAL, nor take very many arguments
                pipe = self.redis.pipeline(transaction=extra is not None)
                for command in commands:
                    if command[0] == PUT_NEWER_COMMAND:
                        pipe.execute_command("EVAL", PUT_NEWER_LUA, 1, *command[1:])
                    else:
                        pipe.execute_command(*command)
                res = await pipe.execute()
        except _redis_errors() as exc:
            self._failed(exc)
            raise OutboxUnavailable(f"redis outbox unreachable: {exc}") from exc
        self._ok()
        # Counted here rather than asked (an XLEN per put would add a command to every uplink);
        # ack() and the runner's refresh() every second read the true length, which also counts
        # what other replicas on the same stream added.
        self._depth += n
        if self._oldest_ms is None:
            self._oldest_ms = int(res[0].split(b"-")[0])

    def _items(self, entries) -> list[OutboxItem]:
        out = []
        for entry_id, fields in entries:
            if not fields or entry_id in self._inflight:
                continue   # deleted meanwhile, or already held by us
            raw = fields.get(b"e")
            if raw is None:
                continue
            try:
                ent = orjson.loads(raw)
            except orjson.JSONDecodeError:
                log.error("outbox entry %s is not JSON; skipped", entry_id, extra={"outbox": self.name})
                continue
            self._inflight.add(entry_id)
            out.append(OutboxItem(entry_id, ent, int(entry_id.split(b"-")[0]) / 1000.0))
        return out

    async def take(self, max_items: int, timeout: float) -> list[OutboxItem]:
        try:
            if not self._group_ready:
                await self._ensure_group()
            r = self.redis
            if self._own_pending_cursor is not None:
                res = await r.xreadgroup(self.group, self.consumer, {self.stream: self._own_pending_cursor},
                                         count=max_items)
                entries = res[0][1] if res else []
                if entries:
                    self._own_pending_cursor = entries[-1][0].decode()
                    items = self._items(entries)
                    if items:
                        self._ok()
                        return items
                    return []
                self._own_pending_cursor = None
            now = time.monotonic()
            if now >= self._next_claim:
                self._next_claim = now + max(0.5, self.claim_min_idle_ms / 2000.0)
                claimed = await r.xautoclaim(self.stream, self.group, self.consumer, self.claim_min_idle_ms,
                                             start_id=self._claim_cursor, count=max_items)
                self._claim_cursor = claimed[0].decode() if isinstance(claimed[0], bytes) else str(claimed[0])
                if self._claim_cursor != "0-0":
                    self._next_claim = 0.0   # more to scan
                items = self._items(claimed[1])
                if items:
                    log.warning("reclaimed %d pending outbox entries of a stopped consumer", len(items),
                                extra={"outbox": self.name})
                    self._ok()
                    return items
            res = await r.xreadgroup(self.group, self.consumer, {self.stream: ">"}, count=max_items,
                                     block=max(1, int(timeout * 1000)))
        except _redis_errors() as exc:
            self._failed(exc)
            self._group_ready = False
            await asyncio.sleep(min(timeout, 0.5))
            return []
        except Exception as exc:  # noqa: BLE001 - e.g. NOGROUP after a Redis restart without persistence
            if "NOGROUP" in str(exc):
                self._group_ready = False
                log.error("outbox consumer group vanished (Redis restarted without persistence?); recreating",
                          extra={"outbox": self.name})
                return []
            raise
        self._ok()
        return self._items(res[0][1]) if res else []

    async def ack(self, items: list[OutboxItem]) -> None:
        if not items:
            return
        ids = [i.key for i in items]
        while True:
            try:
                pipe = self.redis.pipeline(transaction=True)
                pipe.xack(self.stream, self.group, *ids)
                pipe.xdel(self.stream, *ids)
                pipe.xlen(self.stream)
                res = await pipe.execute()
                break
            except _redis_errors() as exc:
                # The broker has the entities; an unacked entry would only be sent again later
                # (an idempotent upsert). Keep trying briefly, then leave it pending.
                self._failed(exc)
                await asyncio.sleep(0.5)
                if not await self._ping():
                    for i in ids:
                        self._inflight.discard(i)
                    return
        self._ok()
        for i in ids:
            self._inflight.discard(i)
        self._depth = int(res[-1])
        self._maybe_clear_alarm()

    def recover(self) -> None:
        """After a batcher restart: re-read our own pending entries (taken, never acknowledged)."""
        self._inflight.clear()
        self._own_pending_cursor = "0"

    async def _ping(self) -> bool:
        try:
            await self.redis.ping()
            return True
        except _redis_errors():
            return False


def build_outbox(cfg, adapter_name: str, *, redis_client=None):
    if cfg.kind == "memory":
        return MemoryOutbox(max_length=cfg.max_length, backpressure_wait_s=cfg.backpressure_wait_s)
    return RedisOutbox(url=cfg.url, stream=f"{cfg.key_prefix}:{adapter_name}:outbox", group=cfg.group,
                       consumer=cfg.consumer, max_length=cfg.max_length,
                       backpressure_wait_s=cfg.backpressure_wait_s, claim_min_idle_ms=cfg.claim_min_idle_ms,
                       client=redis_client)

"""State shared by the replicas of one adapter, and entities derived from it by one replica at a time.

Several replicas of an MQTT adapter on one shared subscription each see a part of the messages. A
mapper whose output depends on *several* devices (a parking site's free spots) cannot compute it
from its own part. Such an adapter declares a :class:`DeriveHook`:

* **Uplink side (synchronous, in the mapper).** Instead of keeping per-device state in
  ``ctx.state`` (one JSON value per key, which two replicas would overwrite), the mapper queues
  field-level writes on ``ctx.shared`` (:class:`SharedWrites`): ``put_newer`` sets one field of a
  Redis hash unless the stored field is newer, ``mark`` adds a member to a set of things to
  recompute. The pipeline applies them in the same MULTI/EXEC as the outbox append of the
  message's own entities, so state, mark and entities are stored together or not at all.
* **Derived side (asynchronous, one replica).** :class:`DerivedLoop` holds a lease in Redis
  (:class:`Lease`: ``SET NX PX``, renewed with a compare-and-set script); every ``interval_s`` the
  holder calls ``hook.compute(DeriveContext)``, which pops the marks (``SPOP``), reads the hashes
  (``HGETALL``) and returns entities; they go through the normal check → outbox → batcher.

Why it converges: an uplink does HSET, then SADD (one transaction); the holder does SPOP, then
HGETALL. An update that misses the holder's read re-marks its key, so it is recomputed in the
next round; after the input stops, the last derived entity of each key is computed from the
complete state. A new holder (the lease lost or expired, a replica killed) computes everything
once at takeover (``full=True``), and once more after the outbox's claim window, because a dead
replica's outbox entries (older derived entities) are taken over by a survivor only after
``claim_min_idle_ms``. Every ``resync_s`` there is a full pass too.

Two replicas drain one Redis outbox stream with two batchers, so two versions of one derived
entity queued close together may reach the broker in either order. The loop therefore writes
each derived entity once more ``repeat_s`` after its last version (unless a newer one came), and
the newest version is then the last one written (unless a batcher holds an entry for longer,
e.g. during a broker outage: the periodic full pass bounds that).

Keys (``<prefix>:<adapter>:`` + ...): ``shared:<name>`` (hashes and sets of the adapter),
``derive:lease``.
"""
from __future__ import annotations

import asyncio
import logging
import socket
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Awaitable, Callable

import orjson

log = logging.getLogger("stadtlink.shared")

#: HSET of one field unless the stored value's ``order`` key (an ISO time or another string that
#: sorts in order) is later than ``order_value``. Returns 1 when written. The outbox's put script
#: (adapters/core/outbox.py) includes this function and runs :data:`PUT_NEWER_COMMAND` with it, so
#: an uplink's shared write joins the one-script put instead of forcing MULTI/EXEC.
PUT_NEWER_FN = """
local function sl_put_newer(key, fld, val, order, order_value)
  local old = redis.call('HGET', key, fld)
  if old then
    local ok, doc = pcall(cjson.decode, old)
    if ok and type(doc) == 'table' then
      local have = doc[order]
      if type(have) == 'string' and have > order_value then return 0 end
    end
  end
  redis.call('HSET', key, fld, val)
  return 1
end
"""
PUT_NEWER_LUA = PUT_NEWER_FN + "return sl_put_newer(KEYS[1], ARGV[1], ARGV[2], ARGV[3], ARGV[4])\n"
#: The pseudo command a recording pipe (the outbox's put) receives: name, hash key, field, value,
#: order key, order value. Anything that sends it to Redis as is must send ``EVAL PUT_NEWER_LUA 1 …``.
PUT_NEWER_COMMAND = "SL.PUTNEWER"

#: A whole hash of JSON values as ONE JSON object string: redis-py parses a reply element by
#: element in Python, so HGETALL of a 100-field hash costs 200 parsed elements; this costs one.
_HASH_AS_JSON = """
local h = redis.call('HGETALL', KEYS[1])
local parts = {}
for i = 1, #h, 2 do parts[#parts + 1] = cjson.encode(h[i]) .. ':' .. h[i + 1] end
return '{' .. table.concat(parts, ',') .. '}'
"""

_RENEW = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return 0
"""

_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


# --------------------------------------------------------------------------------------------- uplink side

class SharedWrites:
    """Field-level writes a mapper queues (no I/O); the runtime applies them with the outbox append."""

    __slots__ = ("ops",)

    def __init__(self) -> None:
        self.ops: list[tuple] = []

    def put_newer(self, name: str, field_name: str, value: dict, order: str) -> None:
        """Set ``field_name`` of hash ``name`` to ``value`` (JSON) unless the stored value's ``order``
        key is later than ``value[order]`` (an older reading never overwrites a newer one)."""
        self.ops.append(("put", name, field_name, orjson.dumps(value, default=str), order, str(value[order])))

    def mark(self, name: str, member: str) -> None:
        """Add ``member`` to set ``name`` (what the derive hook pops and recomputes)."""
        self.ops.append(("mark", name, member))

    def take(self) -> list[tuple]:
        ops, self.ops = self.ops, []
        return ops

    def clear(self) -> None:
        self.ops.clear()


class SharedState:
    """The Redis keys shared by the replicas of one adapter (``<prefix>:<adapter>:shared:<name>``)."""

    def __init__(self, client_factory: Callable[[], Any], prefix: str):
        self._client_factory = client_factory
        self.prefix = prefix

    @property
    def redis(self):
        return self._client_factory()

    def key(self, name: str) -> str:
        return f"{self.prefix}:shared:{name}"

    def add_to(self, pipe, ops: list[tuple]) -> None:
        """Queue ``ops`` (from :class:`SharedWrites`) on a Redis pipeline, in order (on the outbox's
        recording pipe as :data:`PUT_NEWER_COMMAND`, which its put script runs)."""
        pseudo = getattr(pipe, "understands_put_newer", False)
        for op in ops:
            if op[0] == "put":
                _, name, fld, value, order, order_value = op
                if pseudo:
                    pipe.execute_command(PUT_NEWER_COMMAND, self.key(name), fld, value, order, order_value)
                else:
                    pipe.eval(PUT_NEWER_LUA, 1, self.key(name), fld, value, order, order_value)
            else:
                pipe.sadd(self.key(op[1]), op[2])

    async def apply(self, ops: list[tuple]) -> None:
        """Apply ``ops`` in their own MULTI/EXEC (when there is no outbox append to join)."""
        if not ops:
            return
        pipe = self.redis.pipeline(transaction=True)
        self.add_to(pipe, ops)
        await pipe.execute()

    async def pop(self, name: str, count: int) -> list[str]:
        members = await self.redis.spop(self.key(name), count)
        return sorted(m.decode() if isinstance(m, bytes) else str(m) for m in members or ())

    async def mark(self, name: str, members: list[str]) -> None:
        if members:
            await self.redis.sadd(self.key(name), *members)

    async def read_hashes(self, names: list[str]) -> list[dict[str, Any]]:
        """The whole of each hash (one round trip, each as one JSON document built in Redis), values
        decoded from JSON; a hash with a value that is not JSON is read field by field (bad ones skipped)."""
        if not names:
            return []
        pipe = self.redis.pipeline(transaction=False)
        for name in names:
            pipe.eval(_HASH_AS_JSON, 1, self.key(name))
        out: list[dict[str, Any] | None] = []
        for raw in await pipe.execute():
            try:
                out.append(orjson.loads(raw))
            except orjson.JSONDecodeError:
                out.append(None)
        for i, doc in enumerate(out):
            if doc is None:
                out[i] = await self._read_fields(names[i])
        return out

    async def _read_fields(self, name: str) -> dict[str, Any]:
        doc: dict[str, Any] = {}
        for k, v in (await self.redis.hgetall(self.key(name))).items():
            try:
                doc[k.decode() if isinstance(k, bytes) else k] = orjson.loads(v)
            except orjson.JSONDecodeError:
                log.error("shared hash %s field %r is not JSON; ignored", name, k)
        return doc


# --------------------------------------------------------------------------------------------- the lease

class Lease:
    """At most one holder at a time: a Redis key holding the holder's token with a TTL.

    ``acquire`` is ``SET key token NX PX ttl``; ``renew`` and ``release`` act only while the key still
    holds *our* token (a Lua compare-and-set), so a holder that lost the lease (it expired while
    the process stalled, and another took it) can never extend or delete the new holder's lease.
    """

    def __init__(self, client_factory: Callable[[], Any], key: str, ttl_ms: int, token: str | None = None):
        self._client_factory = client_factory
        self.key = key
        self.ttl_ms = int(ttl_ms)
        self.token = token or f"{socket.gethostname()}:{uuid.uuid4().hex[:12]}"

    async def acquire(self) -> bool:
        return bool(await self._client_factory().set(self.key, self.token, nx=True, px=self.ttl_ms))

    async def renew(self) -> bool:
        return bool(await self._client_factory().eval(_RENEW, 1, self.key, self.token, self.ttl_ms))

    async def release(self) -> bool:
        return bool(await self._client_factory().eval(_RELEASE, 1, self.key, self.token))

    async def holder(self) -> str | None:
        raw = await self._client_factory().get(self.key)
        return raw.decode() if isinstance(raw, bytes) else raw


# --------------------------------------------------------------------------------------------- derived side

@dataclass(frozen=True)
class DeriveOptions:
    interval_s: float = 1.0       # how often the holder pops marks and computes
    lease_ms: int = 5000          # lease TTL; renewed every round (keep it several intervals long)
    resync_s: float = 60.0        # a full pass this often (and at takeover)
    repeat_s: float = 2.0         # each derived entity is written once more this long after its last version


@dataclass
class DeriveContext:
    """What ``DeriveHook.compute`` gets: the adapter's MapContext (namespace, registry, settings,
    ``now``), the shared state to read, writes to queue, and whether to recompute everything."""

    ctx: Any
    shared: SharedState
    full: bool
    takeover: bool = False        # the first round of a new holder (a full one)
    writes: SharedWrites = field(default_factory=SharedWrites)
    popped: dict[str, list[str]] = field(default_factory=dict)

    async def pop_marked(self, name: str, count: int = 10_000) -> list[str]:
        """Pop up to ``count`` members of set ``name``; they are marked again if the round fails."""
        members = await self.shared.pop(name, count)
        self.popped.setdefault(name, []).extend(members)
        return members

    async def read_hashes(self, names: list[str]) -> list[dict[str, Any]]:
        return await self.shared.read_hashes(names)


@dataclass(frozen=True)
class DeriveHook:
    """An adapter's derived entities (see the module docstring).

    ``options(settings)`` says whether the hook is on (``None``: off, the adapter maps inline as
    before) and how often it runs; ``setting`` names the config key that turns it on (for the
    ConfigError when there is no Redis outbox). ``compute`` is async (it reads Redis) and returns
    entities; it must not write anything itself but queue writes on ``dc.writes``.
    """

    compute: Callable[[DeriveContext], Awaitable[list[dict]]]
    options: Callable[[Any], DeriveOptions | None]
    setting: str = "settings"


class DerivedLoop:
    """Runs a :class:`DeriveHook` in one replica at a time (the lease holder)."""

    def __init__(self, hook: DeriveHook, options: DeriveOptions, *, shared: SharedState, lease: Lease,
                 make_ctx: Callable[[], Any], admit: Callable[[list[dict], list[tuple]], Awaitable[Any]],
                 claim_window_s: float = 0.0, metrics_counts: dict | None = None,
                 clock: Callable[[], float] = time.monotonic):
        self.hook = hook
        self.options = options
        self.shared = shared
        self.lease = lease
        self.make_ctx = make_ctx
        self.admit = admit
        self.claim_window_s = claim_window_s
        self.leader = False
        self.takeovers = 0
        self.rounds = 0
        self.derived = 0
        self._full_due: list[float] = []
        self._next_resync = 0.0
        self._repeat: dict[str, tuple[float, dict]] = {}
        self._counts = metrics_counts if metrics_counts is not None else {}
        self._clock = clock

    async def run(self) -> None:
        while True:
            try:
                await self.step()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - Redis down, outbox full …: the next round tries again
                self._counts["errors"] = self._counts.get("errors", 0) + 1
                log.error("derived entities not computed: %s: %s", type(exc).__name__, exc)
            await asyncio.sleep(self.options.interval_s)

    async def step(self) -> int:
        """One round: keep or take the lease; if held, compute and queue. Returns entities queued."""
        now = self._clock()
        if self.leader and not await self.lease.renew():
            self.leader = False
            self._repeat.clear()
            log.warning("derive lease lost (another replica holds it now)")
        if not self.leader:
            if not await self.lease.acquire():
                return 0
            self.leader = True
            self.takeovers += 1
            self._full_due = [now, now + self.claim_window_s + 2 * self.options.interval_s]
            self._next_resync = now + self.options.resync_s
            log.info("derive lease taken: computing every derived entity", extra={"lease": self.lease.key})
        full = False
        takeover = len(self._full_due) == 2 and now >= self._full_due[0]
        if self._full_due and now >= self._full_due[0]:
            self._full_due.pop(0)
            full = True
        if now >= self._next_resync:
            self._next_resync = now + self.options.resync_s
            full = True
        ctx = self.make_ctx()
        ctx.now = datetime.now(timezone.utc)
        dc = DeriveContext(ctx=ctx, shared=self.shared, full=full, takeover=takeover)
        self.rounds += 1
        try:
            entities = list(await self.hook.compute(dc) or ())
            due = [ent for _, (t, ent) in self._repeat.items() if t <= now]
            fresh_ids = {e.get("id") for e in entities}
            repeat = [e for e in due if e.get("id") not in fresh_ids]
            if entities or repeat or dc.writes.ops:
                await self.admit(entities + repeat, dc.writes.take())
        except BaseException:
            for name, members in dc.popped.items():   # recompute them in a later round
                try:
                    await self.shared.mark(name, members)
                except Exception:  # noqa: BLE001 - the next full pass covers them
                    pass
            raise
        for e in repeat:
            self._repeat.pop(e.get("id"), None)
        later = now + self.options.repeat_s
        for e in entities:
            self._repeat[e["id"]] = (later, e)
        self.derived += len(entities)
        return len(entities) + len(repeat)

    async def close(self) -> None:
        if self.leader:
            try:
                await self.lease.release()
            except Exception:  # noqa: BLE001 - it expires by itself
                pass
            self.leader = False

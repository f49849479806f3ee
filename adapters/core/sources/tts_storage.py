"""Backfill from The Things Stack's Storage Integration: what MQTT (QoS 0, no sessions) or a
webhook (tried once) did not deliver.

The Storage API (lorawan-stack ``api/ttn/lorawan/v3/applicationserver_integrations_storage.proto``
@ ``1d2182161975e038d6634b7dd4dd15fda86b1d68``, docs ``doc/content/integrations/storage/retrieve.md``
@ lorawan-stack-docs ``a189a5255199ce9ac016abbcf66d69fd3a73fed9``)::

    GET {api_url}/api/v3/as/applications/{application_id}/packages/storage/uplink_message
        ?after=<RFC 3339>&limit=<n>&order=received_at
    Authorization: Bearer <API key with RIGHT_APPLICATION_TRAFFIC_READ>

answers one ``{"result": <ApplicationUp, the document the MQTT server publishes>}`` per line
(grpc-gateway v2.22.0 ``runtime/handler.go`` ``ForwardResponseStream``; with ``Accept:
text/event-stream`` separated by a blank line, no ``data:`` prefix — both are read here). An error
before any result comes with its HTTP status and ``{"error": {code, message, details}}`` (or the
bare status object for errors raised in the gateway); an error after some results keeps the 200
and appends an ``{"error": …}`` line, so every line is checked. The continuation token is not
exposed over HTTP (``pkg/rpcserver/rpcserver.go`` forwards only ``x-total-count``,
``x-rate-limit-*`` and ``warning``), so pages follow each other by ``after`` = the last record's
``received_at`` minus 1 µs (whether ``after`` is inclusive is not documented; the record read again
is skipped). Writes to the storage are batched: the newest uplinks may appear late, which the
``overlap_s`` of every catch-up covers.

:class:`TtsBackfill` per TTS application:

* **scan watermark** ``S``: every stored uplink received before ``S`` has been read by a catch-up.
  A catch-up reads from ``S - overlap_s`` (never before ``now - max_lookback_s``; on the first
  start from ``now - initial_lookback_s``) page by page to the end; ``S`` advances after each page.
* **seen set**: the key ``(device, f_cnt, f_port, received_at)`` of every uplink admitted since
  ``S - overlap_s`` — live (MQTT/webhook, :meth:`TtsBackfill.note`) or backfilled. A stored uplink
  whose key is in it is skipped, so live and backfilled copies count once, also after a restart;
  in the pipeline the ``(device, f_cnt, f_port)`` dedup window drops a live copy that arrives after
  its backfilled one. Both copies are the same ApplicationUp document with the same
  ``received_at``, so their keys match.
* Both are kept in the outbox's store (:class:`RedisBackfillStore`: Redis when the outbox is Redis,
  written every second and when the source stops; :class:`MemoryBackfillStore` otherwise). A crash
  loses at most the last second of the seen set: those uplinks may be handed over again
  (at-least-once; entity upserts are idempotent).
* **Several replicas** (a webhook adapter scaled out; Redis store): a lease (``…:lease``) lets one
  of them catch up; before each catch-up it stores what it admitted and takes in what the others
  stored, so an uplink admitted live by any replica is skipped. The others stand by
  (``tts_backfill_standby``) and one takes over when the holder stops (it releases the lease) or
  its lease expires (4 × ``timeout_s``, at least 60 s).
* Runs at start, whenever :meth:`TtsBackfill.kick` is called (the MQTT source: after every
  reconnect) and every ``period_s``; a failing Storage API is retried with backoff (the catch-up
  resumes where it stopped); live traffic never waits for it (a task of its own, one uplink at a
  time into the pipeline, at most ``max_rate_per_s``).
"""
from __future__ import annotations

import asyncio
import itertools
import logging
import re
import ssl
import time
from datetime import datetime, timedelta, timezone
from typing import Any, Awaitable, Callable, Protocol

import aiohttp
import orjson

from ..reading import RawMessage
from ..timeutil import TimeFormatError, parse_time
from .backoff import Backoff
from .tts import TTS_ID, TtsConfig

log = logging.getLogger("stadtlink.source.tts_storage")

UTC = timezone.utc
_EPS = timedelta(microseconds=1)
#: a whole 200 answer (all its lines) may be at most this many times page_size × max_line_bytes —
#: in practice the line bound and ``limit`` bound it
_MAX_READ_CHUNK = 64 * 1024


class StorageError(Exception):
    """The Storage API failed (HTTP status, an ``{"error": …}`` line, a timeout, a broken answer)."""

    def __init__(self, message: str, *, status: int | None = None, retry_after: float | None = None,
                 permanent: bool = False):
        super().__init__(message)
        self.status = status
        self.retry_after = retry_after
        self.permanent = permanent


def _raise_if_cancelled() -> None:
    """Stop if this task was asked to, also when the CancelledError never reached us: a library
    that catches it (or turns it into its own error) must not keep the backfill running after its
    source stopped (observed: a cancelled backfill went on catching up, the lease held)."""
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError()


def _iso(dt: datetime) -> str:
    return dt.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _us(dt: datetime) -> int:
    return (dt - datetime(1970, 1, 1, tzinfo=UTC)) // _EPS


#: TTS's own form (``jsonpb``: UTC, ``Z``, up to nanoseconds), read without the general parser
_TTS_TIME = re.compile(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d{1,9}))?Z")


def _stamp_us(value: Any) -> int:
    """An RFC 3339 timestamp in µs since the epoch (TypeError/TimeFormatError/OverflowError if not one)."""
    if type(value) is str:
        m = _TTS_TIME.fullmatch(value)
        if m is not None:
            try:
                whole = datetime.fromisoformat(m.group(1)).replace(tzinfo=UTC)
            except ValueError:
                raise TimeFormatError(f"not a timestamp: {value[:40]!r}") from None
            frac = m.group(2)
            return int(whole.timestamp()) * 1_000_000 + (int(frac[:6].ljust(6, "0")) if frac else 0)
    return _us(parse_time(value))


def _from_us(us: int) -> datetime:
    return datetime(1970, 1, 1, tzinfo=UTC) + timedelta(microseconds=us)


def uplink_identity(doc: Any) -> tuple[str, int] | None:
    """``(key, received_at in µs)`` of a TTS ApplicationUp with an uplink, else None.

    The key is ``device|f_cnt|f_port|received_at`` — device = ``dev_eui`` (upper-case hex in TTS
    JSON, lower-cased here as the pipeline does) or ``device_id``; ``received_at`` the
    ApplicationUp's own (the Application Server's; the Storage API filters and orders by it),
    falling back to ``uplink_message.received_at``."""
    if type(doc) is not dict:
        return None
    up = doc.get("uplink_message")
    ids = doc.get("end_device_ids")
    if type(up) is not dict or type(ids) is not dict:
        return None
    device = ids.get("dev_eui") or ids.get("device_id")
    if type(device) is not str or not device:
        return None
    stamp = doc.get("received_at") or up.get("received_at")
    try:
        at = _stamp_us(stamp)
    except (TimeFormatError, OverflowError, TypeError, ValueError):
        return None
    f_cnt = up.get("f_cnt") or 0
    f_port = up.get("f_port")
    return f"{device.lower()}|{f_cnt}|{f_port}|{at}", at


# -- the store ---------------------------------------------------------------------------------------


class BackfillStore(Protocol):
    kind: str

    async def load(self, app: str, max_seen: int) -> tuple[int | None, dict[str, int]]:
        """(scan watermark in µs or None, seen key → received_at µs)."""

    async def save(self, app: str, watermark: int | None, added: dict[str, int], forget_below: int | None) -> None:
        """Store the watermark, add seen keys, drop those received before ``forget_below``."""


class MemoryBackfillStore:
    """In the process only (memory outbox): a restart starts with ``initial_lookback_s``."""

    kind = "memory"

    def lease(self, app: str, ttl_ms: int):
        return None     # one process: it always catches up itself

    def __init__(self) -> None:
        self._data: dict[str, tuple[int | None, dict[str, int]]] = {}

    async def load(self, app: str, max_seen: int) -> tuple[int | None, dict[str, int]]:
        mark, seen = self._data.get(app, (None, {}))
        return mark, dict(seen)

    async def save(self, app: str, watermark: int | None, added: dict[str, int], forget_below: int | None) -> None:
        mark, seen = self._data.get(app, (None, {}))
        seen = {**seen, **added}
        if forget_below is not None:
            seen = {k: v for k, v in seen.items() if v >= forget_below}
        self._data[app] = (watermark if watermark is not None else mark, seen)


#: the watermark only ever moves forward, whoever writes it
_MAX_MARK = """
local cur = redis.call('HGET', KEYS[1], 'watermark')
if (not cur) or tonumber(cur) < tonumber(ARGV[1]) then
  redis.call('HSET', KEYS[1], 'watermark', ARGV[1])
end
return 1
"""


class RedisBackfillStore:
    """``<prefix>:tts:<app uid>`` (a hash: ``watermark`` in µs), ``<prefix>:tts:<app uid>:seen``
    (a sorted set: key → received_at µs) and ``…:lease`` (which replica catches up, when several
    run: :class:`~stadtlink.adapters.core.shared.Lease`); ``<prefix>`` is the outbox's
    ``<key_prefix>:<adapter>``."""

    kind = "redis"

    def lease(self, app: str, ttl_ms: int):
        from ..shared import Lease

        return Lease(self._client_factory, self._key(app) + ":lease", ttl_ms)

    def __init__(self, client_factory: Callable[[], Any], prefix: str):
        self._client_factory = client_factory
        self.prefix = prefix

    def _key(self, app: str) -> str:
        return f"{self.prefix}:tts:{app}"

    async def load(self, app: str, max_seen: int) -> tuple[int | None, dict[str, int]]:
        client = self._client_factory()
        raw = await client.hget(self._key(app), "watermark")
        members = await client.zrevrange(self._key(app) + ":seen", 0, max_seen - 1, withscores=True)
        mark = int(raw) if raw is not None else None
        return mark, {(m.decode() if isinstance(m, bytes) else m): int(s) for m, s in members}

    async def save(self, app: str, watermark: int | None, added: dict[str, int], forget_below: int | None) -> None:
        pipe = self._client_factory().pipeline(transaction=True)
        if watermark is not None:
            pipe.eval(_MAX_MARK, 1, self._key(app), str(watermark))
        if added:
            pipe.zadd(self._key(app) + ":seen", added)
        if forget_below is not None:
            pipe.zremrangebyscore(self._key(app) + ":seen", "-inf", f"({forget_below}")
        await pipe.execute()


def backfill_store(outbox_kind: str, prefix: str, redis_factory: Callable[[], Any] | None) -> BackfillStore:
    """The store that goes with the outbox (the runner hands it to the sources)."""
    if outbox_kind == "redis" and redis_factory is not None:
        return RedisBackfillStore(redis_factory, prefix)
    return MemoryBackfillStore()


# -- the HTTP client ---------------------------------------------------------------------------------


class StorageClient:
    """Reads pages of stored uplinks (bounded: ``limit`` records, ``max_line_bytes`` per record,
    ``timeout_s`` per page)."""

    def __init__(self, api_url: str, application_id: str, api_key: str | None, *, timeout_s: float,
                 max_line_bytes: int, user_agent: str = "stadtlink", ssl_context: ssl.SSLContext | None = None):
        self.url = f"{api_url}/api/v3/as/applications/{application_id}/packages/storage/uplink_message"
        self._headers = {"Accept": "text/event-stream", "User-Agent": user_agent}
        if api_key:
            self._headers["Authorization"] = f"Bearer {api_key}"
        self.timeout_s = timeout_s
        self.max_line_bytes = max_line_bytes
        self._ssl = ssl_context
        self._session: aiohttp.ClientSession | None = None
        self.oversized = 0

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def page(self, after: datetime, limit: int) -> list[dict]:
        """The stored uplinks received after ``after``, oldest first, at most ``limit``."""
        if self._session is None:
            connector = aiohttp.TCPConnector(ssl=self._ssl) if self._ssl is not None else None
            self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=None, sock_connect=10),
                                                  connector=connector)
        params = {"after": _iso(after), "limit": str(limit), "order": "received_at"}
        try:
            async with asyncio.timeout(self.timeout_s):
                return await self._page(params, limit)
        except TimeoutError:
            raise StorageError(f"no complete answer within {self.timeout_s:g}s") from None
        except aiohttp.ClientError as exc:
            raise StorageError(f"{type(exc).__name__}: {exc}") from None

    async def _page(self, params: dict, limit: int) -> list[dict]:
        assert self._session is not None
        async with self._session.get(self.url, params=params, headers=self._headers) as resp:
            if resp.status != 200:
                body = await resp.content.read(16 * 1024)
                raise _status_error(resp.status, body, resp.headers)
            results: list[dict] = []
            async for line in self._lines(resp.content):
                try:
                    doc = orjson.loads(line)
                except orjson.JSONDecodeError:
                    raise StorageError(f"not JSON: {line[:80]!r}") from None
                if type(doc) is not dict:
                    raise StorageError("an answer line that is not a JSON object")
                if "error" in doc:
                    raise _error_line(doc["error"], 200)
                result = doc.get("result")
                if type(result) is dict:
                    results.append(result)
                if len(results) >= limit:
                    break
            return results

    async def _lines(self, stream: aiohttp.StreamReader):
        buf = bytearray()
        skipping = False
        async for chunk in stream.iter_chunked(_MAX_READ_CHUNK):
            start = 0
            while True:
                nl = chunk.find(b"\n", start)
                piece = chunk[start:] if nl < 0 else chunk[start:nl]
                if not skipping:
                    buf += piece
                    if len(buf) > self.max_line_bytes:
                        skipping = True
                        buf.clear()
                if nl < 0:
                    break
                start = nl + 1
                if skipping:
                    skipping = False
                    self.oversized += 1
                    log.warning("tts storage: a record longer than %d bytes skipped", self.max_line_bytes)
                    continue
                line = bytes(buf).strip()
                buf.clear()
                if line:
                    yield line
        if not skipping:
            line = bytes(buf).strip()
            if line:
                yield line
        else:
            self.oversized += 1


def _error_line(err: Any, status: int | None) -> StorageError:
    if type(err) is dict:
        return StorageError(f"error {err.get('code')}: {str(err.get('message'))[:300]}", status=status,
                            permanent=err.get("code") in (3, 5, 7, 16))
    return StorageError(f"error: {str(err)[:300]}", status=status)


def _status_error(status: int, body: bytes, headers) -> StorageError:
    message = body[:300].decode("utf-8", "replace")
    try:
        doc = orjson.loads(body)
        err = doc.get("error", doc) if type(doc) is dict else None
        if type(err) is dict and "message" in err:
            message = f"error {err.get('code')}: {str(err['message'])[:300]}"
    except orjson.JSONDecodeError:
        pass
    retry_after = None
    raw = headers.get("Retry-After") or headers.get("X-Ratelimit-Retry")
    if raw:
        try:
            retry_after = max(0.0, float(raw))
        except ValueError:
            retry_after = None
    hint = ""
    if status in (401, 403):
        hint = (" — the API key needs the right RIGHT_APPLICATION_TRAFFIC_READ on this application "
                "(tts.api_key_file)")
    elif status == 404:
        hint = (" — is the Storage Integration enabled for this application (Integrations → Storage "
                "Integration) and tts.api_url the cluster of the application?")
    return StorageError(f"HTTP {status}: {message}{hint}", status=status, retry_after=retry_after,
                        permanent=status in (400, 401, 403, 404))


# -- the backfill ------------------------------------------------------------------------------------


class TtsBackfill:
    """Catch-ups for one TTS application (module docstring). The owning source calls
    :meth:`use_store` (the runner's store) before :meth:`run`, :meth:`note` after each live
    uplink's ``emit`` returned and :meth:`kick` after a reconnect."""

    def __init__(self, config: TtsConfig, *, api_url: str, source_kind: str, name: str,
                 api_key: str | None, clock: Callable[[], datetime] | None = None,
                 ssl_context: ssl.SSLContext | None = None):
        self.config = config
        self.bf = config.backfill
        self.app = config.uid
        self.source_kind = source_kind
        self.name = name
        self.client = StorageClient(api_url, config.application_id, api_key, timeout_s=self.bf.timeout_s,
                                    max_line_bytes=self.bf.max_line_bytes, ssl_context=ssl_context)
        self._clock = clock or (lambda: datetime.now(UTC))
        self._store: BackfillStore = MemoryBackfillStore()
        self._watermark: int | None = None
        self._seen: dict[str, int] = {}
        self._added: dict[str, int] = {}
        self._dirty = False
        self._loaded = False
        self._wanted = asyncio.Event()
        self._reasons: set[str] = set()
        self._resume: int | None = None     # a failed catch-up goes on from here
        self._lease = None                   # several replicas (Redis): only the holder catches up
        self._leader = False
        self._stats = {"tts_backfill_runs": 0.0, "tts_backfill_failures": 0.0, "tts_backfill_pages": 0.0,
                       "tts_backfill_uplinks": 0.0, "tts_backfill_skipped": 0.0, "tts_backfill_oversized": 0.0,
                       "tts_backfill_refused": 0.0, "tts_backfill_seen_evicted": 0.0,
                       "tts_backfill_store_failures": 0.0, "tts_backfill_running": 0.0,
                       "tts_backfill_standby": 0.0,
                       "tts_backfill_last_success_timestamp_seconds": 0.0}

    # -- wiring -------------------------------------------------------------------------------------
    def use_store(self, store: BackfillStore) -> None:
        self._store = store

    def kick(self, reason: str) -> None:
        """Ask for a catch-up now (it starts when the current one is done)."""
        self._reasons.add(reason)
        self._wanted.set()

    def stats(self) -> dict[str, float]:
        out = dict(self._stats)
        out["tts_backfill_oversized"] = float(self.client.oversized)
        now = _us(self._clock())
        out["tts_backfill_lag_seconds"] = (now - self._watermark) / 1e6 if self._watermark is not None else 0.0
        out["tts_backfill_leader"] = 1.0 if (self._leader or self._lease is None) else 0.0
        return out

    def note(self, payload: Any) -> None:
        """A live uplink was admitted (its emit returned): remember it so a catch-up skips it."""
        try:
            doc = orjson.loads(payload) if not isinstance(payload, dict) else payload
        except (orjson.JSONDecodeError, TypeError):
            return
        ident = uplink_identity(doc)
        if ident is not None:
            self._remember(*ident)

    def _remember(self, key: str, at: int) -> None:
        if key in self._seen:
            return
        self._seen[key] = at
        self._added[key] = at
        self._dirty = True
        if len(self._seen) > self.bf.max_seen:
            # the oldest tenth goes (the dict is in insertion order, nearly time order): amortised,
            # not a pass over the whole set per uplink once it is full
            drop = max(1, self.bf.max_seen // 10)
            for old in list(itertools.islice(self._seen, drop)):
                del self._seen[old]
                self._added.pop(old, None)
            self._stats["tts_backfill_seen_evicted"] += drop

    # -- running ------------------------------------------------------------------------------------
    async def run(self, emit: Callable[[RawMessage], Awaitable[None]]) -> None:
        """Until cancelled: load the state, then catch up at start, on :meth:`kick` and every
        ``period_s``. The state is written every second and when cancelled."""
        await self._load()
        lease = getattr(self._store, "lease", None)
        self._lease = lease(self.app, max(60_000, int(self.bf.timeout_s * 4000))) if lease is not None else None
        self.kick("start")
        flusher = asyncio.create_task(self._flush_loop(), name=f"tts-backfill-flush:{self.app}")
        retry = Backoff(self.bf.retry_min_s, self.bf.retry_max_s)
        period = self.bf.period_s or None
        try:
            while True:
                _raise_if_cancelled()   # also when a library swallowed the CancelledError itself
                if not await self._woken(period):
                    self._reasons.add("period")
                self._wanted.clear()
                reasons = ",".join(sorted(self._reasons)) or "period"
                self._reasons.clear()
                while True:
                    try:
                        await self._catch_up(emit, reasons)
                        retry.reset()
                        break
                    except StorageError as exc:
                        _raise_if_cancelled()
                        self._stats["tts_backfill_failures"] += 1
                        delay = retry.next()
                        if exc.retry_after is not None:
                            delay = max(delay, min(exc.retry_after, self.bf.retry_max_s))
                        level = logging.ERROR if exc.permanent else logging.WARNING
                        log.log(level, "tts backfill %s (%s): storage API failed: %s; retrying in %.1fs",
                                self.app, self.name, exc, delay)
                    except Exception as exc:  # noqa: BLE001 - a bug here must not end the backfill
                        _raise_if_cancelled()
                        self._stats["tts_backfill_failures"] += 1
                        delay = retry.next()
                        log.exception("tts backfill %s (%s): catch-up failed (%s); retrying in %.1fs",
                                      self.app, self.name, type(exc).__name__, delay)
                    await asyncio.sleep(delay)
                    self._wanted.clear()   # this retry serves the kicks meanwhile
        finally:
            flusher.cancel()
            await asyncio.gather(flusher, return_exceptions=True)
            self._stats["tts_backfill_running"] = 0.0
            try:
                await asyncio.wait_for(asyncio.shield(self._flush()), 3.0)
            except (asyncio.TimeoutError, asyncio.CancelledError):
                pass
            except Exception as exc:  # noqa: BLE001
                log.warning("tts backfill %s: state not stored at stop: %s", self.app, exc)
            if self._leader and self._lease is not None:
                try:        # stored first, then another replica takes over at once, not after the TTL
                    await asyncio.wait_for(asyncio.shield(self._lease.release()), 2.0)
                except (asyncio.TimeoutError, asyncio.CancelledError):
                    pass
                except Exception as exc:  # noqa: BLE001
                    log.warning("tts backfill %s: lease not released: %s", self.app, exc)
                self._leader = False
            await self.client.close()

    async def _load(self) -> None:
        delay = Backoff(0.5, 10.0)
        while True:
            try:
                mark, seen = await self._store.load(self.app, self.bf.max_seen)
                break
            except Exception as exc:  # noqa: BLE001 - Redis not up yet: wait, live traffic goes on
                _raise_if_cancelled()
                self._stats["tts_backfill_store_failures"] += 1
                wait = delay.next()
                log.warning("tts backfill %s: cannot load its state (%s); retrying in %.1fs", self.app, exc, wait)
                await asyncio.sleep(wait)
        # what live traffic noted before the load stays
        self._seen = {**dict(sorted(seen.items(), key=lambda kv: kv[1])), **self._seen}
        if mark is not None:
            self._watermark = max(mark, self._watermark or mark)
        self._loaded = True

    async def _woken(self, timeout: float | None) -> bool:
        """Wait for :meth:`kick` at most ``timeout`` seconds; True if kicked. (Not ``wait_for``: on
        Python 3.11 it can swallow the cancellation of the task that waits, when the event is set
        in the same instant, and the source could then never stop.)"""
        _raise_if_cancelled()
        if self._wanted.is_set():
            return True
        waiter = asyncio.ensure_future(self._wanted.wait())
        try:
            await asyncio.wait({waiter}, timeout=timeout)
        finally:
            if not waiter.done():
                waiter.cancel()
        return self._wanted.is_set()

    async def stop_task(self, task: asyncio.Task, timeout: float = 10.0) -> None:
        """Cancel the task running :meth:`run` and wait for it, at most ``timeout`` seconds (its
        final state write and lease release take up to 5 s): a source's stop never hangs on its
        backfill."""
        task.cancel()
        done, _ = await asyncio.wait({task}, timeout=timeout)
        if not done:
            import io

            where = io.StringIO()
            task.print_stack(file=where)
            log.error("tts backfill %s: did not stop within %.0fs; left behind at %s", self.app, timeout,
                      where.getvalue()[-1500:])
        elif not task.cancelled() and task.exception() is not None:
            log.error("tts backfill %s: ended with %r", self.app, task.exception())

    async def _hold(self) -> bool:
        """Whether this replica catches up now (acquires or renews the lease; no lease: always)."""
        if self._lease is None:
            return True
        if self._leader:
            self._leader = await self._lease.renew()
        if not self._leader:
            self._leader = await self._lease.acquire()
        return self._leader

    async def _refresh(self) -> None:
        """Take in what other replicas stored (their admitted uplinks, a newer watermark), so a
        catch-up skips what any of them admitted."""
        mark, seen = await self._store.load(self.app, self.bf.max_seen)
        fresh = {k: at for k, at in seen.items() if k not in self._seen}
        if fresh:
            self._seen.update(sorted(fresh.items(), key=lambda kv: kv[1]))
        if mark is not None and (self._watermark is None or mark > self._watermark):
            self._watermark = mark

    async def _flush_loop(self) -> None:
        while True:
            await asyncio.sleep(1.0)
            try:
                await self._flush()
            except Exception as exc:  # noqa: BLE001
                _raise_if_cancelled()
                self._stats["tts_backfill_store_failures"] += 1
                log.warning("tts backfill %s: state not stored (%s); retrying", self.app, exc)

    async def _flush(self) -> None:
        if not self._dirty or not self._loaded:
            return
        added, self._added = self._added, {}
        self._dirty = False
        forget = self._forget_below()
        try:
            await self._store.save(self.app, self._watermark, added, forget)
        except BaseException:
            self._added = {**added, **self._added}
            self._dirty = True
            raise
        if forget is not None:
            for key in [k for k, at in self._seen.items() if at < forget]:
                del self._seen[key]

    def _forget_below(self) -> int | None:
        if self._watermark is None:
            return None
        return self._watermark - int(self.bf.overlap_s * 1e6) - 1

    async def _catch_up(self, emit, reasons: str) -> None:
        if self._lease is not None:
            if not await self._hold():
                self._stats["tts_backfill_standby"] += 1    # another replica catches up
                return
            await self._flush()     # what this replica admitted, for the others …
            await self._refresh()   # … and what they admitted, for this catch-up
        bf = self.bf
        now = self._clock()
        now_us = _us(now)
        floor = _us(now - timedelta(seconds=bf.max_lookback_s))
        if self._resume is not None:
            after = self._resume
        elif self._watermark is None:
            after = _us(now - timedelta(seconds=bf.initial_lookback_s))
        else:
            after = self._watermark - int(bf.overlap_s * 1e6)
        after = max(after, floor)
        self._stats["tts_backfill_running"] = 1.0
        self._stats["tts_backfill_runs"] += 1
        handed = skipped = 0
        started = time.monotonic()
        try:
            while True:
                _raise_if_cancelled()
                self._resume = after
                page = await self.client.page(_from_us(after), bf.page_size)
                self._stats["tts_backfill_pages"] += 1
                last = None
                for doc in page:
                    ident = uplink_identity(doc)
                    if ident is None:
                        continue    # not an uplink (or without received_at): nothing to page by
                    key, at = ident
                    last = at if last is None or at > last else last
                    if key in self._seen:
                        skipped += 1
                        self._stats["tts_backfill_skipped"] += 1
                        continue
                    await self._hand_over(emit, doc)
                    self._remember(key, at)
                    handed += 1
                    self._stats["tts_backfill_uplinks"] += 1
                    rate = bf.max_rate_per_s
                    await asyncio.sleep(1.0 / rate if rate else 0)   # live messages get their turn
                # a record stamped in the future (a server clock off, or garbage) must not move
                # the watermark past now: later catch-ups would start after uplinks not read yet
                mark = min(last, now_us) if last is not None else None
                if mark is not None and (self._watermark is None or mark > self._watermark):
                    self._watermark = mark
                    self._dirty = True
                if len(page) < bf.page_size or last is None:
                    break
                if self._lease is not None and not await self._hold():
                    log.warning("tts backfill %s: lease lost during a catch-up; another replica goes on", self.app)
                    break
                nxt = last - 1      # the last record once more: `after` may be exclusive
                if nxt <= after:    # a whole page at one instant: step over it
                    nxt = last
                after = nxt
        finally:
            self._stats["tts_backfill_running"] = 0.0
        self._resume = None
        if self._watermark is None:
            # nothing stored yet: start the next catch-up from where this one looked
            self._watermark = after
            self._dirty = True
        self._stats["tts_backfill_last_success_timestamp_seconds"] = time.time()
        if handed or skipped:
            log.info("tts backfill %s (%s, %s): %d uplinks handed over, %d already admitted, %.1fs",
                     self.app, self.name, reasons, handed, skipped, time.monotonic() - started)

    async def _hand_over(self, emit, doc: dict) -> None:
        """One stored uplink into the pipeline, as the live source would have delivered it; an
        outbox that refuses (full) is waited for, the uplink is not skipped."""
        ids = doc.get("end_device_ids") or {}
        device = ids.get("device_id") if type(ids) is dict else None
        topic = (f"v3/{self.app}/devices/{device}/up"
                 if type(device) is str and len(device) <= 36 and TTS_ID.match(device) else None)
        raw = RawMessage(source=self.source_kind, payload=orjson.dumps(doc), topic=topic,
                         received_at=datetime.now(UTC), attributes={"backfill": "tts-storage"})
        wait = Backoff(0.2, 10.0)
        while True:
            try:
                await emit(raw)
                break
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - outbox full / unavailable
                _raise_if_cancelled()
                self._stats["tts_backfill_refused"] += 1
                delay = wait.next()
                log.warning("tts backfill %s: pipeline refused an uplink (%s); retrying in %.1fs",
                            self.app, exc, delay)
                await asyncio.sleep(delay)




def make_backfill(tts: TtsConfig | None, *, default_host: str | None, source_kind: str,
                  name: str, ssl_context: ssl.SSLContext | None = None) -> TtsBackfill | None:
    """The backfill of a source's ``tts:`` block, or None (no block, or ``backfill.enabled: false``).
    Raises ConfigError naming the setting when the API URL or key is missing. ``ssl_context``:
    the MQTT source's when it names its own CA (an Enterprise cluster under a private CA serves
    its API with the same certificate chain); system CAs otherwise."""
    from ..errors import ConfigError

    if tts is None or not tts.backfill.enabled:
        return None
    api_url = tts.api_url or (f"https://{default_host}" if default_host else None)
    if api_url is None:
        raise ConfigError("tts.api_url: the cluster's HTTP API (e.g. https://eu1.cloud.thethings.network) is "
                          "needed for the Storage Integration backfill (or set tts.backfill.enabled: false)")
    key = tts.resolve_api_key()
    if not key:
        raise ConfigError("tts.api_key_file (or api_key_env, api_key): the Storage Integration backfill needs an "
                          "API key with the right RIGHT_APPLICATION_TRAFFIC_READ")
    return TtsBackfill(tts, api_url=api_url, source_kind=source_kind, name=name, api_key=key,
                       ssl_context=ssl_context)


__all__ = ["TtsBackfill", "StorageClient", "StorageError", "BackfillStore", "MemoryBackfillStore",
           "RedisBackfillStore", "backfill_store", "make_backfill", "uplink_identity"]

"""The path of one message: decode → map → check → outbox.

Every source gets an ``emit`` from :meth:`Pipeline.emitter`. ``emit(message)`` returns once the
message's entities are in the outbox (or the message was dead-lettered or dropped); it raises
only when the outbox refused (:class:`~stadtlink.adapters.core.outbox.OutboxFull` /
:class:`~stadtlink.adapters.core.outbox.OutboxUnavailable`), so the source must not acknowledge.

Profile choice: the registry record's ``profile`` for the device, else the source's ``profile``
(or ``message.attributes["profile"]``, which a source may set per target). LoRaWAN envelopes are
parsed once (:func:`parse_uplink`), retransmissions (same device, fCnt and fPort within
``dedup_window_s``) dropped as ``duplicate``, then the profile's ``decode_uplink`` runs.
Each reading's ``observed_at`` then passes time admission (adapters/core/timecheck.py) before the
mapper sees it; outside the window it is dead-lettered as ``implausible-time``.
Profile options are the source's ``options`` overlaid with ``message.attributes["options"]``.

No pydantic and no logging per message on the hot path: failures are counted, dead-lettered and
logged once per device and reason (rate-limited).
"""
from __future__ import annotations

import asyncio
import logging
import time
from datetime import datetime, timezone
from typing import Any, Callable, Mapping

import orjson

from .adapter import AdapterSpec, MapContext, StateStore
from .deadletter import message_record
from .errors import DecodeError, MappingError, ReadingDropped
from .logging import RateLimitedLog
from .lorawan import parse_uplink
from .metrics import Metrics
from .reading import RawMessage, Reading, Uplink
from .timecheck import IMPLAUSIBLE_TIME, TimeAdmission

log = logging.getLogger("stadtlink.pipeline")

_EMPTY: Mapping[str, Any] = {}
_UNSET: Any = object()


def runtime_profiles() -> dict[str, Any]:
    """Profiles every adapter may use without listing them (the generic ``json-map``)."""
    try:
        from .jsonmap import JSON_MAP_PROFILE
    except ImportError:  # pragma: no cover - the json-map module is optional
        return {}
    return {JSON_MAP_PROFILE.name: JSON_MAP_PROFILE}


def resolve_profile(adapter: AdapterSpec, name: str):
    """The adapter's profile of that name, else a runtime-wide one; DecodeError if neither exists."""
    profile = adapter.profiles.get(name)
    if profile is not None:
        return profile
    profile = runtime_profiles().get(name)
    if profile is not None:
        return profile
    return adapter.profile(name)   # raises DecodeError("unknown-profile", …)


def newest_observed_at(entity: dict) -> str | None:
    """The latest ``observedAt`` among an entity's attributes (ISO strings in UTC ``Z`` compare in order)."""
    newest = None
    for value in entity.values():
        if type(value) is dict:
            obs = value.get("observedAt")
            if type(obs) is str and (newest is None or obs > newest):
                newest = obs
    return newest


class DedupWindow:
    """LoRaWAN retransmission keys ``(device, fCnt, fPort)`` seen in the last ``window_s`` seconds.

    Two generations of plain dicts (key hash → monotonic time): once the newer one spans a whole
    window (or holds ``max_entries``) the older one is dropped at once, so forgetting costs
    nothing per message and each key costs a dict slot, an int and a float (a third of an
    OrderedDict entry with its tuple and strings; benchmarks/README.md). A key is remembered
    for at least ``window_s`` (at most 2×) unless more than ``max_entries`` arrive in one window.
    64-bit hashes of distinct keys coincide with a probability of about n²/2⁶⁵ (10⁻⁹ for 200,000
    keys): negligible next to the redeliveries this window exists for.
    """

    __slots__ = ("window_s", "max_entries", "_new", "_old", "_since")

    def __init__(self, window_s: float, max_entries: int = 100_000):
        self.window_s = window_s
        self.max_entries = max_entries
        self._new: dict[int, float] = {}
        self._old: dict[int, float] = {}
        self._since = time.monotonic()

    def __contains__(self, key: tuple) -> bool:
        h = hash(key)
        at = self._new.get(h)
        if at is None:
            at = self._old.get(h)
        return at is not None and time.monotonic() - at <= self.window_s

    def add(self, key: tuple) -> None:
        now = time.monotonic()
        if now - self._since >= self.window_s or len(self._new) >= self.max_entries:
            self._old, self._new, self._since = self._new, {}, now
        self._new[hash(key)] = now

    def __len__(self) -> int:
        return len(self._new) + len(self._old)


class Pipeline:
    def __init__(self, adapter: AdapterSpec, *, namespace: str, registry, settings: Any = None,
                 state: StateStore | None = None, state_backend=None, outbox, deadletters, metrics: Metrics,
                 check: str = "strict", dedup_window_s: float = 600.0,
                 checker: Callable[[dict], list] | None = None, time_admission: TimeAdmission | None = None):
        self.adapter = adapter
        self.registry = registry
        self.ctx = MapContext(namespace=namespace, registry=registry, settings=adapter.validate_settings(settings),
                              state=state if state is not None else StateStore())
        self.state_backend = state_backend
        self.outbox = outbox
        self.deadletters = deadletters
        self.metrics = metrics
        self.check_mode = check
        if checker is None and check != "off":
            checker = EntityChecker()
        self._checker = checker
        self.dedup_window_s = dedup_window_s
        self._dedup = DedupWindow(dedup_window_s)
        self._last_obs: dict[str, str] = {}
        self.time_admission = time_admission if time_admission is not None else TimeAdmission()
        self._iso_bounds: tuple[int, str, str] = (-1, "", "")   # (second, earliest, latest) of _admit
        self.latest_state = adapter.semantics == "latest-state"
        self._log = RateLimitedLog(log, interval=300.0)
        self._counts = metrics.counts
        self._device: str | None = None    # the device of the message being decoded (for dead letters)
        self._profiles: dict[str, Any] = {}
        self._lock = asyncio.Lock()
        self._group_keys: set[tuple] = set()   # dedup keys of the group being processed
        #: adapters/core/shared.py SharedState when the adapter's derive hook is on (set by the runner)
        self.shared_state = None

    # -- entry points ------------------------------------------------------------------------------
    def emitter(self, *, profile: str | None = None, options: Mapping[str, Any] | None = None):
        """The ``emit`` callable for one source (its default profile and options). ``emit.group``
        takes the messages a source received together (:meth:`process_group`)."""
        opts = dict(options or {})

        async def emit(message: RawMessage) -> None:
            await self.process(message, profile, opts)

        async def emit_group(messages: list[RawMessage]) -> None:
            await self.process_group(messages, profile, opts)

        emit.group = emit_group
        return emit

    async def process(self, message: RawMessage, profile: str | None = None,
                      options: Mapping[str, Any] | None = None, *, replay: bool = False) -> int:
        """Run one message through; returns the number of entities put into the outbox.

        Messages of concurrent sources are processed one at a time: the mapper state, its undo
        journal and the dedup/stale bookkeeping are shared.
        """
        async with self._lock:
            return await self._process_group((message,), profile, options, replay)

    async def process_group(self, messages: list[RawMessage], profile: str | None = None,
                            options: Mapping[str, Any] | None = None) -> int:
        """Group commit: decode, map and check each message on its own (a bad one is dead-lettered
        alone), then ONE outbox write for the entities of all of them (with the Redis outbox one
        script call, together with the mapper state and the shared-state writes). Returns once
        that write is durable — the source acknowledges all of them then — or raises (outbox full
        or unreachable): then nothing of the group was stored, the mapper state, the dedup window
        and the stale-check marks are as before the group, and the source acknowledges none."""
        async with self._lock:
            return await self._process_group(messages, profile, options, False)

    async def _process_group(self, messages, profile: str | None, options: Mapping[str, Any] | None,
                             replay: bool) -> int:
        ctx = self.ctx
        state = ctx.state
        state.begin()
        if ctx.shared is not None:
            ctx.shared.clear()     # writes of a group that was refused earlier: redelivered, mapped again
        group_keys = self._group_keys
        group_keys.clear()
        observed: dict[str, str] = {}
        undo_obs: dict[str, str | None] = {}
        entities: list[dict] = []
        try:
            for message in messages:
                produced = await self._process_one(message, profile, options, replay)
                if produced:
                    # later messages of the group must see these as queued (stale check)
                    advanced = self._advanced(produced)
                    if advanced:
                        last = self._last_obs
                        for eid, obs in advanced.items():
                            if eid not in undo_obs:
                                undo_obs[eid] = last.get(eid)
                            last[eid] = obs
                        observed.update(advanced)
                    entities.extend(produced)
            await self._enqueue(entities, observed=observed or None)
        except BaseException:
            state.rollback()
            last = self._last_obs
            for eid, prev in undo_obs.items():
                if prev is None:
                    last.pop(eid, None)
                else:
                    last[eid] = prev
            group_keys.clear()
            raise
        if group_keys:
            add = self._dedup.add
            for key in group_keys:
                add(key)
            group_keys.clear()
        return len(entities)

    async def _process_one(self, message: RawMessage, profile: str | None, options: Mapping[str, Any] | None,
                           replay: bool) -> list[dict]:
        """Decode → map → check one message of a group; the admitted entities (not yet stored)."""
        counts = self._counts
        counts["received"] += 1
        attrs = message.attributes
        if attrs:
            profile = attrs.get("profile") or profile
            extra = attrs.get("options")
            if extra:
                options = {**(options or _EMPTY), **extra}
        options = options or _EMPTY
        device_id = message.device_hint
        dedup_key = None
        stage = "decode"
        self._device = device_id
        try:
            readings, device_id, dedup_key = self._decode(message, profile, options, replay)
        except ReadingDropped as exc:
            self.metrics.drop(exc.reason)
            return []
        except DecodeError as exc:
            await self._dead(message, exc.reason, stage, str(exc), self._device, profile, options)
            return []
        except Exception as exc:  # noqa: BLE001 - a decoder bug must not stop the adapter
            counts["errors"] += 1
            await self._dead(message, "decoder-crash", stage, f"{type(exc).__name__}: {exc}", self._device,
                             profile, options)
            return []
        counts["decoded"] += len(readings)
        ctx = self.ctx
        now = ctx.now = datetime.now(timezone.utc)
        entities: list[dict] = []
        seen = self.metrics.last_seen
        wall = time.time()
        earliest, latest = self.time_admission.bounds(now)
        for reading in readings:
            if seen is not None:
                seen[reading.device_id] = wall
            obs = reading.observed_at
            try:
                implausible = obs > latest or obs < earliest
            except TypeError:   # naive or no datetime: the mapper's iso_ms fails (decoder-crash)
                implausible = False
            if implausible:
                await self._dead(message, IMPLAUSIBLE_TIME, "admit", self.time_admission.problem(obs, now) or "",
                                 reading.device_id, profile, options, reading=_reading_json(reading))
                continue
            try:
                produced = self.adapter.mapper(reading, ctx)
            except ReadingDropped as exc:
                self.metrics.drop(exc.reason)
                continue
            except MappingError as exc:
                await self._dead(message, exc.reason, "map", str(exc), reading.device_id, profile, options,
                                 reading=reading.as_json(), missing=exc.missing or None)
                continue
            except Exception as exc:  # noqa: BLE001
                counts["errors"] += 1
                await self._dead(message, "decoder-crash", "map", f"{type(exc).__name__}: {exc}",
                                 reading.device_id, profile, options, reading=_reading_json(reading))
                continue
            if produced:
                entities.extend(produced)
            dropped = reading.meta.get("dropped")
            if dropped:
                # Values the device sent but the decoder or mapper refused (no echo, implausible …):
                # the rest of the reading was written; each refused value is counted by its reason.
                for attribute, reason in dropped.items():
                    self.metrics.reject(attribute, reason)
        entities = await self._admit(entities, message, device_id, profile, options)
        if dedup_key is not None:
            self._group_keys.add(dedup_key)
        return entities

    async def run_tick(self, now: datetime | None = None) -> int:
        """Timer-driven entities (``AdapterSpec.tick``) through check → outbox."""
        if self.adapter.tick is None:
            return 0
        async with self._lock:
            return await self._run_tick(now)

    async def _run_tick(self, now: datetime | None) -> int:
        tick = self.adapter.tick
        ctx = self.ctx
        ctx.now = now or datetime.now(timezone.utc)
        state = ctx.state
        state.begin()
        try:
            entities = list(tick(ctx) or ())
        except Exception as exc:  # noqa: BLE001
            state.rollback()
            self._counts["errors"] += 1
            self._log(logging.ERROR, ("tick", type(exc).__name__), "tick failed: %s: %s", type(exc).__name__, exc)
            return 0
        try:
            entities = await self._admit(entities, None, None, None, None)
        except BaseException:
            state.rollback()
            raise
        await self._enqueue(entities)
        return len(entities)

    async def admit_entities(self, entities: list[dict], shared_ops: list[tuple] | None = None) -> int:
        """Check and enqueue ready-made entities (dead-letter replay of broker rejections, derived
        entities with the shared-state writes that go with them)."""
        async with self._lock:
            return await self._admit_entities(entities, shared_ops)

    async def _admit_entities(self, entities: list[dict], shared_ops: list[tuple] | None = None) -> int:
        entities = await self._admit(entities, None, None, None, None)
        self.ctx.state.begin()
        await self._enqueue(entities, shared_ops if shared_ops is not None else [])
        return len(entities)

    async def _enqueue(self, entities: list[dict], shared_ops: list[tuple] | None = None, *,
                       observed: Any = _UNSET) -> None:
        """Put the entities into the outbox with the mapper state changes they came with.

        With the Redis outbox both go into one MULTI/EXEC (one round trip, stored together or not
        at all), and so do the writes to shared state (``ctx.shared``, adapters/core/shared.py).
        If the outbox refuses, the state changes are undone: the source redelivers the message
        and the mapping must not count twice.
        """
        state = self.ctx.state
        writes = self.ctx.shared
        if shared_ops is None:
            shared_ops = writes.take() if writes is not None else []
        if observed is _UNSET:
            observed = self._advanced(entities) if entities else None
        add_to = getattr(self.state_backend, "add_to", None) if self.state_backend is not None else None
        combined = bool(entities) and add_to is not None and getattr(self.outbox, "kind", None) == "redis"
        shared = self.shared_state if shared_ops else None
        changed: dict[str, Any] = {}
        deleted: set[str] = set()
        try:
            if shared is not None and not combined:
                # no transaction to join (no entities, or a multi-sink outbox): shared state first,
                # so that a refused outbox put is redelivered and re-applied (idempotent)
                await shared.apply(shared_ops)
            if combined:
                changed, deleted = state.take_changes()

                def extra(pipe):
                    add_to(pipe, changed, deleted, observed)
                    if shared is not None:
                        shared.add_to(pipe, shared_ops)

                await self.outbox.put(entities, extra=extra)
            elif entities:
                await self.outbox.put(entities)
        except BaseException:
            state._dirty.update(k for k in changed if k in state._data)   # not stored: keep them pending
            state._deleted.update(deleted)
            state.rollback()
            raise
        state.commit()
        if observed:
            self._last_obs.update(observed)
        if not combined:
            await self._persist_state(observed)

    # -- steps --------------------------------------------------------------------------------------
    def _decode(self, message: RawMessage, profile_name: str | None, options: Mapping[str, Any],
                replay: bool) -> tuple[list[Reading], str | None, tuple | None]:
        adapter = self.adapter
        payload = message.payload
        default = self._profile(profile_name) if profile_name else None
        lorawan = isinstance(payload, Uplink) or (default is not None and default.kind == "lorawan") or (
            default is None and profile_name is None and message.source in ("mqtt", "webhook"))
        if lorawan:
            uplink = payload if isinstance(payload, Uplink) else parse_uplink(payload, message.topic)
            key = uplink.dedup_key
            self._device = uplink.device_id
            if not replay and self.dedup_window_s > 0:
                if key in self._dedup or key in self._group_keys:
                    raise ReadingDropped("duplicate", f"fCnt {uplink.f_cnt} of {uplink.device_id} seen already")
            record = self.registry.lookup(uplink.device_id, uplink.dev_eui)
            name = (record.profile if record is not None and record.profile else None) or profile_name
            if name is None:
                raise DecodeError("no-profile", f"device {uplink.device_id!r} has no profile (registry or source)")
            profile = self._profile(name) or adapter.profile(name)
            decode_uplink = getattr(profile, "decode_uplink", None)
            if decode_uplink is not None:
                readings = decode_uplink(uplink)
            else:
                msg = RawMessage(message.source, uplink, message.received_at, message.topic,
                                 message.device_hint, message.attributes)
                readings = profile.decode(msg, options)
            return list(readings or ()), uplink.device_id, (key if self.dedup_window_s > 0 else None)
        device = message.device_hint
        record = self.registry.lookup(device) if device else None
        name = (record.profile if record is not None and record.profile else None) or profile_name
        if name is None:
            raise DecodeError("no-profile", f"no profile for {device or message.topic!r} (registry or source)")
        readings = (self._profile(name) or adapter.profile(name)).decode(message, options)
        return list(readings or ()), device, None

    def _profile(self, name: str):
        cache = self._profiles
        if name not in cache:
            try:
                cache[name] = resolve_profile(self.adapter, name)
            except DecodeError:
                return None
        return cache[name]

    async def _persist_state(self, observed: dict[str, str] | None = None) -> None:
        state = self.ctx.state
        if not state._dirty and not state._deleted and not observed:
            return
        changed, deleted = state.take_changes()
        if self.state_backend is None:
            return
        try:
            await self.state_backend.save(changed, deleted, observed)
        except Exception as exc:  # noqa: BLE001 - state stays in memory; the adapter keeps going
            self._counts["errors"] += 1
            # mark them dirty again so the next save retries
            for k, v in changed.items():
                if k in state:
                    state[k] = v
            self._log(logging.ERROR, ("state", type(exc).__name__), "state not persisted: %s", exc)

    async def load_observed(self) -> None:
        """Restore the newest ``observedAt`` per entity (latest-state; Redis outbox).

        A persisted time in the future (written before time admission existed, or by a clock that
        has since been set back) would make every correct reading of that entity stale: it is
        removed here, from Redis too, and logged."""
        if self.state_backend is not None and self.latest_state:
            loader = getattr(self.state_backend, "load_observed", None)
            if loader is not None:
                observed = await loader()
                future = self.time_admission.repair(observed, datetime.now(timezone.utc))
                if future:
                    forget = getattr(self.state_backend, "forget_observed", None)
                    if forget is not None:
                        await forget(list(future))
                    sample = ", ".join(f"{eid} ({t[:40]})" for eid, t in list(future.items())[:5])
                    log.warning("%d persisted newest observedAt in the future removed (%s): later readings of "
                                "these entities are no longer dropped as stale", len(future), sample)
                self._last_obs.update(observed)

    async def _admit(self, entities: list[dict], message: RawMessage | None, device_id: str | None,
                     profile: str | None, options: Mapping[str, Any] | None) -> list[dict]:
        if not entities:
            return entities
        self._counts["mapped"] += len(entities)
        for ent in entities:
            if type(ent) is not dict or type(ent.get("id")) is not str or type(ent.get("type")) is not str:
                # never let a malformed entity reach the batcher, whatever the check mode
                entities = [e for e in entities if type(e) is dict and type(e.get("id")) is str
                            and type(e.get("type")) is str]
                self._counts["invalid"] += 1
                await self._dead(message, "invalid-entity", "check", "entity without a string id and type",
                                 device_id, profile, options, entity=_json_or_repr(ent))
        # Time admission of what the mapper, a tick or a replay produced (readings were checked
        # before mapping), then the stale check of latest-state adapters.
        second = int(time.time())
        bounds = self._iso_bounds
        if bounds[0] != second:
            lo, hi = self.time_admission.iso_bounds(datetime.now(timezone.utc))
            bounds = self._iso_bounds = (second, lo, hi)
        _, lo, hi = bounds
        last = self._last_obs if self.latest_state else None
        fresh = []
        for ent in entities:
            newest = newest_observed_at(ent)
            if type(newest) is str:
                if newest > hi or newest < lo:
                    await self._dead(message, IMPLAUSIBLE_TIME, "admit",
                                     self.time_admission.problem(newest, datetime.now(timezone.utc)) or "",
                                     device_id, profile, options, entity=_json_or_repr(ent))
                    continue
                if last is not None:
                    prev = last.get(ent.get("id"))
                    if prev is not None and newest < prev:
                        self.metrics.drop("stale")
                        continue
            fresh.append(ent)
        entities = fresh
        if self._checker is None:
            return entities
        out = []
        for ent in entities:
            problems = self._checker(ent)
            if not problems:
                out.append(ent)
                continue
            self._counts["invalid"] += 1
            text = "; ".join(str(p) for p in problems[:10])
            if self.check_mode == "strict":
                await self._dead(message, "invalid-entity", "check", text, device_id, profile, options,
                                 entity=ent, problems=[_problem_json(p) for p in problems])
            else:
                self._log(logging.WARNING, ("invalid", ent.get("type"), device_id),
                          "entity %s fails the %s schema (written anyway, check: warn): %s",
                          ent.get("id"), ent.get("type"), text, device=device_id, entity_id=ent.get("id"))
                out.append(ent)
        return out

    def _advanced(self, entities: list[dict]) -> dict[str, str] | None:
        """Entities whose newest observedAt is later than the last one queued (latest-state)."""
        if not self.latest_state:
            return None
        last = self._last_obs
        advanced: dict[str, str] = {}
        for ent in entities:
            newest = newest_observed_at(ent)
            if newest is not None:
                eid = ent.get("id")
                prev = advanced.get(eid) or last.get(eid)
                if prev is None or newest > prev:
                    advanced[eid] = newest
        return advanced or None

    async def _dead(self, message: RawMessage | None, reason: str, stage: str, error: str,
                    device_id: str | None, profile: str | None, options: Mapping[str, Any] | None,
                    **extra: Any) -> None:
        self.metrics.dead(reason)
        record = message_record(message, reason=reason, stage=stage, error=error, device_id=device_id,
                                profile=profile, options=dict(options) if options else None, **extra)
        await self.deadletters.add(record)
        self._log(logging.WARNING, (device_id, reason), "dead letter (%s, %s): %s", reason, stage, error,
                  device=device_id, reason=reason, stage=stage)


class EntityChecker:
    """``schemas.check_entity`` for the pipeline: the full check (structure and Smart Data Model
    schema) for a type with a shipped model; an entity type without one (an integrator's own type)
    gets the structural NGSI-LD check only, noted once per type in the log."""

    def __init__(self) -> None:
        from stadtlink.schemas import check_entity, known_models

        self._check_entity = check_entity
        self._known = set(known_models())
        self._told: set[str] = set()

    def __call__(self, entity: dict) -> list:
        etype = entity.get("type")
        if etype in self._known:
            return self._check_entity(entity)
        problems = [p for p in self._check_entity(entity) if getattr(p, "stage", None) == "structure"]
        if etype not in self._told and isinstance(etype, str):
            self._told.add(etype)
            log.warning("no Smart Data Model schema for type %s: structural NGSI-LD check only", etype)
        return problems


def _json_or_repr(value: Any) -> Any:
    try:
        import orjson

        return orjson.loads(orjson.dumps(value, default=str))
    except Exception:  # noqa: BLE001
        return repr(value)


def _problem_json(problem: Any) -> dict:
    return {"path": getattr(problem, "path", "$"), "message": getattr(problem, "message", str(problem)),
            "stage": getattr(problem, "stage", None)}


def _reading_json(reading: Reading) -> Any:
    try:
        return reading.as_json()
    except Exception:  # noqa: BLE001
        return repr(reading)

"""Wires one adapter process together: config → registry, state, outbox, dead letters, pipeline,
batcher, broker client, sources, HTTP server (health, readiness, metrics), tick timer, signals.

Programmatic use (the demo and the tests)::

    runner = Runner.from_config("examples/parking.yaml", adapter="parking")
    await runner.start()
    ...
    print(runner.counters())   # {"received": …, "upserted": …, "dead_lettered": …, "errors": …}
    await runner.stop()

``stadtlink run ADAPTER --config FILE`` is :func:`run_forever` around the same object.
"""
from __future__ import annotations

import asyncio
import logging
import signal
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping, Union

from aiohttp import web

from .adapter import AdapterSpec, StateStore
from .batcher import Batcher
from .config import load_config
from .deadletter import MemoryDeadLetters, RedisDeadLetters, record_message
from .errors import ConfigError
from .health import HttpServer, create_app
from .metrics import Metrics
from .pipeline import Pipeline
from .registry import DeviceRegistry
from .shared import DerivedLoop, Lease, SharedState, SharedWrites
from .sources.base import Emit, Source, UsesStore
from .state import MemoryStateBackend, RedisStateBackend

if TYPE_CHECKING:
    from stadtlink.broker_client.backend import Backend

    from .config import StadtlinkConfigBase
    from .outbox import Outbox
    from .sinks import SinkSet

#: a source as the runner runs it: the source, its profile and its options (``None``: the config's)
SourceEntry = tuple[Source, Union[str, None], Union[dict, None]]

log = logging.getLogger("stadtlink.runner")


class StartupError(Exception):
    """The adapter cannot start (e.g. Redis unreachable); not a configuration mistake."""


def derive_options(adapter: AdapterSpec, config: Any):
    """The options of the adapter's derive hook when its settings turn it on, else None. It keeps
    its state in Redis: a ConfigError naming the setting when the outbox is not Redis."""
    hook = adapter.derive
    opts = hook.options(config.settings) if hook is not None else None
    if opts is not None and config.outbox.kind != "redis":
        raise ConfigError(f"{hook.setting}: keeps state shared by the replicas in Redis; set outbox.kind: redis "
                          f"(and outbox.url), or leave {hook.setting} at its default (one replica)")
    return opts


def _resolve_adapter(adapter: AdapterSpec | str | None, data_adapter: str | None) -> AdapterSpec:
    from . import plugins

    if isinstance(adapter, AdapterSpec):
        return adapter
    name = adapter or data_adapter
    if not name:
        raise ConfigError("adapter: name the adapter (stadtlink run ADAPTER, or `adapter:` in the config)")
    return plugins.get_adapter(name)


class Runner:
    """One adapter process (see the module doc). Attributes are set by :meth:`start`; before it
    only ``adapter``, ``config``, ``base_dir``, ``metrics`` (and ``registry`` after
    :meth:`from_config`) are."""

    def __init__(self, adapter: AdapterSpec, config: StadtlinkConfigBase, base_dir: Path, *,
                 backend: Backend | None = None, sources: list[Source | SourceEntry] | None = None,
                 redis_client: Any = None):
        from .plugins import register_spec_models

        register_spec_models(adapter)  # its own Smart Data Models, before the first entity check
        self.adapter = adapter
        self.config = config
        self.base_dir = base_dir
        self._backend_override = backend
        self._sources_override = sources
        self._redis_client = redis_client
        self._owns_redis = redis_client is None
        self.metrics = Metrics(adapter.name, device_last_seen=config.http.device_last_seen)
        self.registry: DeviceRegistry | None = None
        self.outbox: Outbox | None = None                 # the first sink's, or the fan-out to all
        self.deadletters: MemoryDeadLetters | RedisDeadLetters | None = None
        self.state_backend: MemoryStateBackend | RedisStateBackend | None = None
        self.pipeline: Pipeline | None = None
        self.batcher: Batcher | None = None               # the first sink's
        self.backend: Backend | None = None               # the first sink's
        self.sinks: SinkSet | None = None
        self.sources: list[Source] = []
        self.app: web.Application | None = None
        self.server: HttpServer | None = None
        self._tasks: list[asyncio.Task] = []
        self._source_tasks: list[asyncio.Task] = []
        self._batcher_task: asyncio.Task | None = None
        self._heartbeat = time.monotonic()
        self._started = False
        self._stopping = False
        self._stop_event: asyncio.Event | None = None
        self.derived: DerivedLoop | None = None

    # -- construction ------------------------------------------------------------------------------
    @classmethod
    def from_config(cls, config: str | Path | Mapping[str, Any], *, adapter: AdapterSpec | str | None = None,
                    env: Mapping[str, str] | None = None, base_dir: str | Path | None = None,
                    backend: Backend | None = None, sources: list[Source | SourceEntry] | None = None,
                    redis_client: Any = None) -> "Runner":
        """Validate the config (raises :class:`ConfigError`) and build a runner (not started).

        ``backend`` replaces the first sink's backend (a :class:`~stadtlink.broker_client.backend.Backend`;
        it is not probed at start); ``sources`` replaces the configured sources (a list of
        :class:`~.sources.base.Source` objects, or of ``(source, profile, options)`` tuples).
        """
        if isinstance(config, Mapping):
            data_adapter = config.get("adapter")
        else:
            from .config import read_config_file

            data_adapter = read_config_file(config).get("adapter")
        spec = _resolve_adapter(adapter, data_adapter if isinstance(data_adapter, str) else None)
        cfg, base = load_config(config, adapter=spec, env=env, base_dir=base_dir)
        derive_options(spec, cfg)
        runner = cls(spec, cfg, base, backend=backend, sources=sources, redis_client=redis_client)
        # the registry is part of the configuration: its errors surface here, not at start()
        runner.registry = DeviceRegistry.load(inline=cfg.devices, files=cfg.registry_files, base_dir=base)
        return runner

    def _redis(self):
        if self._redis_client is None:
            import redis.asyncio as aioredis

            self._redis_client = aioredis.from_url(self.config.outbox.url, socket_connect_timeout=2,
                                                   socket_timeout=5, health_check_interval=10)
        return self._redis_client

    def _entity_checker(self, cfg):
        """The pipeline's entity check, watching attribute IRIs too (None: the pipeline's default,
        i.e. no check when ``check: off``)."""
        if cfg.check == "off":
            return None
        from .pipeline import EntityChecker
        from .vocabulary_watch import VocabularyWatch

        sinks = cfg.sink_configs()
        context = (sinks[0][2].context if sinks else None) or self.adapter.context
        # the NGSI-LD sinks write each registered type with its own model's @context
        per_type = bool(sinks) and getattr(sinks[0][2], "kind", None) in (None, "", "orion-ld", "scorpio", "stellio")
        if self._backend_override is not None:
            per_type = getattr(self._backend_override, "type_contexts", None) is not None
        return VocabularyWatch(EntityChecker(), context, self.metrics, per_type=per_type)

    def _build_sinks(self):
        """One sink per configured broker (``broker:`` or ``brokers:``), each with its own outbox and
        batcher (adapters/core/sinks.py); the ``backend`` override replaces the first one's backend."""
        from stadtlink.broker_client.backends import BackendConfigError, make_backend

        from .sinks import Sink, SinkSet, sink_outbox

        cfg = self.config
        redis_client = self._redis() if cfg.outbox.kind == "redis" else None
        sinks = []
        for index, (name, key, b) in enumerate(cfg.sink_configs()):
            if index == 0 and self._backend_override is not None:
                backend = self._backend_override
            else:
                try:
                    backend = make_backend(b, key=key, context=self.adapter.context)
                except BackendConfigError as exc:
                    raise ConfigError(str(exc)) from None
            sinks.append(Sink(name=name, key=key, config=b, backend=backend,
                              outbox=sink_outbox(cfg.outbox, self.adapter.name, index, name, redis_client=redis_client),
                              metrics=self.metrics if index == 0 else Metrics(f"{self.adapter.name}:{name}"),
                              when_full=b.when_full or ("backpressure" if index == 0 else "deadletter")))
        return SinkSet(sinks, self.deadletters, semantics=self.adapter.semantics)

    async def _check_sinks(self) -> None:
        """A wrong url / tenant / credential of any sink is a ConfigError naming its key; a sink
        that is merely down is logged (``check_at_start: strict`` makes that fatal too)."""
        from stadtlink.broker_client.backends import BackendConfigError, BrokerDown, check_backend

        for index, sink in enumerate(self.sinks):
            mode = sink.config.check_at_start
            if mode == "off" or (index == 0 and self._backend_override is not None):
                continue
            try:
                await check_backend(sink.backend, key=sink.key)
            except BackendConfigError as exc:
                raise ConfigError(str(exc)) from None
            except BrokerDown as exc:
                if mode == "strict":
                    raise ConfigError(str(exc)) from None
                log.warning("%s; starting anyway: the outbox keeps the entities until it answers", exc)

    async def _setup_core(self) -> None:
        cfg = self.config
        if self.registry is None:
            self.registry = DeviceRegistry.load(inline=cfg.devices, files=cfg.registry_files, base_dir=self.base_dir)
        prefix = f"{cfg.outbox.key_prefix}:{self.adapter.name}"
        if cfg.outbox.kind == "redis":
            self.deadletters = RedisDeadLetters(self._redis, f"{prefix}:deadletter", cfg.outbox.deadletter_max_length)
            self.state_backend = RedisStateBackend(self._redis, f"{prefix}:state")
        else:
            self.deadletters = MemoryDeadLetters(min(cfg.outbox.deadletter_max_length, 10_000))
            self.state_backend = MemoryStateBackend()
        self.sinks = self._build_sinks()
        self.outbox = self.sinks.outbox
        await self.outbox.start()
        try:
            initial_state = await self._load_state()
        except Exception as exc:  # noqa: BLE001
            await self.outbox.close()
            from .config import redact_url

            raise StartupError(f"cannot load the adapter state from redis ({redact_url(cfg.outbox.url)}): "
                               f"{redact_url(str(exc))}") from None
        admission = cfg.time_admission.build()
        await self._repair_state_times(initial_state, admission)
        self.pipeline = Pipeline(self.adapter, namespace=cfg.namespace, registry=self.registry,
                                 settings=cfg.settings, state=StateStore(initial_state),
                                 state_backend=self.state_backend if cfg.outbox.kind == "redis" else None,
                                 outbox=self.outbox, deadletters=self.deadletters, metrics=self.metrics,
                                 check=cfg.check, dedup_window_s=cfg.dedup_window_s,
                                 time_admission=admission)
        opts = derive_options(self.adapter, cfg)
        if opts is not None:
            shared = SharedState(self._redis, prefix)
            self.pipeline.shared_state = shared
            self.pipeline.ctx.shared = SharedWrites()
            pipeline = self.pipeline

            def make_ctx():
                from .adapter import MapContext

                return MapContext(namespace=cfg.namespace, registry=pipeline.registry, settings=cfg.settings,
                                  state=pipeline.ctx.state)

            self.derived = DerivedLoop(
                self.adapter.derive, opts, shared=shared,
                lease=Lease(self._redis, f"{prefix}:derive:lease", opts.lease_ms),
                make_ctx=make_ctx, admit=pipeline.admit_entities,
                claim_window_s=1.5 * cfg.outbox.claim_min_idle_ms / 1000.0 + 1.0, metrics_counts=self.metrics.counts)
            self.metrics.gauges["derive_leader"] = lambda: 1.0 if self.derived and self.derived.leader else 0.0
        try:
            await self.pipeline.load_observed()
        except Exception as exc:  # noqa: BLE001 - only the restart-time stale check is weaker
            log.error("newest observedAt per entity not loaded from redis: %s", exc)
        for sink in self.sinks:
            await sink.backend.open()
        self.backend = self.sinks.primary.backend
        self.batcher = self.sinks.primary.batcher
        await self._check_sinks()
        m = self.metrics
        m.gauges.update({
            "outbox_depth": lambda: self.outbox.depth,
            "outbox_oldest_age_seconds": lambda: self.outbox.oldest_age,
            "outbox_full": lambda: 1.0 if self.outbox.full else 0.0,
            "outbox_max_length": lambda: self.outbox.max_length,
            "broker_up": lambda: 1.0 if self.batcher.broker_ok else 0.0,
            "ready": lambda: 1.0 if self.readiness()[0] else 0.0,
        })

    async def _repair_state_times(self, state: dict, admission) -> None:
        """Future times in persisted mapper state set back (adapters/core/timecheck.py), persisted."""
        from .timecheck import repair_state_times

        repaired = repair_state_times(state, admission, datetime.now(timezone.utc))
        if not repaired:
            return
        log.warning("%d mapper state keys held times in the future; set back to %s so that correct readings "
                    "are accepted again: %s", len(repaired), admission.not_before.isoformat(),
                    ", ".join(list(repaired)[:5]))
        try:
            await self.state_backend.save(repaired, set(), None)
        except Exception as exc:  # noqa: BLE001 - repaired in memory; saved with the next change
            log.error("repaired mapper state not persisted: %s", exc)

    async def _load_state(self) -> dict:
        """The persisted mapper state; waits up to ``outbox.startup_wait_s`` for Redis (it may be
        starting next to us)."""
        deadline = time.monotonic() + (self.config.outbox.startup_wait_s if self.config.outbox.kind == "redis" else 0)
        delay = 0.25
        while True:
            try:
                return await self.state_backend.load()
            except Exception as exc:  # noqa: BLE001
                if time.monotonic() + delay > deadline:
                    raise
                log.warning("redis not reachable yet (%s); retrying", type(exc).__name__)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)

    def _build_sources(self) -> list[SourceEntry]:
        from . import plugins

        if self._sources_override is not None:
            out = [s if isinstance(s, tuple) else (s, None, None) for s in self._sources_override]
            for src, _, _ in out:
                _check_source(src)
            return out
        from .pipeline import resolve_profile
        from .errors import DecodeError

        def check_profile(where: str, name: str | None) -> None:
            if not name:
                return
            try:
                resolve_profile(self.adapter, name)
            except DecodeError as exc:
                raise ConfigError(f"{where}: {exc.detail}") from None

        for i, scfg in enumerate(self.config.sources):
            check_profile(f"sources[{i}].profile", getattr(scfg, "profile", None))
            for j, target in enumerate(getattr(scfg, "targets", None) or ()):
                check_profile(f"sources[{i}].targets[{j}].profile", getattr(target, "profile", None))
        for rec in self.registry or ():
            check_profile(f"registry: device {rec.id!r} profile", rec.profile)
        built = []
        for i, scfg in enumerate(self.config.sources):
            try:
                src = plugins.build_source(scfg, adapter=self.adapter, http_app=self.app)
            except ConfigError as exc:
                raise ConfigError(f"sources[{i}]: {exc}") from None
            _check_source(src)
            built.append((src, getattr(scfg, "profile", None), getattr(scfg, "options", None)))
        return built

    # -- lifecycle -----------------------------------------------------------------------------------
    async def start(self, *, sources: bool = True, http: bool = True) -> None:
        if self._started:
            return
        self._stop_event = asyncio.Event()
        try:
            await self._start(sources, http)
        except BaseException:
            await self._abort_start()
            raise

    async def _abort_start(self) -> None:
        """Release what a failed start() opened (tasks, server, client sessions, Redis)."""
        for t in self._source_tasks + self._tasks + ([self._batcher_task] if self._batcher_task else []):
            t.cancel()
        await asyncio.gather(*self._source_tasks, *self._tasks,
                             *([self._batcher_task] if self._batcher_task else []), return_exceptions=True)
        self._source_tasks, self._tasks, self._batcher_task = [], [], None
        self.sources = []
        for closer in (self.server.stop if self.server else None,
                       self.backend.close if self.backend else None,
                       self.outbox.close if self.outbox else None):
            if closer is not None:
                try:
                    await closer()
                except Exception:  # noqa: BLE001
                    pass
        self.server = None
        if self._owns_redis and self._redis_client is not None:
            await self._redis_client.aclose()
            self._redis_client = None

    async def _start(self, sources: bool, http: bool) -> None:
        await self._setup_core()
        cfg = self.config
        if http and cfg.http.enabled:
            self.app = create_app(self)
        if sources:
            for src, profile, options in self._build_sources():
                self.sources.append(src)
                if isinstance(src, UsesStore):          # e.g. the TTS backfill's watermark
                    src.use_store(self._source_store())
                name = src.name
                self.metrics.source_stats.append((name, src.stats))
                emit = self.pipeline.emitter(profile=profile, options=options)
                self._source_tasks.append(asyncio.create_task(self._supervise(src, emit), name=f"source:{name}"))
        if self.app is not None:
            self.server = HttpServer(self.app, cfg.http.host, cfg.http.port)
            await self.server.start()
        self._tasks.append(asyncio.create_task(self._heartbeat_loop(), name="heartbeat"))
        self._tasks.append(asyncio.create_task(self._monitor_loop(), name="monitor"))
        if self.adapter.tick is not None and sources:
            self._tasks.append(asyncio.create_task(self._tick_loop(), name="tick"))
        if self.derived is not None and sources:   # not in `deadletter replay` and other tools
            self._tasks.append(asyncio.create_task(self.derived.run(), name="derive"))
        self._batcher_task = asyncio.create_task(self._run_batcher(), name="batcher")
        self._started = True
        log.info("adapter started", extra={"adapter": self.adapter.name, "sources": len(self.sources),
                                           "outbox": cfg.outbox.kind, "http_port": self.http_port})

    def _source_store(self):
        """Where sources keep their own durable state (the TTS backfill's watermark and seen set):
        the outbox's store, Redis or memory."""
        from .sources.tts_storage import backfill_store

        cfg = self.config
        return backfill_store(cfg.outbox.kind, f"{cfg.outbox.key_prefix}:{self.adapter.name}",
                              self._redis if cfg.outbox.kind == "redis" else None)

    @property
    def http_port(self) -> int | None:
        return self.server.bound_port if self.server is not None else None

    @property
    def http_url(self) -> str | None:
        if self.server is None:
            return None
        host = self.config.http.host
        host = "127.0.0.1" if host in ("0.0.0.0", "::", "") else host
        return f"http://{host}:{self.http_port}"

    async def _supervise(self, source: Source, emit: Emit) -> None:
        name = source.name
        delay = 1.0
        while True:
            try:
                await source.run(emit)
                return
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - a source bug must not end the process
                self.metrics.counts["errors"] += 1
                log.exception("source %s stopped with %s; restarting in %.0f s", name, type(exc).__name__, delay,
                              extra={"source": name})
                await asyncio.sleep(delay)
                delay = min(delay * 2, 30.0)

    async def _run_batcher(self) -> None:
        if self.sinks is not None and len(self.sinks) > 1:
            await asyncio.gather(*(self.sinks.run_batcher(s) for s in self.sinks))
            return
        await self.batcher.probe()
        delay = 1.0
        while True:
            try:
                await self.batcher.run()
                return
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - a bug must not strand the outbox
                self.metrics.counts["errors"] += 1
                log.exception("batcher failed (%s); restarting in %.0f s", type(exc).__name__, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 30.0)
                self.batcher._carry.clear()
                self.outbox.recover()

    async def _heartbeat_loop(self) -> None:
        while True:
            self._heartbeat = time.monotonic()
            await asyncio.sleep(1.0)

    async def _monitor_loop(self) -> None:
        while True:
            await asyncio.sleep(1.0)
            try:
                await self.outbox.refresh()
            except Exception:  # noqa: BLE001
                log.exception("outbox refresh failed")

    async def _tick_loop(self) -> None:
        interval = max(0.05, float(self.adapter.tick_interval))
        while True:
            await asyncio.sleep(interval)
            try:
                await self.pipeline.run_tick()
            except Exception as exc:  # noqa: BLE001 - outbox full etc.: the next tick tries again
                self.metrics.counts["errors"] += 1
                log.error("tick entities not queued: %s: %s", type(exc).__name__, exc)

    async def stop(self, grace: float | None = None) -> None:
        """Stop the sources, flush the outbox within ``grace`` seconds (default ``shutdown_grace_s``)."""
        if not self._started or self._stopping:
            return
        self._stopping = True
        grace = self.config.shutdown_grace_s if grace is None else grace
        loop = asyncio.get_running_loop()
        started = loop.time()
        await self._leave_sources(grace / 2)
        grace = max(0.0, grace - (loop.time() - started))
        for t in self._source_tasks:
            t.cancel()
        await asyncio.gather(*self._source_tasks, return_exceptions=True)
        for t in self._tasks:
            if t.get_name() in ("tick", "derive"):
                t.cancel()
        if self.derived is not None:
            await asyncio.gather(*(t for t in self._tasks if t.get_name() == "derive"), return_exceptions=True)
            await self.derived.close()     # another replica takes over at once, not after the TTL
        if self._batcher_task is not None:
            for sink in self.sinks:
                sink.batcher.close()
            try:
                await asyncio.wait_for(asyncio.shield(self._batcher_task), timeout=grace)
            except asyncio.TimeoutError:
                self._batcher_task.cancel()
                await asyncio.gather(self._batcher_task, return_exceptions=True)
            except Exception:  # noqa: BLE001
                log.exception("batcher failed during shutdown")
        left = self.outbox.depth if self.outbox is not None else 0
        if left:
            level = logging.ERROR if self.config.outbox.kind == "memory" else logging.WARNING
            log.log(level, "%d entities still in the %s outbox at shutdown%s", left, self.config.outbox.kind,
                    " (lost: memory outbox)" if self.config.outbox.kind == "memory" else " (kept in redis)")
        for t in self._tasks:
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self.server is not None:
            await self.server.stop()
        for backend in ([s.backend for s in self.sinks] if self.sinks is not None else [self.backend]):
            if backend is not None:
                try:
                    await backend.close()
                except Exception:  # noqa: BLE001
                    pass
        if self.outbox is not None:
            await self.outbox.close()
        if self._owns_redis and self._redis_client is not None:
            await self._redis_client.aclose()
            self._redis_client = None
        if self._stop_event is not None:
            self._stop_event.set()
        log.info("adapter stopped", extra={"adapter": self.adapter.name, **{
            k: v for k, v in self.metrics.counts.items()}})

    async def _leave_sources(self, timeout: float) -> None:
        """Sources that can leave for good do so first, while they still run and the batcher
        drains: an MQTT source on a shared subscription unsubscribes, processes what the broker
        had already assigned to it and ends its session (:meth:`.MqttSource.leave`), so none of
        its share stays in a session nobody resumes. At most ``timeout`` seconds (half the grace
        period); the rest of the grace period is the outbox's."""
        leaving = [src.leave(timeout) for src in self.sources]
        if not leaving or timeout <= 0:
            for coro in leaving:
                coro.close()
            return
        for res in await asyncio.gather(*leaving, return_exceptions=True):
            if isinstance(res, BaseException) and not isinstance(res, asyncio.CancelledError):
                log.error("a source failed to leave: %s: %s", type(res).__name__, res)

    async def run_until_signal(self) -> None:
        """Start, then run until SIGTERM/SIGINT; then stop with the grace period."""
        loop = asyncio.get_running_loop()
        stop = asyncio.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            try:
                loop.add_signal_handler(sig, stop.set)
            except (NotImplementedError, RuntimeError):  # pragma: no cover - non-Unix
                pass
        await self.start()
        try:
            await stop.wait()
            log.info("signal received; stopping (grace %.0f s)", self.config.shutdown_grace_s)
        finally:
            await self.stop()

    # -- introspection --------------------------------------------------------------------------------
    def liveness(self) -> tuple[bool, dict]:
        age = time.monotonic() - self._heartbeat
        batcher_alive = self._batcher_task is not None and (not self._batcher_task.done() or self._stopping)
        ok = age < self.config.heartbeat_timeout_s and batcher_alive
        detail: dict[str, Any] = {"heartbeat_age_s": round(age, 3), "batcher_alive": batcher_alive}
        if self._batcher_task is not None and self._batcher_task.done() and not self._batcher_task.cancelled():
            exc = self._batcher_task.exception()
            if exc is not None:
                detail["batcher_error"] = f"{type(exc).__name__}: {exc}"
        return ok, detail

    def readiness(self) -> tuple[bool, dict[str, dict]]:
        checks: dict[str, dict] = {}
        checks["running"] = {"ok": self._started and not self._stopping}
        for src in self.sources:
            name = f"source:{src.name}"
            try:
                ok = bool(src.ready)
            except Exception:  # noqa: BLE001
                ok = False
            checks[name] = {"ok": ok}
        if self.sinks is not None and self.batcher is not None:
            checks.update(self.sinks.readiness())
        if self.outbox is not None:
            ob = self.outbox
            ok = ob.healthy and not ob.full
            checks["outbox"] = {"ok": ok, "depth": ob.depth, "max_length": ob.max_length}
            if not ob.healthy:
                checks["outbox"]["detail"] = "outbox store unreachable"
            elif ob.full:
                checks["outbox"]["detail"] = "outbox at its limit (back-pressure on the sources)"
        return all(c["ok"] for c in checks.values()), checks

    @property
    def ready(self) -> bool:
        return self.readiness()[0]

    def counters(self) -> dict[str, Any]:
        snap = self.metrics.snapshot()
        if self.outbox is not None:
            snap["outbox_depth"] = self.outbox.depth
        if self.sinks is not None and len(self.sinks) > 1:
            snap["sinks"] = self.sinks.counters()
        return snap

    async def wait_idle(self, timeout: float = 10.0) -> bool:
        """Wait until the outbox is empty (tests, demo); True when it drained in time."""
        if self.sinks is not None and len(self.sinks) > 1:
            return await self.sinks.wait_idle(timeout)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.outbox is not None:
                await self.outbox.refresh()
                if self.outbox.depth == 0 and not self.batcher._carry:
                    return True
            await asyncio.sleep(0.05)
        return False

    # -- dead letters --------------------------------------------------------------------------------
    async def replay_deadletters(self, limit: int = 1000) -> dict[str, int]:
        """Run dead letters through the pipeline again (payloads) or back into the outbox (entities).

        Replayed records are removed; those that fail again come back as new dead letters.
        """
        records = await self.deadletters.list(limit)
        done: list[str] = []
        stats = {"replayed": 0, "skipped": 0, "entities": 0}
        for rec_id, rec in records:
            msg = record_message(rec)
            if msg is not None:
                stats["entities"] += await self.pipeline.process(msg, rec.get("profile"), rec.get("options"),
                                                                 replay=True)
            elif isinstance(rec.get("entity"), dict):
                stats["entities"] += await self.pipeline.admit_entities([rec["entity"]])
            else:
                stats["skipped"] += 1
                continue
            done.append(rec_id)
            stats["replayed"] += 1
        await self.deadletters.remove(done)
        return stats


def _check_source(src: Any) -> None:
    """A source the runner cannot drive is a programming error, told at start and not mid-run."""
    missing = [m for m in ("name", "run", "ready", "stats", "leave") if not hasattr(src, m)]
    if missing:
        raise TypeError(f"{type(src).__name__} is not a Source (adapters/core/sources/base.py): "
                        f"it lacks {', '.join(missing)} (SourceBase has defaults)")


async def run_forever(adapter: AdapterSpec | str, config: str | Path) -> int:
    runner = Runner.from_config(config, adapter=adapter)
    from .logging import setup_logging

    setup_logging(runner.config.log_level, adapter=runner.adapter.name)
    await runner.run_until_signal()
    return 0

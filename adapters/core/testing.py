"""Test kit for adapter authors and for stadtlink's own tests.

* :func:`run_profile` — fixture bytes / file in, :class:`Reading` list out.
* :func:`map_fixture` — fixture in, entities out (decode + map with a registry and settings).
* :func:`assert_entities_match` — compare entity lists ignoring volatile keys, with a readable diff.
* :func:`assert_terms_expand` — every attribute expands through the adapter's @context to its
  model's own IRI (no silent default-vocabulary fallback, no other model's term).
* :class:`MosquittoProcess`, :class:`RedisProcess` — own throw-away servers on free ports that a
  test may stop, kill and restart (never touch the shared ones).
* :func:`publish_uplinks` — publish LoRaWAN envelopes (see :func:`stadtlink.adapters.core.lorawan.tts_uplink`).
* :func:`local_broker` — an in-process NGSI-LD broker (``stadtlink.broker_client.local_broker``);
  :func:`query_entities` / :func:`entities_by_id` — what a broker holds, for end-to-end assertions.
* End-to-end support: :func:`wait_until` (the one way to wait: polls, raises on timeout),
  :data:`SHARED_MQTT` / :data:`SHARED_REDIS` (the shared servers' addresses), :func:`port_open`,
  :func:`mqtt_available` / :func:`redis_available` (the ``needs_mqtt`` / ``needs_redis`` markers),
  :func:`unique_name`, :func:`free_port`, :func:`stop_task`.

The pytest fixtures wrapping these live in :mod:`stadtlink.adapters.core.pytest_plugin`.
"""
from __future__ import annotations

import asyncio
import contextlib
import inspect
import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import uuid
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, AsyncIterator, Callable, Iterable, Mapping, Sequence

import orjson

from .adapter import AdapterSpec, LoRaWANProfile, MapContext, Profile, StateStore
from .errors import ConfigError
from .lorawan import parse_uplink, tts_uplink
from .reading import RawMessage, Reading
from .registry import DeviceRegistry

# --------------------------------------------------------------------------------------------------
# Fixtures → readings → entities


def _load_fixture(fixture: str | Path | bytes | dict, *, f_port: int | None) -> tuple[Any, int | None, dict]:
    """(payload, f_port, sample-doc) from bytes, a parsed dict or a file.

    Files: ``.hex`` (hex text), ``.bin`` (raw bytes), ``.json`` — a device-samples document with a
    ``raw`` section (``hex``/``base64`` + ``f_port``, ``json``, ``xml``, or Modbus registers) or any
    other JSON (used as is) —, anything else is read as bytes.
    """
    if isinstance(fixture, (bytes, bytearray)):
        return bytes(fixture), f_port, {}
    if isinstance(fixture, dict):
        return orjson.dumps(fixture), f_port, {}
    path = Path(fixture)
    data = path.read_bytes()
    suffix = path.suffix.lower()
    if suffix == ".hex":
        return bytes.fromhex(data.decode().strip().replace(" ", "")), f_port, {}
    if suffix == ".json":
        doc = orjson.loads(data)
        raw = doc.get("raw") if isinstance(doc, dict) else None
        if isinstance(raw, dict) and "source" in doc:
            if "hex" in raw:
                return bytes.fromhex(raw["hex"].replace(" ", "")), f_port if f_port is not None else raw.get("f_port"), doc
            if "json" in raw:
                return orjson.dumps(raw["json"]), f_port, doc
            if "xml" in raw:
                return raw["xml"].encode(), f_port, doc
            return raw, f_port, doc  # e.g. Modbus registers: the profile reads the dict
    return data, f_port, {}


def _looks_like_envelope(payload: Any) -> bool:
    if not isinstance(payload, (bytes, bytearray)) or not payload[:1] == b"{":
        return False
    try:
        doc = orjson.loads(payload)
    except orjson.JSONDecodeError:
        return False
    return isinstance(doc, dict) and ("uplink_message" in doc or "deviceInfo" in doc)


def fixture_message(profile: Profile, fixture: str | Path | bytes | dict, *, f_port: int | None = None,
                    topic: str | None = None, options: Mapping[str, Any] | None = None,
                    device_id: str = "test-device", received_at: str = "2024-05-01T12:00:00Z") -> RawMessage:
    """The :class:`RawMessage` a source would have delivered for this fixture.

    For a LoRaWAN profile, bare payload bytes are wrapped in a TTS v3 envelope (device
    ``device_id``, ``f_port``, received at ``received_at``); a full TTS/ChirpStack envelope is used as is.
    """
    payload, port, _doc = _load_fixture(fixture, f_port=f_port)
    opts = dict(options or {})
    now = datetime.now(timezone.utc)
    if profile.kind == "lorawan" or isinstance(profile, LoRaWANProfile):
        if not _looks_like_envelope(payload):
            if not isinstance(payload, (bytes, bytearray)):
                raise ConfigError("a LoRaWAN fixture must be payload bytes or an uplink envelope")
            topic, env = tts_uplink(device_id, bytes(payload), f_port=port if port is not None else 1, f_cnt=1,
                                    received_at=received_at)
            payload = orjson.dumps(env)
            if port is None:   # the envelope must say "no f_port" like TTS does
                env["uplink_message"].pop("f_port", None)
                payload = orjson.dumps(env)
        return RawMessage(source="mqtt", payload=payload, topic=topic, received_at=now, attributes={"options": opts})
    source = {"modbus": "modbus", "http": "http"}.get(profile.kind, "cli")
    return RawMessage(source=source, payload=payload, topic=topic, device_hint=device_id, received_at=now,
                      attributes={**opts, "options": opts})


def run_profile(profile: Profile, fixture: str | Path | bytes | dict, *, f_port: int | None = None,
                topic: str | None = None, options: Mapping[str, Any] | None = None,
                device_id: str = "test-device") -> list[Reading]:
    """Decode a fixture with a profile, exactly as the pipeline would (DecodeError propagates)."""
    message = fixture_message(profile, fixture, f_port=f_port, topic=topic, options=options, device_id=device_id)
    return profile.decode(message, dict(options or {}))


def _registry(registry: DeviceRegistry | Iterable[Mapping[str, Any]] | None) -> DeviceRegistry:
    if registry is None:
        return DeviceRegistry()
    if isinstance(registry, DeviceRegistry):
        return registry
    return DeviceRegistry.load(inline=list(registry))


def _settings(adapter: AdapterSpec, settings: Any) -> Any:
    return adapter.validate_settings(settings)


def map_fixture(adapter: AdapterSpec, fixture: str | Path | bytes | dict, *,
                registry: DeviceRegistry | Iterable[Mapping[str, Any]] | None = None, settings: Any = None,
                profile: str | None = None, namespace: str = "test", f_port: int | None = None,
                topic: str | None = None, options: Mapping[str, Any] | None = None,
                device_id: str = "test-device", state: StateStore | None = None) -> list[dict]:
    """Decode a fixture and map every reading: the entities the adapter would write."""
    if profile is None:
        if len(adapter.profiles) != 1:
            raise ConfigError(f"adapter {adapter.name!r} has {len(adapter.profiles)} profiles: name one (profile=...)")
        profile = next(iter(adapter.profiles))
    prof = adapter.profile(profile)
    readings = run_profile(prof, fixture, f_port=f_port, topic=topic, options=options, device_id=device_id)
    ctx = MapContext(namespace=namespace, registry=_registry(registry), settings=_settings(adapter, settings),
                     state=state if state is not None else StateStore())
    entities: list[dict] = []
    for reading in readings:
        ctx.now = reading.observed_at
        entities.extend(adapter.mapper(reading, ctx))
    return entities


def _strip(value: Any, ignore: frozenset[str]) -> Any:
    if isinstance(value, dict):
        return {k: _strip(v, ignore) for k, v in value.items() if k not in ignore}
    if isinstance(value, list):
        return [_strip(v, ignore) for v in value]
    return value


def _first_difference(a: Any, b: Any, path: str = "") -> str | None:
    if isinstance(a, dict) and isinstance(b, dict):
        for key in sorted(set(a) | set(b)):
            if key not in a:
                return f"{path}.{key}: missing in actual (expected {b[key]!r})"
            if key not in b:
                return f"{path}.{key}: unexpected in actual ({a[key]!r})"
            diff = _first_difference(a[key], b[key], f"{path}.{key}")
            if diff:
                return diff
        return None
    if isinstance(a, list) and isinstance(b, list):
        if len(a) != len(b):
            return f"{path}: list of {len(a)} items, expected {len(b)}"
        for i, (x, y) in enumerate(zip(a, b)):
            diff = _first_difference(x, y, f"{path}[{i}]")
            if diff:
                return diff
        return None
    if a != b or type(a) is not type(b) and not (isinstance(a, (int, float)) and isinstance(b, (int, float))):
        return f"{path}: {a!r} != expected {b!r}"
    return None


def assert_entities_match(actual: Sequence[dict] | dict, expected: Sequence[dict] | dict, *,
                          ignore: Iterable[str] = ("observedAt",)) -> None:
    """Entities equal by id (order does not matter), keys in ``ignore`` dropped at every level.

    Raises AssertionError naming the entity and the first differing path.
    """
    ignored = frozenset(ignore)
    if isinstance(actual, dict):
        actual = [actual]
    if isinstance(expected, dict):
        expected = [expected]
    act = {e.get("id"): _strip(e, ignored) for e in actual}
    exp = {e.get("id"): _strip(e, ignored) for e in expected}
    if len(act) != len(actual):
        raise AssertionError("actual entities contain duplicate ids")
    missing = sorted(set(exp) - set(act), key=str)
    extra = sorted(set(act) - set(exp), key=str)
    if missing or extra:
        raise AssertionError(f"entity ids differ: missing {missing}, unexpected {extra}")
    for eid in exp:
        diff = _first_difference(act[eid], exp[eid])
        if diff:
            raise AssertionError(f"entity {eid}: {diff}")


def assert_terms_expand(entities: Sequence[dict] | dict, context: Any = None) -> None:
    """Every attribute (and the type) of each entity expands through the @context it is written
    with to the IRI its Smart Data Model's own @context gives it: no attribute lands in the
    NGSI-LD default vocabulary or on another model's term (one its model's context does not
    define). Raises AssertionError naming each attribute and the IRI it got.

    ``context`` None (the default): each entity is judged through its own type's model context —
    how the NGSI-LD sinks write it (``stadtlink.schemas.contexts.type_context``); give a context
    (a URL, a list, an inline object) to judge a writer that uses that one for every type.

    The entity's model must be known (bundled, or declared by the package: ``AdapterSpec.models``
    or the ``stadtlink.models`` entry point); an unknown type is an error too.
    """
    from stadtlink.schemas import vocabulary
    from stadtlink.schemas.registry import model_for

    if isinstance(entities, dict):
        entities = [entities]
    lines = []
    for entity in entities:
        etype = entity.get("type")
        if model_for(etype) is None:
            lines.append(f"{entity.get('id')}: no Smart Data Model {etype!r} is registered "
                         "(declare it in AdapterSpec.models and the stadtlink.models entry point)")
            continue
        judged_with = context if context is not None else vocabulary.own_context(etype)
        for problem in vocabulary.vocabulary_problems(entity, judged_with):
            lines.append(f"{entity.get('id')}: {problem}")
    if lines:
        raise AssertionError("attributes off their model's vocabulary:\n  " + "\n  ".join(lines))


def load_json(path: str | Path) -> Any:
    return json.loads(Path(path).read_text(encoding="utf-8"))


# --------------------------------------------------------------------------------------------------
# Servers


def free_port() -> int:
    """A TCP port that was free a moment ago on 127.0.0.1."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _address(env: str, default: tuple[str, int]) -> tuple[str, int]:
    host, _, port = os.environ.get(env, "").rpartition(":")
    return (host, int(port)) if host and port.isdigit() else default


#: The shared Mosquitto and Redis of the machine (``STADTLINK_TEST_MQTT`` / ``STADTLINK_TEST_REDIS``
#: as ``host:port`` elsewhere). Tests use unique topics and key prefixes on them and never stop,
#: restart, flush or reconfigure them; a test that needs to do that starts its own
#: (:class:`MosquittoProcess`, :class:`RedisProcess`).
SHARED_MQTT: tuple[str, int] = _address("STADTLINK_TEST_MQTT", ("127.0.0.1", 1883))
SHARED_REDIS: tuple[str, int] = _address("STADTLINK_TEST_REDIS", ("127.0.0.1", 6379))
SHARED_REDIS_URL = f"redis://{SHARED_REDIS[0]}:{SHARED_REDIS[1]}/0"


def port_open(host: str, port: int, timeout: float = 1.0) -> bool:
    """Something accepts TCP connections on ``host:port`` (the one probe of the shared servers)."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def mqtt_available() -> bool:
    """The shared Mosquitto answers (what the ``needs_mqtt`` marker asks)."""
    return port_open(*SHARED_MQTT)


def redis_available() -> bool:
    """The shared Redis answers (what the ``needs_redis`` marker asks)."""
    return port_open(*SHARED_REDIS)


def tts_time(dt: datetime) -> str:
    """``dt`` (UTC) as The Things Stack writes ``received_at``: nanoseconds and ``Z``."""
    return dt.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f") + "123Z"


def unique_name(prefix: str = "stadtlink-test") -> str:
    """A topic / key prefix / application id no other test (or worker) on the shared servers uses."""
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


async def wait_until(predicate: Callable[[], Any], timeout: float = 60.0, what: str = "the condition", *,
                     interval: float = 0.05, detail: Callable[[], Any] | None = None) -> Any:
    """Poll ``predicate`` (a function, sync or async) until it returns something true; return that.
    After ``timeout`` seconds raise ``AssertionError`` naming ``what`` (and ``detail()``, e.g. the
    source's counters, if given) — the one waiting semantics of the tests. The timeout only guards
    against a hang: keep it generous (the machine is shared)."""
    deadline = time.monotonic() + timeout
    while True:
        result = predicate()
        if inspect.isawaitable(result):
            result = await result
        if result:
            return result
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}"
                                 + (f"; {detail()}" if detail is not None else ""))
        await asyncio.sleep(interval)


async def stop_task(task: asyncio.Task) -> None:
    """Cancel ``task`` and wait until it ended (a source's ``run``, a server loop); its own
    exception, if it failed before, is raised."""
    task.cancel()
    try:
        await task
    except asyncio.CancelledError:
        pass


async def query_entities(broker_url: str, entity_type: str | None = None, *, tenant: str | None = None,
                         key_values: bool = False, context: str | None = None, limit: int | None = None,
                         **params: Any) -> list[dict]:
    """The entities of a broker (normalized, or ``key_values``) of ``entity_type`` (or of every type,
    ``local=true``), read through the project's NGSI-LD client page by page: what an end-to-end test
    asserts on. ``params`` are the client's query arguments (``q``, ``id_pattern``, ``attrs`` …).

    Entities are written with their own model's @context, so a type is read with that context
    (short names, as written); every type at once is read with stadtlink's compound context and
    each entity's long names are given its model's short ones
    (:func:`stadtlink.schemas.vocabulary.compact_entity`). ``context`` overrides both."""
    from stadtlink.broker_client import NGSILDClient  # imported lazily: optional for adapter authors
    from stadtlink.schemas.contexts import STADTLINK_CONTEXT_URL, type_context
    from stadtlink.schemas.vocabulary import compact_entity

    extra = dict(params.pop("extra_params", None) or {})
    if entity_type is None:
        extra.setdefault("local", "true")
    if context is None:
        context = type_context(entity_type, STADTLINK_CONTEXT_URL) if entity_type else STADTLINK_CONTEXT_URL
        if isinstance(context, list):   # [<extensions>..., <model context>]: one Link, the model's
            context = context[-1]
    async with NGSILDClient(broker_url, tenant=tenant, context=context) as client:
        return [compact_entity(e) async for e in client.query_entities(
            type=entity_type, options="keyValues" if key_values else None, limit=limit, extra_params=extra, **params)]


async def entities_by_id(broker_url: str, entity_type: str | None = None, *, namespace: str | None = None,
                         **kwargs: Any) -> dict[str, dict]:
    """:func:`query_entities` as ``{id: entity}``, only ids in ``namespace`` (``urn:ngsi-ld:<Type>:<namespace>:…``)
    when given: the entities one test wrote on a broker other tests write to as well."""
    return {e["id"]: e for e in await query_entities(broker_url, entity_type, **kwargs)
            if namespace is None or f":{namespace}:" in e["id"]}


def wait_for_port(host: str, port: int, timeout: float = 10.0, *, process: subprocess.Popen | None = None) -> None:
    """Wait until something accepts connections on host:port. With ``process`` (the server being
    started), fail at once when it exited instead of waiting out the timeout, with its output."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return
        except OSError:
            if process is not None and process.poll() is not None:
                out, err = process.communicate()
                raise RuntimeError(f"the server for {host}:{port} exited with {process.returncode} before it "
                                   f"listened: {(out or b'')[-1500:]!r} {(err or b'')[-3000:]!r}") from None
            if time.monotonic() > deadline:
                raise TimeoutError(f"nothing listens on {host}:{port} after {timeout}s") from None
            time.sleep(0.05)


class _ServerProcess:
    """A child server process on a fixed port that can be stopped and restarted (same port, same data)."""

    host = "127.0.0.1"

    def __init__(self, port: int | None = None, data_dir: str | Path | None = None):
        self._auto_port = port is None
        self._ever_started = False
        self.port = port or free_port()
        self._own_dir = data_dir is None
        self.data_dir = Path(data_dir) if data_dir else Path(tempfile.mkdtemp(prefix=f"stadtlink-{self.kind}-"))
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.proc: subprocess.Popen | None = None
        self.log_path = self.data_dir / f"{self.kind}.log"

    kind = "server"

    def command(self) -> list[str]:  # pragma: no cover - abstract
        raise NotImplementedError

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def start(self, timeout: float = 10.0) -> "_ServerProcess":
        if self.running:
            return self
        for attempt in range(3):
            try:
                self._start_once(timeout)
                self._ever_started = True
                return self
            except RuntimeError:
                # a port picked by free_port() may be taken by someone else before we bind it:
                # on the first start (never on a restart, which must keep the port) pick another
                if self._ever_started or not self._auto_port or attempt == 2:
                    raise
                self.port = free_port()
        return self

    def _start_once(self, timeout: float) -> None:
        log = open(self.log_path, "ab")
        try:
            self.proc = subprocess.Popen(self.command(), stdout=log, stderr=subprocess.STDOUT,
                                         cwd=self.data_dir, start_new_session=True)
        finally:
            log.close()
        try:
            deadline = time.monotonic() + timeout
            while True:
                if self.proc.poll() is not None:
                    raise RuntimeError(f"{self.kind} exited with {self.proc.returncode}: {self.log_tail()}")
                try:
                    with socket.create_connection((self.host, self.port), timeout=0.5):
                        pass
                    time.sleep(0.02)
                    if self.proc.poll() is None:   # it is ours that answers, not someone else on the port
                        break
                    continue
                except OSError:
                    if time.monotonic() > deadline:
                        raise TimeoutError(f"{self.kind} did not listen on {self.port}: {self.log_tail()}") from None
                    time.sleep(0.05)
        except BaseException:
            self.kill()
            raise

    def stop(self, timeout: float = 10.0) -> None:
        """Graceful stop (SIGTERM): a persistent server saves its data."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def kill(self) -> None:
        """Crash (SIGKILL): nothing is saved."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self.proc = None

    def restart(self) -> None:
        self.stop()
        self.start()

    def log_tail(self, n: int = 2000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-n:]
        except OSError:
            return ""

    def cleanup(self) -> None:
        self.kill()
        if self._own_dir:
            shutil.rmtree(self.data_dir, ignore_errors=True)

    def __enter__(self):
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.cleanup()


class MosquittoProcess(_ServerProcess):
    """``mosquitto`` on its own port (127.0.0.1, anonymous). ``persistence=True`` keeps sessions and
    queued QoS 1 messages across :meth:`stop`/:meth:`start` (saved on SIGTERM)."""

    kind = "mosquitto"

    def __init__(self, port: int | None = None, *, persistence: bool = False, data_dir: str | Path | None = None,
                 max_queued_messages: int = 10000, allow_anonymous: bool = True,
                 password_file: str | Path | None = None, extra_config: str = ""):
        super().__init__(port, data_dir)
        self.persistence = persistence
        self.allow_anonymous = allow_anonymous
        self.password_file = password_file
        self.max_queued_messages = max_queued_messages
        self.extra_config = extra_config
        self.config_path = self.data_dir / "mosquitto.conf"

    @property
    def url(self) -> str:
        return f"mqtt://{self.host}:{self.port}"

    def command(self) -> list[str]:
        lines = [f"listener {self.port} {self.host}", f"allow_anonymous {'true' if self.allow_anonymous else 'false'}",
                 f"persistence {'true' if self.persistence else 'false'}",
                 f"max_queued_messages {self.max_queued_messages}", "max_inflight_messages 20"]
        if self.password_file:
            lines.append(f"password_file {self.password_file}")
        if self.persistence:
            lines += [f"persistence_location {self.data_dir}/", "autosave_interval 1"]
        if os.geteuid() == 0:
            lines.append("user root")   # do not drop to the 'mosquitto' user: it cannot write our temp dir
        self.config_path.write_text("\n".join(lines) + "\n" + self.extra_config + "\n")
        return ["mosquitto", "-c", str(self.config_path)]


class RedisProcess(_ServerProcess):
    """``redis-server`` on its own port. ``persistence=True`` enables the append-only file so data
    survives :meth:`stop`/:meth:`start` (and :meth:`kill`, up to fsync=always)."""

    kind = "redis"

    def __init__(self, port: int | None = None, *, persistence: bool = False, data_dir: str | Path | None = None):
        super().__init__(port, data_dir)
        self.persistence = persistence

    @property
    def url(self) -> str:
        return f"redis://{self.host}:{self.port}/0"

    def command(self) -> list[str]:
        cmd = ["redis-server", "--port", str(self.port), "--bind", self.host, "--save", "",
               "--dir", str(self.data_dir), "--protected-mode", "no"]
        if self.persistence:
            cmd += ["--appendonly", "yes", "--appendfsync", "always"]
        else:
            cmd += ["--appendonly", "no"]
        return cmd


# --------------------------------------------------------------------------------------------------
# MQTT and NGSI-LD helpers


async def publish_uplinks(host: str, port: int, messages: Iterable[tuple[str, dict | bytes | str]], *,
                          qos: int = 1, client_id: str | None = None) -> int:
    """Publish ``(topic, envelope)`` pairs — e.g. from :func:`tts_uplink` / :func:`chirpstack_uplink` —
    and return how many were published (each acknowledged by the broker for QoS 1)."""
    from .sources.mqtt_client import MqttSettings, connect

    settings = MqttSettings(host=host, port=port, client_id=client_id or f"stadtlink-pub-{uuid.uuid4().hex[:12]}",
                            persistent_session=False, manual_ack=False, receive_maximum=None)
    n = 0
    async with connect(settings) as conn:
        for topic, body in messages:
            payload = orjson.dumps(body) if isinstance(body, dict) else body
            await conn.publish(topic, payload, qos=qos)
            n += 1
    return n


class RecordingOutbox:
    """An outbox for tests that drive a :class:`~.pipeline.Pipeline` directly: it keeps every entity the
    pipeline commits, in order, in ``items`` (nothing is delivered)."""

    kind = "memory"

    def __init__(self) -> None:
        self.items: list[dict] = []

    async def put(self, entities: list[dict], *, extra: Any = None) -> None:
        self.items.extend(entities)


@contextlib.asynccontextmanager
async def local_broker(**kwargs: Any) -> AsyncIterator[str]:
    """An in-process NGSI-LD broker; yields its base URL (``stadtlink.broker_client.local_broker.running_broker``)."""
    from stadtlink.broker_client.local_broker import running_broker  # imported lazily: optional for adapter authors

    async with running_broker(**kwargs) as url:
        yield url


__all__ = ["run_profile", "fixture_message", "map_fixture", "assert_entities_match", "load_json", "free_port",
           "wait_for_port", "MosquittoProcess", "RedisProcess", "publish_uplinks", "local_broker", "parse_uplink",
           "SHARED_MQTT", "SHARED_REDIS", "SHARED_REDIS_URL", "port_open", "mqtt_available", "redis_available",
           "unique_name", "tts_time", "wait_until", "stop_task", "query_entities", "entities_by_id",
           "RecordingOutbox"]

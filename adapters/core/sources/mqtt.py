"""MQTT source: LoRaWAN network servers (TTS v3, ChirpStack v4) and any other MQTT publisher.

Delivery guarantee (what this module achieves, with QoS 1 subscriptions):

* **At-least-once, acknowledged after the outbox.** paho-mqtt's automatic PUBACK is switched off
  (see :mod:`.mqtt_client`). The messages read off the socket together are handed to the
  pipeline as one group (``emit.group``, one outbox write for all of them; a plain ``emit`` gets
  them one by one); their PUBACKs are sent only after that returned, i.e. once their entities are
  in the outbox (or the message was dead-lettered), in arrival order, as MQTT requires.
* **Nothing is lost across broker restarts or our reconnects** as long as the broker keeps the
  session: we connect with a persistent session (MQTT 5 ``clean_start=False`` +
  ``SessionExpiryInterval``, default 1 h; MQTT 3.1.1 ``clean_session=False``) under the same
  client id for the life of the process. The broker queues QoS 1 messages published while we are
  away and redelivers every message we had received but not yet acknowledged. To survive a
  restart of the adapter *process* as well, configure a stable ``client_id`` or ``client_id_env``
  (the default one has a random suffix per process) — and mind the broker's own limits (Mosquitto:
  ``max_queued_messages`` per session, default 1000; a persistent broker needs ``persistence true``).
* **Back-pressure**: if ``emit`` raises (outbox full), the message is *not* acknowledged; we
  disconnect (the broker keeps the message in our session), wait with exponential backoff and
  reconnect, whereupon the broker redelivers it. While we are not acknowledging, the broker stops
  sending once ``receive_maximum`` (MQTT 5) / its in-flight window is used up — nothing piles up
  in our memory.
* **Duplicates are possible** (at-least-once): a message whose PUBACK was lost with the connection
  comes again. LoRaWAN retransmissions and such redeliveries are dropped by the pipeline's
  (device, f_cnt) dedup window; entity upserts are idempotent anyway.
* QoS 0 subscriptions (``qos: 0``) get none of this: the broker does not queue or redeliver.
* Shared subscriptions (``shared_group``) subscribe ``$share/<group>/<topic>``: replicas of one
  adapter split the messages, each message goes to one member of the group. Caveat (observed with
  Mosquitto 2.0): a member that is *offline but whose session persists* keeps being assigned its
  share, queued in that session; the share is delivered when the member reconnects with the same
  client id, and dropped when the session expires first. Two measures keep that share:

  - **Leaving on shutdown** (:meth:`MqttSource.leave`, called by the runner on SIGTERM before the
    sources stop, within half of ``shutdown_grace_s``): UNSUBSCRIBE (the broker assigns us nothing
    more; Mosquitto 2.0 still delivers what it had already assigned, in flight and queued), process
    and acknowledge that, then disconnect *ending the session* (MQTT 5 SessionExpiryInterval 0;
    3.1.1: a clean-session connect under the same id). A replica removed for good (rolling update,
    scale-down) leaves nothing behind. If that does not finish in time the session is kept.
  - **A stable client id per pod** for the crash case (SIGKILL, OOM, container restart: no leave):
    ``client_id_env: POD_NAME`` takes the id from the environment (the chart sets it from the pod
    name for adapters with several pods), so the restarted process resumes its session and the
    share queued in it. A pod that is *replaced* under a new name after a crash (a Deployment's pod
    on a lost node) does not; a StatefulSet keeps the name (chart: ``workload: statefulset``).
    ``session_expiry_s`` must be longer than the longest expected absence.

  Subscriptions without ``shared_group`` are not left: their session persists for the restart.
* With MQTT 3.1.1 (``protocol: "3.1.1"``) the session never expires on the broker side: a random
  default client id leaves an orphaned session behind at every process restart — configure one.
* **Network-server presets** (``network:``): ``tts`` connects to The Things Stack as it is (MQTT
  3.1.1, QoS 0, TLS, ``{app}@{tenant}``; :mod:`.tts`) and backfills what QoS 0 lost from its
  Storage Integration (:mod:`.tts_storage`); ``chirpstack`` subscribes to ChirpStack v4's uplink
  topic. Deliveries below the subscribed QoS (ChirpStack's default ``qos=0``) are counted and
  warned about with the fix (:mod:`.qos_watch`). A connect that an MQTT 3.1.1-only server refuses
  says ``protocol: "3.1.1"``.

``ready`` is False while we are not connected and subscribed.
"""
from __future__ import annotations

import asyncio
import logging
import os
import secrets as _random
import ssl
from datetime import datetime, timezone
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator

from ..errors import ConfigError
from ..reading import RawMessage
from .backoff import Backoff
from .base import Emit
from .mqtt_client import MqttConnection, MqttError, MqttSettings, connect, make_tls_context
from .qos_watch import QosWatch
from .secrets import resolve_secret
from .tts import TtsConfig, apply_chirpstack_preset, apply_tts_preset, connect_hint
from .tts_storage import make_backfill

log = logging.getLogger("stadtlink.source.mqtt")


class TlsConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    ca: str | None = None          # CA bundle (PEM); system CAs when absent
    cert: str | None = None        # client certificate (PEM) for mutual TLS
    key: str | None = None         # its private key (PEM)
    insecure: bool = False         # skip certificate and hostname checks (test set-ups only)


class MqttSourceConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    kind: Literal["mqtt"] = "mqtt"
    name: str | None = None
    #: a LoRaWAN network server preset: ``tts`` (The Things Stack; needs ``tts:``) or ``chirpstack``
    network: Literal["tts", "chirpstack"] | None = None
    #: the TTS application (``network: tts``): application_id, tenant_id, API key, backfill
    tts: TtsConfig | None = None
    host: str = "127.0.0.1"
    port: int = Field(1883, ge=1, le=65535)
    topics: list[str] = Field(default_factory=lambda: ["v3/+/devices/+/up", "application/+/device/+/event/up"])
    shared_group: str | None = None
    profile: str | None = None
    options: dict[str, Any] = Field(default_factory=dict)   # passed to profile.decode (e.g. json-map fields)
    client_id: str | None = None
    #: take the client id from this environment variable (the chart: the pod name) instead
    client_id_env: str | None = None
    username: str | None = None
    password: SecretStr | None = None
    password_env: str | None = None
    password_file: str | None = None
    tls: TlsConfig | None = None
    qos: Literal[0, 1] = 1
    #: MQTT 5 keeps a session for ``session_expiry_s`` only; ``network: tts`` sets "3.1.1" (The
    #: Things Stack does not answer an MQTT 5 CONNECT)
    protocol: Literal["5", "3.1.1"] = "5"
    keepalive_s: int = Field(30, ge=5)
    connect_timeout_s: float = Field(10.0, gt=0)
    session_expiry_s: int = Field(3600, ge=0)
    receive_maximum: int = Field(100, ge=1, le=65535)
    reconnect_min_s: float = Field(0.5, gt=0)
    reconnect_max_s: float = Field(30.0, gt=0)

    @model_validator(mode="before")
    @classmethod
    def _network_preset(cls, values):
        if isinstance(values, dict):
            if values.get("network") == "tts":
                return apply_tts_preset(values)
            if values.get("network") == "chirpstack":
                return apply_chirpstack_preset(values)
            if values.get("tts") is not None:
                raise ValueError("tts: is read with network: tts only")
        return values

    @field_validator("protocol", mode="before")
    @classmethod
    def _protocol_text(cls, v):
        return str(v) if v is not None else v

    @field_validator("topics")
    @classmethod
    def _topics(cls, v: list[str]) -> list[str]:
        if not v:
            raise ValueError("at least one topic")
        for t in v:
            if not t or t.startswith("$share/"):
                raise ValueError(f"invalid topic {t!r} (use shared_group instead of writing $share/… yourself)")
        return v

    @field_validator("shared_group")
    @classmethod
    def _group(cls, v: str | None) -> str | None:
        if v is not None and (not v or any(c in v for c in "/+#")):
            raise ValueError("shared_group must be non-empty and contain no '/', '+' or '#'")
        return v

    @model_validator(mode="after")
    def _checks(self):
        if self.client_id is not None and self.client_id_env is not None:
            raise ValueError("give only one of client_id, client_id_env")
        if sum(x is not None for x in (self.password, self.password_env, self.password_file)) > 1:
            raise ValueError("give only one of password, password_env, password_file")
        if self.reconnect_max_s < self.reconnect_min_s:
            raise ValueError("reconnect_max_s must be >= reconnect_min_s")
        return self

    def subscription_topics(self) -> list[str]:
        if self.shared_group:
            return [f"$share/{self.shared_group}/{t}" for t in self.topics]
        return list(self.topics)


class _EmitRefused(Exception):
    pass


class MqttSource:
    def __init__(self, config: MqttSourceConfig, *, adapter_name: str = "adapter"):
        self.config = config
        self.name = config.name or "mqtt"
        self.client_id = self._client_id(config, adapter_name)
        self._connected = False
        self._stats = {"connects": 0.0, "connect_failures": 0.0, "disconnects": 0.0, "messages": 0.0,
                       "acked": 0.0, "ack_failures": 0.0, "emit_refused": 0.0, "left": 0.0,
                       "leave_drained": 0.0, "leave_incomplete": 0.0}
        # the connection of the current run() iteration (for leave()), set once subscribed
        self._conn: MqttConnection | None = None
        self._conn_up = asyncio.Event()
        self._taken = 0       # messages of this connection handed to emit …
        self._done = 0        # … and of those, the ones emitted and acknowledged
        self._leaving = False
        self._left = False
        # Secrets and TLS files are read now, so a bad config fails at start-up with a ConfigError.
        self._settings: MqttSettings = self._build_settings()
        self._qos_watch = QosWatch(config.qos, source=self.name, network=config.network)
        #: The Things Stack: catch-ups from its Storage Integration (None otherwise)
        self.backfill = make_backfill(config.tts, default_host=config.host, source_kind="mqtt", name=self.name,
                                      ssl_context=self._settings.tls if config.tls and config.tls.ca else None)

    def use_store(self, store) -> None:
        """Where the backfill keeps its state (the runner: the outbox's store)."""
        if self.backfill is not None:
            self.backfill.use_store(store)

    @staticmethod
    def _client_id(config: MqttSourceConfig, adapter_name: str) -> str:
        if config.client_id_env is not None:
            value = os.environ.get(config.client_id_env, "").strip()
            if not value:
                raise ConfigError(f"client_id_env: environment variable {config.client_id_env} is not set")
            return value
        return config.client_id or f"stadtlink-{adapter_name}-{_random.token_hex(4)}"

    def _build_settings(self) -> MqttSettings:
        c = self.config
        tls = None
        if c.tls is not None:
            try:
                tls = make_tls_context(c.tls.ca, c.tls.cert, c.tls.key, c.tls.insecure)
            except (OSError, ssl.SSLError) as exc:
                raise ConfigError(f"tls: cannot load the CA/certificate/key: {exc}") from None
        return MqttSettings(
            host=c.host, port=c.port, client_id=self.client_id, username=c.username,
            password=resolve_secret(c.password, c.password_env, c.password_file, what="password"),
            tls=tls, tls_insecure=bool(c.tls and c.tls.insecure), protocol=c.protocol,
            keepalive=c.keepalive_s, connect_timeout=c.connect_timeout_s, persistent_session=True,
            session_expiry_s=c.session_expiry_s, receive_maximum=c.receive_maximum, manual_ack=c.qos > 0,
        )

    @property
    def ready(self) -> bool:
        return self._connected

    def stats(self) -> dict[str, float]:
        out = {**self._stats, "connected": 1.0 if self._connected else 0.0,
               "qos_downgraded": float(self._qos_watch.count)}
        if self.backfill is not None:
            out.update(self.backfill.stats())
        return out

    async def run(self, emit: Emit) -> None:
        if self.backfill is None:
            return await self._run(emit)
        catching_up = asyncio.create_task(self.backfill.run(emit), name=f"tts-backfill:{self.name}")
        try:
            await self._run(emit)
        finally:
            await self.backfill.stop_task(catching_up)

    async def _run(self, emit: Emit) -> None:
        settings = self._settings
        topics = self.config.subscription_topics()
        conn_backoff = Backoff(self.config.reconnect_min_s, self.config.reconnect_max_s)
        refused_backoff = Backoff(self.config.reconnect_min_s, self.config.reconnect_max_s)
        where = f"{settings.host}:{settings.port}"
        stats = self._stats
        while True:
            if self._left:   # leave() ended our session: never reconnect (the runner cancels us)
                await asyncio.Future()
            try:
                async with connect(settings) as conn:
                    if not self._leaving:   # leaving: leave() unsubscribes on this connection too
                        await conn.subscribe(topics, qos=self.config.qos)
                    self._taken = self._done = 0
                    self._conn = conn
                    self._conn_up.set()
                    self._connected = True
                    self._stats["connects"] += 1
                    if self.backfill is not None and self._stats["connects"] > 1:
                        self.backfill.kick("reconnect")   # what QoS 0 lost while we were away
                    conn_backoff.reset()
                    log.info("mqtt %s: connected to %s as %s, %s %s", self.name, where, self.client_id,
                             "leaving, not subscribing" if self._leaving else "subscribed", topics)
                    emit_group = getattr(emit, "group", None)
                    sub_qos = self.config.qos
                    backfill = self.backfill
                    async for group in conn.groups():
                        stats["messages"] += len(group)
                        self._taken += len(group)
                        if sub_qos:
                            for msg in group:
                                if msg.qos < sub_qos:   # the publisher's QoS is lower (qos_watch.py)
                                    self._qos_watch.note(msg.topic, msg.qos)
                        now = datetime.now(timezone.utc)
                        raws = [RawMessage(source="mqtt", payload=msg.payload, topic=msg.topic, received_at=now,
                                           attributes={"qos": msg.qos, "retain": msg.retain}) for msg in group]
                        try:
                            if emit_group is not None:
                                await emit_group(raws)    # one outbox write for the whole group
                                self._ack(conn, group)
                            else:
                                for msg, raw in zip(group, raws):
                                    await emit(raw)
                                    self._ack(conn, (msg,))
                        except asyncio.CancelledError:
                            raise
                        except Exception as exc:
                            # Not acked: the broker keeps them in our session and redelivers them.
                            stats["emit_refused"] += 1
                            raise _EmitRefused(f"{type(exc).__name__}: {exc}") from None
                        refused_backoff.reset()
                        if backfill is not None:   # admitted: a catch-up skips them
                            for msg in group:
                                backfill.note(msg.payload)
                delay = conn_backoff.next()  # the broker closed the connection cleanly
            except _EmitRefused as exc:
                delay = refused_backoff.next()
                log.warning("mqtt %s: pipeline refused a message (%s); not acknowledged, pausing %.1fs "
                            "before reconnecting for redelivery", self.name, exc, delay)
            except MqttError as exc:
                if self._left:
                    continue
                hint = ""
                if self._connected:
                    self._stats["disconnects"] += 1
                else:
                    self._stats["connect_failures"] += 1
                    hint = connect_hint(str(exc), protocol=settings.protocol, network=self.config.network,
                                        username=settings.username)
                delay = conn_backoff.next()
                log.warning("mqtt %s: %s%s; reconnecting in %.1fs", self.name, exc, hint, delay)
            finally:
                self._connected = False
                self._conn = None
                self._conn_up.clear()
            await asyncio.sleep(delay)

    def _ack(self, conn: MqttConnection, messages) -> None:
        """PUBACK each message, in arrival order (MQTT requires it)."""
        acked = 0
        for msg in messages:
            if conn.ack(msg):
                acked += 1
        self._stats["acked"] += acked
        self._stats["ack_failures"] += len(messages) - acked
        self._done += len(messages)

    async def leave(self, timeout: float) -> bool:
        """Leave the shared group for good (the runner calls this on SIGTERM before it cancels
        :meth:`run`, which keeps processing meanwhile). Without ``shared_group`` nothing happens:
        the session persists for the restart. True when the session was ended.

        1. UNSUBSCRIBE the ``$share/…`` topics: the broker assigns us no more messages. Mosquitto
           2.0 still delivers what it had already assigned to us — the in-flight messages and
           those queued in our session (observed: 100 of 100 after the UNSUBACK; test_mqtt.py
           ``test_leave_delivers_what_was_queued_after_the_unsubscribe``).
        2. Process and acknowledge those. An acknowledgement lets the broker send the next queued
           message at once, so we know the queue is empty when, with everything acknowledged, a
           round trip to the broker (another UNSUBSCRIBE, answered in order behind our PUBACKs)
           brings nothing new — twice in a row, in case a broker writes what the acknowledgements
           released only at the end of its loop iteration.
        3. Disconnect ending the session (:meth:`.MqttConnection.end_session`: MQTT 5
           SessionExpiryInterval 0; MQTT 3.1.1 a clean-session connect under the same id), so no
           message is ever again assigned to or kept for a member that will not return.

        Bounded by ``timeout``: if the pipeline could not take the rest in time (outbox full,
        broker unreachable), the session is left as it is (``leave_incomplete``): what remains in
        it is delivered only to the same client id (a stable one, ``client_id_env``)."""
        if not self.config.shared_group or self._leaving:
            return False
        self._leaving = True
        drained_before = self._stats["messages"]
        try:
            async with asyncio.timeout(timeout):
                await self._leave()
        except TimeoutError:
            self._stats["leave_incomplete"] += 1
            log.warning("mqtt %s: could not leave the shared group %s within %.1fs; the session of %s "
                        "persists with what is left in it", self.name, self.config.shared_group, timeout,
                        self.client_id)
            return False
        finally:
            self._stats["leave_drained"] += self._stats["messages"] - drained_before
        self._stats["left"] = 1.0
        log.info("mqtt %s: left the shared group %s (%d messages processed after the unsubscribe; "
                 "session of %s ended)", self.name, self.config.shared_group,
                 int(self._stats["leave_drained"]), self.client_id)
        return True

    async def _leave(self) -> None:
        topics = self.config.subscription_topics()
        while True:
            await self._conn_up.wait()
            conn = self._conn
            if conn is None:
                continue
            try:
                await conn.unsubscribe(topics)
                quiet = 0
                while quiet < 2:
                    await self._quiesce(conn)
                    taken = self._taken
                    await conn.unsubscribe(topics)    # a round trip behind the PUBACKs
                    quiet = quiet + 1 if (conn.pending == 0 and self._taken == taken) else 0
                await self._quiesce(conn)
                if conn is not self._conn:
                    continue
                self._left = True
                await conn.end_session()
                return
            except MqttError as exc:
                if self._left:   # we were drained; the session may persist, empty (until it expires)
                    log.warning("mqtt %s: ending the session failed (%s)", self.name, exc)
                    return
                # connection lost: run() reconnects (without subscribing) and we go on there
                await asyncio.sleep(0.01)

    async def _quiesce(self, conn: MqttConnection) -> None:
        """Wait until every message read so far on ``conn`` is emitted and acknowledged; write the
        collected PUBACKs. MqttError if the connection is lost meanwhile."""
        while conn.pending or self._taken != self._done:
            if conn.closed or conn is not self._conn:
                raise MqttError("connection lost while leaving")
            await asyncio.sleep(0.005)
        if conn.closed or conn is not self._conn:
            raise MqttError("connection lost while leaving")
        conn.flush_acks()

__all__ = ["MqttSourceConfig", "TlsConfig", "MqttSource"]

"""MQTT source: LoRaWAN network servers (TTS v3, ChirpStack v4) and any other MQTT publisher.

Delivery guarantee (what this module achieves, with QoS 1 subscriptions):

* **At-least-once, acknowledged after the outbox.** paho-mqtt's automatic PUBACK is switched off
  (see :mod:`.mqtt_client`). Each message is handed to ``emit``; the PUBACK is sent only after
  ``await emit(message)`` returned, i.e. once its entities are in the outbox (or it was
  dead-lettered). Messages are processed one at a time, so PUBACKs go out in arrival order, as
  MQTT requires. They are collected and written together (up to 64 per ``send``, and always
  before we wait for the next message or disconnect; see :mod:`.mqtt_client`).
* **Nothing is lost across broker restarts or our reconnects** as long as the broker keeps the
  session: we connect with a persistent session (MQTT 5 ``clean_start=False`` +
  ``SessionExpiryInterval``, default 1 h; MQTT 3.1.1 ``clean_session=False``) under the same
  client id for the life of the process. The broker queues QoS 1 messages published while we are
  away and redelivers every message we had received but not yet acknowledged. To survive a
  restart of the adapter *process* as well, configure a stable ``client_id`` (the default one has
  a random suffix per process) — and mind the broker's own limits (Mosquitto:
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
  Mosquitto 2.0): a member that is *offline but whose session persists* keeps receiving its share
  into that session; the share is delivered when the member reconnects with the same client id, and
  dropped if the session expires first. So give each replica a stable ``client_id`` (e.g. the pod
  name of a StatefulSet) and a ``session_expiry_s`` longer than its longest expected absence.
* With MQTT 3.1.1 (``protocol: "3.1.1"``) the session never expires on the broker side: a random
  default client id leaves an orphaned session behind at every process restart — configure one.

``ready`` is False while we are not connected and subscribed.
"""
from __future__ import annotations

import asyncio
import logging
import secrets as _random
import ssl
from datetime import datetime, timezone
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator

from ..errors import ConfigError
from ..reading import RawMessage
from .backoff import Backoff
from .base import Emit
from .mqtt_client import MqttError, MqttSettings, connect, make_tls_context
from .secrets import resolve_secret

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
    host: str = "127.0.0.1"
    port: int = Field(1883, ge=1, le=65535)
    topics: list[str] = Field(default_factory=lambda: ["v3/+/devices/+/up", "application/+/device/+/event/up"])
    shared_group: str | None = None
    profile: str | None = None
    options: dict[str, Any] = Field(default_factory=dict)   # passed to profile.decode (e.g. json-map fields)
    client_id: str | None = None
    username: str | None = None
    password: SecretStr | None = None
    password_env: str | None = None
    password_file: str | None = None
    tls: TlsConfig | None = None
    qos: Literal[0, 1] = 1
    protocol: Literal["5", "3.1.1"] = "5"
    keepalive_s: int = Field(30, ge=5)
    connect_timeout_s: float = Field(10.0, gt=0)
    session_expiry_s: int = Field(3600, ge=0)
    receive_maximum: int = Field(100, ge=1, le=65535)
    reconnect_min_s: float = Field(0.5, gt=0)
    reconnect_max_s: float = Field(30.0, gt=0)

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
        self.client_id = config.client_id or f"stadtlink-{adapter_name}-{_random.token_hex(4)}"
        self._connected = False
        self._stats = {"connects": 0.0, "connect_failures": 0.0, "disconnects": 0.0, "messages": 0.0,
                       "acked": 0.0, "ack_failures": 0.0, "emit_refused": 0.0}
        # Secrets and TLS files are read now, so a bad config fails at start-up with a ConfigError.
        self._settings: MqttSettings = self._build_settings()

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
        return {**self._stats, "connected": 1.0 if self._connected else 0.0}

    async def run(self, emit: Emit) -> None:
        settings = self._settings
        topics = self.config.subscription_topics()
        conn_backoff = Backoff(self.config.reconnect_min_s, self.config.reconnect_max_s)
        refused_backoff = Backoff(self.config.reconnect_min_s, self.config.reconnect_max_s)
        where = f"{settings.host}:{settings.port}"
        while True:
            try:
                async with connect(settings) as conn:
                    await conn.subscribe(topics, qos=self.config.qos)
                    self._connected = True
                    self._stats["connects"] += 1
                    conn_backoff.reset()
                    log.info("mqtt %s: connected to %s as %s, subscribed %s", self.name, where,
                             self.client_id, topics)
                    async for msg in conn.messages():
                        self._stats["messages"] += 1
                        raw = RawMessage(source="mqtt", payload=msg.payload, topic=msg.topic,
                                         received_at=datetime.now(timezone.utc),
                                         attributes={"qos": msg.qos, "retain": msg.retain})
                        try:
                            await emit(raw)
                        except asyncio.CancelledError:
                            raise
                        except Exception as exc:
                            # Not acked: the broker keeps it in our session and redelivers it.
                            self._stats["emit_refused"] += 1
                            raise _EmitRefused(f"{type(exc).__name__}: {exc}") from None
                        refused_backoff.reset()
                        if conn.ack(msg):
                            self._stats["acked"] += 1
                        else:
                            self._stats["ack_failures"] += 1
                delay = conn_backoff.next()  # the broker closed the connection cleanly
            except _EmitRefused as exc:
                delay = refused_backoff.next()
                log.warning("mqtt %s: pipeline refused a message (%s); not acknowledged, pausing %.1fs "
                            "before reconnecting for redelivery", self.name, exc, delay)
            except MqttError as exc:
                if self._connected:
                    self._stats["disconnects"] += 1
                else:
                    self._stats["connect_failures"] += 1
                delay = conn_backoff.next()
                log.warning("mqtt %s: %s; reconnecting in %.1fs", self.name, exc, delay)
            finally:
                self._connected = False
            await asyncio.sleep(delay)


__all__ = ["MqttSourceConfig", "TlsConfig", "MqttSource"]

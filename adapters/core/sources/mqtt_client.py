"""Our small MQTT interface. The only module that imports aiomqtt / paho-mqtt.

It adds what the sources need and aiomqtt 2.x does not offer directly:

* **manual acknowledgement**: aiomqtt lets paho-mqtt send the QoS 1 PUBACK as soon as a PUBLISH
  is read off the socket. We switch the underlying paho client (``aiomqtt.Client._client``, paho
  2.x) to ``manual_ack_set(True)``; :meth:`MqttConnection.ack` then sends the PUBACK for one
  message via paho's ``Client.ack(mid, qos)``. A message that is never acked stays in-flight in the
  broker's session and is redelivered (DUP) after the next connect with the same client id.
* **persistent sessions**: MQTT 5 ``clean_start=False`` with a ``SessionExpiryInterval`` (so an
  abandoned session is eventually discarded by the broker) or MQTT 3.1.1 ``clean_session=False``.
* a ``ReceiveMaximum`` (MQTT 5) bounding how many unacknowledged messages the broker sends us.

One :class:`MqttConnection` is one network connection; reconnecting means calling :func:`connect`
again with the same :class:`MqttSettings` (same client id → same broker session).
"""
from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
from dataclasses import dataclass, field
from typing import AsyncIterator, Literal

import aiomqtt
import paho.mqtt.client as paho
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties


#: paho-mqtt's own log lines (e.g. "failed to receive on socket" when the broker goes away)
_PAHO_LOG = logging.getLogger("stadtlink.mqtt.paho")


class MqttError(Exception):
    """Connecting, subscribing or publishing failed, or the connection was lost."""


@dataclass(frozen=True)
class MqttSettings:
    host: str
    port: int = 1883
    client_id: str | None = None
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    tls: ssl.SSLContext | None = None
    tls_insecure: bool = False
    protocol: Literal["5", "3.1.1"] = "5"
    keepalive: int = 30
    connect_timeout: float = 10.0
    #: Keep the broker session (subscriptions + unacknowledged / queued QoS 1 messages) across
    #: disconnects. MQTT 5: for ``session_expiry_s`` seconds; MQTT 3.1.1: until the broker drops it.
    persistent_session: bool = True
    session_expiry_s: int = 3600
    #: MQTT 5 ReceiveMaximum: at most this many unacknowledged QoS 1 messages in flight towards us.
    receive_maximum: int | None = 100
    #: Acknowledge QoS 1 messages only through :meth:`MqttConnection.ack`.
    manual_ack: bool = True


@dataclass(frozen=True, slots=True)
class IncomingMessage:
    topic: str
    payload: bytes
    qos: int
    retain: bool
    mid: int


def make_tls_context(ca: str | None = None, cert: str | None = None, key: str | None = None,
                     insecure: bool = False) -> ssl.SSLContext:
    """A client TLS context: system CAs unless ``ca`` is given; a client certificate if ``cert``;
    ``insecure`` turns off hostname and certificate verification (test set-ups only)."""
    ctx = ssl.create_default_context(cafile=ca)
    if cert:
        ctx.load_cert_chain(certfile=cert, keyfile=key)
    if insecure:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    return ctx


class MqttConnection:
    """A connected client. Obtain with :func:`connect`."""

    def __init__(self, client: aiomqtt.Client, settings: MqttSettings, lost: asyncio.Future):
        self._client = client
        self._settings = settings
        self._lost = lost

    @property
    def client_id(self) -> str:
        return self._client.identifier

    async def subscribe(self, topics: list[str], qos: int = 1) -> None:
        """Subscribe to every topic (wildcards and ``$share/<group>/…`` allowed); raise
        :class:`MqttError` if the broker refuses one."""
        if not topics:
            return
        try:
            result = await self._client.subscribe([(t, qos) for t in topics])
        except aiomqtt.MqttError as exc:
            raise MqttError(f"subscribe failed: {exc}") from None
        for topic, code in zip(topics, result):
            value = code.value if hasattr(code, "value") else int(code)
            if value >= 0x80:
                raise MqttError(f"broker refused the subscription to {topic!r} (reason code {value:#x})")

    async def publish(self, topic: str, payload: bytes | str, qos: int = 1, retain: bool = False) -> None:
        """Publish; for QoS 1 returns once the broker acknowledged (PUBACK). Raises
        :class:`MqttError` at once if the connection drops first (aiomqtt alone would wait for its timeout)."""
        publishing = asyncio.ensure_future(self._client.publish(topic, payload, qos=qos, retain=retain))
        try:
            await asyncio.wait({publishing, self._lost}, return_when=asyncio.FIRST_COMPLETED)
        except asyncio.CancelledError:
            publishing.cancel()
            raise
        if not publishing.done():
            publishing.cancel()
            raise MqttError("publish failed: connection lost before the broker acknowledged")
        try:
            publishing.result()
        except aiomqtt.MqttError as exc:
            raise MqttError(f"publish failed: {exc}") from None

    async def messages(self) -> AsyncIterator[IncomingMessage]:
        """Incoming messages in arrival order; raises :class:`MqttError` when the connection drops."""
        iterator = self._client.messages
        while True:
            try:
                msg = await iterator.__anext__()
            except aiomqtt.MqttError as exc:
                raise MqttError(f"connection lost: {exc}") from None
            payload = msg.payload
            if isinstance(payload, str):
                payload = payload.encode()
            elif payload is None:
                payload = b""
            elif not isinstance(payload, (bytes, bytearray)):
                payload = str(payload).encode()
            yield IncomingMessage(topic=msg.topic.value, payload=bytes(payload), qos=msg.qos,
                                  retain=bool(msg.retain), mid=msg.mid)

    def ack(self, message: IncomingMessage) -> bool:
        """Send the PUBACK for a QoS 1 message now. False if it could not be sent (connection
        gone): the broker will then redeliver the message on the next connect."""
        if message.qos == 0 or not self._settings.manual_ack:
            return True
        rc = self._client._client.ack(message.mid, message.qos)  # noqa: SLF001 - paho's manual ack
        return rc == paho.MQTT_ERR_SUCCESS


def _watch_connection_loss(client: aiomqtt.Client) -> asyncio.Future:
    """A future that completes when paho reports the connection closed — also before CONNACK,
    which aiomqtt's ``__aenter__`` does not notice (it would wait for its whole timeout)."""
    loop = asyncio.get_running_loop()
    lost: asyncio.Future = loop.create_future()
    paho_client = client._client  # noqa: SLF001
    aiomqtt_handler = paho_client.on_disconnect

    def mark_lost() -> None:
        if not lost.done():
            lost.set_result(None)

    def on_disconnect(*args, **kwargs):
        loop.call_soon_threadsafe(mark_lost)
        return aiomqtt_handler(*args, **kwargs)

    paho_client.on_disconnect = on_disconnect
    return lost


def _build_client(settings: MqttSettings) -> aiomqtt.Client:
    kwargs: dict = {}
    if settings.protocol == "5":
        props = Properties(PacketTypes.CONNECT)
        if settings.persistent_session:
            props.SessionExpiryInterval = int(settings.session_expiry_s)
        if settings.receive_maximum:
            props.ReceiveMaximum = int(settings.receive_maximum)
        kwargs.update(protocol=aiomqtt.ProtocolVersion.V5, clean_start=not settings.persistent_session,
                      properties=props)
    else:
        kwargs.update(protocol=aiomqtt.ProtocolVersion.V311, clean_session=not settings.persistent_session)
    client = aiomqtt.Client(
        settings.host, settings.port, identifier=settings.client_id, logger=_PAHO_LOG, username=settings.username,
        password=settings.password, keepalive=settings.keepalive, timeout=settings.connect_timeout,
        tls_context=settings.tls, tls_insecure=(True if settings.tls is not None and settings.tls_insecure else None),
        **kwargs,
    )
    if settings.manual_ack:
        client._client.manual_ack_set(True)  # noqa: SLF001 - see the module docstring
    return client


@contextlib.asynccontextmanager
async def connect(settings: MqttSettings) -> AsyncIterator[MqttConnection]:
    """Connect (raises :class:`MqttError`), yield the connection, disconnect on exit."""
    client = _build_client(settings)
    lost = _watch_connection_loss(client)
    where = f"{settings.host}:{settings.port}"
    entering = asyncio.ensure_future(client.__aenter__())
    try:
        await asyncio.wait({entering, lost}, return_when=asyncio.FIRST_COMPLETED)
    except asyncio.CancelledError:
        entering.cancel()
        with contextlib.suppress(BaseException):
            client._client.disconnect()  # noqa: SLF001
        raise
    if not entering.done():
        entering.cancel()
        with contextlib.suppress(BaseException):
            await entering
        raise MqttError(f"cannot connect to {where}: connection closed before CONNACK")
    try:
        entering.result()
    except aiomqtt.MqttError as exc:
        raise MqttError(f"cannot connect to {where}: {exc}") from None
    except OSError as exc:  # TLS handshake / DNS problems surface as OSError
        raise MqttError(f"cannot connect to {where}: {exc}") from None
    try:
        yield MqttConnection(client, settings, lost)
    finally:
        with contextlib.suppress(aiomqtt.MqttError, OSError):
            await client.__aexit__(None, None, None)
        disconnected = client._disconnected  # noqa: SLF001 - mark its exception as seen
        if disconnected.done() and not disconnected.cancelled():
            disconnected.exception()


__all__ = ["MqttError", "MqttSettings", "IncomingMessage", "MqttConnection", "connect", "make_tls_context"]

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
* **ending a session on purpose** (:meth:`MqttConnection.end_session`: MQTT 5 DISCONNECT with
  ``SessionExpiryInterval`` 0, 3.1.1 a clean-session connect) and :meth:`MqttConnection.unsubscribe`,
  for a shared-subscription member that leaves for good (:meth:`.MqttSource.leave`).
* a **lean receive path** (:class:`_LeanPaho`, measured in benchmarks/README.md): paho-mqtt and
  aiomqtt spend more per incoming message than our whole pipeline can afford — paho reads a
  packet with three ``recv`` calls and one event-loop wake-up, builds an ``MQTTMessage`` with a
  ``threading.Condition`` and an MQTT 5 ``Properties`` object, matches per-topic callbacks;
  aiomqtt converts it into its own ``Message`` and creates a Task per ``__anext__``; and every
  manual PUBACK is one ``send`` plus an add/remove of the socket writer. Here PUBLISH packets
  (QoS 0/1) are parsed straight into an :class:`IncomingMessage` in our own inbox, the socket is
  read in 64 KiB chunks, and PUBACKs are collected and written together (see
  :meth:`MqttConnection.ack`). Everything else (CONNACK, SUBACK, PUBACK of our publishes, QoS 2,
  keepalive) stays paho's. It relies on paho 2.x internals (``_handle_publish``, ``_sock_recv``,
  ``_in_packet``, ``_out_packet``); with a paho lacking them the standard path is used.

One :class:`MqttConnection` is one network connection; reconnecting means calling :func:`connect`
again with the same :class:`MqttSettings` (same client id → same broker session).
"""
from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import ssl
import struct
from collections import deque
from dataclasses import dataclass, field
from typing import AsyncIterator, Literal

import aiomqtt
import paho.mqtt.client as paho
from paho.mqtt.exception import MalformedPacket
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


_PUBACK = 0x40
_PUBACK_PACKET = struct.Struct("!BBH")
#: collected PUBACKs are written once this many are waiting (or when no message is waiting), at
#: most half the ReceiveMaximum so that the broker's window never runs dry
_ACK_FLUSH_AT = 64
_READ_CHUNK = 65536


class _LeanPaho(paho.Client):
    """paho's client with the lean receive path (module docstring). Instances are made by
    switching the class of the client aiomqtt built (:func:`_make_lean`), so aiomqtt's own
    set-up stays as it is. Runs in the event loop thread, like every paho call under aiomqtt."""

    # set by _make_lean (the class switch does not run __init__)
    _lean_inbox: "_Inbox"
    _lean_sock: object
    _lean_data: bytes
    _lean_pos: int

    def _sock_recv(self, bufsize: int) -> bytes:
        data = self._lean_data
        pos = self._lean_pos
        sock = self._sock
        if pos >= len(data) or sock is not self._lean_sock:
            if sock is None:
                raise ConnectionError("self._sock is None")
            try:
                data = sock.recv(_READ_CHUNK)
            except ssl.SSLWantReadError as err:
                raise BlockingIOError() from err
            except ssl.SSLWantWriteError as err:
                self._call_socket_register_write()
                raise BlockingIOError() from err
            self._lean_sock = sock
            if not data:
                self._lean_data, self._lean_pos = b"", 0
                return b""
            pos = 0
            if bufsize >= len(data):
                self._lean_data, self._lean_pos = b"", 0
                return data
        end = pos + bufsize
        self._lean_data = data
        self._lean_pos = end if end < len(data) else len(data)
        return data[pos:end]

    def loop_read(self, max_packets: int = 1) -> paho.MQTTErrorCode:
        """Handle every packet read so far (paho handles one per call and relies on the socket
        still being readable for the next; our chunk may hold the rest)."""
        while True:
            if self._sock is None:
                return paho.MQTTErrorCode.MQTT_ERR_NO_CONN
            rc = self._packet_read()
            if rc > 0:
                return self._loop_rc_handle(rc)
            if self._lean_pos >= len(self._lean_data):
                return paho.MQTTErrorCode.MQTT_ERR_SUCCESS

    def _handle_publish(self) -> paho.MQTTErrorCode:
        header = self._in_packet["command"]
        qos = (header & 0x06) >> 1
        if qos == 2:   # never with our subscriptions (QoS <= 1); paho's own handling then
            return super()._handle_publish()
        data = self._in_packet["packet"]
        try:
            end = 2 + ((data[0] << 8) | data[1])
            topic = bytes(data[2:end])
            pos = end
            mid = 0
            if qos:
                mid = (data[pos] << 8) | data[pos + 1]
                pos += 2
            if self._protocol == paho.MQTTv5:   # skip the properties: we use none of them
                length = shift = 0
                while True:
                    byte = data[pos]
                    pos += 1
                    length |= (byte & 0x7F) << shift
                    if not byte & 0x80:
                        break
                    shift += 7
                    if shift > 21:
                        raise MalformedPacket("properties length over 4 bytes")
                pos += length
        except IndexError:
            raise MalformedPacket("PUBLISH shorter than its headers") from None
        if pos > len(data) or end > len(data):
            raise MalformedPacket("PUBLISH shorter than its headers")
        if not topic and self._protocol != paho.MQTTv5:
            raise MalformedPacket("topic can't be empty in MQTTv3")
        self._lean_inbox.put(IncomingMessage(topic=topic.decode("utf-8", "replace"), payload=bytes(data[pos:]),
                                             qos=qos, retain=bool(header & 0x01), mid=mid))
        if qos == 1 and not self._manual_ack:
            return self._send_puback(mid)
        return paho.MQTTErrorCode.MQTT_ERR_SUCCESS

    def _lean_write(self, packet: bytes) -> bool:
        """Queue raw bytes (several PUBACKs) behind whatever paho has queued and write now."""
        if self._sock is None:
            return False
        self._out_packet.append({"command": _PUBACK, "mid": 0, "qos": 1, "pos": 0,
                                 "to_process": len(packet), "packet": packet, "info": None})
        return self.loop_write() == paho.MQTTErrorCode.MQTT_ERR_SUCCESS


class _Inbox:
    """Messages read off the socket, waiting for :meth:`MqttConnection.messages`."""

    __slots__ = ("items", "waiter")

    def __init__(self) -> None:
        self.items: deque[IncomingMessage] = deque()
        self.waiter: asyncio.Future | None = None

    def put(self, message: IncomingMessage) -> None:
        self.items.append(message)
        self.wake()

    def wake(self, *_args) -> None:
        waiter = self.waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)


def _make_lean(paho_client: paho.Client) -> _Inbox | None:
    """Switch aiomqtt's paho client to :class:`_LeanPaho`; None if this paho lacks what it needs."""
    needed = ("_handle_publish", "_sock_recv", "_packet_read", "_loop_rc_handle", "_in_packet", "_out_packet",
              "_manual_ack", "_protocol")
    if type(paho_client) is not paho.Client or not all(hasattr(paho_client, n) for n in needed):
        return None
    inbox = _Inbox()
    paho_client.__class__ = _LeanPaho
    paho_client._lean_inbox = inbox
    paho_client._lean_sock = None
    paho_client._lean_data = b""
    paho_client._lean_pos = 0
    return inbox


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

    def __init__(self, client: aiomqtt.Client, settings: MqttSettings, lost: asyncio.Future,
                 inbox: _Inbox | None = None):
        self._client = client
        self._settings = settings
        self._lost = lost
        self._inbox = inbox
        self._acks = bytearray()
        self._acks_waiting = 0
        self._ack_flush_at = max(1, min(_ACK_FLUSH_AT, (settings.receive_maximum or 2 * _ACK_FLUSH_AT) // 2))
        if inbox is not None:
            lost.add_done_callback(inbox.wake)
            client._disconnected.add_done_callback(inbox.wake)  # noqa: SLF001

    @property
    def lean(self) -> bool:
        """Whether the lean receive path is active (module docstring)."""
        return self._inbox is not None

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

    async def unsubscribe(self, topics: list[str]) -> None:
        """Unsubscribe and wait for the UNSUBACK; raise :class:`MqttError` if the connection is lost
        first. Unsubscribing from a topic we have no subscription to is answered too (MQTT 5 reason
        0x11), which makes this a round trip behind everything we sent before (see
        :meth:`.MqttSource.leave`)."""
        if not topics:
            return
        unsubscribing = asyncio.ensure_future(self._client.unsubscribe(list(topics)))
        try:
            await asyncio.wait({unsubscribing, self._lost}, return_when=asyncio.FIRST_COMPLETED)
        except asyncio.CancelledError:
            unsubscribing.cancel()
            raise
        if not unsubscribing.done():
            unsubscribing.cancel()
            raise MqttError("unsubscribe failed: connection lost before the UNSUBACK")
        try:
            unsubscribing.result()
        except aiomqtt.MqttError as exc:
            raise MqttError(f"unsubscribe failed: {exc}") from None

    @property
    def closed(self) -> bool:
        """The connection is lost or was closed."""
        return self._lost.done() or self._client._disconnected.done()  # noqa: SLF001

    @property
    def pending(self) -> int:
        """Messages read off the socket that :meth:`messages` has not yielded yet."""
        if self._inbox is not None:
            return len(self._inbox.items)
        return self._client._queue.qsize()  # noqa: SLF001

    async def end_session(self, timeout: float = 5.0) -> None:
        """Disconnect *ending the broker session* (the collected PUBACKs are written first).

        MQTT 5: DISCONNECT with ``SessionExpiryInterval`` 0 — the broker discards the session at
        once (its subscriptions and anything still queued in it). MQTT 3.1.1 has no such field: we
        disconnect and connect once more with ``clean_session=True`` under the same client id, which
        discards the old session; that clean session ends with its own disconnect. Raises
        :class:`MqttError` if the broker could not be told (the session then persists)."""
        if self._inbox is not None:
            self.flush_acks()
        client = self._client
        if client._disconnected.done():  # noqa: SLF001
            raise MqttError("end_session: not connected")
        if self._settings.protocol == "5":
            props = Properties(PacketTypes.DISCONNECT)
            props.SessionExpiryInterval = 0
            rc = client._client.disconnect(properties=props)  # noqa: SLF001
            if rc != paho.MQTT_ERR_SUCCESS:
                raise MqttError(f"end_session: DISCONNECT not sent ({rc})")
            with contextlib.suppress(Exception):
                await asyncio.wait_for(asyncio.shield(client._disconnected), timeout)  # noqa: SLF001
            return
        with contextlib.suppress(aiomqtt.MqttError, OSError):
            await asyncio.wait_for(client.__aexit__(None, None, None), timeout)
        clean = dataclasses.replace(self._settings, persistent_session=False, manual_ack=False,
                                    connect_timeout=min(self._settings.connect_timeout, timeout))
        async with connect(clean):
            pass

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
        """Incoming messages in arrival order; raises :class:`MqttError` when the connection drops
        (after the messages read before that). Collected PUBACKs are written before waiting."""
        inbox = self._inbox
        if inbox is None:
            async for message in self._aiomqtt_messages():
                yield message
            return
        items = inbox.items
        loop = asyncio.get_running_loop()
        disconnected = self._client._disconnected  # noqa: SLF001
        handed = 0
        while True:
            if items:
                yield items.popleft()
                # Let the other tasks run every 8 messages (the batcher, the HTTP server: ~2 ms at
                # most): the pipeline may not suspend at all (memory outbox), and the inbox can hold
                # a receive_maximum's worth of messages. Every message cost 9 % more CPU per uplink
                # (benchmarks/README.md).
                handed += 1
                if not handed & 7:
                    await asyncio.sleep(0)
                continue
            self.flush_acks()
            if self._lost.done() or disconnected.done():
                exc = disconnected.exception() if disconnected.done() and not disconnected.cancelled() else None
                raise MqttError(f"connection lost: {exc or 'closed by the broker'}")
            inbox.waiter = loop.create_future()
            try:
                await inbox.waiter
            finally:
                inbox.waiter = None

    async def _aiomqtt_messages(self) -> AsyncIterator[IncomingMessage]:
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
        """Acknowledge a QoS 1 message (PUBACK). False if the connection is gone: the broker then
        redelivers the message on the next connect.

        On the lean path PUBACKs are collected and written together — when
        ``_ACK_FLUSH_AT`` (at most half the ReceiveMaximum) are waiting, before :meth:`messages`
        waits for the next message, and when
        the connection is closed by :func:`connect` — always in the order of the ``ack`` calls.
        A PUBACK lost with the connection only means a redelivery (at-least-once)."""
        if message.qos == 0 or not self._settings.manual_ack:
            return True
        if self._inbox is None:
            rc = self._client._client.ack(message.mid, message.qos)  # noqa: SLF001 - paho's manual ack
            return rc == paho.MQTT_ERR_SUCCESS
        if self._client._client._sock is None:  # noqa: SLF001
            return False
        self._acks += _PUBACK_PACKET.pack(_PUBACK, 2, message.mid)
        self._acks_waiting += 1
        if self._acks_waiting >= self._ack_flush_at:
            return self.flush_acks()
        return True

    def flush_acks(self) -> bool:
        """Write the collected PUBACKs now (one ``send``). False if the connection is gone."""
        if not self._acks:
            return True
        packet = bytes(self._acks)
        self._acks.clear()
        self._acks_waiting = 0
        return self._client._client._lean_write(packet)  # noqa: SLF001


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


def _build_client(settings: MqttSettings) -> tuple[aiomqtt.Client, _Inbox | None]:
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
    return client, _make_lean(client._client)  # noqa: SLF001


@contextlib.asynccontextmanager
async def connect(settings: MqttSettings) -> AsyncIterator[MqttConnection]:
    """Connect (raises :class:`MqttError`), yield the connection, disconnect on exit."""
    client, inbox = _build_client(settings)
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
    conn = MqttConnection(client, settings, lost, inbox)
    try:
        yield conn
    finally:
        if conn.lean:
            with contextlib.suppress(Exception):
                conn.flush_acks()   # what was processed is acknowledged before we disconnect
        with contextlib.suppress(aiomqtt.MqttError, OSError):
            await client.__aexit__(None, None, None)
        disconnected = client._disconnected  # noqa: SLF001 - mark its exception as seen
        if disconnected.done() and not disconnected.cancelled():
            disconnected.exception()


__all__ = ["MqttError", "MqttSettings", "IncomingMessage", "MqttConnection", "connect", "make_tls_context"]

"""Our small MQTT interface. The only module of the runtime that imports paho-mqtt.

Built on paho-mqtt 2.x's *public* API for an external event loop (``loop_read``, ``loop_write``,
``loop_misc`` and the ``on_socket_*`` callbacks; paho's documentation, "External event loop
support"), driven by asyncio here. No private attribute of paho is touched. What the sources need
on top of a plain subscribe loop:

* **manual acknowledgement**: the client is made with ``manual_ack=True``; a QoS 1 message is
  acknowledged (PUBACK) only when :meth:`MqttConnection.ack` calls paho's ``Client.ack(mid, qos)``
  — after the pipeline stored its entities. A message that is never acknowledged stays in flight
  in the broker's session and is redelivered (DUP) after the next connect with the same client id.
* **groups**: :meth:`MqttConnection.groups` hands over every message read off the socket and not
  yet handed over, as one list — what arrives together is committed together by the pipeline
  (one outbox write) and acknowledged together.
* **persistent sessions**: MQTT 5 ``clean_start=False`` with a ``SessionExpiryInterval`` (so an
  abandoned session is eventually discarded by the broker) or MQTT 3.1.1 ``clean_session=False``.
* a ``ReceiveMaximum`` (MQTT 5) bounding how many unacknowledged messages the broker sends us.
* **ending a session on purpose** (:meth:`MqttConnection.end_session`: MQTT 5 DISCONNECT with
  ``SessionExpiryInterval`` 0, 3.1.1 a clean-session connect) and :meth:`MqttConnection.unsubscribe`,
  for a shared-subscription member that leaves for good (:meth:`.MqttSource.leave`).

Each message keeps the topic and the QoS it was *delivered* with (the broker may downgrade a QoS 1
subscription's message to QoS 0 when it was published with QoS 0).

Why paho and not gmqtt or aiomqtt: benchmarks/mqtt_clients.py measures the candidates in one run
(figures in benchmarks/README.md). aiomqtt exposes no manual acknowledgement.

One :class:`MqttConnection` is one network connection; reconnecting means calling :func:`connect`
again with the same :class:`MqttSettings` (same client id → same broker session).
"""
from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import ssl
import threading
from dataclasses import dataclass, field
from typing import AsyncIterator, Literal

import paho.mqtt.client as paho
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties


#: paho-mqtt's own log lines (e.g. "failed to receive on socket" when the broker goes away)
_PAHO_LOG = logging.getLogger("stadtlink.mqtt.paho")

#: packets handled per readable event at most before other tasks get the loop again
_READ_BURST = 512


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
    #: the QoS the broker delivered this message with (≤ the subscription's)
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


def _code(value) -> int:
    """A paho ReasonCode (or int) as its number."""
    return value.value if hasattr(value, "value") else int(value)


class _Driver:
    """Drives one paho client from the asyncio loop (paho's external-loop callbacks). paho calls
    the socket callbacks from the thread that runs ``connect`` too; those are moved to the loop."""

    def __init__(self, client: paho.Client, loop: asyncio.AbstractEventLoop):
        self.client = client
        self.loop = loop
        self.loop_thread = threading.get_ident()
        self.inbox: list[IncomingMessage] = []
        self.waiter: asyncio.Future | None = None
        self.connected: asyncio.Future = loop.create_future()
        self.lost: asyncio.Future = loop.create_future()
        self.replies: dict[int, asyncio.Future] = {}     # SUBACK / UNSUBACK / PUBACK by mid
        self.early: dict[int, object] = {}                # replies that came before their future
        self.sock = None
        self.writing = False
        client.on_socket_open = self._on_socket_open
        client.on_socket_close = self._on_socket_close
        client.on_socket_register_write = self._on_register_write
        client.on_socket_unregister_write = self._on_unregister_write
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_message = self._on_message
        client.on_subscribe = self._on_subscribe
        client.on_unsubscribe = self._on_subscribe
        client.on_publish = self._on_publish
        self.misc_task: asyncio.Task | None = None

    # -- paho callbacks (socket) ---------------------------------------------------------------------
    def _in_loop(self, fn, *args) -> None:
        if threading.get_ident() == self.loop_thread:
            fn(*args)
        else:
            self.loop.call_soon_threadsafe(fn, *args)

    def _on_socket_open(self, client, userdata, sock) -> None:
        self._in_loop(self._add_reader, sock)

    def _add_reader(self, sock) -> None:
        if self.lost.done():
            return
        self.sock = sock
        self.loop.add_reader(sock, self._on_readable)

    def _on_socket_close(self, client, userdata, sock) -> None:
        self._in_loop(self.remove, sock)

    def remove(self, sock) -> None:
        with contextlib.suppress(Exception):
            self.loop.remove_reader(sock)
        with contextlib.suppress(Exception):
            self.loop.remove_writer(sock)
        self.writing = False
        if sock is self.sock:
            self.sock = None
        self.mark_lost(None)

    def _on_register_write(self, client, userdata, sock) -> None:
        self._in_loop(self._add_writer, sock)

    def _add_writer(self, sock) -> None:
        if not self.writing and sock is self.sock:
            self.writing = True
            self.loop.add_writer(sock, self._on_writable)

    def _on_unregister_write(self, client, userdata, sock) -> None:
        self._in_loop(self._remove_writer, sock)

    def _remove_writer(self, sock) -> None:
        if self.writing:
            self.writing = False
            with contextlib.suppress(Exception):
                self.loop.remove_writer(sock)

    def _on_readable(self) -> None:
        client = self.client
        inbox = self.inbox
        before = len(inbox)
        for _ in range(_READ_BURST):
            n = len(inbox)
            if client.loop_read() != paho.MQTT_ERR_SUCCESS or len(inbox) == n:
                break      # nothing more to read now, a non-PUBLISH packet, or the connection closed
        sock = self.sock
        if isinstance(sock, ssl.SSLSocket) and sock.pending():
            self.loop.call_soon(self._on_readable)   # decrypted bytes the selector cannot see
        if len(inbox) != before:
            self.wake()

    def _on_writable(self) -> None:
        self.client.loop_write()

    # -- paho callbacks (protocol) -------------------------------------------------------------------
    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:
        if not self.connected.done():
            self.connected.set_result(_code(reason_code))

    def _on_disconnect(self, client, userdata, flags, reason_code, properties) -> None:
        self._in_loop(self.mark_lost, reason_code)

    def mark_lost(self, reason_code) -> None:
        if not self.lost.done():
            self.lost.set_result(reason_code)
        if not self.connected.done():
            self.connected.set_result(None)
        for fut in self.replies.values():
            if not fut.done():
                fut.set_exception(MqttError("connection lost"))
        self.replies.clear()
        if self.misc_task is not None:
            self.misc_task.cancel()
        self.wake()

    def _on_message(self, client, userdata, msg) -> None:
        self.inbox.append(IncomingMessage(msg.topic, msg.payload, msg.qos, msg.retain, msg.mid))

    def _reply(self, mid: int, value) -> None:
        fut = self.replies.pop(mid, None)
        if fut is None:
            self.early[mid] = value
        elif not fut.done():
            fut.set_result(value)

    def _on_subscribe(self, client, userdata, mid, reason_codes, properties) -> None:
        self._reply(mid, [_code(c) for c in reason_codes])

    def _on_publish(self, client, userdata, mid, reason_code, properties) -> None:
        self._reply(mid, _code(reason_code))

    # -- for MqttConnection --------------------------------------------------------------------------
    def wake(self) -> None:
        waiter = self.waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def expect(self, mid: int) -> asyncio.Future:
        fut = self.loop.create_future()
        if mid in self.early:
            fut.set_result(self.early.pop(mid))
        elif self.lost.done():
            fut.set_exception(MqttError("connection lost"))
        else:
            self.replies[mid] = fut
        return fut

    async def misc(self) -> None:
        """paho's keepalive: PINGREQ when due, closing the connection when no PINGRESP came."""
        while True:
            await asyncio.sleep(1.0)
            if self.client.loop_misc() != paho.MQTT_ERR_SUCCESS:
                self.mark_lost(None)
                return


class MqttConnection:
    """A connected client. Obtain with :func:`connect`."""

    def __init__(self, driver: _Driver, settings: MqttSettings):
        self._driver = driver
        self._client = driver.client
        self._settings = settings

    @property
    def client_id(self) -> str:
        return self._settings.client_id or ""

    async def _await_reply(self, rc_mid: tuple, what: str):
        rc, mid = rc_mid
        if rc != paho.MQTT_ERR_SUCCESS:
            raise MqttError(f"{what} failed: {paho.error_string(rc)}")
        fut = self._driver.expect(mid)
        lost = self._driver.lost
        try:
            await asyncio.wait({fut, lost}, return_when=asyncio.FIRST_COMPLETED)
        except asyncio.CancelledError:
            self._driver.replies.pop(mid, None)
            raise
        if not fut.done():
            self._driver.replies.pop(mid, None)
            raise MqttError(f"{what} failed: connection lost before the broker answered")
        return fut.result()

    async def subscribe(self, topics: list[str], qos: int = 1) -> None:
        """Subscribe to every topic (wildcards and ``$share/<group>/…`` allowed); raise
        :class:`MqttError` if the broker refuses one."""
        if not topics:
            return
        codes = await self._await_reply(self._client.subscribe([(t, qos) for t in topics]), "subscribe")
        for topic, code in zip(topics, codes):
            if code >= 0x80:
                raise MqttError(f"broker refused the subscription to {topic!r} (reason code {code:#x})")

    async def unsubscribe(self, topics: list[str]) -> None:
        """Unsubscribe and wait for the UNSUBACK; raise :class:`MqttError` if the connection is lost
        first. Unsubscribing from a topic we have no subscription to is answered too (MQTT 5 reason
        0x11), which makes this a round trip behind everything we sent before (see
        :meth:`.MqttSource.leave`)."""
        if not topics:
            return
        await self._await_reply(self._client.unsubscribe(list(topics)), "unsubscribe")

    @property
    def closed(self) -> bool:
        """The connection is lost or was closed."""
        return self._driver.lost.done()

    @property
    def pending(self) -> int:
        """Messages read off the socket that :meth:`groups` / :meth:`messages` has not handed over yet."""
        return len(self._driver.inbox)

    async def end_session(self, timeout: float = 5.0) -> None:
        """Disconnect *ending the broker session*.

        MQTT 5: DISCONNECT with ``SessionExpiryInterval`` 0 — the broker discards the session at
        once (its subscriptions and anything still queued in it). MQTT 3.1.1 has no such field: we
        disconnect and connect once more with ``clean_session=True`` under the same client id, which
        discards the old session; that clean session ends with its own disconnect. Raises
        :class:`MqttError` if the broker could not be told (the session then persists)."""
        driver = self._driver
        if driver.lost.done():
            raise MqttError("end_session: not connected")
        if self._settings.protocol == "5":
            props = Properties(PacketTypes.DISCONNECT)
            props.SessionExpiryInterval = 0
            rc = self._client.disconnect(properties=props)
            if rc != paho.MQTT_ERR_SUCCESS:
                raise MqttError(f"end_session: DISCONNECT not sent ({paho.error_string(rc)})")
            with contextlib.suppress(asyncio.TimeoutError):
                await _within(driver.lost, timeout)
            return
        await _disconnect(driver, timeout)
        clean = dataclasses.replace(self._settings, persistent_session=False, manual_ack=False,
                                    connect_timeout=min(self._settings.connect_timeout, timeout))
        async with connect(clean):
            pass

    async def publish(self, topic: str, payload: bytes | str, qos: int = 1, retain: bool = False) -> None:
        """Publish; for QoS 1 returns once the broker acknowledged (PUBACK). Raises
        :class:`MqttError` at once if the connection drops first."""
        info = self._client.publish(topic, payload, qos=qos, retain=retain)
        if qos == 0:
            if info.rc != paho.MQTT_ERR_SUCCESS:
                raise MqttError(f"publish failed: {paho.error_string(info.rc)}")
            return
        await self._await_reply((info.rc, info.mid), "publish")

    async def groups(self, max_size: int = 1000) -> AsyncIterator[list[IncomingMessage]]:
        """Lists of incoming messages in arrival order: each list is everything read off the socket
        and not handed over yet (at most ``max_size``). Raises :class:`MqttError` when the
        connection drops (after the messages read before that)."""
        driver = self._driver
        loop = asyncio.get_running_loop()
        while True:
            inbox = driver.inbox
            if inbox:
                if len(inbox) <= max_size:
                    driver.inbox = []
                    yield inbox
                else:
                    group = inbox[:max_size]
                    del inbox[:max_size]
                    yield group
                continue
            if driver.lost.done():
                raise MqttError(f"connection lost: {_lost_reason(driver.lost)}")
            driver.waiter = loop.create_future()
            try:
                await driver.waiter
            finally:
                driver.waiter = None

    async def messages(self) -> AsyncIterator[IncomingMessage]:
        """Incoming messages one by one, in arrival order (see :meth:`groups`)."""
        async for group in self.groups():
            for message in group:
                yield message

    def ack(self, message: IncomingMessage) -> bool:
        """Acknowledge a QoS 1 message (PUBACK) — in the order the messages came (MQTT requires it).
        False if the connection is gone: the broker then redelivers the message on the next connect.
        PUBACKs queued together are written when the socket is next writable (one loop iteration)."""
        if message.qos == 0 or not self._settings.manual_ack:
            return True
        if self._driver.lost.done():
            return False
        return self._client.ack(message.mid, message.qos) == paho.MQTT_ERR_SUCCESS

    def flush_acks(self) -> bool:
        """Write what paho has queued (PUBACKs) now instead of at the next loop iteration."""
        if self._driver.lost.done():
            return False
        return self._client.loop_write() == paho.MQTT_ERR_SUCCESS


def _lost_reason(lost: asyncio.Future) -> str:
    reason = lost.result() if lost.done() and not lost.cancelled() else None
    if reason is None:
        return "closed"
    return f"{reason} ({_code(reason):#x})" if hasattr(reason, "value") else str(reason)


def _build_client(settings: MqttSettings) -> paho.Client:
    v5 = settings.protocol == "5"
    client = paho.Client(
        paho.CallbackAPIVersion.VERSION2, client_id=settings.client_id or "",
        clean_session=None if v5 else not settings.persistent_session,
        protocol=paho.MQTTv5 if v5 else paho.MQTTv311, reconnect_on_failure=False,
        manual_ack=settings.manual_ack)
    client.enable_logger(_PAHO_LOG)
    client.connect_timeout = settings.connect_timeout
    if settings.username is not None:
        client.username_pw_set(settings.username, settings.password)
    if settings.tls is not None:
        client.tls_set_context(settings.tls)
        if settings.tls_insecure:
            client.tls_insecure_set(True)
    return client


def _connect_kwargs(settings: MqttSettings) -> dict:
    if settings.protocol != "5":
        return {}
    props = Properties(PacketTypes.CONNECT)
    if settings.persistent_session:
        props.SessionExpiryInterval = int(settings.session_expiry_s)
    if settings.receive_maximum:
        props.ReceiveMaximum = int(settings.receive_maximum)
    return {"clean_start": not settings.persistent_session, "properties": props}


async def _disconnect(driver: _Driver, timeout: float) -> None:
    """DISCONNECT (written by the loop) and wait until paho closed the socket."""
    if driver.lost.done():
        return
    driver.client.loop_write()      # PUBACKs still queued go first
    driver.client.disconnect()
    with contextlib.suppress(asyncio.TimeoutError):
        await _within(driver.lost, timeout)
    if not driver.lost.done():
        sock = driver.client.socket()
        driver.remove(sock) if sock is not None else driver.mark_lost(None)


async def _within(fut: asyncio.Future, timeout: float) -> None:
    """Wait for ``fut`` (not cancelling it); asyncio.TimeoutError after ``timeout``."""
    done, _ = await asyncio.wait({fut}, timeout=timeout)
    if not done:
        raise asyncio.TimeoutError(f"no answer within {timeout:g} s")


def _abandon(driver: _Driver, opening: asyncio.Future) -> None:
    """Give up a connection attempt: the socket is closed now, or when paho's connect returns."""
    driver.mark_lost(None)

    def close(_fut=None) -> None:
        sock = driver.client.socket()
        if sock is not None:
            driver.remove(sock)
            with contextlib.suppress(Exception):
                sock.close()

    if opening.done():
        close()
    else:
        opening.add_done_callback(close)


@contextlib.asynccontextmanager
async def connect(settings: MqttSettings) -> AsyncIterator[MqttConnection]:
    """Connect (raises :class:`MqttError`), yield the connection, disconnect on exit."""
    loop = asyncio.get_running_loop()
    client = _build_client(settings)
    driver = _Driver(client, loop)
    where = f"{settings.host}:{settings.port}"
    kwargs = _connect_kwargs(settings)
    # paho opens the socket (and does the TLS handshake) blocking: in a worker thread
    opening = loop.run_in_executor(None, lambda: client.connect(settings.host, settings.port, settings.keepalive,
                                                                **kwargs))
    try:
        # asyncio.wait, not wait_for: Python 3.11's wait_for can swallow a cancellation when the
        # awaited future completes at the same moment (the runner's stop would then wait forever)
        await _within(opening, settings.connect_timeout + 1)
        rc = opening.result()
        if rc != paho.MQTT_ERR_SUCCESS:
            raise MqttError(f"cannot connect to {where}: {paho.error_string(rc)}")
        await _within(driver.connected, settings.connect_timeout)
        code = driver.connected.result()
    except (OSError, ssl.SSLError, asyncio.TimeoutError, ValueError) as exc:
        _abandon(driver, opening)
        text = str(exc) or type(exc).__name__
        raise MqttError(f"cannot connect to {where}: {text}") from None
    except BaseException:
        _abandon(driver, opening)
        raise
    if code is None:
        raise MqttError(f"cannot connect to {where}: connection closed before CONNACK")
    if code >= 0x80 or (settings.protocol != "5" and code != 0):
        await _disconnect(driver, 1.0)
        raise MqttError(f"cannot connect to {where}: refused by the broker (reason code {code:#x})")
    driver.misc_task = loop.create_task(driver.misc(), name="mqtt-keepalive")
    conn = MqttConnection(driver, settings)
    try:
        yield conn
    finally:
        if driver.misc_task is not None:
            driver.misc_task.cancel()
        with contextlib.suppress(Exception):
            await _disconnect(driver, 5.0)


__all__ = ["MqttError", "MqttSettings", "IncomingMessage", "MqttConnection", "connect", "make_tls_context"]

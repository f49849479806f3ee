"""Stand-ins for The Things Stack, which cannot run here: its Storage Integration HTTP API and its
MQTT server's CONNECT handling. Each answers as the server's own source and docs say (the notes:
adapters/core/sources/README.md, "The Things Stack"):

* :class:`StorageStandIn` — ``GET /api/v3/as/applications/{app}/packages/storage/uplink_message``
  and ``…/devices/{device}/packages/storage/uplink_message`` (lorawan-stack
  ``api/ttn/lorawan/v3/applicationserver_integrations_storage.proto`` @
  1d2182161975e038d6634b7dd4dd15fda86b1d68): ``Authorization: Bearer <key>``; query ``limit``,
  ``after``, ``before``, ``f_port``, ``order`` ("", ``received_at``, ``-received_at``),
  ``field_mask`` and ``last`` (accepted, not applied); a chunked answer of one
  ``{"result": …}`` per record, ``\\n``-delimited (``application/json``) or ``\\n\\n``-delimited with
  ``Accept: text/event-stream`` and no ``data:`` prefix (``pkg/jsonpb/ttn.go`` TTNEventStream,
  grpc-gateway v2.22.0 ``runtime/handler.go`` ForwardResponseStream). Errors before any output:
  their HTTP status and ``{"error": {code, message, details}}``; errors after output: status 200 and
  a final ``{"error": …}`` line; a malformed query parameter: 400 and the bare status object
  (``runtime.DefaultHTTPErrorHandler``). ``after``/``before`` are exclusive here — the real server's
  choice is not documented, and the client must not depend on it. ``visible_after_s`` imitates the
  batched storage writes ("there may be a delay after an uplink is received, before it is
  available", docs ``doc/content/integrations/storage/_index.md``).
* :class:`TtsMqttStandIn` — the CONNECT path of lorawan-stack's MQTT server (mystique
  80ab21781b6d29cee3f05905cb2842e4bef3834e ``pkg/packet/connect.go``, ``pkg/session/connect.go``):
  protocol levels 3 and 4 only; an MQTT 5 CONNECT with username and password fails to parse and the
  connection is closed without a CONNACK, one without credentials gets CONNACK 0x01; wrong
  credentials CONNACK 0x05. SUBACK grants the QoS asked for; every PUBLISH it sends is QoS 0
  (``pkg/session/publishing.go``: the delivered QoS is min(subscription, publication) and the
  Application Server publishes uplinks at QoS 0). No session survives a connection.
"""
from __future__ import annotations

import asyncio
import struct
from dataclasses import dataclass, field
from datetime import datetime, timezone

import orjson
from aiohttp import web

from stadtlink.adapters.core.testing import free_port
from stadtlink.adapters.core.timeutil import TimeFormatError, parse_time

UTC = timezone.utc


def _status(code: int, message: str, name: str) -> dict:
    return {"code": code, "message": f"error:pkg/standin:{name} ({message})",
            "details": [{"@type": "type.googleapis.com/ttn.lorawan.v3.ErrorDetails", "namespace": "pkg/standin",
                         "name": name, "message_format": message, "code": code}]}


@dataclass
class StorageStandIn:
    api_key: str
    port: int = field(default_factory=free_port)
    #: application id → stored ApplicationUp documents
    stored: dict[str, list[dict]] = field(default_factory=dict)
    #: answer the next N requests with 503 Unavailable (before any output)
    fail_next: int = 0
    #: the next N answers stop after this many results with an error line (status stays 200)
    fail_midstream: int = 0
    fail_midstream_after: int = 3
    #: records become visible this long after they were stored (batched writes)
    visible_after_s: float = 0.0
    #: the next N answers send their first result and then stall this long (a hung server)
    stall_next: int = 0
    stall_s: float = 0.0
    requests: list[dict] = field(default_factory=list)
    #: serve HTTPS with this server context
    ssl_context: object = None
    _stored_at: dict[int, float] = field(default_factory=dict)
    _times: dict[int, datetime] = field(default_factory=dict)
    _runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        return f"{'https' if self.ssl_context is not None else 'http'}://127.0.0.1:{self.port}"

    def store(self, application_id: str, doc: dict) -> None:
        self.stored.setdefault(application_id, []).append(doc)
        self._stored_at[id(doc)] = asyncio.get_running_loop().time()
        self._times[id(doc)] = parse_time(doc["received_at"])

    async def start(self) -> "StorageStandIn":
        app = web.Application()
        app.router.add_get("/api/v3/as/applications/{app}/packages/storage/{type}", self._get)
        app.router.add_get("/api/v3/as/applications/{app}/devices/{device}/packages/storage/{type}", self._get)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port, reuse_address=True,
                          ssl_context=self.ssl_context).start()
        return self

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def _get(self, request: web.Request) -> web.StreamResponse:
        event_stream = "text/event-stream" in request.headers.get("Accept", "")
        ctype = "text/event-stream" if event_stream else "application/json"
        delim = b"\n\n" if event_stream else b"\n"
        q = request.query
        self.requests.append(dict(q))

        def fail(status: int, body: dict) -> web.Response:
            return web.Response(status=status, body=orjson.dumps(body) + delim, content_type=ctype)

        # gateway-level errors (query parsing): bare status object, 400
        try:
            limit = int(q["limit"]) if "limit" in q else None
            after = parse_time(q["after"], naive_is=None) if "after" in q else None
            before = parse_time(q["before"], naive_is=None) if "before" in q else None
            f_port = int(q["f_port"]) if "f_port" in q else None
        except (ValueError, TimeFormatError) as exc:
            return fail(400, _status(3, f"invalid query parameter: {exc}", "invalid_query"))
        order = q.get("order", "")
        auth = request.headers.get("Authorization", "")
        if auth != f"Bearer {self.api_key}":
            resp = fail(401 if not auth else 403,
                        {"error": _status(16 if not auth else 7, "no rights for application", "no_rights")})
            if not auth:
                resp.headers["WWW-Authenticate"] = "Bearer"
            return resp
        if order not in ("", "received_at", "-received_at"):
            return fail(400, {"error": _status(3, "invalid field `order`", "field_invalid")})
        if request.match_info["type"] not in ("", "uplink_message", "uplink_normalized", "join_accept"):
            return fail(400, {"error": _status(3, "invalid field `type`", "field_invalid")})
        if after is not None and "last" in q:
            return fail(400, {"error": _status(3, "`last` cannot be used with `after`", "field_invalid")})
        if self.fail_next > 0:
            self.fail_next -= 1
            return fail(503, {"error": _status(14, "storage unavailable", "unavailable")})
        now = asyncio.get_running_loop().time()
        app = request.match_info["app"]
        device = request.match_info.get("device")
        rows = []
        for doc in self.stored.get(app, []):
            if now - self._stored_at.get(id(doc), now) < self.visible_after_s:
                continue
            at = self._times[id(doc)]
            if after is not None and at <= after:
                continue
            if before is not None and at >= before:
                continue
            if device is not None and doc["end_device_ids"]["device_id"] != device:
                continue
            if f_port is not None and doc.get("uplink_message", {}).get("f_port") != f_port:
                continue
            rows.append((at, doc))
        rows.sort(key=lambda r: r[0], reverse=(order == "-received_at"))
        if limit:
            rows = rows[:limit]
        midstream = self.fail_midstream > 0
        if midstream:
            self.fail_midstream -= 1
        resp = web.StreamResponse(status=200, headers={"Content-Type": ctype})
        resp.enable_chunked_encoding()
        await resp.prepare(request)
        stall = self.stall_next > 0
        if stall:
            self.stall_next -= 1
        try:
            for i, (_, doc) in enumerate(rows):
                if stall and i == 1:
                    await asyncio.sleep(self.stall_s)
                if midstream and i == self.fail_midstream_after:
                    await resp.write(orjson.dumps({"error": _status(14, "storage read failed", "unavailable")})
                                     + delim)
                    break
                await resp.write(orjson.dumps({"result": doc}) + delim)
            await resp.write_eof()
        except ConnectionResetError:
            pass    # the client stopped reading (its limit, its timeout): as a real server, carry on
        return resp


# -- MQTT ---------------------------------------------------------------------------------------------


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte = n % 128
        n //= 128
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _string(data: bytes, pos: int) -> tuple[bytes, int]:
    (n,) = struct.unpack_from("!H", data, pos)
    if pos + 2 + n > len(data):
        raise ValueError("unexpected EOF")
    return data[pos + 2: pos + 2 + n], pos + 2 + n


def _matches(filt: str, topic: str) -> bool:
    f, t = filt.split("/"), topic.split("/")
    for i, part in enumerate(f):
        if part == "#":
            return True
        if i >= len(t) or (part != "+" and part != t[i]):
            return False
    return len(f) == len(t)


class TtsMqttStandIn:
    """The CONNECT/SUBSCRIBE/PUBLISH behaviour of TTS's MQTT server (module docstring)."""

    def __init__(self, username: str, password: str):
        self.username = username
        self.password = password
        self.port = free_port()
        self.server: asyncio.base_events.Server | None = None
        self.connects: list[dict] = []     # what each CONNECT carried and how it was answered
        self._clients: list[tuple[asyncio.StreamWriter, list[str]]] = []

    async def start(self) -> "TtsMqttStandIn":
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", self.port)
        return self

    async def stop(self) -> None:
        for writer, _ in self._clients:
            writer.close()
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()

    @property
    def subscribed(self) -> int:
        return sum(1 for _, subs in self._clients if subs)

    async def publish(self, topic: str, payload: bytes) -> int:
        """Send a QoS 0 PUBLISH to every matching subscriber; how many got it."""
        t = topic.encode()
        packet = bytes([0x30]) + _varint(2 + len(t) + len(payload)) + struct.pack("!H", len(t)) + t + payload
        n = 0
        for writer, subs in list(self._clients):
            if any(_matches(s, topic) for s in subs):
                writer.write(packet)
                await writer.drain()
                n += 1
        return n

    async def _read_packet(self, reader: asyncio.StreamReader) -> tuple[int, bytes]:
        header = (await reader.readexactly(1))[0]
        length = shift = 0
        while True:
            byte = (await reader.readexactly(1))[0]
            length |= (byte & 0x7F) << shift
            if not byte & 0x80:
                break
            shift += 7
        return header, await reader.readexactly(length)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        subs: list[str] = []
        entry = (writer, subs)
        try:
            header, body = await self._read_packet(reader)
            if header >> 4 != 1:
                return
            name, pos = _string(body, 0)
            level, flags = body[pos], body[pos + 1]
            info = {"protocol_name": name.decode(), "level": level, "username": bool(flags & 0x80),
                    "password": bool(flags & 0x40)}
            self.connects.append(info)
            if level not in (3, 4):
                # mystique parses the 3.1.1 layout: an MQTT 5 CONNECT's properties shift every field;
                # with username and password the shifted lengths overrun the packet ("unexpected
                # EOF") and the connection is closed without an answer. Without them it parses far
                # enough for Validate() → CONNACK 0x01 (unacceptable protocol version).
                if flags & 0xC0:
                    info["answer"] = "closed"
                    return
                info["answer"] = 0x01
                writer.write(b"\x20\x02\x00\x01")
                await writer.drain()
                return
            pos += 4   # level, flags, keep-alive
            _client_id, pos = _string(body, pos)
            if flags & 0x04:   # will topic and message
                _, pos = _string(body, pos)
                _, pos = _string(body, pos)
            user = pw = None
            if flags & 0x80:
                user, pos = _string(body, pos)
            if flags & 0x40:
                pw, pos = _string(body, pos)
            if user != self.username.encode() or pw != self.password.encode():
                info["answer"] = 0x05
                writer.write(b"\x20\x02\x00\x05")   # not authorized
                await writer.drain()
                return
            info["answer"] = 0x00
            writer.write(b"\x20\x02\x00\x00")     # session present: never
            await writer.drain()
            self._clients.append(entry)
            while True:
                header, body = await self._read_packet(reader)
                kind = header >> 4
                if kind == 8:        # SUBSCRIBE
                    (pid,) = struct.unpack_from("!H", body, 0)
                    pos, granted = 2, bytearray()
                    while pos < len(body):
                        topic, pos = _string(body, pos)
                        granted.append(body[pos] & 0x03)
                        pos += 1
                        subs.append(topic.decode())
                    writer.write(bytes([0x90]) + _varint(2 + len(granted)) + struct.pack("!H", pid) + granted)
                elif kind == 10:     # UNSUBSCRIBE
                    (pid,) = struct.unpack_from("!H", body, 0)
                    writer.write(b"\xb0\x02" + struct.pack("!H", pid))
                elif kind == 12:     # PINGREQ
                    writer.write(b"\xd0\x00")
                elif kind == 14:     # DISCONNECT
                    return
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError, ValueError, IndexError, struct.error):
            return
        finally:
            if entry in self._clients:
                self._clients.remove(entry)
            writer.close()


def stored_uplink(app: str, device: str, f_cnt: int, when: datetime, payload: bytes) -> tuple[str, dict]:
    """A TTS ApplicationUp as MQTT publishes and the Storage Integration returns it (same document)."""
    from stadtlink.adapters.core.lorawan import tts_uplink

    stamp = when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f") + "123Z"   # TTS: nanoseconds
    topic, doc = tts_uplink(device, payload, f_port=1, f_cnt=f_cnt, received_at=stamp, application_id=app,
                            dev_eui=f"70B3D57ED00{abs(hash(device)) % 16**5:05X}")
    doc["correlation_ids"] = [f"as:up:{f_cnt:026d}"]
    return topic, doc


__all__ = ["StorageStandIn", "TtsMqttStandIn", "stored_uplink"]


def _toy_adapter():
    """A time-series adapter (every uplink is one entity instance at the broker): 2 bytes =
    temperature × 100, one WeatherObserved per device."""
    from stadtlink.adapters.core import (AdapterSpec, LoRaWANProfile, datetime_prop, entity_id, geo_point,
                                         new_entity, prop)

    def decode(payload: bytes, f_port):
        return {"temperature": int.from_bytes(payload[:2], "big", signed=True) / 100}

    def mapper(reading, ctx):
        rec = ctx.require_device(reading)
        return [new_entity(entity_id("WeatherObserved", ctx.namespace, rec.id), "WeatherObserved",
                           temperature=prop(reading.values["temperature"], unit="CEL", observed_at=reading.observed_at),
                           dateObserved=datetime_prop(reading.observed_at),
                           location=geo_point(rec.lon, rec.lat))]

    return AdapterSpec(name="tts-toy", description="TTS backfill test adapter",
                       profiles={"toy-lora": LoRaWANProfile("toy-lora", "int16 temperature ×100", decode)},
                       mapper=mapper, semantics="time-series", entity_types=("WeatherObserved",))


TOY_TS_ADAPTER = _toy_adapter()
__all__ += ["TOY_TS_ADAPTER"]

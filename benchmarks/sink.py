"""A minimal counting NGSI-LD sink: answers batch upserts with 201/204 and counts what arrived.

Not a broker: it keeps no entities, only counters and (optionally) which ``observedAt`` of each
entity's ``status`` it received, so that benchmarks can measure the adapter's own cost and fault
scripts can count lost and duplicated readings. It speaks just enough HTTP/1.1 for aiohttp's
client (keep-alive, ``Content-Length`` bodies), on raw asyncio streams, so that it costs little CPU
and so that faults can be injected at the TCP level:

``ok``        answer at once: 201 with the ids seen for the first time, else 204
``error500``  answer 500 (a ProblemDetails body) to every request, the health probe included
``delay``     answer after ``delay_s`` seconds
``loaded``    answer like a loaded Orion-LD: after 5 ms per request plus 20 µs per entity
              (``--loaded-base-ms``, ``--loaded-per-entity-us``); requests on different
              connections are answered concurrently, as Orion-LD's threads would
``refuse``    the listening socket is closed and open connections are aborted: connection refused
``blackhole`` connections are accepted and read but never answered (the client runs into its timeout)

The data port serves ``POST /ngsi-ld/v1/entityOperations/upsert`` and ``GET /ngsi-ld/v1/types``
(the runtime's health probe). A separate control port (always up) serves::

    GET  /stats            counters, first/last request time, latency percentiles (ms)
    GET  /written          {entity id: [status observedAt, …]} (with --record)
    GET  /last             the last OffStreetParking entity written per id (site aggregates)
    POST /mode             {"mode": "refuse"|…, "delay_s": 3}
    POST /reset            clear counters, records and latencies

Run: ``python benchmarks/sink.py --port 1026 --control-port 1027 [--record]`` (prints one JSON line
``{"port": …, "control_port": …}`` when listening), or in-process with :class:`CountingSink`.
"""
from __future__ import annotations

import argparse
import asyncio
import signal
import time
from collections import defaultdict
from datetime import datetime

import orjson

MODES = ("ok", "error500", "delay", "refuse", "blackhole", "loaded")
UPSERT_PATH = "/ngsi-ld/v1/entityOperations/upsert"
_PROBLEM_500 = orjson.dumps({"type": "https://uri.etsi.org/ngsi-ld/errors/InternalError",
                             "title": "injected fault", "status": 500})
_REASONS = {200: "OK", 201: "Created", 204: "No Content", 400: "Bad Request", 404: "Not Found",
            405: "Method Not Allowed", 500: "Internal Server Error"}


def percentile(sorted_values: list[float], q: float) -> float | None:
    """The q-quantile (0..1) of an already sorted list (nearest rank)."""
    if not sorted_values:
        return None
    index = min(len(sorted_values) - 1, max(0, int(round(q * len(sorted_values) + 0.5)) - 1))
    return sorted_values[index]


def _observed_ts(text: str) -> float | None:
    try:
        return datetime.fromisoformat(text).timestamp()
    except (TypeError, ValueError):
        return None


class CountingSink:
    """The sink; ``await start()`` binds both ports (0 = any free port), ``await stop()`` closes them."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0, control_port: int = 0, *, record: bool = False,
                 latency_type: str | None = "ParkingSpot"):
        self.host = host
        self.port = port
        self.control_port = control_port
        self.record = record
        self.latency_type = latency_type
        self.keep_last_types = frozenset({"OffStreetParking"})
        self.mode = "ok"
        self.delay_s = 3.0
        self.loaded_base_s = 0.005
        self.loaded_per_entity_s = 0.000020
        self._last_entities = 0
        self._data_server: asyncio.base_events.Server | None = None
        self._control_server: asyncio.base_events.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._known: set[str] = set()
        self.reset()

    # -- state ---------------------------------------------------------------------------------------
    def reset(self) -> None:
        self.requests = 0             # upsert requests answered 201/204
        self.requests_failed = 0      # upsert requests answered 500
        self.entities = 0             # entities in answered upserts
        self.body_bytes = 0
        self.connections = 0
        self.by_type: dict[str, int] = defaultdict(int)
        self.first_request: float | None = None
        self.last_request: float | None = None
        self.latencies: list[float] = []   # seconds, arrival − status.observedAt of `latency_type` entities
        self.written: dict[str, list[str]] = defaultdict(list)
        self.last: dict[str, dict] = {}
        self._known = set()

    def stats(self) -> dict:
        lat = sorted(self.latencies)
        return {
            "mode": self.mode, "requests": self.requests, "requests_failed": self.requests_failed,
            "entities": self.entities, "body_bytes": self.body_bytes, "connections": self.connections,
            "by_type": dict(self.by_type), "first_request": self.first_request, "last_request": self.last_request,
            "latency_n": len(lat),
            "latency_ms": {k: (round(v * 1000, 2) if v is not None else None) for k, v in
                           (("p50", percentile(lat, 0.5)), ("p90", percentile(lat, 0.9)),
                            ("p99", percentile(lat, 0.99)), ("max", lat[-1] if lat else None))},
        }

    # -- lifecycle -------------------------------------------------------------------------------------
    async def start(self) -> "CountingSink":
        self._control_server = await asyncio.start_server(self._serve_control, self.host, self.control_port)
        self.control_port = self._control_server.sockets[0].getsockname()[1]
        await self._listen()
        return self

    async def _listen(self) -> None:
        if self._data_server is None:
            self._data_server = await asyncio.start_server(self._serve_data, self.host, self.port,
                                                           reuse_address=True)
            self.port = self._data_server.sockets[0].getsockname()[1]

    async def _unlisten(self) -> None:
        server, self._data_server = self._data_server, None
        if server is not None:
            server.close()
        for w in list(self._writers):
            w.transport.abort()
        self._writers.clear()

    async def set_mode(self, mode: str, delay_s: float | None = None) -> None:
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}")
        if delay_s is not None:
            self.delay_s = float(delay_s)
        self.mode = mode
        if mode == "refuse":
            await self._unlisten()
        else:   # blackhole: open connections stay open and go silent too
            await self._listen()

    async def stop(self) -> None:
        await self._unlisten()
        if self._control_server is not None:
            self._control_server.close()
            self._control_server = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def control_url(self) -> str:
        return f"http://{self.host}:{self.control_port}"

    # -- HTTP ---------------------------------------------------------------------------------------------
    @staticmethod
    async def _read_request(reader: asyncio.StreamReader) -> tuple[str, str, bytes] | None:
        head = await reader.readuntil(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        parts = lines[0].split(" ")
        if len(parts) < 2:
            return None
        length = 0
        for line in lines[1:]:
            if line[:15].lower() == "content-length:":
                length = int(line[15:].strip())
        body = await reader.readexactly(length) if length else b""
        return parts[0], parts[1], body

    @staticmethod
    def _response(status: int, body: bytes = b"", content_type: str = "application/json") -> bytes:
        head = f"HTTP/1.1 {status} {_REASONS.get(status, 'Status')}\r\nContent-Length: {len(body)}\r\n"
        if body:
            head += f"Content-Type: {content_type}\r\n"
        return head.encode() + b"\r\n" + body

    async def _serve_data(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.mode == "refuse":
            writer.transport.abort()
            return
        self.connections += 1
        self._writers.add(writer)
        try:
            while True:
                try:
                    req = await self._read_request(reader)
                except (asyncio.IncompleteReadError, ConnectionError, asyncio.LimitOverrunError):
                    return
                if req is None:
                    return
                if self.mode == "blackhole":
                    continue   # read it, never answer
                if self.mode == "delay":
                    await asyncio.sleep(self.delay_s)
                    if self.mode != "delay" and self.mode != "ok":
                        continue   # switched to refuse/blackhole meanwhile: no answer
                response = self._handle(*req)
                if self.mode == "loaded":
                    await asyncio.sleep(self.loaded_base_s + self.loaded_per_entity_s * self._last_entities)
                writer.write(response)
                await writer.drain()
        except (ConnectionError, OSError):
            return
        finally:
            self._writers.discard(writer)
            writer.transport.abort()

    def _handle(self, method: str, path: str, body: bytes) -> bytes:
        if self.mode == "error500":
            if path.startswith(UPSERT_PATH):
                self.requests_failed += 1
            return self._response(500, _PROBLEM_500, "application/json")
        if method == "GET" and path.startswith("/ngsi-ld/v1/types"):
            return self._response(200, b"[]")
        if method != "POST" or not path.startswith(UPSERT_PATH):
            return self._response(404, b'{"title":"not found"}')
        try:
            entities = orjson.loads(body)
        except orjson.JSONDecodeError:
            return self._response(400, b'{"title":"bad json"}')
        now = time.time()
        if self.first_request is None:
            self.first_request = now
        self.last_request = now
        self.requests += 1
        self.body_bytes += len(body)
        self._last_entities = len(entities) if type(entities) is list else 1
        created = []
        known = self._known
        lat_type = self.latency_type
        for ent in entities:
            eid = ent.get("id")
            etype = ent.get("type")
            self.by_type[etype] += 1
            if eid not in known:
                known.add(eid)
                created.append(eid)
            if etype in self.keep_last_types:
                self.last[eid] = ent
            status = ent.get("status")
            obs = status.get("observedAt") if type(status) is dict else None
            if obs is None:
                continue
            if self.record:
                self.written[eid].append(obs)
            if etype == lat_type:
                ts = _observed_ts(obs)
                if ts is not None:
                    self.latencies.append(now - ts)
        self.entities += len(entities)
        if created:
            return self._response(201, orjson.dumps(created))
        return self._response(204)

    async def _serve_control(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                try:
                    req = await self._read_request(reader)
                except (asyncio.IncompleteReadError, ConnectionError):
                    return
                if req is None:
                    return
                method, path, body = req
                status, out = 200, b""
                if method == "GET" and path == "/stats":
                    out = orjson.dumps(self.stats())
                elif method == "GET" and path == "/written":
                    out = orjson.dumps(self.written)
                elif method == "GET" and path == "/last":
                    out = orjson.dumps(self.last)
                elif method == "POST" and path == "/mode":
                    try:
                        doc = orjson.loads(body or b"{}")
                        await self.set_mode(doc["mode"], doc.get("delay_s"))
                        out = orjson.dumps({"mode": self.mode, "delay_s": self.delay_s})
                    except (KeyError, ValueError, orjson.JSONDecodeError) as exc:
                        status, out = 400, orjson.dumps({"title": str(exc)})
                elif method == "POST" and path == "/reset":
                    self.reset()
                    out = b"{}"
                else:
                    status, out = 404, b'{"title":"not found"}'
                writer.write(self._response(status, out))
                await writer.drain()
        except (ConnectionError, OSError):
            return
        finally:
            writer.transport.abort()


async def _main(args) -> None:
    sink = await CountingSink(args.host, args.port, args.control_port, record=args.record).start()
    sink.loaded_base_s = args.loaded_base_ms / 1000.0
    sink.loaded_per_entity_s = args.loaded_per_entity_us / 1e6
    if args.mode != "ok":
        await sink.set_mode(args.mode)
    print(orjson.dumps({"port": sink.port, "control_port": sink.control_port}).decode(), flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        await asyncio.wait_for(stop.wait(), timeout=args.max_seconds)
    except asyncio.TimeoutError:
        pass
    await sink.stop()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--control-port", type=int, default=0)
    p.add_argument("--record", action="store_true", help="keep every status observedAt per entity (fault runs)")
    p.add_argument("--max-seconds", type=float, default=3600.0, help="exit after this long in any case")
    p.add_argument("--mode", choices=MODES, default="ok", help="mode at start (POST /mode changes it)")
    p.add_argument("--loaded-base-ms", type=float, default=5.0, help="mode loaded: per request")
    p.add_argument("--loaded-per-entity-us", type=float, default=20.0, help="mode loaded: per entity")
    asyncio.run(_main(p.parse_args()))


if __name__ == "__main__":
    main()

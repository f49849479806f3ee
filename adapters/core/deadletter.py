"""Dead letters: what could not be decoded, mapped, checked or written, with the reason.

A record is a JSON object::

    {"reason": "bad-length", "stage": "decode", "error": "…", "time": "2024-…Z", "device_id": "…",
     "source": "mqtt", "topic": "…", "profile": "bosch-tps110", "options": {…},
     "payload": "<text>" | "<base64>", "payload_encoding": "utf-8" | "base64" | "json",
     "problems": [{"path", "message", "stage"}] (check failures), "entity": {…} (check/broker failures),
     "problem": {ProblemDetails} (broker rejections)}

``stadtlink deadletter replay`` re-runs records with a payload through the pipeline and puts
records that only carry an entity back through the check into the outbox.

Memory store: a bounded deque (the oldest go first when full, which is counted and logged).
Redis store: the stream ``<prefix>:<adapter>:deadletter``, trimmed at ``deadletter_max_length``.
"""
from __future__ import annotations

import base64
import logging
from collections import deque
from datetime import datetime, timezone
from typing import Any

import orjson

from .reading import RawMessage
from .timeutil import iso_ms, parse_time

log = logging.getLogger("stadtlink.deadletter")


def encode_payload(payload: Any) -> tuple[Any, str]:
    if isinstance(payload, (bytes, bytearray, memoryview)):
        raw = bytes(payload)
        try:
            return raw.decode("utf-8"), "utf-8"
        except UnicodeDecodeError:
            return base64.b64encode(raw).decode("ascii"), "base64"
    if isinstance(payload, str):
        return payload, "text"
    try:
        orjson.dumps(payload)
        return payload, "json"
    except TypeError:
        return repr(payload), "repr"


def decode_payload(record: dict) -> Any:
    enc = record.get("payload_encoding")
    payload = record.get("payload")
    if enc == "base64":
        return base64.b64decode(payload)
    if enc == "utf-8":
        return payload.encode("utf-8")
    return payload


def _json_safe(value: Any) -> Any:
    try:
        return orjson.loads(orjson.dumps(value, default=str))
    except (TypeError, orjson.JSONEncodeError):
        return repr(value)


def message_record(message: RawMessage | None, *, reason: str, stage: str, error: str,
                   device_id: str | None = None, profile: str | None = None,
                   options: dict | None = None, **extra: Any) -> dict:
    rec: dict[str, Any] = {"reason": reason, "stage": stage, "error": error,
                           "time": iso_ms(datetime.now(timezone.utc)), "device_id": device_id}
    if message is not None:
        payload, enc = encode_payload(message.payload)
        rec.update(source=message.source, topic=message.topic, device_hint=message.device_hint,
                   received_at=iso_ms(message.received_at) if message.received_at else None,
                   payload=payload, payload_encoding=enc)
        if message.attributes:
            rec["attributes"] = _json_safe(message.attributes)
    if profile is not None:
        rec["profile"] = profile
    if options:
        rec["options"] = _json_safe(options)
    for k, v in extra.items():
        if v is not None:
            rec[k] = _json_safe(v)
    return rec


def record_message(record: dict) -> RawMessage | None:
    """The original message of a dead letter (None when it only carries an entity)."""
    if "payload" not in record:
        return None
    received = record.get("received_at")
    return RawMessage(source=record.get("source") or "replay", payload=decode_payload(record),
                      received_at=parse_time(received) if received else datetime.now(timezone.utc),
                      topic=record.get("topic"), device_hint=record.get("device_hint"),
                      attributes=dict(record.get("attributes") or {}))


class MemoryDeadLetters:
    kind = "memory"

    def __init__(self, max_length: int = 10_000):
        self.max_length = max_length
        self._items: deque[tuple[str, dict]] = deque()
        self._seq = 0
        self.evicted = 0

    async def start(self) -> None:
        return None

    async def close(self) -> None:
        return None

    async def add(self, record: dict) -> None:
        self._seq += 1
        if len(self._items) >= self.max_length:
            self._items.popleft()
            self.evicted += 1
            if self.evicted == 1 or self.evicted % 1000 == 0:
                log.error("in-memory dead-letter list full (%d): oldest evicted (%d so far); use the redis outbox",
                          self.max_length, self.evicted)
        self._items.append((str(self._seq), record))

    async def list(self, limit: int = 100) -> list[tuple[str, dict]]:
        return list(self._items)[:limit]

    async def remove(self, ids: list[str]) -> None:
        drop = set(ids)
        self._items = deque((i, r) for i, r in self._items if i not in drop)

    async def count(self) -> int:
        return len(self._items)


class RedisDeadLetters:
    kind = "redis"

    def __init__(self, client_factory, stream: str, max_length: int = 100_000):
        self._client_factory = client_factory
        self.stream = stream
        self.max_length = max_length

    async def start(self) -> None:
        return None

    async def close(self) -> None:
        return None

    async def add(self, record: dict) -> None:
        import redis.exceptions as rex

        data = orjson.dumps(record, default=str)
        try:
            await self._client_factory().xadd(self.stream, {"r": data}, maxlen=self.max_length, approximate=True)
        except (rex.ConnectionError, rex.TimeoutError, OSError) as exc:
            # A dead letter must not stop the pipeline; it is still counted and logged.
            log.error("dead letter not stored (redis unreachable: %s): %s", exc, data[:500].decode(errors="replace"))

    async def list(self, limit: int = 100) -> list[tuple[str, dict]]:
        entries = await self._client_factory().xrange(self.stream, "-", "+", count=limit)
        out = []
        for entry_id, fields in entries:
            try:
                out.append((entry_id.decode(), orjson.loads(fields[b"r"])))
            except (KeyError, orjson.JSONDecodeError):
                continue
        return out

    async def remove(self, ids: list[str]) -> None:
        if ids:
            await self._client_factory().xdel(self.stream, *ids)

    async def count(self) -> int:
        return int(await self._client_factory().xlen(self.stream))

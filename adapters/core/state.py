"""Where mapper state (:class:`~adapters.core.adapter.StateStore`) is persisted between restarts."""
from __future__ import annotations

import logging
from typing import Any

import orjson

log = logging.getLogger("stadtlink.state")


class MemoryStateBackend:
    """Mapper state kept in memory only (memory outbox: a restart starts from scratch)."""

    kind = "memory"

    async def load(self) -> dict[str, Any]:
        return {}

    async def save(self, changed: dict[str, Any], deleted: set[str]) -> None:
        return None


class RedisStateBackend:
    """Mapper state in the hash ``<prefix>:<adapter>:state`` (one orjson value per key)."""

    kind = "redis"

    def __init__(self, client_factory, key: str):
        self._client_factory = client_factory
        self.key = key

    async def load(self) -> dict[str, Any]:
        raw = await self._client_factory().hgetall(self.key)
        out = {}
        for k, v in raw.items():
            try:
                out[k.decode()] = orjson.loads(v)
            except orjson.JSONDecodeError:
                log.error("state key %s is not JSON; ignored", k)
        return out

    async def save(self, changed: dict[str, Any], deleted: set[str]) -> None:
        pipe = self._client_factory().pipeline(transaction=True)
        if changed:
            pipe.hset(self.key, mapping={k: orjson.dumps(v, default=str) for k, v in changed.items()})
        if deleted:
            pipe.hdel(self.key, *deleted)
        await pipe.execute()

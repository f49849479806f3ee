"""Where mapper state (:class:`~stadtlink.adapters.core.adapter.StateStore`) is persisted between restarts."""
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

    async def save(self, changed: dict[str, Any], deleted: set[str],
                   observed: dict[str, str] | None = None) -> None:
        return None

    async def load_observed(self) -> dict[str, str]:
        return {}

    async def forget_observed(self, entity_ids: list[str]) -> None:
        return None


class RedisStateBackend:
    """Mapper state in the hash ``<prefix>:<adapter>:state`` (one orjson value per key), and the
    newest ``observedAt`` written per entity in ``<prefix>:<adapter>:observed`` (so that an older
    reading cannot overwrite a newer one after a restart either)."""

    kind = "redis"

    def __init__(self, client_factory, key: str, observed_key: str | None = None):
        self._client_factory = client_factory
        self.key = key
        self.observed_key = observed_key or (key.rsplit(":", 1)[0] + ":observed")

    async def load_observed(self) -> dict[str, str]:
        raw = await self._client_factory().hgetall(self.observed_key)
        return {k.decode(): v.decode() for k, v in raw.items()}

    async def forget_observed(self, entity_ids: list[str]) -> None:
        """Drop the persisted newest ``observedAt`` of these entities (time admission's repair)."""
        if entity_ids:
            await self._client_factory().hdel(self.observed_key, *entity_ids)

    async def load(self) -> dict[str, Any]:
        raw = await self._client_factory().hgetall(self.key)
        out = {}
        for k, v in raw.items():
            try:
                out[k.decode()] = orjson.loads(v)
            except orjson.JSONDecodeError:
                log.error("state key %s is not JSON; ignored", k)
        return out

    def add_to(self, pipe, changed: dict[str, Any], deleted: set[str], observed: dict[str, str] | None) -> None:
        """Queue the writes on a Redis pipeline (the outbox's, so both land in one MULTI/EXEC)."""
        if changed:
            pipe.hset(self.key, mapping={k: orjson.dumps(v, default=str) for k, v in changed.items()})
        if deleted:
            pipe.hdel(self.key, *deleted)
        if observed:
            pipe.hset(self.observed_key, mapping=observed)

    async def save(self, changed: dict[str, Any], deleted: set[str],
                   observed: dict[str, str] | None = None) -> None:
        if not (changed or deleted or observed):
            return
        pipe = self._client_factory().pipeline(transaction=True)
        self.add_to(pipe, changed, deleted, observed)
        await pipe.execute()

"""The interface the adapter runtime's batcher writes through.

Kept small on purpose so a test double, an NGSI-v2 sink or a SensorThings writer can stand in.
:class:`~stadtlink.broker_client.client.NGSILDClient` implements it (``write`` = ``upsert`` with its
configured mode).
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

from .results import BatchResult


@runtime_checkable
class Backend(Protocol):
    async def write(self, entities: list[dict[str, Any]]) -> BatchResult:
        """Write entities; per-entity outcomes in the result. Raises when the backend is unreachable
        (the caller keeps the entities and tries again later)."""
        ...

    async def health(self) -> bool:
        """True when the backend answers."""
        ...

    async def close(self) -> None: ...

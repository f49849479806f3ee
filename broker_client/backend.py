"""The interface the adapter runtime writes through: one :class:`Backend` per sink.

Everything the runtime calls on a sink is declared here: ``open`` once before anything else,
``probe`` once at start-up (:func:`~stadtlink.broker_client.backends.check_backend` turns its
answer into a configuration error naming the key at fault), ``write`` for every batch, ``health``
while idle or after a failure, ``close`` at shutdown. ``kind`` and ``base_url`` name the sink in
messages. :class:`~stadtlink.broker_client.backends.NGSILDBackend` (Orion-LD, Scorpio, Stellio),
:class:`~stadtlink.broker_client.backends.ngsi_v2.NGSIv2Backend` and
:class:`~stadtlink.broker_client.sensorthings.SensorThingsBackend` implement it; a test double may
start from :class:`BackendBase`.
"""

from __future__ import annotations

from typing import Any, Protocol, Self, runtime_checkable

from multidict import CIMultiDict, CIMultiDictProxy

from .client import Response
from .results import BatchResult


@runtime_checkable
class Backend(Protocol):
    kind: str
    base_url: str

    async def open(self) -> Self:
        """Open connection pools (and read what the backend needs once); before any other call."""
        ...

    async def probe(self) -> Response:
        """One request at start-up that tells a wrong URL, tenant or credential from a server that is
        down; raises what the HTTP layer raises (``BrokerUnavailable``, ``AuthenticationError``)."""
        ...

    async def write(self, entities: list[dict[str, Any]]) -> BatchResult:
        """Write entities; per-entity outcomes in the result. Raises when the backend is unreachable
        (the caller keeps the entities and tries again later)."""
        ...

    async def health(self) -> bool:
        """True when the backend answers."""
        ...

    async def close(self) -> None: ...


class BackendBase:
    """Defaults for a backend that is no broker over HTTP (test doubles, counting sinks): nothing to
    open or close, healthy, and a probe answering 200 so that the start-up check passes."""

    kind = "test"
    base_url = "memory://"

    async def open(self) -> Self:
        return self

    async def probe(self) -> Response:
        return Response(200, CIMultiDictProxy(CIMultiDict()), b"")

    async def health(self) -> bool:
        return True

    async def write(self, entities: list[dict[str, Any]]) -> BatchResult:  # pragma: no cover - overridden
        raise NotImplementedError

    async def close(self) -> None:
        return None

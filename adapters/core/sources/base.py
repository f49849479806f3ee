"""The interface every source implements (MQTT, HTTP polling, Modbus polling, webhook), and
:class:`SourceBase` with the defaults for what a source need not do itself.

The runner calls exactly what :class:`Source` declares: ``name`` (logs, metrics, readiness),
``run(emit)`` in a supervised task (restarted after a crash, cancelled at shutdown), ``ready``
(``/readyz``), ``stats()`` (``/metrics``) and ``leave(timeout)`` once at shutdown, before the
task is cancelled. A source keeping durable state of its own also implements :class:`UsesStore`.
"""
from __future__ import annotations

from typing import Any, Awaitable, Callable, Protocol, runtime_checkable

from ..reading import RawMessage

#: The pipeline's entry. It returns once the message's entities are safely in the outbox (or the
#: message was dead-lettered); only then may a source acknowledge its input (MQTT QoS 1 ack, poll
#: cursor). It raises only if the outbox itself refused (full): the source must then not ack.
Emit = Callable[[RawMessage], Awaitable[None]]


@runtime_checkable
class Source(Protocol):
    name: str

    async def run(self, emit: Emit) -> None:
        """Run until cancelled: connect, reconnect with backoff, hand every input to ``emit``."""

    @property
    def ready(self) -> bool:
        """False while disconnected (MQTT) or while too few polled devices answer."""

    def stats(self) -> dict[str, float]:
        """Counters for /metrics (reconnects, polls, poll failures …)."""

    async def leave(self, timeout: float) -> bool:
        """At shutdown, before ``run`` is cancelled: give back what others should take over (an MQTT
        shared-subscription member unsubscribes and ends its session), within ``timeout`` seconds.
        True when done (or nothing to do)."""


@runtime_checkable
class UsesStore(Protocol):
    """A source that keeps durable state of its own (the TTS Storage Integration backfill of the
    MQTT and webhook sources): the runner hands it a store next to the outbox (Redis or memory)
    before ``run``."""

    def use_store(self, store: Any) -> None: ...


class SourceBase:
    """Defaults of the :class:`Source` interface: always ready, no counters, nothing to leave."""

    name: str = "source"

    @property
    def ready(self) -> bool:
        return True

    def stats(self) -> dict[str, float]:
        return {}

    async def leave(self, timeout: float) -> bool:
        return True

    async def run(self, emit: Emit) -> None:  # pragma: no cover - every source implements it
        raise NotImplementedError


__all__ = ["Emit", "Source", "SourceBase", "UsesStore"]

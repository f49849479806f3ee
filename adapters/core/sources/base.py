"""The interface every source implements (MQTT, HTTP polling, Modbus polling, webhook)."""
from __future__ import annotations

from typing import Awaitable, Callable, Protocol, runtime_checkable

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

"""What the MQTT source tests share: a quickly reconnecting source config and a collecting emit."""
from __future__ import annotations

from stadtlink.adapters.core.reading import RawMessage
from stadtlink.adapters.core.sources import MqttSourceConfig
from stadtlink.adapters.core.testing import SHARED_MQTT


def quick_config(topic: str, host: str = SHARED_MQTT[0], port: int = SHARED_MQTT[1], **kw) -> MqttSourceConfig:
    """A source on ``topic`` that reconnects within half a second (tests stop and start brokers)."""
    return MqttSourceConfig(host=host, port=port, topics=[topic], reconnect_min_s=0.05, reconnect_max_s=0.5,
                            connect_timeout_s=2, **kw)


class Collector:
    """An ``emit`` that keeps every message."""

    def __init__(self):
        self.messages: list[RawMessage] = []

    async def __call__(self, message: RawMessage) -> None:
        self.messages.append(message)

    @property
    def payloads(self) -> list[bytes]:
        return [m.payload for m in self.messages]

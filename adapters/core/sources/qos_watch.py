"""Noticing deliveries below the QoS we subscribed with (ChirpStack's default ``qos=0``, The Things
Stack's QoS 0 only).

A broker delivers a message at the minimum of the publication's QoS and the subscription's (MQTT
3.1.1 [MQTT-3.8.4-6], MQTT 5.0 [MQTT-3.8.4-8]; Mosquitto ``src/subs.c`` ``subs__send`` @
``7b8aba105b77253309de24664bbae69d0cae3da0``). A QoS 0 message is not queued for a disconnected
session (Mosquitto ``src/database.c``: "Client is not connected only queue messages with QoS>0",
unless ``queue_qos0_messages true``), so what is published at QoS 0 while the adapter restarts is
lost, whatever QoS stadtlink subscribed with. ChirpStack v4 publishes its events at
``[integration.mqtt] qos=0`` unless told otherwise (``chirpstack/src/config.rs`` @
``d77207cd362d6b18d35712750c41d6a8a1efbad5``, ``impl Default for MqttIntegration``: ``qos: 0``).

:class:`QosWatch` counts every such delivery and warns once per topic filter family (the topic with
its device part replaced, so 10,000 devices give one warning, not 10,000) with the fix.
"""
from __future__ import annotations

import logging
import re

log = logging.getLogger("stadtlink.source.mqtt")

_CHIRPSTACK = re.compile(r"^application/[^/]+/device/[^/]+/event/[^/]+$")
_TTS = re.compile(r"^v3/[^/]+/devices/[^/]+/")
_MAX_TOPICS = 1000


def topic_family(topic: str) -> str:
    """The topic with the parts that name a device replaced by ``+`` (one warning per family)."""
    parts = topic.split("/")
    if _CHIRPSTACK.match(topic):
        parts[3] = "+"
    elif _TTS.match(topic):
        parts[3] = "+"
    return "/".join(parts)


class QosWatch:
    """``note(topic, qos)`` for every delivery of a subscription made at ``subscribed``."""

    __slots__ = ("subscribed", "source", "network", "count", "_warned")

    def __init__(self, subscribed: int, *, source: str, network: str | None = None):
        self.subscribed = subscribed
        self.source = source
        self.network = network
        #: deliveries below the subscribed QoS (``stadtlink_source_qos_downgraded``)
        self.count = 0
        self._warned: set[str] = set()

    def note(self, topic: str, qos: int) -> None:
        if qos >= self.subscribed:
            return
        self.count += 1
        family = topic_family(topic)
        if family in self._warned or len(self._warned) >= _MAX_TOPICS:
            return
        self._warned.add(family)
        log.warning("mqtt %s: messages on %s arrive at QoS %d although we subscribed with QoS %d: the publisher "
                    "sends QoS %d, and a broker queues QoS 0 messages for nobody, so what is published while "
                    "this adapter restarts or reconnects is lost. %s (counted in "
                    "stadtlink_source_qos_downgraded; warned once per topic)",
                    self.source, family, qos, self.subscribed, qos, self.fix(topic))

    def fix(self, topic: str) -> str:
        if _CHIRPSTACK.match(topic) or self.network == "chirpstack":
            return ("Fix: set [integration.mqtt] qos=1 in chirpstack.toml (ChirpStack's default is qos=0), or "
                    "queue_qos0_messages true in mosquitto.conf (non-standard, Mosquitto only, counted against "
                    "max_queued_messages)")
        if _TTS.match(topic) or self.network == "tts":
            return ("The Things Stack publishes QoS 0 only: use network: tts, whose Storage Integration backfill "
                    "fetches what was missed")
        return ("Fix: have the publisher use QoS 1, or set queue_qos0_messages true in mosquitto.conf "
                "(non-standard, Mosquitto only)")


__all__ = ["QosWatch", "topic_family"]

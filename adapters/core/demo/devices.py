"""Simulated LoRaWAN devices for the demo: every registry record of a LoRaWAN profile for which the
family registers a simulator (``AdapterSpec.demo.devices``) becomes a device that sends
vendor-encoded bytes inside TTS v3 or ChirpStack v4 uplinks (alternating, so both envelopes flow),
with values that change over time as the family's simulator decides: cars arrive and leave, the
weather follows the day, a river rises towards its alert level and falls again."""
from __future__ import annotations

import asyncio
import random
import re
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Callable, Mapping

from ..lorawan import chirpstack_uplink, tts_uplink
from ..registry import DeviceRecord

_TTS = re.compile(r"^v3/([^/+#@]+)(?:@([^/+#]+))?/devices/\+/up$")
_CS = re.compile(r"^application/([^/+#]+)/device/\+/event/up$")


def applications(topics: list[str]) -> tuple[str | None, str | None, str | None]:
    """(TTS application id, TTS tenant, ChirpStack application id) named by an adapter's topics."""
    tts = tenant = cs = None
    for t in topics:
        t = re.sub(r"^\$share/[^/]+/", "", t)
        if (m := _TTS.match(t)) and tts is None:
            tts, tenant = m.group(1), m.group(2)
        elif (m := _CS.match(t)) and cs is None:
            cs = m.group(1)
    return tts, tenant, cs


@dataclass
class SimDevice:
    record: DeviceRecord
    profile: str
    encode: Callable[[dict, random.Random, float], tuple[bytes, int]]
    interval_s: float
    network: str                     # "tts-v3" | "chirpstack-v4"
    state: dict[str, Any] = field(default_factory=dict)
    f_cnt: int = 0


class DeviceFleet:
    """The simulated devices of one adapter; :meth:`due` yields the uplinks to publish now."""

    def __init__(self, adapter: str, records: list[DeviceRecord], topics: list[str], *, seed: int = 1,
                 clock=None, encoders: Mapping[str, Callable[[DeviceRecord, "DeviceFleet"], Any]] | None = None):
        self.adapter = adapter
        self._encoders = dict(encoders or {})
        self.tts_app, self.tts_tenant, self.cs_app = applications(topics)
        self._rnd = random.Random(seed)
        self._clock = clock or (lambda: datetime.now(timezone.utc).timestamp())
        self.t0 = self._clock()
        self.devices: list[SimDevice] = []
        self._next: dict[str, float] = {}
        for i, rec in enumerate(records):
            built = self._encoder(rec)
            if built is None:
                continue
            encode, interval = built
            network = "tts-v3"
            if self.cs_app and rec.dev_eui and (i % 2 == 1 or not self.tts_app):
                network = "chirpstack-v4"
            elif not self.tts_app:
                continue
            dev = SimDevice(rec, rec.profile or "", encode, interval, network)
            self.devices.append(dev)
            self._next[rec.id] = self.t0 + self._rnd.uniform(0.2, 1.5)

    def _encoder(self, rec: DeviceRecord):
        """(encode, interval_s) from the family's simulator for this record's profile, or None."""
        make = self._encoders.get(rec.profile or "")
        return make(rec, self) if make is not None else None

    def due(self, now: float | None = None) -> list[tuple[str, dict]]:
        now = self._clock() if now is None else now
        out = []
        stamp = datetime.fromtimestamp(now, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        for dev in self.devices:
            if self._next[dev.record.id] > now:
                continue
            self._next[dev.record.id] = now + dev.interval_s * self._rnd.uniform(0.8, 1.2)
            payload, f_port = dev.encode(dev.state, self._rnd, now)
            dev.f_cnt += 1
            if dev.network == "chirpstack-v4":
                out.append(chirpstack_uplink(dev.record.dev_eui, payload, f_port=f_port, f_cnt=dev.f_cnt,
                                             time=stamp, application_id=self.cs_app))
            else:
                topic, doc = tts_uplink(dev.record.id, payload, f_port=f_port, f_cnt=dev.f_cnt, received_at=stamp,
                                        application_id=self.tts_app, dev_eui=dev.record.dev_eui)
                if self.tts_tenant != "ttn":
                    topic = topic.replace("@ttn/", f"@{self.tts_tenant}/" if self.tts_tenant else "/")
                out.append((topic, doc))
        return out


async def run_fleets(fleets: list[DeviceFleet], publish, stop: asyncio.Event, *, tick_s: float = 0.25) -> None:
    """Publish every fleet's due uplinks until ``stop`` is set."""
    while not stop.is_set():
        for fleet in fleets:
            for topic, doc in fleet.due():
                await publish(topic, doc)
        try:
            await asyncio.wait_for(stop.wait(), tick_s)
        except asyncio.TimeoutError:
            pass

"""Simulated LoRaWAN devices for the demo: every registry record of a LoRaWAN profile becomes a
device that sends vendor-encoded bytes inside TTS v3 or ChirpStack v4 uplinks (alternating, so both
envelopes flow), with values that change over time: cars arrive and leave, the weather follows the
day, a river rises towards its alert level and falls again."""
from __future__ import annotations

import asyncio
import random
import re
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Callable

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


def _bosch(state: dict, rnd: random.Random, now: float) -> tuple[bytes, int]:
    if rnd.random() < 0.35:
        state["occupied"] = not state.get("occupied", False)
    return bytes([1 if state.get("occupied") else 0]), 1


def _nwave(state: dict, rnd: random.Random, now: float) -> tuple[bytes, int]:
    if rnd.random() < 0.35:
        state["occupied"] = not state.get("occupied", False)
    return bytes([(1 if state.get("occupied") else 0) | (min(89, rnd.randint(1, 60)) << 1)]), 1


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
                 clock=None):
        self.adapter = adapter
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
        profile = rec.profile
        if profile == "bosch-tps110":
            return _bosch, 4.0
        if profile == "nwave-nps405":
            return _nwave, 4.0
        if profile in ("decentlab-dl-atm41", "barani-meteohelix"):
            from stadtlink.adapters.climate.simulator import SimulatedStation

            station = SimulatedStation(rec.id, profile=profile, lat=rec.lat or 49.49, lon=rec.lon or 8.47,
                                       seed=len(self.devices))

            def weather(state, rnd, now, station=station):
                return station.payload(datetime.fromtimestamp(now, timezone.utc)), 1
            return weather, 8.0
        if profile in ("decentlab-dl-mbx", "milesight-em500-udl", "dragino-ldds75"):
            from stadtlink.adapters.water_level.simulator import gauge_frame, river_level

            ref = float(rec.get("reference_level", 3.0))
            alert = float(rec.get("alert_level", ref * 0.6))
            danger = float(rec.get("danger_level", alert + 0.5))
            # The first gauge's river rises past its alert level; the others stay below it.
            crossing = not any(d.profile in ("decentlab-dl-mbx", "milesight-em500-udl", "dragino-ldds75")
                               for d in self.devices)
            peak = (alert + danger) / 2 if crossing else alert - 0.3
            base = max(0.2, alert - 1.0)
            # The crossing river starts near its crest, so its Alert shows within seconds of the start.
            offset = 0.4 * 240.0 if crossing else 0.0

            def gauge(state, rnd, now, profile=profile):
                level = river_level(now - self.t0 + offset, base=base, peak=peak, period_s=240.0) + rnd.uniform(-0.01, 0.01)
                return gauge_frame(profile, reference_level=ref, level=min(level, ref - 0.05))
            return gauge, 5.0
        return None

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

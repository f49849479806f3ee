"""Simulated river gauges for the demo and tests: a river that rises towards its alert level and
falls again, sensor frames in the vendors' real byte layouts (the inverse of decoders.py), and a
PEGELONLINE-like HTTP API."""
from __future__ import annotations

import math
import struct
from datetime import datetime, timedelta, timezone
from typing import Any

from aiohttp import web

from stadtlink.adapters.core.adapter import DemoSimulators


def encode_dl_mbx(distance_m: float, *, battery_v: float = 3.3, sensor_id: int = 303, samples: int = 8) -> bytes:
    return struct.pack(">BHHHHH", 2, sensor_id, 0x0003, round(distance_m * 1000), samples, round(battery_v * 1000))


def encode_em500_udl(distance_m: float, *, battery_percent: int = 95) -> bytes:
    return bytes([0x01, 0x75, battery_percent, 0x03, 0x82]) + struct.pack("<H", round(distance_m * 1000))


def encode_ldds75(distance_m: float, *, battery_v: float = 3.4, probe_c: float | None = 11.5) -> bytes:
    temp = 0x7FFF if probe_c is None else round(probe_c * 10)
    return struct.pack(">HHBhB", round(battery_v * 1000) & 0x3FFF, round(distance_m * 1000), 0, temp, 1)


ENCODERS = {"decentlab-dl-mbx": encode_dl_mbx, "milesight-em500-udl": encode_em500_udl, "dragino-ldds75": encode_ldds75}
FPORTS = {"decentlab-dl-mbx": 1, "milesight-em500-udl": 85, "dragino-ldds75": 2}


def river_level(t: float, *, base: float, peak: float, period_s: float = 600.0) -> float:
    """A flood wave: from ``base`` up to ``peak`` and back within ``period_s`` (demo time)."""
    phase = (t % period_s) / period_s
    return base + (peak - base) * (0.5 - 0.5 * math.cos(2 * math.pi * phase))


def gauge_frame(profile: str, *, reference_level: float, level: float) -> tuple[bytes, int]:
    distance = max(0.05, reference_level - level)
    return ENCODERS[profile](distance), FPORTS[profile]


CET = timezone(timedelta(hours=1))   # PEGELONLINE answers in German local time with an offset


class PegelonlineSimulator:
    """``/webservices/rest-api/v2/stations.json`` (list) and ``/stations/{uuid}.json`` with W and Q
    current measurements, timestamps in local time with an offset as the real API sends them."""

    def __init__(self, stations: list[dict[str, Any]], clock=None):
        self.stations = stations
        self._clock = clock or (lambda: datetime.now(timezone.utc).timestamp())
        self.t0 = self._clock()

    def station_doc(self, st: dict[str, Any]) -> dict[str, Any]:
        now = self._clock()
        level_m = river_level(now - self.t0, base=st["base_m"], peak=st["peak_m"], period_s=st.get("period_s", 900))
        stamp = datetime.fromtimestamp(now - now % 60, timezone.utc).astimezone(CET).isoformat()
        return {
            "uuid": st["uuid"], "number": st["number"], "shortname": st["name"].upper(), "longname": st["name"].upper(),
            "km": st.get("km", 0.0), "agency": "DEMO", "longitude": st["lon"], "latitude": st["lat"],
            "water": {"shortname": st["water"], "longname": st["water"]},
            "timeseries": [
                {"shortname": "W", "longname": "WASSERSTAND ROHDATEN", "unit": "cm", "equidistance": 15,
                 "currentMeasurement": {"timestamp": stamp, "value": round(level_m * 100),
                                        "stateMnwMhw": "high" if level_m > st["peak_m"] * 0.9 else "normal",
                                        "stateNswHsw": "normal"},
                 "gaugeZero": {"unit": "m. ü. NHN", "value": st.get("gauge_zero", 120.0), "validFrom": "2019-11-01"}},
                {"shortname": "Q", "longname": "ABFLUSS", "unit": "m³/s", "equidistance": 15,
                 "currentMeasurement": {"timestamp": stamp, "value": round(40 + 60 * level_m, 1)}},
            ],
        }

    async def stations_json(self, request: web.Request) -> web.Response:
        return web.json_response([self.station_doc(s) for s in self.stations])

    async def station_json(self, request: web.Request) -> web.Response:
        for s in self.stations:
            if request.match_info["station"] in (s["uuid"], s["number"]):
                return web.json_response(self.station_doc(s))
        return web.json_response({"status": 404, "message": "Station not found"}, status=404)

    def add_routes(self, app: web.Application, prefix: str = "/webservices/rest-api/v2") -> None:
        app.router.add_get(prefix + "/stations.json", self.stations_json)
        app.router.add_get(prefix + "/stations/{station}.json", self.station_json)


# ------------------------------------------------------------------------------------ stadtlink demo

GAUGE_PROFILES = ("decentlab-dl-mbx", "milesight-em500-udl", "dragino-ldds75")

#: the PEGELONLINE stations the demo serves where the example config polls them
DEMO_STATIONS = [
    {"uuid": "a6ee8177-107b-47dd-bcfd-30960ccc6e9c", "number": "2600010", "name": "Trier UP",
     "water": "MOSEL", "lon": 6.6297, "lat": 49.7386, "base_m": 2.1, "peak_m": 4.6, "period_s": 600,
     "gauge_zero": 124.0},
    {"uuid": "3e5a0c4c-a3b6-4b8c-8a7d-0a8f1c9e2d11", "number": "2620040", "name": "Cochem",
     "water": "MOSEL", "lon": 7.1667, "lat": 50.1436, "base_m": 1.6, "peak_m": 3.9, "period_s": 720,
     "gauge_zero": 80.5},
]
PEGELONLINE_NETLOC = "127.0.0.1:8603"


def _demo_gauge(rec, fleet) -> tuple:
    """A demo gauge: the first one's river rises past its alert level, the others stay below it."""
    profile = rec.profile
    ref = float(rec.get("reference_level", 3.0))
    alert = float(rec.get("alert_level", ref * 0.6))
    danger = float(rec.get("danger_level", alert + 0.5))
    crossing = not any(d.profile in GAUGE_PROFILES for d in fleet.devices)
    peak = (alert + danger) / 2 if crossing else alert - 0.3
    base = max(0.2, alert - 1.0)
    # The crossing river starts near its crest, so its Alert shows within seconds of the start.
    offset = 0.4 * 240.0 if crossing else 0.0

    def gauge(state, rnd, now, profile=profile):
        level = river_level(now - fleet.t0 + offset, base=base, peak=peak, period_s=240.0) + rnd.uniform(-0.01, 0.01)
        return gauge_frame(profile, reference_level=ref, level=min(level, ref - 0.05))
    return gauge, 5.0


async def start_demo_feeds(demo) -> None:
    app = web.Application()
    PegelonlineSimulator(DEMO_STATIONS).add_routes(app)
    await demo.serve_http(app, replaces=PEGELONLINE_NETLOC)


DEMO = DemoSimulators(devices={p: _demo_gauge for p in GAUGE_PROFILES}, services=start_demo_feeds)

"""The whole city on one machine: ``stadtlink demo``.

Everything runs in one process, on loopback, on the real code paths: the local NGSI-LD broker, an
embedded MQTT broker (amqtt — the machine's Mosquitto is not needed), simulated devices and feeds
in the real formats, the four adapters with their example configs exactly as ``stadtlink run``
runs them (only addresses are pointed at the simulators), and the twin view.
"""
from __future__ import annotations

import asyncio
import logging
import socket
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import yaml
from aiohttp import web

from .. import plugins
from ..registry import DeviceRegistry
from ..runner import Runner
from .devices import DeviceFleet, run_fleets
from .feeds import ParkingFeeds

log = logging.getLogger("stadtlink.demo")
FAMILIES = ("parking", "climate", "water_level", "pv")


def port_free(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
            return True
        except OSError:
            return False


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def _rewrite_url(url: str, netlocs: dict[str, str]) -> str:
    parts = urlsplit(url)
    target = netlocs.get(parts.netloc)
    return urlunsplit(parts._replace(netloc=target)) if target else url


def parse_also_to(spec: str) -> dict[str, str]:
    """``--also-to``: ``URL`` (an NGSI-LD broker, kind orion-ld) or ``KIND+URL`` (``ngsi-v2+http://orion:1026``,
    ``scorpio+http://…``, ``stellio+http://…``) → a ``brokers:`` entry named ``also``."""
    from stadtlink.broker_client.backends import KINDS

    kind, sep, url = spec.partition("+")
    if not sep or "://" in kind:
        kind, url = "orion-ld", spec
    if kind not in KINDS:
        raise ValueError(f"--also-to: unknown broker kind {kind!r}; one of {', '.join(KINDS)} (KIND+URL)")
    if not url.startswith(("http://", "https://")):
        raise ValueError(f"--also-to: {url!r} is not an http(s) URL")
    return {"name": "also", "kind": kind, "url": url}


def demo_config(raw: dict[str, Any], *, broker_url: str, mqtt_port: int, netlocs: dict[str, str],
                modbus: dict[str, tuple[str, int]], poll_s: float = 5.0,
                also_to: dict[str, str] | None = None) -> dict[str, Any]:
    """An adapter's example config pointed at the demo's broker and simulators (nothing else changes,
    except that polls come every few seconds so the map moves). ``also_to``: a second sink."""
    cfg = yaml.safe_load(yaml.safe_dump(raw))
    cfg.setdefault("broker", {})["url"] = broker_url
    if also_to is not None:
        cfg["brokers"] = [dict(cfg.pop("broker"), name="local"), dict(also_to)]
    cfg["outbox"] = {"kind": "memory"}
    cfg["http"] = {"host": "127.0.0.1", "port": 0}
    cfg["log_level"] = "WARNING"
    for src in cfg.get("sources", []):
        kind = src.get("kind")
        if kind == "mqtt":
            src.update(host="127.0.0.1", port=mqtt_port, protocol="3.1.1", tls=None)
        elif kind == "http-poll":
            src["interval_s"] = min(float(src.get("interval_s", poll_s)), poll_s)
            for t in src.get("targets", []):
                t["url"] = _rewrite_url(t["url"], netlocs)
                if "interval_s" in t:
                    t["interval_s"] = min(float(t["interval_s"]), 60.0)
        elif kind == "modbus":
            src["interval_s"] = min(float(src.get("interval_s", poll_s)), poll_s)
            for t in src.get("targets", []):
                key = f"{t.get('host', '127.0.0.1')}:{t.get('port', 502)}"
                if key in modbus:
                    t["host"], t["port"] = modbus[key]
    return cfg


class DemoCity:
    def __init__(self, *, host: str = "127.0.0.1", broker_port: int = 1026, twin_port: int = 8080,
                 families: tuple[str, ...] = FAMILIES, also_to: str | None = None):
        self.also_to = parse_also_to(also_to) if also_to else None
        self.host = host
        self.broker_port = broker_port if broker_port and port_free(host, broker_port) else free_port(host)
        self.twin_port = twin_port if twin_port and port_free(host, twin_port) else free_port(host)
        self.families = families
        self.runners: dict[str, Runner] = {}
        self.failed: dict[str, str] = {}
        self._cleanups: list = []
        self._stop_devices = asyncio.Event()
        self._tasks: list[asyncio.Task] = []
        self.broker_url = f"http://{host}:{self.broker_port}"
        self.twin = None
        self.mqtt_port = None

    # -- infrastructure -------------------------------------------------------------------------
    async def _start_broker(self) -> None:
        from stadtlink.broker_client.local_broker import serve

        runner = await serve(self.host, self.broker_port)
        self._cleanups.append(runner.cleanup)

    async def _start_mqtt(self) -> None:
        from amqtt.broker import Broker

        for name in ("amqtt", "transitions", "passlib"):
            logging.getLogger(name).setLevel(logging.ERROR)
        self.mqtt_port = free_port(self.host)
        broker = Broker({"listeners": {"default": {"type": "tcp", "bind": f"{self.host}:{self.mqtt_port}"}},
                         "sys_interval": 0, "auth": {"allow-anonymous": True, "plugins": ["auth_anonymous"]},
                         "topic-check": {"enabled": False}})
        await broker.start()
        self._cleanups.append(broker.shutdown)

    async def _serve(self, app: web.Application) -> int:
        runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5)
        await runner.setup()
        port = free_port(self.host)
        await web.TCPSite(runner, self.host, port).start()
        self._cleanups.append(runner.cleanup)
        return port

    async def _start_feeds(self) -> tuple[dict[str, str], dict[str, tuple[str, int]]]:
        """The simulated HTTP feeds and the inverter; returns the address rewrites for the configs."""
        netlocs: dict[str, str] = {}
        modbus: dict[str, tuple[str, int]] = {}
        if "parking" in self.families:
            app = web.Application()
            ParkingFeeds().add_routes(app)
            netlocs["127.0.0.1:8601"] = f"{self.host}:{await self._serve(app)}"
        if "water_level" in self.families:
            from stadtlink.adapters.water_level.simulator import PegelonlineSimulator

            app = web.Application()
            PegelonlineSimulator([
                {"uuid": "a6ee8177-107b-47dd-bcfd-30960ccc6e9c", "number": "2600010", "name": "Trier UP",
                 "water": "MOSEL", "lon": 6.6297, "lat": 49.7386, "base_m": 2.1, "peak_m": 4.6, "period_s": 600,
                 "gauge_zero": 124.0},
                {"uuid": "3e5a0c4c-a3b6-4b8c-8a7d-0a8f1c9e2d11", "number": "2620040", "name": "Cochem",
                 "water": "MOSEL", "lon": 7.1667, "lat": 50.1436, "base_m": 1.6, "peak_m": 3.9, "period_s": 720,
                 "gauge_zero": 80.5},
            ]).add_routes(app)
            netlocs["127.0.0.1:8603"] = f"{self.host}:{await self._serve(app)}"
        if "pv" in self.families:
            from stadtlink.adapters.pv.simulator import create_fronius_app, serve_sunspec_inverter, sunrise_power_fn, sunrise_values_fn

            netlocs["127.0.0.1:8604"] = (
                f"{self.host}:{await self._serve(create_fronius_app(values_fn=sunrise_power_fn(peak_w=9800.0, day_s=600.0)))}")
            inverter = await serve_sunspec_inverter(self.host, 0, values_fn=sunrise_values_fn(
                peak_w=29_700.0, day_s=600.0, start_phase=0.05, serial="DEMO-RATHAUS-01"))
            self._cleanups.append(inverter.stop)
            modbus["127.0.0.1:5020"] = (self.host, inverter.port)
        return netlocs, modbus

    # -- adapters ---------------------------------------------------------------------------------
    async def _start_adapters(self, netlocs, modbus) -> list[DeviceFleet]:
        fleets = []
        for i, name in enumerate(self.families):
            spec = plugins.get_adapter(name)
            path = Path(spec.example_config)
            raw = yaml.safe_load(path.read_text(encoding="utf-8"))
            cfg = demo_config(raw, broker_url=self.broker_url, mqtt_port=self.mqtt_port, netlocs=netlocs, modbus=modbus,
                              also_to=self.also_to)
            try:
                runner = Runner.from_config(cfg, adapter=spec, base_dir=path.parent)
                await runner.start()
            except Exception as exc:  # noqa: BLE001 - report it, keep the rest of the city running
                log.error("adapter %s failed to start: %s", name, exc)
                self.failed[name] = f"start: {exc}"
                continue
            self.runners[name] = runner
            topics = [t for s in cfg.get("sources", []) if s.get("kind") == "mqtt" for t in s.get("topics", [])]
            if topics:
                registry = DeviceRegistry.load(inline=cfg.get("devices", []), files=cfg.get("registry_files", []),
                                               base_dir=path.parent)
                fleets.append(DeviceFleet(name, list(registry), topics, seed=i + 1))
        return fleets

    async def _start_devices(self, fleets: list[DeviceFleet]) -> None:
        from ..sources.mqtt_client import MqttSettings, connect

        settings = MqttSettings(host=self.host, port=self.mqtt_port, client_id="stadtlink-demo-devices",
                                persistent_session=False, manual_ack=False, receive_maximum=None, protocol="3.1.1")
        import orjson

        async def devices() -> None:
            while not self._stop_devices.is_set():
                try:
                    async with connect(settings) as conn:
                        async def publish(topic, doc):
                            await conn.publish(topic, orjson.dumps(doc), qos=1)
                        await run_fleets(fleets, publish, self._stop_devices)
                except Exception as exc:  # noqa: BLE001 - the simulated network reconnects, like a real one
                    log.warning("device simulator: %s; reconnecting", exc)
                    await asyncio.sleep(1)

        self._tasks.append(asyncio.create_task(devices(), name="demo-devices"))

    async def start(self) -> None:
        await self._start_broker()
        await self._start_mqtt()
        netlocs, modbus = await self._start_feeds()
        fleets = await self._start_adapters(netlocs, modbus)
        await self._start_devices(fleets)
        from stadtlink.broker_client.twin import TwinServer

        self.twin = TwinServer(self.broker_url, host=self.host, port=self.twin_port)
        await self.twin.start()

    # -- reporting --------------------------------------------------------------------------------
    def counters(self) -> dict[str, dict[str, int]]:
        out = {}
        for name in self.families:
            runner = self.runners.get(name)
            c = runner.counters() if runner else {}
            out[name] = {"received": int(c.get("received", 0)), "upserted": int(c.get("upserted", 0)),
                         "dead_lettered": int(c.get("dead_lettered", 0)), "errors": int(c.get("errors", 0)),
                         "dropped": int(c.get("dropped_total", 0))}
            if "sinks" in c and "also" in c["sinks"]:
                out[name]["also_written"] = int(c["sinks"]["also"].get("upserted", 0))
        return out

    async def entity_counts(self) -> dict[str, int]:
        from stadtlink.broker_client import NGSILDClient
        from stadtlink.adapters.core.adapter import STADTLINK_CONTEXT_URL

        types: list[str] = []
        for name in self.families:
            for t in plugins.get_adapter(name).entity_types:
                if t not in types:
                    types.append(t)
        counts = {}
        async with NGSILDClient(self.broker_url, context=STADTLINK_CONTEXT_URL) as client:
            for t in types:
                counts[t] = await client.count_entities(type=t)
        return counts

    async def report(self) -> dict[str, Any]:
        adapters = self.counters()
        for name, why in self.failed.items():
            adapters.setdefault(name, {})["failed"] = why
        return {"adapters": adapters, "entities": await self.entity_counts(),
                "broker": self.broker_url, "twin": self.twin.url if self.twin else None,
                "also_to": self.also_to}

    def ok(self, report: dict[str, Any]) -> bool:
        if self.failed:
            return False
        return all(a.get("upserted", 0) > 0 and a.get("errors", 0) == 0 for a in report["adapters"].values())

    async def stop(self) -> None:
        self._stop_devices.set()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        for runner in self.runners.values():
            await runner.stop(grace=5.0)
        if self.twin is not None:
            await self.twin.stop()
        for cleanup in reversed(self._cleanups):
            try:
                await cleanup()
            except Exception:  # noqa: BLE001
                pass

"""The whole city on one machine: ``stadtlink demo``.

Everything runs in one process, on loopback, on the real code paths: the local NGSI-LD broker, an
embedded MQTT broker (amqtt — the machine's Mosquitto is not needed), simulated devices and feeds
in the real formats, the four adapters with their example configs exactly as ``stadtlink run``
runs them (only addresses are pointed at the simulators), and the twin view.
"""
from __future__ import annotations

import asyncio
import json
import logging
import shutil
import socket
import tempfile
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

log = logging.getLogger("stadtlink.demo")


def demo_families() -> tuple[str, ...]:
    """Every installed adapter that registers demo simulators (``AdapterSpec.demo``), by name: the
    built-in families and any integrator's package, with no list of them in the core."""
    adapters, _errors = plugins.load_adapters()
    return tuple(sorted(name for name, spec in adapters.items()
                        if spec.demo is not None and spec.example_config is not None))


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


def parse_also_to(spec: str) -> dict[str, str | None]:
    """``--also-to``: ``KIND+URL`` (``ngsi-v2+http://orion:1026``, ``scorpio+http://…``,
    ``sensorthings+http://…``) or a bare ``URL``, whose kind (``None`` here) the demo tells from the
    server's answers before it starts (:meth:`DemoCity.resolve_also_to`) → a ``brokers:`` entry
    named ``also``."""
    from stadtlink.broker_client.backends import KINDS

    kind: str | None
    kind, sep, url = spec.partition("+")
    if not sep or "://" in kind:
        kind, url = None, spec
    elif kind not in KINDS:
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


class DemoServices:
    """What a family's ``DemoSimulators.services`` may do: serve its simulated feeds and servers and
    have the demo point the family's example config at them."""

    def __init__(self, city: "DemoCity", netlocs: dict[str, str], modbus: dict[str, tuple[str, int]]):
        self._city = city
        self._netlocs = netlocs
        self._modbus = modbus

    @property
    def host(self) -> str:
        return self._city.host

    async def serve_http(self, app: web.Application, *, replaces: str) -> int:
        """Serve ``app`` on a free port; every polled URL of ``replaces`` (``host:port`` as the example
        config names it) is rewritten to it. Returns the port."""
        port = await self._city._serve(app)
        self._netlocs[replaces] = f"{self.host}:{port}"
        return port

    def redirect_modbus(self, configured: str, host: str, port: int) -> None:
        """Modbus targets at ``configured`` (``host:port`` of the example config) go to ``host:port``."""
        self._modbus[configured] = (host, port)

    def on_stop(self, cleanup) -> None:
        """``await cleanup()`` when the demo stops."""
        self._city._cleanups.append(cleanup)


class DemoCity:
    def __init__(self, *, host: str = "127.0.0.1", broker_port: int = 1026, twin_port: int = 8080,
                 families: tuple[str, ...] | None = None, also_to: str | None = None):
        self.also_to = parse_also_to(also_to) if also_to else None
        self.host = host
        self.broker_port = broker_port if broker_port and port_free(host, broker_port) else free_port(host)
        self.twin_port = twin_port if twin_port and port_free(host, twin_port) else free_port(host)
        self.families = families if families is not None else demo_families()
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

        runner = await serve(self.host, self.broker_port, context_dir=self._package_contexts())
        self._cleanups.append(runner.cleanup)

    def _package_contexts(self) -> str | None:
        """A folder (index.json + files) with the @context of every Smart Data Model an adapter package
        brings (``AdapterSpec.models``, ``stadtlink.models``): the demo's broker resolves them offline,
        as it does the bundled ones."""
        from stadtlink.schemas.registry import model_origin, registered_models

        plugins.load_adapters()        # registers the models the adapters declare
        extra = {m.context_url: m.context for m in registered_models().values()
                 if model_origin(m.type) != "bundled"}
        if not extra:
            return None
        folder = Path(tempfile.mkdtemp(prefix="stadtlink-demo-contexts-"))

        async def remove() -> None:
            shutil.rmtree(folder, ignore_errors=True)
        self._cleanups.append(remove)
        index = {}
        for i, (url, path) in enumerate(sorted(extra.items())):
            name = f"context-{i}.jsonld"
            shutil.copyfile(path, folder / name)
            index[url] = name
        (folder / "index.json").write_text(json.dumps(index), encoding="utf-8")
        return str(folder)

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
        """Each family's simulated feeds and servers (``AdapterSpec.demo.services``); returns the address
        rewrites for the example configs."""
        netlocs: dict[str, str] = {}
        modbus: dict[str, tuple[str, int]] = {}
        services = DemoServices(self, netlocs, modbus)
        for name in self.families:
            demo = plugins.get_adapter(name).demo
            if demo is not None and demo.services is not None:
                await demo.services(services)
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
                encoders = spec.demo.devices if spec.demo is not None else {}
                fleets.append(DeviceFleet(name, list(registry), topics, seed=i + 1, encoders=encoders))
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

    async def resolve_also_to(self) -> None:
        """Ask the ``--also-to`` server what it is when no kind was given
        (:func:`~stadtlink.broker_client.backends.detect.detect_kind`); ValueError if it does not say."""
        if self.also_to is not None and self.also_to["kind"] is None:
            from stadtlink.broker_client.backends.detect import detect_kind

            self.also_to["kind"] = await detect_kind(self.also_to["url"])

    async def start(self) -> None:
        await self.resolve_also_to()
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
        """Entities in the broker per type, each type asked in its adapter's @context (a package's
        own model expands to its own IRIs)."""
        from stadtlink.broker_client import NGSILDClient

        by_context: dict[str, list[str]] = {}
        for name in self.families:
            spec = plugins.get_adapter(name)
            types = by_context.setdefault(spec.context, [])
            types.extend(t for t in spec.entity_types if t not in types)
        counts: dict[str, int] = {}
        for context, types in by_context.items():
            async with NGSILDClient(self.broker_url, context=context) as client:
                for t in types:
                    if t not in counts:
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

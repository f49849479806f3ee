"""Modbus TCP polling source against real pymodbus servers on free ports."""
from __future__ import annotations

import asyncio
import contextlib
import time

import pytest
from pymodbus.server import ModbusTcpServer
from pymodbus.simulator import DataType, SimData, SimDevice

from stadtlink.adapters.core.adapter import AdapterSpec, FunctionProfile
from stadtlink.adapters.core.errors import ConfigError
from stadtlink.adapters.core.reading import RawMessage
from stadtlink.adapters.core.sources import ModbusSource, ModbusSourceConfig, build_source
from stadtlink.adapters.core.testing import free_port, stop_task, wait_until


class Inverter:
    """A pymodbus server with unit 1 whose holding/input register n holds the value n; counts reads."""

    def __init__(self, port: int | None = None, size: int = 1000):
        self.port = port or free_port()
        self.size = size
        self.reads = 0
        self.server: ModbusTcpServer | None = None
        self.task: asyncio.Task | None = None

    def _trace(self, sending: bool, pdu):
        if not sending:
            self.reads += 1
        return pdu

    async def start(self):
        device = SimDevice(id=1, simdata=[SimData(0, values=list(range(self.size)), datatype=DataType.REGISTERS)])
        self.server = ModbusTcpServer([device], address=("127.0.0.1", self.port), trace_pdu=self._trace)
        self.task = asyncio.create_task(self.server.serve_forever())
        for _ in range(200):
            try:
                _, w = await asyncio.open_connection("127.0.0.1", self.port)
                w.close()
                return self
            except OSError:
                await asyncio.sleep(0.01)
        raise RuntimeError("pymodbus server did not start")

    async def stop(self):
        await self.server.shutdown()
        with contextlib.suppress(asyncio.CancelledError):
            await self.task


@contextlib.asynccontextmanager
async def hanging_server():
    """Accepts TCP connections and never answers (a device that locked up)."""
    async def handle(reader, writer):
        with contextlib.suppress(Exception):
            await reader.read()
    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        server.close()


class Collector:
    def __init__(self):
        self.messages: list[RawMessage] = []

    async def __call__(self, message: RawMessage) -> None:
        self.messages.append(message)

    def of(self, device: str) -> list[RawMessage]:
        return [m for m in self.messages if m.device_hint == device]


def _config(*targets, **kw) -> ModbusSourceConfig:
    kw.setdefault("interval_s", 0.05)
    kw.setdefault("jitter", 0.0)
    kw.setdefault("timeout_s", 1.0)
    kw.setdefault("retry_min_s", 0.05)
    kw.setdefault("retry_max_s", 0.3)
    return ModbusSourceConfig(targets=list(targets), **kw)


async def test_blocks_are_read_in_chunks_of_125():
    inv = await Inverter().start()
    try:
        collector = Collector()
        source = ModbusSource(_config({"host": "127.0.0.1", "port": inv.port, "unit_id": 1, "device": "inv-01",
                                       "options": {"b": 2}},
                                      blocks=[{"address": 0, "count": 10}, {"address": 100, "count": 300}],
                                      options={"a": 1}))
        task = asyncio.create_task(source.run(collector))
        try:
            await wait_until(lambda: len(collector.messages) >= 4, what="four polls")
        finally:
            await stop_task(task)
        msg = collector.messages[0]
        assert msg.source == "modbus" and msg.device_hint == "inv-01"
        assert msg.payload == {0: list(range(10)), 100: list(range(100, 400))}
        assert msg.attributes["options"] == {"a": 1, "b": 2} and msg.attributes["unit_id"] == 1
        # 1 read for the first block + 3 (125 + 125 + 50) for the second, per poll; a poll that was
        # still reading when the source was stopped adds at most 3 reads and no message
        emitted = int(source.stats()["emitted"])
        assert emitted == len(collector.messages)
        assert 4 * emitted <= inv.reads <= 4 * emitted + 3, (inv.reads, emitted)
        assert source.stats()["connects"] == 1          # one connection, kept across polls
        assert source.ready
    finally:
        await inv.stop()


async def test_input_registers_and_exception_response():
    inv = await Inverter(size=50).start()
    try:
        collector = Collector()
        ok = ModbusSource(_config({"host": "127.0.0.1", "port": inv.port, "device": "a"},
                                  blocks=[{"address": 5, "count": 3}], register_type="input"))
        beyond = ModbusSource(_config({"host": "127.0.0.1", "port": inv.port, "device": "b"},
                                      blocks=[{"address": 40, "count": 20}]))
        tasks = [asyncio.create_task(ok.run(collector)), asyncio.create_task(beyond.run(collector))]
        try:
            await wait_until(lambda: collector.of("a") and beyond.stats()["poll_failures"] >= 2, what="polls")
        finally:
            for t in tasks:
                await stop_task(t)
        assert collector.of("a")[0].payload == {5: [5, 6, 7]}
        assert not collector.of("b") and not beyond.ready
    finally:
        await inv.stop()


async def test_dead_and_hanging_targets_do_not_delay_the_others():
    inv = await Inverter().start()
    try:
        async with hanging_server() as hang_port:
            collector = Collector()
            source = ModbusSource(_config(
                {"host": "127.0.0.1", "port": hang_port, "device": "hung"},
                {"host": "127.0.0.1", "port": free_port(), "device": "dead"},
                {"host": "127.0.0.1", "port": inv.port, "device": "good"},
                blocks=[{"address": 0, "count": 4}], timeout_s=5.0, concurrency=4))
            task = asyncio.create_task(source.run(collector))
            try:
                await wait_until(lambda: len(collector.of("good")) >= 10, what="10 polls of the good inverter")
                hung, dead, good = source._targets
                # the hung device's first poll is still waiting for its 5 s timeout …
                assert hung.failures == 0 and hung.ok is None
                # … the dead one has failed (and retried) meanwhile, the good one kept its cadence
                assert dead.failures >= 1 and good.ok
                assert source.ready and source.stats()["targets_ok"] == 1
            finally:
                await stop_task(task)
    finally:
        await inv.stop()


async def test_reconnects_after_device_restart_and_readiness_share():
    inv = await Inverter().start()
    port = inv.port
    collector = Collector()
    strict = ModbusSource(_config({"host": "127.0.0.1", "port": port, "device": "inv"},
                                  {"host": "127.0.0.1", "port": free_port(), "device": "dead"},
                                  blocks=[{"address": 0, "count": 2}], ready_min_share=1.0))
    source = ModbusSource(_config({"host": "127.0.0.1", "port": port, "device": "inv"},
                                  blocks=[{"address": 0, "count": 2}]))
    tasks = [asyncio.create_task(source.run(collector)), asyncio.create_task(strict.run(Collector()))]
    try:
        await wait_until(lambda: source.ready and strict.stats()["targets_ok"] == 1
                         and strict.stats()["poll_failures"] >= 1, what="first polls")
        assert not strict.ready      # 1 of 2 reachable < 100 %
        await inv.stop()
        await wait_until(lambda: not source.ready, what="not ready while the device is down")
        before = len(collector.messages)
        inv = await Inverter(port=port).start()
        await wait_until(lambda: source.ready and len(collector.messages) > before, what="recovery")
        assert source.stats()["connects"] >= 2
    finally:
        for t in tasks:
            await stop_task(t)
        await inv.stop()


async def test_profile_modbus_reader_is_used():
    inv = await Inverter().start()
    seen: list[tuple[int, dict]] = []

    async def reader(client, unit_id, options):
        seen.append((unit_id, dict(options)))
        resp = await client.read_holding_registers(options["base"], count=2, device_id=unit_id)
        return {"pair": resp.registers}

    spec = AdapterSpec(name="pv-test", description="", profiles={"pairs": _ReaderProfile(reader)},
                       mapper=lambda r, c: [])
    try:
        cfg = _config({"host": "127.0.0.1", "port": inv.port, "unit_id": 1, "device": "inv-9",
                       "options": {"base": 20}}, profile="pairs")
        source = build_source(cfg, adapter=spec)
        collector = Collector()
        task = asyncio.create_task(source.run(collector))
        try:
            await wait_until(lambda: collector.messages, what="a poll")
        finally:
            await stop_task(task)
        assert collector.messages[0].payload == {"pair": [20, 21]}
        assert seen[0] == (1, {"base": 20})
    finally:
        await inv.stop()


class _ReaderProfile:
    name = "pairs"
    kind = "modbus"
    description = "reads two registers at options.base"

    def __init__(self, reader):
        self.modbus_reader = reader

    def decode(self, message, options):
        return []


def test_build_source_needs_blocks_or_reader():
    spec = AdapterSpec(name="x", description="", profiles={"plain": FunctionProfile("plain", "modbus", "", lambda m, o: [])},
                       mapper=lambda r, c: [])
    cfg = ModbusSourceConfig(profile="plain", targets=[{"host": "h", "device": "d"}])
    with pytest.raises(ConfigError):
        build_source(cfg, adapter=spec)
    with pytest.raises(ConfigError):
        build_source(ModbusSourceConfig(profile="nope", targets=[{"host": "h", "device": "d"}],
                                        blocks=[{"address": 0, "count": 1}]), adapter=spec)
    src = build_source(ModbusSourceConfig(profile="plain", targets=[{"host": "h", "device": "d"}],
                                          blocks=[{"address": 0, "count": 1}]), adapter=spec)
    assert isinstance(src, ModbusSource) and not src.ready

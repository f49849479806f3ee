"""Modbus TCP polling source (PV inverters, meters).

Every target has its own poll loop and its own pymodbus ``AsyncModbusTcpClient`` (pymodbus's own
auto-reconnect is off; we reconnect with exponential backoff + jitter). A semaphore shared by all
targets caps concurrent register I/O at ``concurrency``. Each target's whole poll is bounded by
``timeout_s``, so a dead or hanging device only ever delays itself.

Per poll the source calls the profile's ``modbus_reader(client, unit_id, options)`` when the profile
has one (e.g. SunSpec discovery + model chain) and emits its return value; otherwise it reads the
configured ``blocks`` of holding (or input) registers, in chunks of at most 125 registers, and emits
``{start_address: [register, …]}`` (one entry per block).

``ready`` is True when the share of targets whose last poll succeeded is above zero and at least
``ready_min_share``.
"""
from __future__ import annotations

import asyncio
import logging
import random
import time
from datetime import datetime, timezone
from typing import Any, Awaitable, Callable, Literal

from pydantic import BaseModel, ConfigDict, Field

from ..reading import RawMessage
from .backoff import Backoff, jittered
from .base import Emit

log = logging.getLogger("stadtlink.source.modbus")

MAX_REGISTERS_PER_READ = 125

ModbusReader = Callable[[Any, int, dict], Awaitable[Any]]


class RegisterBlock(BaseModel):
    model_config = ConfigDict(extra="forbid")

    address: int = Field(ge=0, le=65535)
    count: int = Field(ge=1, le=65536)


class ModbusTarget(BaseModel):
    model_config = ConfigDict(extra="forbid")

    host: str
    port: int = Field(502, ge=1, le=65535)
    unit_id: int = Field(1, ge=0, le=255)
    device: str
    options: dict[str, Any] = Field(default_factory=dict)


class ModbusSourceConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    kind: Literal["modbus"] = "modbus"
    name: str | None = None
    profile: str | None = None
    interval_s: float = Field(10.0, gt=0)
    jitter: float = Field(0.1, ge=0, lt=1)
    timeout_s: float = Field(3.0, gt=0)
    concurrency: int = Field(16, ge=1)
    targets: list[ModbusTarget] = Field(min_length=1)
    options: dict[str, Any] = Field(default_factory=dict)
    blocks: list[RegisterBlock] = Field(default_factory=list)   # used when the profile has no modbus_reader
    register_type: Literal["holding", "input"] = "holding"
    retry_min_s: float = Field(1.0, gt=0)
    retry_max_s: float = Field(300.0, gt=0)
    ready_min_share: float = Field(0.0, ge=0, le=1)


class ModbusReadError(Exception):
    """A Modbus exception response or an I/O error while reading registers."""


async def read_blocks(client: Any, unit_id: int, blocks: list[RegisterBlock], *,
                      register_type: str = "holding") -> dict[int, list[int]]:
    """Read each block (≤125 registers per request) → ``{block.address: [registers]}``."""
    read = client.read_holding_registers if register_type == "holding" else client.read_input_registers
    out: dict[int, list[int]] = {}
    for block in blocks:
        regs: list[int] = []
        address = block.address
        remaining = block.count
        while remaining > 0:
            n = min(remaining, MAX_REGISTERS_PER_READ)
            resp = await read(address, count=n, device_id=unit_id)
            if resp.isError():
                raise ModbusReadError(f"unit {unit_id}: reading {n} registers at {address} failed: {resp}")
            if len(resp.registers) < n:
                raise ModbusReadError(f"unit {unit_id}: short read at {address}: {len(resp.registers)} of {n}")
            regs.extend(resp.registers[:n])
            address += n
            remaining -= n
        out[block.address] = regs
    return out


class _TargetState:
    __slots__ = ("target", "client", "ok", "failures", "backoff")

    def __init__(self, target: ModbusTarget, backoff: Backoff):
        self.target = target
        self.client: Any = None
        self.ok: bool | None = None
        self.failures = 0
        self.backoff = backoff


class ModbusSource:
    def __init__(self, config: ModbusSourceConfig, *, reader: ModbusReader | None = None):
        if reader is None and not config.blocks:
            raise ValueError("modbus source: the profile has no modbus_reader, so configure `blocks`")
        self.config = config
        self.name = config.name or "modbus"
        self._reader = reader
        self._targets = [_TargetState(t, Backoff(min(config.retry_min_s, config.interval_s),
                                                 max(config.retry_max_s, config.interval_s)))
                         for t in config.targets]
        self._stats = {"polls": 0.0, "poll_failures": 0.0, "connects": 0.0, "connect_failures": 0.0,
                       "emitted": 0.0, "emit_refused": 0.0}

    @property
    def ready(self) -> bool:
        ok = sum(1 for s in self._targets if s.ok)
        return ok > 0 and ok / len(self._targets) >= self.config.ready_min_share

    def stats(self) -> dict[str, float]:
        ok = sum(1 for s in self._targets if s.ok)
        return {**self._stats, "targets": float(len(self._targets)), "targets_ok": float(ok)}

    async def run(self, emit: Emit) -> None:
        sem = asyncio.Semaphore(self.config.concurrency)
        try:
            async with asyncio.TaskGroup() as tg:
                for state in self._targets:
                    tg.create_task(self._poll_loop(state, sem, emit))
        finally:
            for state in self._targets:
                self._close(state)

    def _close(self, state: _TargetState) -> None:
        if state.client is not None:
            try:
                state.client.close()
            except Exception:  # noqa: BLE001 - closing a broken client must not raise
                pass
            state.client = None

    async def _connected_client(self, state: _TargetState) -> Any:
        from pymodbus.client import AsyncModbusTcpClient

        if state.client is not None and state.client.connected:
            return state.client
        self._close(state)
        t = state.target
        # reconnect_delay=0: no background reconnects by pymodbus; we reconnect on the next poll.
        client = AsyncModbusTcpClient(t.host, port=t.port, timeout=self.config.timeout_s, retries=0,
                                      reconnect_delay=0, name=f"modbus-{t.device}")
        if not await client.connect():
            client.close()
            self._stats["connect_failures"] += 1
            raise ModbusReadError(f"cannot connect to {t.host}:{t.port}")
        self._stats["connects"] += 1
        state.client = client
        return client

    async def _read(self, state: _TargetState) -> Any:
        client = await self._connected_client(state)
        options = {**self.config.options, **state.target.options}
        if self._reader is not None:
            return await self._reader(client, state.target.unit_id, options)
        return await read_blocks(client, state.target.unit_id, self.config.blocks,
                                 register_type=self.config.register_type)

    async def poll_once(self, state: _TargetState, sem: asyncio.Semaphore, emit: Emit) -> None:
        async with sem:
            self._stats["polls"] += 1
            try:
                payload = await asyncio.wait_for(self._read(state), timeout=self.config.timeout_s)
            except asyncio.TimeoutError:
                self._close(state)
                raise ModbusReadError(f"no answer within {self.config.timeout_s}s") from None
            except asyncio.CancelledError:
                raise
            except Exception:
                self._close(state)
                raise
        options = {**self.config.options, **state.target.options}
        message = RawMessage(source="modbus", payload=payload, topic=f"modbus://{state.target.host}:"
                             f"{state.target.port}/{state.target.unit_id}", device_hint=state.target.device,
                             received_at=datetime.now(timezone.utc),
                             attributes={"options": options, "unit_id": state.target.unit_id})
        try:
            await emit(message)
        except asyncio.CancelledError:
            raise
        except Exception:
            self._stats["emit_refused"] += 1
            raise
        self._stats["emitted"] += 1

    async def _poll_loop(self, state: _TargetState, sem: asyncio.Semaphore, emit: Emit) -> None:
        interval = self.config.interval_s
        await asyncio.sleep(interval * self.config.jitter * random.random())
        next_due = time.monotonic()
        while True:
            try:
                await self.poll_once(state, sem, emit)
                state.ok = True
                state.failures = 0
                state.backoff.reset()
                next_due = max(next_due + jittered(interval, self.config.jitter), time.monotonic())
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - one bad device must never stop the others
                state.ok = False
                state.failures += 1
                self._stats["poll_failures"] += 1
                delay = state.backoff.next()
                next_due = time.monotonic() + delay
                level = logging.WARNING if state.failures <= 3 or state.failures % 20 == 0 else logging.DEBUG
                log.log(level, "modbus %s: %s (%s:%s unit %s) failed: %s (%d in a row); retry in %.1fs",
                        self.name, state.target.device, state.target.host, state.target.port,
                        state.target.unit_id, exc, state.failures, delay)
            await asyncio.sleep(max(0.0, next_due - time.monotonic()))


__all__ = ["RegisterBlock", "ModbusTarget", "ModbusSourceConfig", "ModbusSource", "read_blocks",
           "MAX_REGISTERS_PER_READ", "ModbusReadError"]

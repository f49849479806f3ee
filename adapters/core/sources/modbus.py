"""Modbus TCP polling source (PV inverters, meters).

The schedule, backoff, counters and readiness are every polling source's (:mod:`.polling`): each
target on its own fixed-rate schedule, ``concurrency`` polls at most at once. Every target has its
own pymodbus ``AsyncModbusTcpClient`` (pymodbus's own auto-reconnect is off; a failed poll closes it
and the next one connects again). Each target's whole poll is bounded by ``timeout_s``, so a dead or
hanging device only ever delays itself.

Per poll the source calls the profile's ``modbus_reader(client, unit_id, options)`` when the profile
has one (e.g. SunSpec discovery + model chain) and emits its return value; otherwise it reads the
configured ``blocks`` of holding (or input) registers, in chunks of at most 125 registers, and emits
``{start_address: [register, …]}`` (one entry per block).
"""
from __future__ import annotations

import asyncio
import contextlib
import logging
from datetime import datetime, timezone
from typing import Any, AsyncIterator, Awaitable, Callable, Literal

from pydantic import BaseModel, ConfigDict, Field

from ..reading import RawMessage
from .base import Emit
from .polling import PollingSource, PollingSourceConfig, TargetState

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


class ModbusSourceConfig(PollingSourceConfig):
    kind: Literal["modbus"] = "modbus"
    interval_s: float = Field(10.0, gt=0)
    timeout_s: float = Field(3.0, gt=0)
    concurrency: int = Field(16, ge=1)
    retry_min_s: float = Field(1.0, gt=0)
    targets: list[ModbusTarget] = Field(min_length=1)
    blocks: list[RegisterBlock] = Field(default_factory=list)   # used when the profile has no modbus_reader
    register_type: Literal["holding", "input"] = "holding"


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


class _TargetState(TargetState[ModbusTarget]):
    """A device's schedule plus its open connection (None after a failure)."""

    def __init__(self, target: ModbusTarget, interval_s: float, backoff):
        super().__init__(target, interval_s, backoff)
        self.client: Any = None


class ModbusSource(PollingSource[ModbusTarget]):
    kind = "modbus"
    log = log

    def __init__(self, config: ModbusSourceConfig, *, reader: ModbusReader | None = None):
        if reader is None and not config.blocks:
            raise ValueError("modbus source: the profile has no modbus_reader, so configure `blocks`")
        super().__init__(config, [_TargetState(t, *self.schedule(config)) for t in config.targets],
                         extra_stats=("connects", "connect_failures"))
        self.config: ModbusSourceConfig = config
        self._reader = reader

    @contextlib.asynccontextmanager
    async def polling(self) -> AsyncIterator[None]:
        try:
            yield None
        finally:
            for state in self._targets:
                self._close(state)

    def describe(self, state: _TargetState) -> str:
        t = state.target
        return f"{t.device} ({t.host}:{t.port} unit {t.unit_id})"

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

    async def poll_once(self, state: _TargetState, resource: None, sem: asyncio.Semaphore, emit: Emit) -> bool:
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
        await self.emit_counted(emit, message)
        return True


__all__ = ["RegisterBlock", "ModbusTarget", "ModbusSourceConfig", "ModbusSource", "read_blocks",
           "MAX_REGISTERS_PER_READ", "ModbusReadError"]

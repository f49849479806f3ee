"""Simulated PV inverters for tests, the demo and the benchmark (real sockets, real protocols).

* :func:`build_register_map` encodes SunSpec models (values in engineering units) into registers, driven by
  the same SunSpec model JSON files the decoder uses; raw register bodies pass through (unknown models).
* :func:`serve_sunspec_inverter` starts a pymodbus Modbus TCP server holding such a map; the map is
  rebuilt from ``values_fn(elapsed_s)`` whenever a client reads the ``SunS`` marker (start of a poll),
  so the values change over time: :func:`sunrise_values_fn` lets the sun rise and set.
* :func:`create_fronius_app` / :func:`serve_fronius` answer like a Fronius Solar API v1 data manager,
  from fixed documents or from a values function.

Tested with pymodbus 3.16 (``SimDevice`` / ``SimData`` server API).
"""
from __future__ import annotations

import functools
import math
import socket
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

from aiohttp import web

from stadtlink.adapters.core.adapter import DemoSimulators

from .decoders.sunspec import END_MODEL_ID, SUNS_MARKER, ModelDef, Point, model_definitions

#: Scale factors the encoder uses when the values do not name one.
DEFAULT_SCALE_FACTORS = {
    "A_SF": -2, "V_SF": -1, "W_SF": 0, "Hz_SF": -2, "VA_SF": 0, "VAr_SF": 0, "Var_SF": 0, "PF_SF": -1,
    "WH_SF": 0, "DCA_SF": -2, "DCV_SF": -1, "DCW_SF": 0, "DCWH_SF": 0, "Tmp_SF": -1, "TotWh_SF": 0,
    "TotVarh_SF": 0,
}

_SENTINEL = {
    "int16": 0x8000, "sunssf": 0x8000, "uint16": 0xFFFF, "enum16": 0xFFFF, "bitfield16": 0xFFFF, "count": 0,
    "int32": 0x80000000, "uint32": 0xFFFFFFFF, "enum32": 0xFFFFFFFF, "bitfield32": 0xFFFFFFFF,
    "int64": 0x8000000000000000, "uint64": 0xFFFFFFFFFFFFFFFF, "bitfield64": 0xFFFFFFFFFFFFFFFF,
    "acc16": 0, "acc32": 0, "acc64": 0,
}

#: One chain entry: ``(model_id, values)`` or ``(model_id, values, length)``; ``values`` is a mapping of
#: point name → engineering value (a repeating group as a list of mappings under the group's name), or a
#: list of raw registers (the model body as is — e.g. a model this adapter does not know).
ChainEntry = tuple


def _split(value: int, size: int) -> list[int]:
    return [(value >> (16 * (size - 1 - i))) & 0xFFFF for i in range(size)]


def _encode_point(point: Point, value: Any, sfs: Mapping[str, Any]) -> list[int]:
    if point.type == "pad":
        return [0] * point.size
    if point.type == "string":
        raw = (str(value).encode("utf-8") if value is not None else b"")[: point.size * 2]
        raw = raw.ljust(point.size * 2, b"\x00")
        return [int.from_bytes(raw[i:i + 2], "big") for i in range(0, len(raw), 2)]
    if point.type not in _SENTINEL:
        return [0] * point.size
    if value is None:
        return _split(_SENTINEL[point.type], point.size)
    if point.sf is not None:
        sf = point.sf if isinstance(point.sf, int) else sfs.get(point.sf)
        if sf is None:
            return _split(_SENTINEL[point.type], point.size)
        value = round(value / 10 ** sf)
    value = int(round(value))
    return _split(value & ((1 << (16 * point.size)) - 1), point.size)


def _encode_block(points: Sequence[Point], values: Mapping[str, Any], size: int,
                  outer_sfs: Mapping[str, Any] | None = None) -> list[int]:
    sfs = dict(outer_sfs or {})
    for p in points:
        if p.type == "sunssf":
            sfs[p.name] = values[p.name] if p.name in values else DEFAULT_SCALE_FACTORS.get(p.name, 0)
    body = [0] * size
    for p in points:
        value = sfs.get(p.name) if p.type == "sunssf" else values.get(p.name)
        body[p.offset:p.offset + p.size] = _encode_point(p, value, sfs)
    return body


def encode_model(model_id: int, values: Mapping[str, Any], length: int | None = None) -> list[int]:
    """The register body of one model (without ID and L); ``length`` may cut it (model 1 with 65)."""
    model: ModelDef = model_definitions()[model_id]
    body = _encode_block(model.points, values, model.fixed_size)
    if model.group is not None:
        sfs = {p.name: (None if body[p.offset] == 0x8000 else
                        body[p.offset] if body[p.offset] < 0x8000 else body[p.offset] - 0x10000)
               for p in model.points if p.type == "sunssf"}
        instances = list(values.get(model.group.name, ()))
        count_point = next((p for p in model.points if p.type == "count"), None)
        if count_point is not None and count_point.name not in values:
            body[count_point.offset] = len(instances)
        for inst in instances:
            body.extend(_encode_block(model.group.points, inst, model.group.size, sfs))
    if length is not None:
        body = (body + [0] * length)[:length]
    return body


def build_register_map(chain: Sequence[ChainEntry]) -> list[int]:
    """``SunS`` + every model as ``[ID][L][body]`` + the end model ``0xFFFF 0``."""
    regs = list(SUNS_MARKER)
    for entry in chain:
        model_id, values = entry[0], entry[1]
        length = entry[2] if len(entry) > 2 else None
        if isinstance(values, (list, tuple)):
            body = [int(v) & 0xFFFF for v in values]
        else:
            body = encode_model(model_id, values, length)
        regs.extend([model_id, len(body), *body])
    regs.extend([END_MODEL_ID, 0])
    return regs


# --------------------------------------------------------------------------------------------------
# a day of sunshine


@dataclass
class SunState:
    """Accumulated energy of one simulated inverter."""

    energy_wh: float = 25_000_000.0
    last_t: float | None = None


def inverter_chain(power_w: float, *, energy_wh: float, serial: str = "SIM-0001", status: str = "MPPT",
                   manufacturer: str = "stadtlink", model: str = "SimInverter 10", heatsink_c: float = 35.0,
                   strings: int = 2) -> list[ChainEntry]:
    """Models 1, 103 and 160 for an inverter producing ``power_w`` (three phases, ``strings`` MPPT inputs)."""
    st = {"OFF": 1, "SLEEPING": 2, "STARTING": 3, "MPPT": 4, "THROTTLED": 5, "FAULT": 7, "STANDBY": 8}[status]
    v_phase = 230.0
    i_phase = power_w / (3 * v_phase) if power_w > 0 else 0.0
    dc_w = power_w / 0.97 if power_w > 0 else 0.0
    modules = []
    for n in range(1, strings + 1):
        w = dc_w / strings
        v = 400.0 + 10 * n if power_w > 0 else 0.0
        modules.append({"ID": n, "IDStr": f"String {n}", "DCA": (w / v) if v else 0.0, "DCV": v, "DCW": w,
                        "DCWH": max(1.0, energy_wh / strings), "DCSt": st})
    return [
        (1, {"Mn": manufacturer, "Md": model, "Opt": "sim", "Vr": "1.0.0", "SN": serial, "DA": 1}),
        (103, {"A": 3 * i_phase, "AphA": i_phase, "AphB": i_phase, "AphC": i_phase,
               "PPVphAB": 400.0, "PPVphBC": 400.5, "PPVphCA": 399.5,
               "PhVphA": v_phase, "PhVphB": v_phase + 0.3, "PhVphC": v_phase - 0.3,
               "W": power_w, "Hz": 50.0, "VA": power_w, "VAr": 0, "PF": 100.0 if power_w > 0 else None,
               "WH": max(1.0, energy_wh), "DCW": dc_w, "TmpSnk": heatsink_c, "St": st, "StVnd": st}),
        (160, {"module": modules}),
    ]


def sunrise_values_fn(*, peak_w: float = 10_000.0, day_s: float = 600.0, night_share: float = 0.25,
                      serial: str = "SIM-0001", start_phase: float = 0.0, **chain_kw: Any
                      ) -> Callable[[float], list[ChainEntry]]:
    """A ``values_fn`` for :func:`serve_sunspec_inverter`: one simulated day every ``day_s`` seconds.

    ``start_phase`` (0..1) is where in the day the simulation starts; 0 = sunrise. Power follows a sine
    over the daylight part, the inverter sleeps at night, energy accumulates.
    """
    state = SunState()

    def values(elapsed_s: float) -> list[ChainEntry]:
        phase = (start_phase + elapsed_s / day_s) % 1.0
        daylight = 1.0 - night_share
        power = peak_w * math.sin(math.pi * phase / daylight) if phase < daylight else 0.0
        power = max(0.0, round(power))
        if state.last_t is not None and elapsed_s > state.last_t:
            state.energy_wh += power * (elapsed_s - state.last_t) / 3600.0
        state.last_t = elapsed_s
        return inverter_chain(power, energy_wh=state.energy_wh, serial=serial,
                              status="MPPT" if power > 0 else "SLEEPING",
                              heatsink_c=20.0 + 25.0 * power / peak_w, **chain_kw)

    return values


# --------------------------------------------------------------------------------------------------
# Modbus TCP server


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


@dataclass
class SunSpecInverterServer:
    """A running simulated inverter (one TCP port, one or more unit ids). ``await stop()`` when done."""

    host: str
    port: int
    base_address: int
    unit_ids: tuple[int, ...]
    values_fn: Callable[[float], Sequence[ChainEntry]] | None
    server: Any = None
    started_at: float = field(default_factory=time.monotonic)
    reads: int = 0
    largest_read: int = 0
    #: the last requests as (address, count), for tests that check what a client read
    recent: deque = field(default_factory=lambda: deque(maxlen=256))
    #: called with the unit id whenever a client reads the ``SunS`` marker (the start of a poll)
    on_poll: Callable[[int], None] | None = None

    async def _on_access(self, unit_id: int, function_code: int, start_address: int, address: int, count: int,
                         registers: list[int], set_values: Any) -> None:
        self.reads += 1
        self.largest_read = max(self.largest_read, count)
        self.recent.append((address, count))
        if address == self.base_address and set_values is None and self.on_poll is not None:
            self.on_poll(unit_id)
        if self.values_fn is not None and address == self.base_address and set_values is None:
            new = build_register_map(self.values_fn(time.monotonic() - self.started_at))
            offset = self.base_address - start_address
            if offset >= 0 and offset + len(new) <= len(registers):
                registers[offset:offset + len(new)] = new

    async def stop(self) -> None:
        if self.server is not None:
            await self.server.shutdown()
            self.server = None

    async def __aenter__(self) -> SunSpecInverterServer:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()


async def serve_sunspec_inverter(host: str, port: int, *, values_fn: Callable[[float], Sequence[ChainEntry]] | None
                                 = None, registers: Sequence[int] | None = None, unit_ids: Sequence[int] = (1,),
                                 base_address: int = 40000, spare_registers: int = 64) -> SunSpecInverterServer:
    """Start a pymodbus Modbus TCP server with a SunSpec map at ``base_address``; returns once listening.

    Give ``values_fn(elapsed_s) -> chain`` (the map is rebuilt at every read of the marker: the start of
    a poll) or a fixed ``registers`` dump (starting with ``SunS``). ``port=0`` picks a free port
    (see ``.port``). Addresses outside the map answer with ILLEGAL ADDRESS, as real devices do.
    """
    from pymodbus.server import ModbusTcpServer
    from pymodbus.simulator import DataType, SimData, SimDevice

    if values_fn is None and registers is None:
        raise ValueError("give values_fn or registers")
    initial = list(registers) if registers is not None else build_register_map(values_fn(0.0))
    if port == 0:
        port = free_port(host)
    sim = SunSpecInverterServer(host=host, port=port, base_address=base_address, unit_ids=tuple(unit_ids),
                                values_fn=values_fn if registers is None else None)
    block = initial + [0] * spare_registers   # room for a longer map later (values stay the same length)
    devices = [SimDevice(id=uid, simdata=[SimData(address=base_address, values=list(block),
                                                  datatype=DataType.REGISTERS)],
                         action=functools.partial(sim._on_access, uid)) for uid in unit_ids]
    server = ModbusTcpServer(devices if len(devices) > 1 else devices[0], address=(host, port))
    await server.serve_forever(background=True)
    sim.server = server
    return sim


# --------------------------------------------------------------------------------------------------
# Fronius Solar API v1


def _head(arguments: Mapping[str, Any], now: datetime) -> dict:
    return {"RequestArguments": dict(arguments), "Status": {"Code": 0, "Reason": "", "UserMessage": ""},
            "Timestamp": now.isoformat(timespec="seconds")}


def fronius_documents(power_w: float | None, *, energy_wh: float, now: datetime | None = None,
                      grid_w: float | None = None) -> dict[str, dict]:
    """CommonInverterData, 3PInverterData and PowerFlow answers for an inverter producing ``power_w``.

    ``power_w=None`` is the night: the AC keys are absent and the status is 'standby' (8).
    """
    now = now or datetime.now(timezone(timedelta(hours=1)))
    data: dict[str, Any] = {"TOTAL_ENERGY": {"Unit": "Wh", "Value": round(energy_wh)},
                            "DeviceStatus": {"ErrorCode": 0, "StatusCode": 7 if power_w else 8}}
    three: dict[str, Any] = {}
    if power_w is not None:
        i = power_w / 230.0 / 3
        data.update({"PAC": {"Unit": "W", "Value": round(power_w)}, "FAC": {"Unit": "Hz", "Value": 50.0},
                     "IAC": {"Unit": "A", "Value": round(3 * i, 2)}, "UAC": {"Unit": "V", "Value": 230.0},
                     "IDC": {"Unit": "A", "Value": round(power_w / 0.97 / 600, 2)},
                     "UDC": {"Unit": "V", "Value": 600.0}})
        three = {f"IAC_L{n}": {"Unit": "A", "Value": round(i, 2)} for n in (1, 2, 3)}
        three.update({f"UAC_L{n}": {"Unit": "V", "Value": 230.0} for n in (1, 2, 3)})
    common_args = {"DataCollection": "CommonInverterData", "DeviceClass": "Inverter", "DeviceId": "1",
                   "Scope": "Device"}
    load = 800.0
    grid = grid_w if grid_w is not None else load - (power_w or 0.0)
    return {
        "CommonInverterData": {"Body": {"Data": data}, "Head": _head(common_args, now)},
        "3PInverterData": {"Body": {"Data": three},
                           "Head": _head({**common_args, "DataCollection": "3PInverterData"}, now)},
        "PowerFlow": {"Body": {"Data": {"Site": {"P_PV": power_w, "P_Grid": round(grid, 2), "P_Load": -load,
                                                 "P_Akku": None, "E_Total": round(energy_wh),
                                                 "Mode": "meter", "Meter_Location": "grid"},
                                        "Inverters": {"1": {"DT": 1, "P": power_w or 0,
                                                            "E_Total": round(energy_wh)}},
                                        "Version": "12"}},
                      "Head": _head({}, now)},
    }


def create_fronius_app(*, documents: Mapping[str, Any] | Callable[[], Mapping[str, Any]] | None = None,
                       values_fn: Callable[[float], float | None] | None = None) -> web.Application:
    """A Solar API v1 endpoint. ``documents`` maps ``CommonInverterData`` / ``3PInverterData`` /
    ``PowerFlow`` to fixed answers (or is a callable returning that mapping); ``values_fn(elapsed_s)``
    returns the current AC power in W (None = night) and builds the answers with :func:`fronius_documents`.
    A missing document answers 404.
    """
    started = time.monotonic()
    energy = {"wh": 44_188_000.0, "t": 0.0}

    def current() -> Mapping[str, Any]:
        if documents is not None:
            return documents() if callable(documents) else documents
        elapsed = time.monotonic() - started
        power = values_fn(elapsed) if values_fn is not None else None
        energy["wh"] += (power or 0.0) * max(0.0, elapsed - energy["t"]) / 3600.0
        energy["t"] = elapsed
        return fronius_documents(power, energy_wh=energy["wh"])

    async def inverter(request: web.Request) -> web.Response:
        collection = request.query.get("DataCollection", "CommonInverterData")
        doc = current().get(collection)
        if doc is None:
            raise web.HTTPNotFound(text=f"no {collection}")
        return web.json_response(doc)

    async def powerflow(request: web.Request) -> web.Response:
        doc = current().get("PowerFlow")
        if doc is None:
            raise web.HTTPNotFound(text="no PowerFlow")
        return web.json_response(doc)

    app = web.Application()
    app.router.add_get("/solar_api/v1/GetInverterRealtimeData.cgi", inverter)
    app.router.add_get("/solar_api/v1/GetPowerFlowRealtimeData.fcgi", powerflow)
    return app


@dataclass
class FroniusServer:
    host: str
    port: int
    runner: web.AppRunner

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    async def stop(self) -> None:
        await self.runner.cleanup()

    async def __aenter__(self) -> FroniusServer:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()


async def serve_fronius(host: str, port: int, **app_kw: Any) -> FroniusServer:
    """Start :func:`create_fronius_app` on ``host:port`` (0 = a free port); returns once listening."""
    if port == 0:
        port = free_port(host)
    runner = web.AppRunner(create_fronius_app(**app_kw), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    await site.start()
    return FroniusServer(host, port, runner)


def sunrise_power_fn(*, peak_w: float = 10_000.0, day_s: float = 600.0, night_share: float = 0.25
                     ) -> Callable[[float], float | None]:
    """``values_fn`` for :func:`create_fronius_app`: AC power over a simulated day, None at night."""

    def power(elapsed_s: float) -> float | None:
        phase = (elapsed_s / day_s) % 1.0
        daylight = 1.0 - night_share
        if phase >= daylight:
            return None
        return max(1.0, round(peak_w * math.sin(math.pi * phase / daylight)))

    return power


async def start_demo_simulators(host: str = "127.0.0.1", *, modbus_port: int = 5020, fronius_port: int = 8604,
                                day_s: float = 600.0) -> list[Any]:
    """The inverters ``examples/pv.yaml`` polls: a SunSpec inverter (unit 1) on ``modbus_port`` and a
    Fronius data manager on ``fronius_port``, both with a sun that rises and sets every ``day_s``
    seconds. Returns the servers; ``await s.stop()`` each when done."""
    sunspec_server = await serve_sunspec_inverter(
        host, modbus_port, values_fn=sunrise_values_fn(peak_w=29_700.0, day_s=day_s, start_phase=0.15,
                                                       serial="RATHAUS-29K7", model="SimInverter 30"))
    fronius_server = await serve_fronius(host, fronius_port,
                                         values_fn=sunrise_power_fn(peak_w=10_000.0, day_s=day_s))
    return [sunspec_server, fronius_server]


async def _main() -> None:  # pragma: no cover - manual use: python -m stadtlink.adapters.pv.simulator
    import asyncio

    servers = await start_demo_simulators()
    print("SunSpec inverter on 127.0.0.1:5020 (unit 1), Fronius Solar API on http://127.0.0.1:8604 — Ctrl-C stops")
    try:
        await asyncio.Event().wait()
    finally:
        for server in servers:
            await server.stop()


if __name__ == "__main__":  # pragma: no cover
    import asyncio
    import contextlib

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_main())


__all__ = [
    "DEFAULT_SCALE_FACTORS",
    "FroniusServer",
    "SunSpecInverterServer",
    "build_register_map",
    "create_fronius_app",
    "encode_model",
    "free_port",
    "fronius_documents",
    "inverter_chain",
    "serve_fronius",
    "serve_sunspec_inverter",
    "start_demo_simulators",
    "sunrise_power_fn",
    "sunrise_values_fn",
]


# ------------------------------------------------------------------------------------ stadtlink demo

FRONIUS_NETLOC = "127.0.0.1:8604"     # where the example config polls the Fronius Solar API
SUNSPEC_ADDRESS = "127.0.0.1:5020"    # where the example config reads the SunSpec inverter


async def start_demo_inverters(demo) -> None:
    """A Fronius Solar API and a SunSpec Modbus inverter whose sun rises and sets every 10 minutes."""
    await demo.serve_http(create_fronius_app(values_fn=sunrise_power_fn(peak_w=9800.0, day_s=600.0)),
                          replaces=FRONIUS_NETLOC)
    inverter = await serve_sunspec_inverter(demo.host, 0, values_fn=sunrise_values_fn(
        peak_w=29_700.0, day_s=600.0, start_phase=0.05, serial="DEMO-RATHAUS-01"))
    demo.on_stop(inverter.stop)
    demo.redirect_modbus(SUNSPEC_ADDRESS, demo.host, inverter.port)


DEMO = DemoSimulators(services=start_demo_inverters)

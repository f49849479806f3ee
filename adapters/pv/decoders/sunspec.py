"""SunSpec Modbus: model definitions from the SunSpec JSON files, the register reader and the decoder.

Three layers, each usable alone:

* :func:`model_definitions` loads ``sunspec_models/model_<id>.json`` (verbatim SunSpec files) and computes
  every point's register offset from the point sizes. Nothing here is a hand-written register table.
* :func:`read_sunspec` is the only code doing I/O: it finds the ``SunS`` marker (40000, 50000 or 0), walks
  the model headers ``[ID][L]`` until ``0xFFFF`` and reads each known model's registers in chunks of at
  most 125. It returns a plain, JSON-serialisable :data:`SunSpecPayload`.
* :func:`decode_models` / :func:`inverter_values` are pure: registers → point values (types, scale
  factors, not-implemented sentinels, strings, repeating groups) → the profile's reading values.
"""
from __future__ import annotations

import functools
import inspect
import json
import math
import struct
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from stadtlink.adapters.core.errors import DecodeError
from stadtlink.adapters.core.reasons import BAD_PAYLOAD

from ..reasons import (
    SUNSPEC_BAD_REGISTERS,
    SUNSPEC_CHAIN_INVALID,
    SUNSPEC_LENGTH_MISMATCH,
    SUNSPEC_NOT_FOUND,
    SUNSPEC_NO_MARKER,
    SUNSPEC_READ_FAILED,
    SUNSPEC_TRUNCATED,
)
from .rows import SourceRow, apply_rows
from .rows import rows as _rows

MODELS_DIR = Path(__file__).with_name("sunspec_models")

SUNS_MARKER = (0x5375, 0x6E53)          # "SunS"
DEFAULT_BASE_ADDRESSES = (40000, 50000, 0)
END_MODEL_ID = 0xFFFF
MAX_REGISTERS_PER_READ = 125           # Modbus limit for function 0x03
MAX_MODELS = 64                        # a chain longer than this is taken as garbage
#: Models that share another model's layout (SunSpec 101/102/103 have identical point lists).
MODEL_ALIASES = {102: 101}

#: ``{"base": 40000, "models": [[model_id, length, [registers of the model body]], ...]}``;
#: registers are empty for models the reader skipped (unknown to us).
SunSpecPayload = dict


# --------------------------------------------------------------------------------------------------
# model definitions


@dataclass(frozen=True, slots=True)
class Point:
    name: str
    type: str
    size: int
    offset: int                  # registers from the start of the model body (the register after L) or group
    sf: str | int | None
    units: str | None
    symbols: Mapping[int, str]


@dataclass(frozen=True, slots=True)
class RepeatingGroup:
    name: str
    points: tuple[Point, ...]
    size: int
    count: int | str             # 0 = as many as the model length holds; a str names the count point


@dataclass(frozen=True, slots=True)
class ModelDef:
    id: int
    name: str
    points: tuple[Point, ...]    # fixed block, without the ID and L header points
    fixed_size: int
    group: RepeatingGroup | None


def _points(raw_points: Iterable[Mapping[str, Any]], *, skip_header: bool) -> tuple[tuple[Point, ...], int]:
    out: list[Point] = []
    offset = 0
    for p in raw_points:
        size = int(p.get("size", 1))
        if skip_header and p["name"] in ("ID", "L") and offset < 2:
            offset += size
            continue
        symbols = {int(s["value"]): str(s["name"]) for s in p.get("symbols", ()) if "value" in s}
        out.append(Point(name=p["name"], type=p["type"], size=size, offset=offset - (2 if skip_header else 0),
                         sf=p.get("sf"), units=p.get("units"), symbols=symbols))
        offset += size
    return tuple(out), offset - (2 if skip_header else 0)


def load_model(path: Path) -> ModelDef:
    data = json.loads(path.read_text(encoding="utf-8"))
    top = data["group"]
    points, fixed_size = _points(top.get("points", ()), skip_header=True)
    group = None
    for sub in top.get("groups", ())[:1]:  # the models used here have at most one repeating group
        gpoints, gsize = _points(sub.get("points", ()), skip_header=False)
        if gsize > 0:
            group = RepeatingGroup(name=sub["name"], points=gpoints, size=gsize, count=sub.get("count", 0))
    return ModelDef(id=int(data["id"]), name=top["name"], points=points, fixed_size=fixed_size, group=group)


@functools.cache
def model_definitions() -> dict[int, ModelDef]:
    """Every model this adapter can decode, by model id (aliases included)."""
    models: dict[int, ModelDef] = {}
    for path in sorted(MODELS_DIR.glob("model_*.json")):
        model = load_model(path)
        models[model.id] = model
    for alias, target in MODEL_ALIASES.items():
        if target in models:
            models[alias] = models[target]
    return models


# --------------------------------------------------------------------------------------------------
# point decoding (pure)

_NOT_IMPLEMENTED: dict[str, int] = {
    "int16": 0x8000, "sunssf": 0x8000, "uint16": 0xFFFF, "enum16": 0xFFFF, "bitfield16": 0xFFFF,
    "int32": 0x80000000, "uint32": 0xFFFFFFFF, "enum32": 0xFFFFFFFF, "bitfield32": 0xFFFFFFFF,
    "int64": 0x8000000000000000, "uint64": 0xFFFFFFFFFFFFFFFF, "bitfield64": 0xFFFFFFFFFFFFFFFF,
    "acc16": 0, "acc32": 0, "acc64": 0,
}
_SIGNED_BITS = {"int16": 16, "sunssf": 16, "int32": 32, "int64": 64}
_INTEGER_TYPES = set(_NOT_IMPLEMENTED) | {"count"}


def _combine(regs: Sequence[int]) -> int:
    """Big-endian: the first register is the high word."""
    value = 0
    for r in regs:
        value = (value << 16) | (r & 0xFFFF)
    return value


def decode_point(point: Point, regs: Sequence[int]) -> Any:
    """The raw (unscaled) value of one point, or None when not implemented / not decodable."""
    if len(regs) < point.size:
        return None
    t = point.type
    if t in _INTEGER_TYPES:
        value = _combine(regs[: point.size])
        if _NOT_IMPLEMENTED.get(t) == value:
            return None
        bits = _SIGNED_BITS.get(t)
        if bits and value >= 1 << (bits - 1):
            value -= 1 << bits
        return value
    if t == "string":
        raw = b"".join(int(r & 0xFFFF).to_bytes(2, "big") for r in regs[: point.size])
        text = raw.split(b"\x00", 1)[0].decode("utf-8", errors="replace").strip()
        return text or None
    if t == "float32":
        value = struct.unpack(">f", _combine(regs[:2]).to_bytes(4, "big"))[0]
        return value if math.isfinite(value) else None
    if t == "float64":
        value = struct.unpack(">d", _combine(regs[:4]).to_bytes(8, "big"))[0]
        return value if math.isfinite(value) else None
    return None  # pad, ipaddr, eui48 …: nothing this adapter maps


def scale(raw: float, sf: int) -> int | float:
    """``raw · 10^sf``, rounded to the digits the scale factor gives (4.87, not 4.8700000000000001)."""
    if sf >= 0:
        return raw * 10 ** sf
    return round(raw * 10.0 ** sf, -sf)


def _decode_block(points: Sequence[Point], regs: Sequence[int], base: int, limit: int,
                  outer: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Point values of one block (the fixed part or one group instance); scale factors applied.

    Points that do not fit in ``limit`` registers (model 1 of length 65 has no Pad) are left out.
    """
    raw: dict[str, Any] = {}
    for p in points:
        if p.offset + p.size > limit:
            continue
        raw[p.name] = decode_point(p, regs[base + p.offset: base + p.offset + p.size])
    out: dict[str, Any] = {}
    for p in points:
        value = raw.get(p.name)
        if value is None or p.type == "sunssf":
            continue
        if p.sf is not None:
            if isinstance(p.sf, int):
                sf = p.sf
            else:
                sf = raw.get(p.sf) if p.sf in raw else (outer or {}).get(p.sf)
            if not isinstance(sf, int) or not -10 <= sf <= 10:
                continue  # the scale factor is not implemented or out of the range SunSpec allows
            value = scale(value, sf)
        out[p.name] = value
    # keep scale factors visible for diagnostics of the caller (not mapped to entities)
    for p in points:
        if p.type == "sunssf" and raw.get(p.name) is not None:
            out.setdefault("_sf", {})[p.name] = raw[p.name]
    return out


def decode_model(model: ModelDef, regs: Sequence[int], length: int) -> dict[str, Any]:
    """All point values of one model body; a repeating group becomes a list under the group's name."""
    limit = min(length, len(regs))
    values = _decode_block(model.points, regs, 0, min(limit, model.fixed_size))
    fixed_raw_sf = values.get("_sf", {})
    if model.group is not None and limit > model.fixed_size:
        count = (limit - model.fixed_size) // model.group.size
        if isinstance(model.group.count, int) and model.group.count > 0:
            count = min(count, model.group.count)
        # a count point (model 160: N) may say fewer instances than the length holds, never more
        count_point = model.group.count if isinstance(model.group.count, str) else \
            next((p.name for p in model.points if p.type == "count"), None)
        declared = values.get(count_point) if count_point else None
        if isinstance(declared, int) and 0 <= declared < count:
            count = declared
        instances = []
        for i in range(count):
            start = model.fixed_size + i * model.group.size
            inst = _decode_block(model.group.points, regs, start, model.group.size, outer=fixed_raw_sf)
            inst.pop("_sf", None)
            instances.append(inst)
        values[model.group.name] = instances
    values.pop("_sf", None)
    return values


# --------------------------------------------------------------------------------------------------
# payload handling (pure)


def _is_register(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= 0xFFFF


def walk_register_block(registers: Sequence[int], start_address: int = 40000) -> SunSpecPayload:
    """A contiguous register dump starting at the ``SunS`` marker → the reader's payload shape.

    Models are skipped by their length whether known or not; the walk ends at ``0xFFFF`` or at the
    end of the dump.
    """
    if not isinstance(registers, (list, tuple)) or not all(_is_register(r) for r in registers):
        raise DecodeError(SUNSPEC_BAD_REGISTERS, "registers must be a list of integers 0..65535")
    if tuple(registers[:2]) != SUNS_MARKER:
        raise DecodeError(SUNSPEC_NO_MARKER, "the register block does not start with 'SunS' (0x5375 0x6E53)")
    models: list[list[Any]] = []
    i = 2
    while i + 2 <= len(registers) and len(models) < MAX_MODELS:
        model_id, length = registers[i], registers[i + 1]
        if model_id == END_MODEL_ID:
            break
        body = list(registers[i + 2: i + 2 + length])
        if len(body) < length:
            raise DecodeError(SUNSPEC_TRUNCATED,
                              f"model {model_id} declares {length} registers, the block holds {len(body)}")
        models.append([model_id, length, body])
        i += 2 + length
    return {"base": start_address, "models": models}


def payload_models(payload: Any) -> list[tuple[int, int, list[int]]]:
    """Validate the reader's payload, or walk a flat dump: ``{"registers": [...], "start_address": 40000}``,
    a bare register list, or a device-samples document (``raw.registers_uint16``)."""
    if isinstance(payload, (bytes, bytearray, str)):
        try:
            payload = json.loads(payload)
        except (ValueError, UnicodeDecodeError, RecursionError) as exc:
            raise DecodeError(BAD_PAYLOAD, f"not JSON: {str(exc)[:200]}") from None
    if isinstance(payload, list):
        payload = {"registers": payload}               # a bare register dump starting at "SunS"
    if not isinstance(payload, Mapping):
        raise DecodeError(BAD_PAYLOAD, f"expected a mapping, got {type(payload).__name__}")
    if isinstance(payload.get("raw"), Mapping) and "models" not in payload:
        payload = payload["raw"]                       # a device-samples document (stadtlink decode)
    registers = payload.get("registers", payload.get("registers_uint16"))
    if "models" not in payload and registers is not None:
        start = payload.get("start_address", 40000)
        if not isinstance(start, int) or isinstance(start, bool):
            raise DecodeError(BAD_PAYLOAD, "start_address must be an integer")
        payload = walk_register_block(registers, start)
    models = payload.get("models")
    if not isinstance(models, (list, tuple)):
        raise DecodeError(BAD_PAYLOAD, "no 'models' list")
    out: list[tuple[int, int, list[int]]] = []
    for n, entry in enumerate(models):
        if isinstance(entry, Mapping):
            entry = (entry.get("id"), entry.get("length"), entry.get("registers"))
        if not isinstance(entry, (list, tuple)) or len(entry) != 3:
            raise DecodeError(BAD_PAYLOAD, f"model #{n} is not [id, length, registers]")
        model_id, length, regs = entry
        if not _is_register(model_id) or not _is_register(length):
            raise DecodeError(BAD_PAYLOAD, f"model #{n}: id and length must be 0..65535")
        if not isinstance(regs, (list, tuple)) or not all(_is_register(r) for r in regs):
            raise DecodeError(BAD_PAYLOAD, f"model {model_id}: registers must be integers 0..65535")
        if regs and len(regs) != length:
            raise DecodeError(SUNSPEC_LENGTH_MISMATCH,
                              f"model {model_id} declares {length} registers, {len(regs)} were read")
        out.append((model_id, length, list(regs)))
    return out


def decode_models(models: Iterable[tuple[int, int, Sequence[int]]]) -> list[tuple[int, dict[str, Any]]]:
    """``(model_id, point values)`` for every model we have a definition for, in chain order."""
    defs = model_definitions()
    decoded = []
    for model_id, length, regs in models:
        model = defs.get(model_id)
        if model is None or not regs:
            continue  # unknown model: skipped by its length
        decoded.append((model_id, decode_model(model, regs, length)))
    return decoded


# --------------------------------------------------------------------------------------------------
# SunSpec points → reading values (mapping rows, one per value)


def _pct_to_fraction(v: float) -> float:
    return round(v / 100.0, 6)   # the mapper's power-factor row refuses (and counts) one outside -1 … 1


COMMON_ROWS = _rows(("Mn", "manufacturer"), ("Md", "model"), ("Opt", "options"), ("Vr", "firmware_version"),
                    ("SN", "serial_number"), ("DA", "device_address"))

#: Models 101/102/103 (integer + scale factor). PF is in percent there.
INVERTER_1XX_ROWS = _rows(
    ("W", "ac_power_w"), ("VA", "ac_apparent_power_va"), ("VAr", "ac_reactive_power_var"),
    ("PF", "power_factor", _pct_to_fraction), ("Hz", "frequency_hz"), ("WH", "energy_export_wh"),
    ("A", "ac_current_a"), ("AphA", "current_l1_a"), ("AphB", "current_l2_a"), ("AphC", "current_l3_a"),
    ("PhVphA", "voltage_l1_v"), ("PhVphB", "voltage_l2_v"), ("PhVphC", "voltage_l3_v"),
    ("PPVphAB", "voltage_l12_v"), ("PPVphBC", "voltage_l23_v"), ("PPVphCA", "voltage_l31_v"),
    ("DCA", "dc_current_a"), ("DCV", "dc_voltage_v"), ("DCW", "dc_power_w"),
    ("TmpCab", "temperature_cabinet_c"), ("TmpSnk", "temperature_heatsink_c"),
    ("TmpTrns", "temperature_transformer_c"), ("TmpOt", "temperature_other_c"),
    ("St", "status_code"), ("StVnd", "vendor_status_code"),
)

#: Model 701 DER AC measurement (IEEE 1547-2018 devices): PF is a fraction, per-phase power exists.
DER_AC_ROWS = _rows(
    ("W", "ac_power_w"), ("VA", "ac_apparent_power_va"), ("Var", "ac_reactive_power_var"),
    ("PF", "power_factor"), ("Hz", "frequency_hz"),
    ("TotWhInj", "energy_export_wh"), ("TotWhAbs", "energy_import_wh"),
    ("A", "ac_current_a"), ("AL1", "current_l1_a"), ("AL2", "current_l2_a"), ("AL3", "current_l3_a"),
    ("VL1", "voltage_l1_v"), ("VL2", "voltage_l2_v"), ("VL3", "voltage_l3_v"),
    ("VL1L2", "voltage_l12_v"), ("VL2L3", "voltage_l23_v"), ("VL3L1", "voltage_l31_v"),
    ("WL1", "power_l1_w"), ("WL2", "power_l2_w"), ("WL3", "power_l3_w"),
    ("TmpAmb", "temperature_ambient_c"), ("TmpCab", "temperature_cabinet_c"), ("TmpSnk", "temperature_heatsink_c"),
    ("TmpTrns", "temperature_transformer_c"), ("TmpOt", "temperature_other_c"),
    ("InvSt", "status_code"),
)

MPPT_MODULE_ROWS = _rows(
    ("ID", "id"), ("IDStr", "name"), ("DCA", "current_a"), ("DCV", "voltage_v"), ("DCW", "power_w"),
    ("DCWH", "energy_wh"), ("Tmp", "temperature_c"), ("DCSt", "status_code"),
)

#: model id → (rows, name of the status point whose symbol becomes ``status``)
INVERTER_MODELS: dict[int, tuple[tuple[SourceRow, ...], str]] = {
    101: (INVERTER_1XX_ROWS, "St"), 102: (INVERTER_1XX_ROWS, "St"), 103: (INVERTER_1XX_ROWS, "St"),
    701: (DER_AC_ROWS, "InvSt"),
}
PHASES_BY_MODEL = {101: 1, 102: 2, 103: 3}


def _apply_rows(table: Iterable[SourceRow], points: Mapping[str, Any], into: dict[str, Any]) -> None:
    apply_rows(table, points.get, into, first_wins=True)   # the first model of a kind in the chain wins


def _symbol(model_id: int, point_name: str, value: Any, group: bool = False) -> str | None:
    model = model_definitions().get(model_id)
    if model is None or not isinstance(value, int):
        return None
    points = model.group.points if group and model.group else model.points
    for p in points:
        if p.name == point_name:
            return p.symbols.get(value)
    return None


def inverter_values(decoded: Sequence[tuple[int, Mapping[str, Any]]]) -> dict[str, Any]:
    """The profile's reading values from decoded models (units: W, VA, var, Hz, A, V, Wh, °C, fractions)."""
    values: dict[str, Any] = {}
    models_seen: list[int] = []
    for model_id, points in decoded:
        models_seen.append(model_id)
        if model_id == 1:
            _apply_rows(COMMON_ROWS, points, values)
        elif model_id in INVERTER_MODELS:
            rows, status_point = INVERTER_MODELS[model_id]
            _apply_rows(rows, points, values)
            if model_id in PHASES_BY_MODEL:
                values.setdefault("phases", PHASES_BY_MODEL[model_id])
            name = _symbol(model_id, status_point, points.get(status_point))
            if name is not None:
                values.setdefault("status", name)
        elif model_id == 160:
            inputs = []
            for n, module in enumerate(points.get("module", ()), start=1):
                dc: dict[str, Any] = {}
                _apply_rows(MPPT_MODULE_ROWS, module, dc)
                status = _symbol(160, "DCSt", module.get("DCSt"), group=True)
                if status is not None:
                    dc["status"] = status
                dc.setdefault("id", n)
                inputs.append(dc)
            if inputs:
                values.setdefault("dc_inputs", inputs)
    if "dc_inputs" not in values:
        # no MPPT model: the inverter's DC totals are its one DC input
        total = {k: values[src] for src, k in (("dc_current_a", "current_a"), ("dc_voltage_v", "voltage_v"),
                                                ("dc_power_w", "power_w")) if src in values}
        if total:
            values["dc_inputs"] = [{"id": 1, **total}]
    values["sunspec_models"] = models_seen
    return values


# --------------------------------------------------------------------------------------------------
# the reader (I/O): used by the Modbus source through the profile's ``modbus_reader``

_UNIT_KWARG: dict[type, str | None] = {}


def _unit_kwarg(client: Any) -> str | None:
    """pymodbus renamed the unit-id argument (unit → slave → device_id); ask the client's signature."""
    cls = type(client)
    if cls not in _UNIT_KWARG:
        try:
            params = inspect.signature(client.read_holding_registers).parameters
        except (TypeError, ValueError):
            params = {}
        _UNIT_KWARG[cls] = next((k for k in ("device_id", "slave", "unit") if k in params), None)
    return _UNIT_KWARG[cls]


async def _read(client: Any, address: int, count: int, unit_id: int) -> list[int] | None:
    """Holding registers, or None when the device answers with a Modbus exception (illegal address …).

    Connection problems and timeouts raise (pymodbus ``ModbusException``): the source counts them.
    """
    kw = _unit_kwarg(client)
    kwargs = {"count": count}
    if kw:
        kwargs[kw] = unit_id
    response = await client.read_holding_registers(address, **kwargs)
    if response is None or response.isError():
        return None
    regs = list(getattr(response, "registers", []) or [])
    if len(regs) < count:
        return None
    return regs[:count]


async def read_sunspec(client: Any, unit_id: int, options: Mapping[str, Any] | None = None) -> SunSpecPayload:
    """Discover the SunSpec map and read the model chain: the ``modbus_reader`` of profile ``sunspec``.

    Options: ``base_address`` (int or list; default 40000, 50000, 0), ``max_registers_per_read`` (≤125),
    ``read_unknown_models`` (default false: unknown models are skipped by their length, unread).
    """
    options = options or {}
    bases = options.get("base_address", DEFAULT_BASE_ADDRESSES)
    if isinstance(bases, int):
        bases = (bases,)
    chunk = max(1, min(int(options.get("max_registers_per_read", MAX_REGISTERS_PER_READ)), MAX_REGISTERS_PER_READ))
    read_unknown = bool(options.get("read_unknown_models", False))
    known = model_definitions()

    base = None
    for candidate in bases:
        marker = await _read(client, int(candidate), 2, unit_id)
        if marker is not None and tuple(marker) == SUNS_MARKER:
            base = int(candidate)
            break
    if base is None:
        raise DecodeError(SUNSPEC_NOT_FOUND,
                          f"no 'SunS' marker at {', '.join(str(b) for b in bases)} (unit {unit_id})")

    models: list[list[Any]] = []
    address = base + 2
    while len(models) < MAX_MODELS and address + 2 <= 0x10000:
        header = await _read(client, address, 2, unit_id)
        if header is None:
            break  # some devices end the map with an illegal address instead of 0xFFFF
        model_id, length = header
        if model_id == END_MODEL_ID:
            break
        if address + 2 + length > 0x10000:
            raise DecodeError(SUNSPEC_CHAIN_INVALID,
                              f"model {model_id} at {address} declares {length} registers, past the address space")
        body: list[int] = []
        if model_id in known or read_unknown:
            start = address + 2
            while len(body) < length:
                count = min(chunk, length - len(body))
                part = await _read(client, start + len(body), count, unit_id)
                if part is None:
                    raise DecodeError(SUNSPEC_READ_FAILED,
                                      f"model {model_id}: registers {start + len(body)}+{count} not readable")
                body.extend(part)
        models.append([model_id, length, body])
        address += 2 + length
    return {"base": base, "models": models}


__all__ = [
    "DEFAULT_BASE_ADDRESSES", "MODELS_DIR", "MODEL_ALIASES", "ModelDef", "Point", "RepeatingGroup",
    "SunSpecPayload", "decode_model", "decode_models", "decode_point", "inverter_values", "load_model",
    "model_definitions", "payload_models", "read_sunspec", "scale", "walk_register_block",
]

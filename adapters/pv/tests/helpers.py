"""Shared helpers for the PV adapter tests: the copied device samples and register surgery."""
from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

TESTDATA = Path(__file__).resolve().parent.parent / "testdata"
SUNSPEC_SAMPLE = "sunspec-modbus-model-1-103-160-block-constructed.json"


def load_sample(name: str) -> dict:
    return json.loads((TESTDATA / name).read_text(encoding="utf-8"))


def sample_registers() -> list[int]:
    return list(load_sample(SUNSPEC_SAMPLE)["raw"]["registers_uint16"])


def split_chain(registers: list[int]) -> list[list]:
    """[SunS][ID L body]... → [[id, length, body], ...] (the end model excluded)."""
    out, i = [], 2
    while registers[i] != 0xFFFF:
        mid, length = registers[i], registers[i + 1]
        out.append([mid, length, list(registers[i + 2:i + 2 + length])])
        i += 2 + length
    return out


def join_chain(chain: list[list]) -> list[int]:
    regs = [0x5375, 0x6E53]
    for mid, length, body in chain:
        regs += [mid, length, *body]
    return regs + [0xFFFF, 0]


def model_body(chain: list[list], model_id: int) -> list[int]:
    return next(entry[2] for entry in chain if entry[0] == model_id)


NOW = datetime(2026, 6, 21, 11, 30, tzinfo=UTC)

